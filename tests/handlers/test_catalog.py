"""The catalog function against moto's Glue: one partition per Ready, none for anything else, nothing twice when a
Ready comes twice or a batch is redelivered after a crash half-way, and a missing table retried (then its DLQ)."""

from __future__ import annotations

import json

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from streamwatch.core.settings import Settings
from tests.conftest import ready_event, sqs_event

HOURLY = {"name": "hourly", "pattern": "logs/{source}/{yyyy}/{MM}/{dd}/{HH}/", "emit_empty": True,
          "catalog": {"database": "logs", "table": "web", "new_database": True,
                      "columns": [{"name": "event", "type": "bigint"}]}}
ORDERS = {"name": "orders", "pattern": "data/dataset={dataset_id}/",
          "catalog": {"database": "logs", "table": "orders"}}  # a table of the user's: not created


def hour_ready(hour: str, **detail) -> dict:
    dataset_id = f"hourly~web~2026-11-24T{hour}"
    return ready_event(dataset_id, "streamwatch-data", 2, rule="hourly", prefix=f"logs/web/2026/11/24/{hour}/",
                       **detail)


def event_of(kind: str, dataset_id: str, rule: str, prefix: str) -> dict:
    ev = ready_event(dataset_id, "streamwatch-data", 2, rule=rule, prefix=prefix,
                     event_id=f"{dataset_id}:{kind.split()[-1].lower()}")
    ev["detail-type"] = kind
    return ev


@pytest.fixture
def catalog(moto_env, context):
    from streamwatch.handlers import catalog as handler

    moto_env(Settings(datasets=(HOURLY, ORDERS), alarms=False))
    glue = boto3.client("glue")

    def invoke(*events: dict | str, ids: list[str] | None = None) -> list[str]:
        bodies = [e if isinstance(e, str) else json.dumps(e) for e in events]
        event = sqs_event(bodies, ids)
        try:
            failures = [f["itemIdentifier"] for f in handler.handler(event, context)["batchItemFailures"]]
        except BatchProcessingError:  # every record failed: Powertools fails the invocation, all come back
            failures = [r["messageId"] for r in event["Records"]]
        handler.metrics.clear_metrics()
        return failures

    def partitions(table: str = "web") -> list[tuple[list[str], str]]:
        got = glue.get_partitions(DatabaseName="logs", TableName=table)["Partitions"]
        return sorted((p["Values"], p["StorageDescriptor"]["Location"]) for p in got)
    return invoke, partitions, glue


def test_a_ready_registers_its_hour_as_one_partition_with_the_tables_format(catalog):
    # Given the hourly rule's table, created from its columns as the construct creates it
    invoke, partitions, glue = catalog
    # When hour 13 is Ready
    assert invoke(hour_ready("13")) == []
    # Then the table has exactly that partition: the rule's fields as values, the dataset's prefix as location,
    # the table's JSON format
    assert partitions() == [(["web", "2026", "11", "24", "13"], "s3://streamwatch-data/logs/web/2026/11/24/13/")]
    table = glue.get_table(DatabaseName="logs", Name="web")["Table"]
    assert [k["Name"] for k in table["PartitionKeys"]] == ["source", "year", "month", "day", "hour"]
    part = glue.get_partition(DatabaseName="logs", TableName="web", PartitionValues=["web", "2026", "11", "24", "13"])
    serde = part["Partition"]["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]
    assert serde == "org.openx.data.jsonserde.JsonSerDe"
    assert part["Partition"]["Parameters"]["streamwatch_event_id"] == "hourly~web~2026-11-24T13:ready"


def test_a_ready_delivered_twice_registers_nothing_twice(catalog):
    # Given hour 13 already registered
    invoke, partitions, _ = catalog
    invoke(hour_ready("13"))
    # When the same Ready comes again, alone and twice in one batch
    assert invoke(hour_ready("13")) == []
    assert invoke(hour_ready("13"), hour_ready("13")) == []
    # Then there is still exactly one partition, and no message failed
    assert len(partitions()) == 1


@pytest.mark.parametrize("kind", ["Dataset Failed", "Dataset Stalled", "Dataset Overdue"])
def test_a_dataset_that_is_not_ready_is_never_registered(catalog, kind):
    # Given an hour that ends Failed, Stalled, or is only Overdue
    invoke, partitions, _ = catalog
    ev = event_of(kind, "hourly~web~2026-11-24T13", "hourly", "logs/web/2026/11/24/13/")
    # When its event reaches the catalog function (a subscription that filters Ready only would never send it)
    assert invoke(ev) == []
    # Then no partition exists
    assert partitions() == []


def test_an_amended_dataset_keeps_its_partition(catalog):
    # Given hour 13 registered
    invoke, partitions, _ = catalog
    invoke(hour_ready("13"))
    before = partitions()
    # When it is Amended (late objects)
    ev = event_of("Dataset Amended", "hourly~web~2026-11-24T13", "hourly", "logs/web/2026/11/24/13/")
    ev["detail"]["event_id"] = "hourly~web~2026-11-24T13:amended:3"
    assert invoke(ev) == []
    # Then the partition is unchanged (the same location holds the late objects too)
    assert partitions() == before


def test_a_missing_table_fails_its_message_alone_and_a_redelivery_after_it_exists_registers(catalog):
    # Given the orders rule, whose table is the user's and does not exist yet, and an hourly Ready beside it
    invoke, partitions, glue = catalog
    orders = ready_event("orders~o-1", "streamwatch-data", 1, rule="orders", prefix="data/dataset=o-1/")
    # When both arrive in one batch
    failed = invoke(hour_ready("13"), orders, ids=["hour", "orders"])
    # Then only the orders message failed (SQS retries it, then its DLQ), and the hour is registered
    assert failed == ["orders"]
    assert len(partitions()) == 1
    # When the table is created and the whole batch is delivered again (the crash half-way: one part done)
    glue.create_table(DatabaseName="logs", TableInput={
        "Name": "orders", "PartitionKeys": [{"Name": "dataset_id", "Type": "string"}],
        "StorageDescriptor": {"Columns": [{"Name": "amount", "Type": "double"}],
                              "Location": "s3://streamwatch-data/data/"}})
    assert invoke(hour_ready("13"), orders) == []
    # Then each has exactly one partition
    assert len(partitions()) == 1
    assert partitions("orders") == [(["o-1"], "s3://streamwatch-data/data/dataset=o-1/")]


def test_a_table_whose_keys_are_not_the_rules_fields_fails_clearly(catalog, caplog):
    # Given the user's orders table with two partition keys, for a rule with one field
    invoke, partitions, glue = catalog
    glue.create_table(DatabaseName="logs", TableInput={
        "Name": "orders", "PartitionKeys": [{"Name": "a", "Type": "string"}, {"Name": "b", "Type": "string"}],
        "StorageDescriptor": {"Columns": [], "Location": "s3://streamwatch-data/data/"}})
    orders = ready_event("orders~o-1", "streamwatch-data", 1, rule="orders", prefix="data/dataset=o-1/")
    # When its Ready arrives
    failed = invoke(orders, ids=["orders"])
    # Then the message fails (then its DLQ), and the log names the table, its keys and the rule's fields
    assert failed == ["orders"]
    assert "table logs.orders has partition keys ['a', 'b'], rule 'orders' gives 1 values (dataset_id)" in caplog.text
    assert partitions("orders") == []


def test_a_message_that_is_not_a_streamwatch_event_is_skipped_alone(catalog):
    # Given a batch with a foreign body, a broken one and a Ready
    invoke, partitions, _ = catalog
    # When it is handled
    failed = invoke(json.dumps({"hello": "world"}), "{not json", hour_ready("14"))
    # Then nothing failed (the bad ones can never succeed), and the Ready was registered
    assert failed == []
    assert [v for v, _ in partitions()] == [["web", "2026", "11", "24", "14"]]
