"""A rule's Glue Data Catalog table: which partition a Ready dataset is, and the PartitionInput that registers it.

Pure: no AWS. The catalog function (runtime/catalog.py) registers a partition when its dataset is Ready, never
before; the construct and the local run create the table when the rule gives its columns. Partition keys are the
rule's fields in the pattern's order: a value field keeps its name (lower case, as Athena wants it), the time
fields are year, month, day and hour. Glue matches a partition's values to the table's keys by position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from streamwatch.core.errors import InputError
from streamwatch.core.events import READY, SOURCE

NAME_RE = re.compile(r"[a-z0-9_]{1,255}")  # Athena: Glue names in lower case, 1..255 bytes; no '-' (needs quoting)
COLUMN_RE = re.compile(r"[a-z_][a-z0-9_]{0,254}")
TYPE_RE = re.compile(r"[a-z][a-z0-9_<>,:() ]{0,1023}")  # Hive types: string, bigint, array<string>, struct<a:int>
TIME_KEYS = {"yyyy": "year", "MM": "month", "dd": "day", "HH": "hour"}
FORMATS = {  # what Firehose writes: one JSON record per line (gzip or not: TextInputFormat reads both)
    "json": {"InputFormat": "org.apache.hadoop.mapred.TextInputFormat",
             "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
             "SerdeInfo": {"SerializationLibrary": "org.openx.data.jsonserde.JsonSerDe",
                           "Parameters": {"ignore.malformed.json": "true"}}},
}


class CatalogError(InputError):
    """A rule's catalog option that cannot work; the message names the rule and what to change."""


@dataclass(frozen=True)
class Catalog:
    database: str
    table: str
    columns: tuple[tuple[str, str], ...] = ()  # given: the construct (and the local run) creates the table
    format: str = "json"
    new_database: bool = False  # the construct creates the database too (with columns only)

    @classmethod
    def parse(cls, spec: Any, where: str) -> Catalog:
        if not isinstance(spec, dict):
            raise CatalogError(f"{where}: catalog must be an object like {{'database': 'logs', 'table': 'web'}}")
        unknown = sorted(set(spec) - {"database", "table", "columns", "format", "new_database"})
        if unknown:
            raise CatalogError(f"{where}: catalog key {unknown[0]!r} is unknown; allowed: database, table, "
                               "columns, format, new_database")
        for key in ("database", "table"):
            if not isinstance(spec.get(key), str) or not NAME_RE.fullmatch(spec[key]):
                raise CatalogError(f"{where}: catalog {key} {spec.get(key)!r} is invalid: lower-case letters, digits "
                                   "and '_', 1 to 255 (Athena's rule for Glue names), e.g. 'web_logs'")
        columns = []
        for column in spec.get("columns") or ():
            name, kind = (column.get("name"), column.get("type")) if isinstance(column, dict) else (
                tuple(column) if isinstance(column, (list, tuple)) and len(column) == 2 else (None, None))
            if not isinstance(name, str) or not COLUMN_RE.fullmatch(name):
                raise CatalogError(f"{where}: catalog column {column!r} is invalid: give {{'name': 'user_id', "
                                   "'type': 'string'}} with a lower-case name of letters, digits and '_'")
            if not isinstance(kind, str) or not TYPE_RE.fullmatch(kind):
                raise CatalogError(f"{where}: catalog column {name!r} has type {kind!r}: a Hive type in lower case, "
                                   "e.g. string, bigint, double, boolean, timestamp, array<string>")
            columns.append((name, kind))
        names = [n for n, _ in columns]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise CatalogError(f"{where}: catalog column {twice[0]!r} appears twice")
        fmt = spec.get("format", "json")
        if fmt not in FORMATS:
            raise CatalogError(f"{where}: catalog format {fmt!r} is not supported: {', '.join(FORMATS)} (what "
                               "Firehose writes)")
        new_database = spec.get("new_database", False)
        if not isinstance(new_database, bool) or (new_database and not columns):
            raise CatalogError(f"{where}: catalog new_database is true or false, and true only with columns (the "
                               "construct creates the table and its database)")
        return cls(spec["database"], spec["table"], tuple(columns), fmt, new_database)

    def to_spec(self) -> dict:
        out: dict = {"database": self.database, "table": self.table}
        if self.columns:
            out["columns"] = [{"name": n, "type": t} for n, t in self.columns]
        if self.format != "json":
            out["format"] = self.format
        if self.new_database:
            out["new_database"] = True
        return out

    @property
    def creates_table(self) -> bool:
        return bool(self.columns)


def partition_keys(fields: tuple[str, ...], where: str = "") -> list[str]:
    """The table's partition keys for a rule's fields, in the pattern's order."""
    keys = [TIME_KEYS.get(f, f.lower()) for f in fields]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise CatalogError(f"{where}: two fields become partition key {twice[0]!r} (time fields are year, month, "
                           "day and hour; names are lower-cased): rename one")
    return keys


def check_columns(catalog: Catalog, fields: tuple[str, ...], where: str) -> None:
    """A column that is also a partition key: Athena refuses such a table ("column repeated in partitioning")."""
    keys = set(partition_keys(fields, where))
    clash = sorted(keys & {n for n, _ in catalog.columns})
    if clash:
        raise CatalogError(f"{where}: catalog column {clash[0]!r} is a partition key already (from the pattern): "
                           "drop it from columns")


def table_input(catalog: Catalog, fields: tuple[str, ...], location: str) -> dict:
    """The TableInput of a table the construct or the local run creates (an external table over the rule's prefix,
    partitions registered one by one: no projection)."""
    return {"Name": catalog.table, "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": catalog.format, "EXTERNAL": "TRUE"},
            "PartitionKeys": [{"Name": k, "Type": "string"} for k in partition_keys(fields)],
            "StorageDescriptor": {"Columns": [{"Name": n, "Type": t} for n, t in catalog.columns],
                                  "Location": location, **FORMATS[catalog.format]}}


def partition_input(table: dict, values: list[str], location: str, parameters: dict[str, str]) -> dict:
    """A partition of `table` (GetTable's Table): the table's storage descriptor with the dataset's location."""
    descriptor = {k: v for k, v in (table.get("StorageDescriptor") or {}).items()
                  if k in ("Columns", "InputFormat", "OutputFormat", "SerdeInfo", "Compressed", "Parameters",
                           "BucketColumns", "SortColumns", "NumberOfBuckets", "StoredAsSubDirectories")}
    return {"Values": values, "StorageDescriptor": {**descriptor, "Location": location}, "Parameters": parameters}


def ready_pattern(rule_names: list[str]) -> dict:
    """The EventBridge pattern the catalog function's subscription uses (the construct's and the local run's): a
    Ready of a rule that has a catalog."""
    return {"source": [SOURCE], "detail-type": [READY], "detail": {"rule": sorted(rule_names)}}


def location_of(bucket: str, prefix: str) -> str:
    return f"s3://{bucket}/{prefix}"
