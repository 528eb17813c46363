"""Each function's table permissions are the calls its code makes, no more: every DynamoDB call each handler
makes is recorded while it does all its work against the local run's table, and the template grants exactly
those actions (IAM checks the actions inside a transaction one by one)."""

from __future__ import annotations

import contextlib
import json

import aws_cdk as cdk
import boto3
import pytest

from streamwatch.core import envelope
from streamwatch.core.limits import IDEMPOTENCY_ACTIONS, TABLE_ACTIONS
from streamwatch.core.settings import Settings
from streamwatch.runtime import aws
from streamwatch.state.store import Store
from tests.conftest import ready_event, s3_message, s3_record, sqs_event
from tests.handlers.conftest import T0, land_records, published, run_observer
from tests.infra import aws_rules
from tests.infra.aws_rules import props, resources, role_statements

IN_TRANSACTION = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                  "ConditionCheck": "ConditionCheckItem"}


@contextlib.contextmanager
def recorded():
    """The IAM actions of every DynamoDB call made inside, by any client made inside."""
    actions: set[str] = set()

    def record(model, params, **_):
        if model.name == "TransactWriteItems":
            actions.update(f"dynamodb:{IN_TRANSACTION[next(iter(item))]}" for item in params["TransactItems"])
        else:
            actions.add(f"dynamodb:{model.name}")
    aws.reset()
    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register("before-parameter-build.dynamodb", record)
    try:
        yield actions
    finally:
        boto3.DEFAULT_SESSION.events.unregister("before-parameter-build.dynamodb", record)
        aws.reset()


def firehose_stream(local) -> None:
    boto3.client("firehose").create_delivery_stream(
        DeliveryStreamName=local.resources.stream, ExtendedS3DestinationConfiguration={
            "BucketARN": f"arn:aws:s3:::{local.resources.bucket}",
            "RoleARN": "arn:aws:iam::123456789012:role/firehose"})


@pytest.fixture
def data_path_calls(moto_env, context, fake_clock, monkeypatch):
    """Start a run, produce, count records, duplicates and the error output, observe to Ready and past a deadline.
    -> {function: actions}."""
    from streamwatch.handlers import monitor, producer
    settings, local = moto_env(Settings(mode="auto", deadline_s=600))
    firehose_stream(local)
    invoked = []
    monkeypatch.setattr(aws, "client", _with_lambda(aws.client, invoked))
    monkeypatch.setenv("STREAMWATCH_RES_PRODUCER_FUNCTION", "producer")
    out = {}
    with recorded() as out["Starter"]:
        producer.handler({"action": "start_run", "dataset_id": "d1", "producers": 1, "records_per_producer": 3},
                         context)
        producer.handler({"action": "start_run", "dataset_id": "d1", "producers": 1}, context)  # retried
    with recorded() as out["Producer"]:
        producer.handler(json.loads(invoked[0]), context)
        producer.handler(json.loads(invoked[0]), context)  # retried after its report
    with recorded() as out["Monitor"]:
        land_records(local, context, "d1", "part-0", "p1", range(3), at=T0)
        land_records(local, context, "d2", "a", "p9", range(2), at=T0)
        land_records(local, context, "d2", "a", "p9", range(2), at=T0)  # the same key again: a duplicate
        key = "errors/processing-failed/x"
        boto3.client("s3").put_object(Bucket=local.resources.bucket, Key=key, Body=b'{"attemptsMade":1,'
                                      b'"arrivalTimestamp":1,"errorCode":"X","rawData":"e30="}\n')
        response = monitor.handler(sqs_event([s3_message(s3_record(local.resources.bucket, key, 10))], sent_ts=T0),
                                   context)
        assert response == {"batchItemFailures": []}
    with recorded() as out["Observer"]:
        fake_clock.t = T0 + 1
        run_observer(local, context, fake_clock)
        fake_clock.t += 3 * 3600
        run_observer(local, context, fake_clock)
    return out


def test_the_data_path_calls_exactly_what_each_function_is_granted(data_path_calls):
    # Given the table calls each function made on the data path: a run started, produced, counted and observed
    # When each function's calls are compared with its TABLE_ACTIONS
    for function, actions in data_path_calls.items():
        # Then they are exactly those actions
        assert actions == set(TABLE_ACTIONS[function]), function


def test_the_scheduler_calls_exactly_what_it_is_granted(moto_env, context, fake_clock):
    # Given an hourly window rule that emits empty windows
    from streamwatch.handlers import scheduler
    moto_env(Settings(buffer_interval_s=60, datasets=({"pattern": "logs/{yyyy}/{MM}/{dd}/{HH}/", "name": "hourly",
                                                        "mode": "window", "emit_empty": True},)))
    # When the scheduler closes windows twice, an hour apart, and beats once, its table calls recorded
    with recorded() as actions:
        fake_clock.t = T0 + 5
        scheduler.handler({"action": "close_windows"}, context)
        fake_clock.t = T0 + 3600 + 5
        scheduler.handler({"action": "close_windows"}, context)
        scheduler.handler({"action": "heartbeat"}, context)
    # Then they are exactly its TABLE_ACTIONS
    assert actions == set(TABLE_ACTIONS["Scheduler"])


def failing_source(request: dict):
    """A record source that fails after a record (the producer reports failed)."""
    yield {"n": 0}
    raise ConnectionError("the source broke")


def test_every_other_path_stays_within_the_grants(moto_env, context, fake_clock, monkeypatch):
    """The paths the data path above does not take: a producer that fails, datasets that stall, one amended
    after its declaration, one whose sequence numbers overflow the SEQS item."""
    # Given a producer whose source fails, a dataset amended late, one whose sequence numbers overflow SEQS
    from streamwatch.handlers import monitor, producer
    from streamwatch.state import ledger
    settings, local = moto_env(Settings(mode="auto", min_objects=1, max_observation_s=1800,
                                        record_source=f"{__name__}:failing_source"))
    firehose_stream(local)
    out: dict[str, set[str]] = {"Producer": set(), "Monitor": set(), "Observer": set()}
    from streamwatch.runtime.chain import start_run
    start_run(settings, local.resources, "failing", ["p1"])
    # When they run to Failed, Stalled and Amended, each function's table calls recorded
    with recorded() as actions, pytest.raises(ConnectionError):  # a source that raises: reported failed, raised
        producer.handler({"action": "produce", "dataset_id": "failing", "producer_id": "p1", "records": 5}, context)
    out["Producer"] |= actions
    monkeypatch.setattr(ledger, "MAX_SEQS_BYTES", 64)
    with recorded() as actions:  # objects of plain datasets, and sequence ranges past the SEQS item
        land_records(local, context, "amend", "a", "p9", range(2), at=T0)
        boto3.client("s3").put_object(Bucket=local.resources.bucket, Key="data/dataset=over/x", Body=b"".join(
            envelope.wrap({"n": i}, "p1", 2 * i, {"dataset_id": "over"}) + b"\n" for i in range(20)))
        response = monitor.handler(sqs_event([s3_message(s3_record(local.resources.bucket, "data/dataset=over/x",
                                                                   10))], sent_ts=T0), context)
        assert response == {"batchItemFailures": []}
    out["Monitor"] |= actions
    assert Store(local.resources.table).get_state("over").seqs_overflow
    with recorded() as actions:  # Failed, then both others reach the hard cap (Stalled)
        fake_clock.t = T0 + 1
        run_observer(local, context, fake_clock)
    out["Observer"] |= actions
    with recorded() as actions:
        land_records(local, context, "amend", "late", "p9", range(2, 4), at=fake_clock.t + 100)
    out["Monitor"] |= actions
    with recorded() as actions:
        run_observer(local, context, fake_clock)
    out["Observer"] |= actions
    # Then the events are Failed, two Stalled and Amended, and each function called only what it is granted
    kinds = [e["detail-type"] for e in published(local)]
    assert kinds == ["Dataset Failed", "Dataset Stalled", "Dataset Stalled", "Dataset Amended"], kinds
    for function, actions in out.items():
        assert actions and actions <= set(TABLE_ACTIONS[function]), (function, actions - set(TABLE_ACTIONS[function]))


def _with_lambda(real, invoked):
    class Lambda:
        def invoke(self, FunctionName, InvocationType, Payload):  # noqa: N803 (boto3 names)
            invoked.append(Payload.decode())
            return {"StatusCode": 202}

    def client(service, *args, **kwargs):
        return Lambda() if service == "lambda" else real(service, *args, **kwargs)
    return client


@pytest.fixture(scope="module")
def granted() -> dict[str, set[str]]:
    from aws_cdk.assertions import Template

    from stacks.observer_stack import ObserverStack
    template = Template.from_stack(ObserverStack(cdk.App(), "Grants", settings=Settings(datasets=(
        {"pattern": "data/dataset={dataset_id}/", "name": "main"},
        {"pattern": "logs/{yyyy}/{MM}/{dd}/{HH}/", "name": "hourly", "emit_empty": True})))).to_json()
    tables = {k[len("Watch"):].split("Table")[0].rstrip("0123456789ABCDEF") or k: k
              for k in resources(template, "AWS::DynamoDB::Table")}
    out = {}
    for name, fn in resources(template, "AWS::Lambda::Function").items():
        function = next((f for f in TABLE_ACTIONS if name.startswith(f"Watch{f}")), None)
        if function is None:
            continue
        statements = role_statements(template, props(fn)["Role"]["Fn::GetAtt"][0])
        for table, logical in tables.items():
            on_it = [s for s in statements if logical in json.dumps(s["Resource"])]
            out[(function, table)] = aws_rules.actions(on_it, "dynamodb:")
    return out


def test_the_template_grants_each_function_exactly_its_table_actions(granted):
    # Given what the template grants each function on each table
    # When the grants are grouped by table
    # Then there are two tables, State and ConsumerIdempotency
    assert {table for _, table in granted} == {"State", "ConsumerIdempotency"}
    # And each function is granted its TABLE_ACTIONS on State, and only the consumer IDEMPOTENCY_ACTIONS on the other
    for (function, table), actions in granted.items():
        expected = TABLE_ACTIONS[function] if table == "State" else (
            IDEMPOTENCY_ACTIONS if function == "Consumer" else ())
        assert actions == set(expected), (function, table)


def test_the_consumer_calls_exactly_what_it_is_granted_on_its_idempotency_table(moto_env, context, monkeypatch):
    # Given a Ready handled, handled again (a repeat), and one that fails half-way and is retried
    from streamwatch.core.limits import IDEMPOTENCY_FALLBACK
    from streamwatch.handlers import consumer
    _, local = moto_env()
    boto3.client("s3").put_object(Bucket=local.resources.bucket, Key="data/dataset=d1/part-0", Body=b"{}\n")
    first, second = (ready_event("d1", local.resources.bucket, 1, event_id=e) for e in ("d1:ready", "d2:ready"))
    real = consumer.write_manifest
    # When the consumer handles them, its table calls recorded
    with recorded() as actions:
        consumer.handler(first, context)
        consumer.handler(first, context)
        monkeypatch.setattr(consumer, "write_manifest", lambda *a, **k: (_ for _ in ()).throw(TimeoutError()))
        with pytest.raises(TimeoutError):
            consumer.handler(second, context)
        monkeypatch.setattr(consumer, "write_manifest", real)
        consumer.handler(second, context)
    # Then its calls are the actions it is granted there, but Powertools' fallback read (a repeat's old item
    # comes back with the conditional PutItem); it never touches the state table (none granted)
    assert actions == set(IDEMPOTENCY_ACTIONS) - set(IDEMPOTENCY_FALLBACK)
