"""The monitor's ledger: objects counted exactly once (a transaction per chunk), their sequence ranges, the error
output's records."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from botocore.exceptions import ClientError

from streamwatch.core import envelope
from streamwatch.state.base import BOTOCORE_RETRIED, TableAccess, _backoff, cancellation_codes
from streamwatch.state.items import (
    CountedObject,
    CountOutcome,
    ErrorRecords,
    _creates,
    _merged,
    _num,
    _seqs_bytes,
)
from streamwatch.state.layout import (
    MAX_SEQS_BYTES,
    MAX_TRANSACTION_ITEMS,
    PK,
    SEQS,
    TTL_ATTRIBUTE,
    dataset_key,
    error_key,
    object_key,
)

log = logging.getLogger(__name__)

class Ledger(TableAccess):
    def count(self, objects: Iterable[CountedObject], now: float) -> CountOutcome:
        """Count each object exactly once, whatever was counted before; report what could not be written."""
        outcome = CountOutcome()
        unique: dict[tuple[str, str], CountedObject] = {}
        for obj in objects:
            if (obj.dataset_id, obj.key) in unique:
                outcome.duplicates.append(obj)
            else:
                unique[(obj.dataset_id, obj.key)] = obj
        for chunk in _chunks(sorted(unique.values(), key=lambda o: (o.dataset_id, o.key))):
            self._count_chunk(chunk, now, outcome)
        return outcome

    def _count_chunk(self, chunk: list[CountedObject], now: float, outcome: CountOutcome) -> None:
        todo, older = list(chunk), set()
        seqs = self._read_seqs({o.dataset_id for o in chunk if o.scan and o.scan.seqs}, outcome)
        for attempt in range(self.max_attempts):
            items, owners = self._count_items(todo, now, older, seqs)
            try:
                outcome.requests += 1
                self.client.transact_write_items(TransactItems=items)
                outcome.counted += todo
                return
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                if code != "TransactionCanceledException":
                    if code not in BOTOCORE_RETRIED:
                        raise
                    log.warning("counting transaction failed after botocore's retries (%s): left to SQS", code)
                    break
                transient, stale = False, set()
                for owner, rc in zip(owners, cancellation_codes(exc), strict=False):
                    if rc == "ConditionalCheckFailed" and isinstance(owner, CountedObject):
                        todo.remove(owner)
                        outcome.duplicates.append(owner)
                    elif rc == "ConditionalCheckFailed" and owner[0] == "state":
                        older.add(owner[1])  # an older batch than one already counted: keep last_object_ts
                    elif rc == "ConditionalCheckFailed" and owner[0] == "seqs":
                        stale.add(owner[1])  # another batch merged first: read its intervals again
                    elif rc != "None":
                        transient = True
                if not todo:
                    return
                if stale:
                    seqs.update(self._read_seqs(stale, outcome))
                if transient:
                    _backoff(attempt)
        outcome.failed += todo

    def _count_items(self, todo: list[CountedObject], now: float, older: set[str],
                     seqs: dict[str, tuple[int, dict]]) -> tuple[list, list]:
        items, owners = [], []
        expires = int(time.time()) + self.ttl_s
        for obj in todo:
            item = {**object_key(obj.dataset_id, obj.key), "size": obj.size, "etag": obj.etag,
                    "event_ts": _num(obj.event_ts), TTL_ATTRIBUTE: expires}
            if obj.scan is not None:
                item["line_count"] = obj.scan.lines
            items.append({"Put": {"TableName": self.name, "ConditionExpression": "attribute_not_exists(pk)",
                                  "Item": item}})
            owners.append(obj)
        by_dataset: dict[str, list[CountedObject]] = {}
        for obj in todo:
            by_dataset.setdefault(obj.dataset_id, []).append(obj)
        for dataset_id, objs in by_dataset.items():
            first = objs[0]
            window = (first.window_start, first.window_end) if first.window_start is not None else None
            set_list, values = _creates(dataset_id, now, rule=first.rule, window=window)
            sets = ", ".join([*set_list, "first_object_ts = if_not_exists(first_object_ts, :first)",
                              "counted_ts = :now"])
            values.update({":n": len(objs), ":b": sum(o.size for o in objs),
                           ":first": _num(min(o.event_ts for o in objs))})
            adds = "objects :n, bytes :b"
            if all(o.scan is not None for o in objs):
                adds += ", line_count :l, foreign_lines :f"
                values.update({":l": sum(o.scan.lines for o in objs), ":f": sum(o.scan.foreign for o in objs)})
            merged = None
            if dataset_id in seqs:
                version, intervals = seqs[dataset_id]
                merged = _merged(intervals, objs)
                if _seqs_bytes(merged) > MAX_SEQS_BYTES:
                    # more sequence ranges than an item holds (no stream of ours writes that: a hostile or broken
                    # writer): this dataset can no longer be proven by records; it falls back to the count rules
                    log.warning("sequence intervals of %s would pass %d bytes: records mode falls back to the "
                                "count rules for it", dataset_id, MAX_SEQS_BYTES)
                    merged = None
                    sets += ", seqs_overflow = :overflow"
                    values[":overflow"] = True
                else:
                    delta = sum(envelope.size(v) for v in merged.values()) - sum(
                        envelope.size(v) for v in intervals.values())
                    if delta:
                        adds += ", distinct_records :d"
                        values[":d"] = delta
            update = {"TableName": self.name, "Key": dataset_key(dataset_id),
                      "ExpressionAttributeNames": {"#status": "status"}, "ExpressionAttributeValues": values}
            if dataset_id not in older:
                values[":last"] = _num(max(o.event_ts for o in objs))
                sets += ", last_object_ts = :last"
                update["ConditionExpression"] = "attribute_not_exists(last_object_ts) OR last_object_ts <= :last"
            update["UpdateExpression"] = f"ADD {adds} SET {sets}"
            items.append({"Update": update})
            owners.append(("state", dataset_id))
            if merged is not None and merged != seqs[dataset_id][1]:
                items.append({"Put": self._seqs_put(dataset_id, version, merged)})
                owners.append(("seqs", dataset_id))
        return items, owners

    def _seqs_put(self, dataset_id: str, version: int, merged: dict[str, list]) -> dict:
        encoded = {p: envelope.encode(v) for p, v in merged.items()}
        put = {"TableName": self.name, "Item": {**dataset_key(dataset_id, SEQS), "version": version + 1,
                                                 "producers": encoded}}
        if version:
            put.update(ConditionExpression="version = :v", ExpressionAttributeValues={":v": version})
        else:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        return put

    def _read_seqs(self, dataset_ids: set[str], outcome: CountOutcome | None = None) -> dict[str, tuple[int, dict]]:
        """(version, producer -> intervals) per dataset, consistently read."""
        out: dict[str, tuple[int, dict]] = {d: (0, {}) for d in dataset_ids}
        items, calls = self.batch_get([dataset_key(d, SEQS) for d in sorted(dataset_ids)])
        if outcome is not None:
            outcome.requests += calls
        for item in items:
            out[item[PK].split("#", 1)[1]] = (int(item["version"]), {
                p: envelope.decode(v) for p, v in item.get("producers", {}).items()})
        return out

    def seqs(self, dataset_id: str) -> dict[str, list[tuple[int, int]]]:
        return self._read_seqs({dataset_id})[dataset_id][1]

    def count_errors(self, found: list[ErrorRecords], now: float) -> list[ErrorRecords]:
        """Records Firehose wrote to its error output: each error object counted once per dataset; the dataset
        then fails (the observer declares it). Returns what could not be written."""
        failed = []
        for err in found:
            window = (err.window_start, err.window_end) if err.window_start is not None else None
            set_list, values = _creates(err.dataset_id, now, rule=err.rule, window=window)
            sets = ", ".join([*set_list, "failure = if_not_exists(failure, :reason)"])
            values.update({":n": err.records, ":reason": f"{err.records} record(s) went to Firehose's error output "
                                                         f"({err.reason})"[:1000]})
            try:
                self.client.transact_write_items(TransactItems=[
                    {"Put": {"TableName": self.name, "ConditionExpression": "attribute_not_exists(pk)",
                             "Item": {**error_key(err.dataset_id, err.key), "records": err.records,
                                      "reason": err.reason, TTL_ATTRIBUTE: int(time.time()) + self.ttl_s}}},
                    {"Update": {"TableName": self.name, "Key": dataset_key(err.dataset_id),
                                "UpdateExpression": f"ADD error_records :n SET {sets}",
                                "ExpressionAttributeNames": {"#status": "status"},
                                "ExpressionAttributeValues": values}}])
            except ClientError as exc:
                if cancellation_codes(exc)[:1] == ["ConditionalCheckFailed"]:
                    continue  # this error object was counted before
                log.warning("could not count error records of %s: %s", err.dataset_id, exc)
                failed.append(err)
        return failed


def _chunks(objects: list[CountedObject]) -> Iterable[list[CountedObject]]:
    """Transactions of <= 100 actions: one ledger put per object plus, per dataset in the chunk, one state update
    and one SEQS put."""
    chunk: list[CountedObject] = []
    datasets: set[str] = set()
    for obj in objects:
        extra = 1 + 2 * (obj.dataset_id not in datasets)
        if chunk and len(chunk) + 2 * len(datasets) + extra > MAX_TRANSACTION_ITEMS:
            yield chunk
            chunk, datasets = [], set()
        chunk.append(obj)
        datasets.add(obj.dataset_id)
    if chunk:
        yield chunk
