"""A rule's catalog option: validated with one clear line, carried through the environment, and turned into the
partition keys, values and inputs Glue expects (core/catalog.py)."""

from __future__ import annotations

import pytest

from streamwatch.core.catalog import partition_input, ready_pattern, table_input
from streamwatch.core.settings import Settings, SettingsError

HOURLY = {"name": "hourly", "pattern": "logs/{source}/{yyyy}/{MM}/{dd}/{HH}/",
          "catalog": {"database": "logs", "table": "web", "columns": [{"name": "event", "type": "bigint"}]}}


def test_a_catalog_rule_survives_the_lambda_environment_and_names_its_partitions():
    # Given an hourly rule with a catalog table
    settings = Settings(datasets=(HOURLY,))
    # When it goes through the functions' environment and back
    rule = Settings.from_env(settings.to_env()).rules.rules[0]
    # Then the catalog is the same, and an hour's partition is its field values in the pattern's order
    assert rule.catalog == settings.rules.rules[0].catalog
    assert rule.partition_values("hourly~web~2026-11-24T13") == ["web", "2026", "11", "24", "13"]


def test_the_table_a_rule_creates_has_its_fields_as_partition_keys_and_json_lines():
    # Given the hourly rule
    rule = Settings(datasets=(HOURLY,)).rules.rules[0]
    # When its table is built
    table = table_input(rule.catalog, rule.fields, "s3://b/logs/")
    # Then the keys are source, year, month, day, hour; the columns the given ones; the format Firehose's JSON lines
    assert [k["Name"] for k in table["PartitionKeys"]] == ["source", "year", "month", "day", "hour"]
    assert table["StorageDescriptor"]["Columns"] == [{"Name": "event", "Type": "bigint"}]
    assert table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"
    assert table["TableType"] == "EXTERNAL_TABLE" and "projection.enabled" not in table["Parameters"]


def test_a_partition_copies_the_tables_storage_descriptor_with_its_own_location():
    # Given a table as GetTable returns it
    table = table_input(Settings(datasets=(HOURLY,)).rules.rules[0].catalog,
                        ("source", "yyyy", "MM", "dd", "HH"), "s3://b/logs/")
    table["StorageDescriptor"]["Parameters"] = {"k": "v"}
    # When an hour's partition is built
    part = partition_input(table, ["web", "2026", "11", "24", "13"], "s3://b/logs/web/2026/11/24/13/", {"x": "1"})
    # Then it has the table's format and columns, and the hour's own location
    assert part["StorageDescriptor"]["Location"] == "s3://b/logs/web/2026/11/24/13/"
    assert part["StorageDescriptor"]["Columns"] == table["StorageDescriptor"]["Columns"]
    assert part["StorageDescriptor"]["Parameters"] == {"k": "v"} and part["Parameters"] == {"x": "1"}


def test_the_subscription_takes_only_the_ready_of_rules_with_a_catalog():
    # Given two rule names
    # When the pattern is built
    pattern = ready_pattern(["web", "orders"])
    # Then it is Ready only, of those rules only
    assert pattern == {"source": ["streamwatch"], "detail-type": ["Dataset Ready"],
                       "detail": {"rule": ["orders", "web"]}}


@pytest.mark.parametrize(("catalog", "message"), [
    ("logs.web", "catalog must be an object like"),
    ({"database": "Logs", "table": "web"}, "catalog database 'Logs' is invalid: lower-case letters"),
    ({"database": "logs"}, "catalog table None is invalid"),
    ({"database": "logs", "table": "web", "colums": []}, "catalog key 'colums' is unknown"),
    ({"database": "logs", "table": "web", "columns": [{"name": "Event", "type": "bigint"}]},
     "catalog column {'name': 'Event', 'type': 'bigint'} is invalid"),
    ({"database": "logs", "table": "web", "columns": [{"name": "event", "type": "BIGINT!"}]},
     "catalog column 'event' has type 'BIGINT!'"),
    ({"database": "logs", "table": "web", "columns": [["a", "int"], ["a", "int"]]}, "catalog column 'a' appears twice"),
    ({"database": "logs", "table": "web", "columns": [["source", "string"]]},
     "catalog column 'source' is a partition key already"),
    ({"database": "logs", "table": "web", "format": "parquet"}, "catalog format 'parquet' is not supported"),
    ({"database": "logs", "table": "web", "new_database": True}, "true only with columns"),
])
def test_a_bad_catalog_option_is_one_line_naming_the_rule_and_the_fix(catalog, message):
    # Given a rule whose catalog option is wrong
    spec = {**HOURLY, "catalog": catalog}
    # When the settings are read
    with pytest.raises(SettingsError) as error:
        Settings(datasets=(spec,)).validate()
    # Then the message names the setting, the rule and what is wrong
    assert str(error.value).startswith("setting datasets: dataset rule 'hourly'") and message in str(error.value)
