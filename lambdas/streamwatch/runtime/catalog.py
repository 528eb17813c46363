"""Registering a Ready dataset as its partition in the rule's Glue table: BatchCreatePartition, once.

It runs in its own function, subscribed to Dataset Ready (an EventBridge rule -> a queue -> the function), so it
never delays or repeats a Ready: the observer has published before this starts. A partition that already exists
(a Ready delivered twice, or registered by someone else) counts as done. A Glue error is retried by botocore, then
by SQS; a message that keeps failing ends in the queue's DLQ, which has an alarm. Only Ready gets here: a dataset
that ends Failed or Stalled is never registered, and an Amended one keeps the partition it has (same location).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from botocore.exceptions import ClientError

from streamwatch.core.catalog import location_of, partition_input
from streamwatch.core.events import READY
from streamwatch.core.rules import RuleError
from streamwatch.core.settings import Settings
from streamwatch.runtime import aws

log = logging.getLogger(__name__)


class TableMissing(RuntimeError):
    """The rule's table (or its database) is not in the catalog: retried, then the DLQ; metric and alarm."""


class TableMismatch(RuntimeError):
    """The table's partition keys are not the rule's fields: no partition of it can be right."""


@dataclass(frozen=True)
class Registered:
    database: str
    table: str
    values: list[str]
    location: str
    created: bool  # False: it existed already (a repeated Ready)


class Registrar:
    def __init__(self, settings: Settings, glue=None) -> None:
        self.rules, self.glue = settings.rules, glue or aws.client("glue")
        self._tables: dict[tuple[str, str], dict] = {}

    def register(self, detail_type: str, detail: dict) -> Registered | None:
        """The partition of one event's dataset; None when there is nothing to register (not a Ready, or a rule
        without a catalog: the subscription filters those, this keeps a stray one harmless)."""
        if detail_type != READY:
            return None
        try:
            rule = self.rules.find(detail["rule"])
            values = rule.partition_values(detail["dataset_id"])
        except RuleError as exc:  # a rule removed since, or an id it does not own: nothing to register
            log.warning("Ready of %s not registered: %s", detail.get("dataset_id"), exc)
            return None
        if rule.catalog is None:
            return None
        database, name = rule.catalog.database, rule.catalog.table
        table = self._table(database, name)
        if len(table.get("PartitionKeys") or []) != len(values):
            raise TableMismatch(f"table {database}.{name} has partition keys "
                                f"{[k['Name'] for k in table.get('PartitionKeys') or []]}, rule {rule.name!r} gives "
                                f"{len(values)} values ({', '.join(rule.fields)}): make the keys the rule's fields")
        location = location_of(detail["bucket"], detail["prefix"])
        parameters = {"streamwatch_event_id": detail["event_id"], "streamwatch_objects": str(detail["objects"]),
                      "streamwatch_declared_at": str(detail.get("declared_at"))}
        partition = partition_input(table, values, location, parameters)
        response = self.glue.batch_create_partition(DatabaseName=database, TableName=name,
                                                    PartitionInputList=[partition])
        errors = response.get("Errors") or []
        codes = {e.get("ErrorDetail", {}).get("ErrorCode") for e in errors}
        if codes - {"AlreadyExistsException"}:  # retried by SQS: the message fails, alone
            raise RuntimeError(f"BatchCreatePartition {database}.{name} {values}: {errors[0]['ErrorDetail']}")
        return Registered(database, name, values, location, created=not errors)

    def _table(self, database: str, name: str) -> dict:
        """GetTable, once per table and invocation (its storage descriptor is each partition's)."""
        if (database, name) not in self._tables:
            try:
                self._tables[(database, name)] = self.glue.get_table(DatabaseName=database, Name=name)["Table"]
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "EntityNotFoundException":
                    raise TableMissing(f"table {database}.{name} is not in the Glue Data Catalog: create it (or give "
                                       "the rule's catalog its columns, and the construct creates it)") from None
                raise
            parameters = self._tables[(database, name)].get("Parameters") or {}
            if str(parameters.get("projection.enabled", "")).lower() == "true":
                log.warning("table %s.%s has partition projection on: Athena ignores the partitions registered "
                            "in the catalog (these included), and shows every projected one, complete or not",
                            database, name)
        return self._tables[(database, name)]
