"""DynamoDB access: the only module that knows the table layout (docs/state-table.md has the full list).

One table, one partition per dataset:
- `DATASET#<id> / STATE`: counters (objects, bytes, lines, distinct records, foreign lines, error records), the
  rule and window, the observer chain (status, tick, streak), producer totals, the deadline, what was declared,
  and the event outbox (`pending_<kind>` leases, `sent_events`). GSI `by_day` lists datasets by the day they
  started (`streamwatch status`, the heartbeat).
- `DATASET#<id> / OBJECT#<key>`: the dedupe ledger, one item per counted object (TTL `expires_at`); `ERROR#<key>`
  for objects of Firehose's error output.
- `DATASET#<id> / PRODUCER#<id>`: a producer's report: expected, started, done (with records_sent), failed.
- `DATASET#<id> / SEQS`: every producer's persisted sequence numbers as merged intervals (`envelope`).
- `MONITOR / LAG` and `MONITOR / BATCH#<id>`: the monitor's last batch, and the batches it is counting now or
  that left messages not counted, with their oldest messages (the observer's backlog check).

Counting is exact under at-least-once delivery: each transaction puts the ledger items of its objects with
`attribute_not_exists`, ADDs their totals to the dataset once, and replaces the dataset's SEQS item on its
version. A duplicate object cancels the transaction with `ConditionalCheckFailed` at its own position
(`CancellationReasons`); it is dropped and the rest retried. A SEQS version conflict re-reads and retries.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from streamwatch.core import envelope
from streamwatch.core.backoff import RETRIES, backoff_s
from streamwatch.core.envelope import Scan
from streamwatch.core.errors import scrub_error
from streamwatch.core.policy import Decision, Progress, View
from streamwatch.state.layout import (  # noqa: E402,F401 (re-exported: the store's callers name them here too)
    DECLARED,
    EVENT_KINDS,
    FAILED,
    IDEMPOTENCY_KEY,
    IDEMPOTENCY_TTL,
    LIST_INDEX,
    LIST_PK,
    LIST_SK,
    MAX_SEQS_BYTES,
    MAX_TRANSACTION_ITEMS,
    OBSERVING,
    PK,
    READY,
    SEQS,
    SK,
    STALLED,
    STATE,
    TTL_ATTRIBUTE,
)

RETRYABLE = {"TransactionConflict", "ThrottlingError", "ThrottlingException", "ProvisionedThroughputExceeded",
             "ProvisionedThroughputExceededException", "RequestLimitExceeded", "InternalServerError",
             "TransactionInProgressException", "ServiceUnavailable"}
log = logging.getLogger(__name__)


@functools.cache
def dynamodb_table(name: str):
    """The table's boto3 resource, one per process (runtime/aws.reset forgets it with the clients)."""
    return boto3.resource("dynamodb", config=Config(retries=RETRIES)).Table(name)


def dataset_key(dataset_id: str, sk: str = STATE) -> dict:
    return {PK: f"DATASET#{dataset_id}", SK: sk}


def _num(value: float | int) -> Decimal:
    return Decimal(value) if isinstance(value, int) else Decimal(f"{value:.3f}")


def _f(item: dict, name: str) -> float | None:
    return float(item[name]) if item.get(name) is not None else None


def day_of(ts: float) -> str:
    return f"{datetime.fromtimestamp(ts, UTC):%Y-%m-%d}"


def _creates(dataset_id: str, now: float, *, rule: str | None = None, window: tuple[float, float] | None = None,
             deadline_ts: float | None = None) -> tuple[list[str], dict]:
    """SET clauses that create a dataset's state on its first write, whichever writer comes first (an object, a
    run registration, a producer report, an error record), and the values they use."""
    sets = ["#status = if_not_exists(#status, :obs)", "tick = if_not_exists(tick, :zero)",
            "started_ts = if_not_exists(started_ts, :now)",
            f"{LIST_PK} = if_not_exists({LIST_PK}, :lpk)", f"{LIST_SK} = if_not_exists({LIST_SK}, :lsk)"]
    values = {":obs": OBSERVING, ":zero": 0, ":now": _num(now), ":lpk": f"DAY#{day_of(now)}",
              ":lsk": f"{now:017.3f}#{dataset_id}"}  # the by_day index: datasets by the day they started
    if rule is not None:
        sets.append("rule_name = if_not_exists(rule_name, :rule)")
        values[":rule"] = rule
    if window is not None:
        sets += ["window_start = if_not_exists(window_start, :ws)", "window_end = if_not_exists(window_end, :we)"]
        values.update({":ws": _num(window[0]), ":we": _num(window[1])})
    if deadline_ts is not None:
        sets.append("deadline_ts = if_not_exists(deadline_ts, :dl)")
        values[":dl"] = _num(deadline_ts)
    return sets, values


@dataclass(frozen=True)
class CountedObject:
    dataset_id: str
    key: str
    size: int
    etag: str
    event_ts: float  # S3 eventTime on the handlers' clock
    rule: str = "default"
    window_start: float | None = None
    window_end: float | None = None
    scan: Scan | None = None  # lines, foreign lines and sequence numbers, when the object was read

    @property
    def records(self) -> int | None:
        return self.scan.lines if self.scan is not None else None


@dataclass(frozen=True)
class ErrorRecords:
    """Records Firehose could not deliver, attributed to a dataset (read from one error-output object)."""

    dataset_id: str
    key: str  # the error object
    records: int
    reason: str
    rule: str = "default"
    window_start: float | None = None
    window_end: float | None = None


@dataclass
class CountOutcome:
    counted: list[CountedObject] = field(default_factory=list)
    duplicates: list[CountedObject] = field(default_factory=list)
    failed: list[CountedObject] = field(default_factory=list)
    requests: int = 0  # DynamoDB API calls made, for the benchmark


@dataclass(frozen=True)
class State:
    dataset_id: str
    objects: int = 0
    bytes: int = 0
    lines: int | None = None
    distinct: int = 0
    foreign: int = 0
    error_records: int = 0
    rule: str = "default"
    window_start: float | None = None
    window_end: float | None = None
    status: str = OBSERVING
    tick: int = 0
    repeated: int = 0
    last_count: int | None = None
    reads: int = 0
    started_ts: float | None = None
    first_object_ts: float | None = None
    last_object_ts: float | None = None
    registered_ts: float | None = None
    producers_expected: int | None = None
    producers_known: int = 0
    producers_done: int = 0
    producers_failed: int = 0
    uncounted_reports: int = 0
    unregistered_reports: int = 0
    records_sent: int = 0
    last_done_ts: float | None = None
    failure: str | None = None
    deadline_ts: float | None = None
    overdue_ts: float | None = None
    chain_started: bool = False
    declared_ts: float | None = None
    declared_mode: str = ""
    reason: str = ""
    fallback: bool = False
    seqs_overflow: bool = False  # more sequence ranges than the SEQS item holds: records cannot be proven
    pending: dict[str, float] = field(default_factory=dict)  # event kind -> publish lease (wall clock)
    sent_events: frozenset[str] = frozenset()
    announced_objects: int = 0
    amend_pending: int = 0
    next_delay: int = 0
    observed_ts: float | None = None

    @classmethod
    def from_item(cls, item: dict) -> State:
        def i(name: str, default=None):
            return int(item[name]) if item.get(name) is not None else default
        return cls(
            dataset_id=item["pk"].split("#", 1)[1], objects=i("objects", 0), bytes=i("bytes", 0), lines=i("line_count"),
            distinct=i("distinct_records", 0), foreign=i("foreign_lines", 0), error_records=i("error_records", 0),
            rule=item.get("rule_name", "default"), window_start=_f(item, "window_start"),
            window_end=_f(item, "window_end"), status=item.get("status", OBSERVING), tick=i("tick", 0),
            repeated=i("repeated", 0), last_count=i("last_count"), reads=i("read_count", 0),
            started_ts=_f(item, "started_ts"), first_object_ts=_f(item, "first_object_ts"),
            last_object_ts=_f(item, "last_object_ts"), registered_ts=_f(item, "registered_ts"),
            producers_expected=i("producers_expected"), producers_known=i("producers_known", 0),
            producers_done=i("producers_done", 0), producers_failed=i("producers_failed", 0),
            uncounted_reports=i("uncounted_reports", 0), unregistered_reports=i("unregistered_reports", 0),
            records_sent=i("records_sent", 0), last_done_ts=_f(item, "last_done_ts"), failure=item.get("failure"),
            deadline_ts=_f(item, "deadline_ts"), overdue_ts=_f(item, "overdue_ts"),
            chain_started=bool(item.get("chain_started")), declared_ts=_f(item, "declared_ts"),
            declared_mode=item.get("declared_mode", ""), reason=item.get("reason", ""),
            fallback=bool(item.get("fallback")), seqs_overflow=bool(item.get("seqs_overflow")),
            pending={k: float(item[f"pending_{k}"]) for k in EVENT_KINDS if item.get(f"pending_{k}") is not None},
            sent_events=frozenset(item.get("sent_events") or ()), announced_objects=i("announced_objects", 0),
            amend_pending=i("amend_pending", 0), next_delay=i("next_delay", 0), observed_ts=_f(item, "observed_ts"))

    @property
    def records(self) -> int | None:
        """Records persisted: distinct enveloped records plus foreign lines (None when objects are not read)."""
        return None if self.lines is None else self.distinct + self.foreign

    @property
    def duplicates(self) -> int:
        return 0 if self.lines is None else max(0, self.lines - self.foreign - self.distinct)

    @property
    def published(self) -> bool:
        kind = DECLARED.get(self.status)
        return kind is not None and kind in self.sent_events

    def view(self, now: float, *, records_landed: bool | None = None, backlog_s: float = 0.0,
             deadline_s: float | None = None) -> View:
        """What the policy reads. `deadline_s`: the rule's default deadline, for datasets no run gave one."""
        deadline = self.deadline_ts
        if deadline is None and deadline_s and self.started_ts is not None:
            deadline = self.started_ts + deadline_s
        failure = self.failure
        if failure is None and self.error_records:
            failure = f"{self.error_records} record(s) went to Firehose's error output"
        return View(now=now, objects=self.objects, started_at=self.started_ts if self.started_ts is not None else now,
                    last_object_at=self.last_object_ts, records=self.records,
                    producers_expected=self.producers_expected, producers_known=self.producers_known,
                    producers_done=self.producers_done, counts_reported=self.uncounted_reports == 0,
                    records_sent=self.records_sent, records_landed=records_landed, last_done_at=self.last_done_ts,
                    failure=failure, window_start=self.window_start, window_end=self.window_end,
                    deadline_at=deadline, overdue=self.overdue_ts is not None, backlog_s=backlog_s)

    def progress(self) -> Progress:
        return Progress(repeated=self.repeated, last_count=self.last_count, reads=self.reads)


class Store:
    def __init__(self, table_name: str, *, ttl_days: int = 7, max_attempts: int = 6, table=None) -> None:
        self.table = table if table is not None else dynamodb_table(table_name)
        self.client = self.table.meta.client  # high-level types, same connection pool
        self.name = table_name
        self.ttl_s = ttl_days * 86_400
        self.max_attempts = max_attempts

    @classmethod
    def from_settings(cls, settings, resources) -> Store:
        """The store every handler uses: the stack's table, the settings' ledger TTL."""
        return cls(resources.table, ttl_days=settings.dedupe_ttl_days)

    # --- counting (monitor) --------------------------------------------------------------------------
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
                    if code not in RETRYABLE:
                        raise
                    log.warning("counting transaction failed (%s), attempt %d", code, attempt + 1)
                    _backoff(attempt)
                    continue
                transient, stale = False, set()
                for owner, reason in zip(owners, exc.response.get("CancellationReasons", []), strict=False):
                    rc = reason.get("Code", "None")
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
            item = {**dataset_key(obj.dataset_id, f"OBJECT#{obj.key}"), "size": obj.size, "etag": obj.etag,
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
        ids = sorted(dataset_ids)
        for start in range(0, len(ids), 100):
            request = {self.name: {"Keys": [dataset_key(d, SEQS) for d in ids[start:start + 100]],
                                   "ConsistentRead": True}}
            attempt = 0
            while request:
                if outcome is not None:
                    outcome.requests += 1
                response = self.client.batch_get_item(RequestItems=request)
                for item in response["Responses"].get(self.name, []):
                    out[item["pk"].split("#", 1)[1]] = (int(item["version"]), {
                        p: envelope.decode(v) for p, v in item.get("producers", {}).items()})
                request = response.get("UnprocessedKeys") or None
                if request:
                    _backoff(attempt)
                    attempt += 1
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
                             "Item": {**dataset_key(err.dataset_id, f"ERROR#{err.key}"), "records": err.records,
                                      "reason": err.reason, TTL_ATTRIBUTE: int(time.time()) + self.ttl_s}}},
                    {"Update": {"TableName": self.name, "Key": dataset_key(err.dataset_id),
                                "UpdateExpression": f"ADD error_records :n SET {sets}",
                                "ExpressionAttributeNames": {"#status": "status"},
                                "ExpressionAttributeValues": values}}])
            except ClientError as exc:
                reasons = exc.response.get("CancellationReasons") or [{}]
                if reasons[0].get("Code") == "ConditionalCheckFailed":
                    continue  # this error object was counted before
                log.warning("could not count error records of %s: %s", err.dataset_id, exc)
                failed.append(err)
        return failed

    # --- reading ---------------------------------------------------------------------------------------
    def get_state(self, dataset_id: str) -> State | None:
        item = self.table.get_item(Key=dataset_key(dataset_id), ConsistentRead=True).get("Item")
        return State.from_item(item) if item else None

    def get_states(self, dataset_ids: Iterable[str]) -> tuple[dict[str, State], int]:
        """Consistent reads of many datasets' state, 100 keys a call. Returns the states and calls made."""
        ids, states, calls = sorted(set(dataset_ids)), {}, 0
        for start in range(0, len(ids), 100):
            request = {self.name: {"Keys": [dataset_key(i) for i in ids[start:start + 100]], "ConsistentRead": True}}
            attempt = 0
            while request:
                calls += 1
                response = self.client.batch_get_item(RequestItems=request)
                for item in response["Responses"].get(self.name, []):
                    state = State.from_item(item)
                    states[state.dataset_id] = state
                request = response.get("UnprocessedKeys") or None
                if request:
                    _backoff(attempt)
                    attempt += 1
        return states, calls

    def producers(self, dataset_id: str) -> list[dict]:
        """Every producer report of a dataset (expected, started, done, failed)."""
        items = _query_all(self.table, KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
                           ExpressionAttributeValues={":pk": f"DATASET#{dataset_id}", ":p": "PRODUCER#"},
                           ConsistentRead=True)
        return [{"producer_id": it["sk"].split("#", 1)[1], "status": it.get("status", "expected"),
                 "expected": bool(it.get("expected")),
                 "records_sent": int(it["records_sent"]) if it.get("records_sent") is not None else None,
                 "enveloped": bool(it.get("enveloped", True)), "error": it.get("error_text"),
                 "started_ts": _f(it, "started_ts"), "done_ts": _f(it, "done_ts")} for it in items]

    def records_landed(self, state: State) -> bool | None:
        """Every done producer's records persisted: each enveloped producer's sequence numbers cover
        `[0, records_sent)`; records of producers without the envelope are matched by count against the
        foreign lines. None when records are not counted; False for good once the intervals overflowed."""
        if state.lines is None:
            return None
        if state.seqs_overflow:
            return False
        reports = [p for p in self.producers(state.dataset_id) if p["status"] == "done"]
        intervals = self.seqs(state.dataset_id) if any(p["enveloped"] for p in reports) else {}
        return landed(reports, intervals, state.foreign)

    # --- the chain -------------------------------------------------------------------------------------
    def claim_chain_start(self, dataset_id: str) -> bool:
        """True for the first caller: it sends tick 0. (A duplicate tick 0 would be dropped anyway.)"""
        return self._conditional_update(dataset_id, "SET chain_started = :t", "attribute_not_exists(chain_started)",
                                        {":t": True})

    def mark_chain_started(self, dataset_id: str) -> None:
        self.table.update_item(Key=dataset_key(dataset_id), UpdateExpression="SET chain_started = :t",
                               ExpressionAttributeValues={":t": True})

    # --- producers -------------------------------------------------------------------------------------
    def register_run(self, dataset_id: str, producers: list[str], now: float, *, rule: str = "default",
                     window: tuple[float, float] | None = None, deadline_ts: float | None = None) -> None:
        """The dataset's expected producers (idempotent: a retried start registers nothing twice). Observation
        starts now, so a deadline or a failure is seen even if nothing ever lands."""
        existing = {p["producer_id"] for p in self.producers(dataset_id) if p["expected"]}
        new = [p for p in dict.fromkeys(producers) if p not in existing]
        set_list, values = _creates(dataset_id, now, rule=rule, window=window, deadline_ts=deadline_ts)
        sets = ", ".join([*set_list, "registered_ts = if_not_exists(registered_ts, :now)"])
        if not new:  # a retried start (or no producers): make sure the dataset exists, register nothing twice
            self.table.update_item(Key=dataset_key(dataset_id), UpdateExpression=f"SET {sets}",
                                   ExpressionAttributeNames={"#status": "status"}, ExpressionAttributeValues=values)
            return
        for start in range(0, len(new), 50):
            part = new[start:start + 50]
            actions = [{"Put": {"TableName": self.name, "ConditionExpression": "attribute_not_exists(pk)",
                                "Item": {**dataset_key(dataset_id, f"PRODUCER#{p}"), "status": "expected",
                                         "expected": True, "registered_ts": _num(now)}}} for p in part]
            actions.append({"Update": {"TableName": self.name, "Key": dataset_key(dataset_id),
                                       "UpdateExpression": f"ADD producers_expected :n, producers_known :n SET {sets}",
                                       "ExpressionAttributeNames": {"#status": "status"},
                                       "ExpressionAttributeValues": {**values, ":n": len(part)}}})
            try:
                self.client.transact_write_items(TransactItems=actions)
            except ClientError as exc:
                reasons = exc.response.get("CancellationReasons") or []
                if any(r.get("Code") == "ConditionalCheckFailed" for r in reasons):
                    # a concurrent start registered some of them: register what is still missing
                    return self.register_run(dataset_id, producers, now, rule=rule, window=window,
                                             deadline_ts=deadline_ts)
                raise

    def report_started(self, dataset_id: str, producer_id: str, now: float) -> bool:
        """expected -> started (or a new, unregistered producer: counted, so the dataset waits for its done)."""
        return self._report(dataset_id, producer_id, "started", now)

    def report_done(self, dataset_id: str, producer_id: str, records_sent: int | None, now: float, *,
                    enveloped: bool = True) -> bool:
        """Add a producer's totals to its dataset once, however often the report is retried."""
        return self._report(dataset_id, producer_id, "done", now, records_sent=records_sent, enveloped=enveloped)

    def report_failed(self, dataset_id: str, producer_id: str, error: str, now: float) -> bool:
        """The error text is scrubbed and truncated here, before it leaves the process (errors.scrub_error)."""
        return self._report(dataset_id, producer_id, "failed", now, error=scrub_error(error))

    def _report(self, dataset_id: str, producer_id: str, status: str, now: float, *, records_sent: int | None = None,
                enveloped: bool = True, error: str | None = None) -> bool:
        """One transition of a producer's report, applied to the dataset's totals exactly once. Reads the report
        first and conditions the write on what it read, so a retried or racing report is a no-op."""
        key = dataset_key(dataset_id, f"PRODUCER#{producer_id}")
        for _attempt in range(self.max_attempts):
            item = self.table.get_item(Key=key, ConsistentRead=True).get("Item")
            before = item.get("status") if item else None
            if before in ("done", "failed") or before == status or (status == "started" and before is not None
                                                                    and before != "expected"):
                return False  # already reported (a retry), or a late 'started' after the end
            set_list, values = _creates(dataset_id, now)
            adds = []
            if item is None:  # an unregistered producer joins the producers the dataset waits for
                adds += ["producers_known :one", "unregistered_reports :one"]
                log.warning("producer %s of %s was not registered: counted, and the dataset waits for its report",
                            producer_id, dataset_id)
            report = {"#st": status, f"{status}_ts": _num(now)}
            if status == "done":
                adds.append("producers_done :one")
                set_list.append("last_done_ts = :now")
                if records_sent is None:
                    adds.append("uncounted_reports :one")
                else:
                    adds.append("records_sent :n")
                    values[":n"] = records_sent
                    report["records_sent"] = records_sent
                report["enveloped"] = enveloped
            elif status == "failed":
                adds.append("producers_failed :one")
                values[":failure"] = f"producer {producer_id} failed: {error}"[:1000]
                set_list.append("failure = if_not_exists(failure, :failure)")
                report["error_text"] = (error or "")[:1000]
            if adds:
                values[":one"] = 1
            report_sets = ", ".join(f"{k} = :r{i}" for i, k in enumerate(report))
            report_values = {f":r{i}": v for i, v in enumerate(report.values())}
            condition = "attribute_not_exists(pk)" if item is None else "#st = :before"
            if item is not None:
                report_values[":before"] = before
            dataset_update = (f"ADD {', '.join(adds)} " if adds else "") + "SET " + ", ".join(set_list)
            try:
                self.client.transact_write_items(TransactItems=[
                    {"Update": {"TableName": self.name, "Key": key, "ConditionExpression": condition,
                                "UpdateExpression": f"SET {report_sets}",
                                "ExpressionAttributeNames": {"#st": "status"},
                                "ExpressionAttributeValues": report_values}},
                    {"Update": {"TableName": self.name, "Key": dataset_key(dataset_id),
                                "UpdateExpression": dataset_update,
                                "ExpressionAttributeNames": {"#status": "status"},
                                "ExpressionAttributeValues": values}}])
                return True
            except ClientError as exc:
                reasons = exc.response.get("CancellationReasons") or [{}]
                if reasons[0].get("Code") != "ConditionalCheckFailed":
                    raise
                # another report of this producer won the race: read it again and decide
        return False

    # --- observer --------------------------------------------------------------------------------------
    def advance(self, dataset_id: str, tick: int, decision: Decision, now: float) -> bool:
        """Move the chain from `tick` to `tick + 1`; False if another message already did (stale duplicate)."""
        p = decision.progress
        return self._conditional_update(
            dataset_id, "SET tick = :next, repeated = :r, last_count = :c, read_count = :reads, next_delay = :d, "
            "observed_ts = :now", "tick = :tick AND #status = :obs",
            {":next": tick + 1, ":tick": tick, ":r": p.repeated, ":c": p.last_count, ":reads": p.reads,
             ":d": decision.delay_s, ":now": _num(now), ":obs": OBSERVING})

    def declare(self, dataset_id: str, decision: Decision, now: float, *, lease_until: float,
                tick: int | None = None) -> bool:
        """OBSERVING -> READY/STALLED/FAILED, once, with its event in the outbox. `tick` given for a scheduled
        read, None for a nudge. `lease_until` (wall clock) is how long the declaring invocation has to publish
        before any other message may take over the publishing (it then assumes a crash)."""
        status = {"ready": READY, "stalled": STALLED, "failed": FAILED}[decision.verdict]
        p = decision.progress
        condition = "#status = :obs" + (" AND tick = :tick" if tick is not None else "")
        values = {":v": status, ":now": _num(now), ":obs": OBSERVING, ":reason": decision.reason[:1000],
                  ":fb": decision.fallback, ":lease": _num(lease_until), ":mode": decision.mode or "",
                  ":exp": int(time.time()) + self.ttl_s}
        sets = (f"#status = :v, declared_ts = :now, reason = :reason, fallback = :fb, declared_mode = :mode, "
                f"pending_{DECLARED[status]} = :lease, {TTL_ATTRIBUTE} = :exp")
        if tick is not None:
            values.update({":tick": tick, ":next": tick + 1, ":r": p.repeated, ":c": p.last_count,
                           ":reads": p.reads})
            sets += ", tick = :next, repeated = :r, last_count = :c, read_count = :reads"
        else:
            values[":one"] = 1
            sets += " ADD read_count :one"
        return self._conditional_update(dataset_id, f"SET {sets}", condition, values)

    def claim_overdue(self, dataset_id: str, now: float, deadline_ts: float, *, lease_until: float) -> bool:
        """True for exactly one caller once the deadline passed: it publishes Dataset Overdue."""
        return self._conditional_update(
            dataset_id,
            "SET overdue_ts = :now, pending_overdue = :lease, deadline_ts = if_not_exists(deadline_ts, :dl)",
            "attribute_not_exists(overdue_ts) AND #status = :obs",
            {":now": _num(now), ":lease": _num(lease_until), ":obs": OBSERVING, ":dl": _num(deadline_ts)})

    def claim_amendment(self, dataset_id: str, objects: int, *, lease_until: float) -> bool:
        """True for exactly one caller per new total: that caller publishes the Amended event."""
        return self._conditional_update(
            dataset_id, "SET amend_pending = :o, pending_amended = :lease",
            "(attribute_not_exists(amend_pending) OR amend_pending < :o) AND attribute_not_exists(pending_amended)",
            {":o": objects, ":lease": _num(lease_until)})

    def renew_lease(self, dataset_id: str, kind: str, old: float, lease_until: float) -> bool:
        """Take over the publishing of an event whose publisher's lease ran out (it crashed)."""
        return self._conditional_update(dataset_id, f"SET pending_{kind} = :new", f"pending_{kind} = :old",
                                        {":new": _num(lease_until), ":old": _num(old)})

    def mark_sent(self, dataset_id: str, kind: str, *, lease: float, objects: int | None = None) -> bool:
        """After PutEvents succeeded: the event is out (and, for a declaration or amendment, announces `objects`).
        Fenced: only while `lease` (the value this publisher claimed or renewed) is still the event's; False if
        another publisher took it over meanwhile (it publishes again: `event_id` lets consumers drop that)."""
        values = {":k": {kind}, ":lease": _num(lease)}
        update = f"REMOVE pending_{kind} ADD sent_events :k"
        if objects is not None:
            update += " SET announced_objects = :o"
            values[":o"] = objects
        return self._conditional_update(dataset_id, update, f"pending_{kind} = :lease", values)

    def _conditional_update(self, dataset_id: str, update: str, condition: str, values: dict) -> bool:
        names = {"#status": "status"} if "#status" in update or "#status" in condition else None
        kwargs = {"ExpressionAttributeNames": names} if names else {}
        try:
            self.table.update_item(Key=dataset_key(dataset_id), UpdateExpression=update,
                                   ConditionExpression=condition, ExpressionAttributeValues=values, **kwargs)
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise

    # --- monitor lag (the observer's backlog check) ------------------------------------------------------
    def start_batch(self, batch_id: str, now: float, oldest_sent_ts: float) -> None:
        """A monitor batch is being counted: its oldest message is not counted until it ends (or, if the
        invocation dies, until SQS makes its messages visible again)."""
        self.table.put_item(Item={PK: "MONITOR", SK: f"BATCH#{batch_id}", "started_ts": _num(now),
                                  "oldest_sent_ts": _num(oldest_sent_ts), TTL_ATTRIBUTE: int(time.time()) + 86_400})

    def end_batch(self, batch_id: str, now: float, oldest_sent_ts: float) -> None:
        """Every message of the batch was counted: it hides nothing any more, and it is the latest lag."""
        self.table.put_item(Item={PK: "MONITOR", SK: "LAG", "batch_ts": _num(now),
                                  "oldest_sent_ts": _num(oldest_sent_ts)})
        self.table.delete_item(Key={PK: "MONITOR", SK: f"BATCH#{batch_id}"})

    def fail_batch(self, batch_id: str, oldest_failed_sent_ts: float) -> None:
        """Some messages were not counted: SQS hands them out again only after their visibility timeout, so the
        batch stays, hiding the oldest of them (it is not the latest lag either: it vouches for nothing)."""
        self.table.update_item(Key={PK: "MONITOR", SK: f"BATCH#{batch_id}"},
                               UpdateExpression="SET oldest_sent_ts = :o, failed = :t",
                               ExpressionAttributeValues={":o": _num(oldest_failed_sent_ts), ":t": True})

    def batches_in_flight(self, started_after: float, failed_after: float) -> list[float]:
        """The oldest message of every monitor batch that may hide messages: started after `started_after` and
        not ended (being counted, or dead), or started after `failed_after` and ended with messages not counted."""
        items = _query_all(self.table, KeyConditionExpression="pk = :pk AND begins_with(sk, :b)",
                           ExpressionAttributeValues={":pk": "MONITOR", ":b": "BATCH#"}, ConsistentRead=True)
        return [float(it["oldest_sent_ts"]) for it in items
                if float(it["started_ts"]) > (failed_after if it.get("failed") else started_after)]

    def get_lag(self) -> tuple[float, float] | None:
        """When the last monitor batch ended, and its oldest message's send time."""
        item = self.table.get_item(Key={PK: "MONITOR", SK: "LAG"}, ConsistentRead=True).get("Item")
        return (float(item["batch_ts"]), float(item["oldest_sent_ts"])) if item else None

    def watching_since(self, now: float) -> float:
        """When the scheduler first ran (recorded by the first run): windows that ended before are not opened."""
        try:
            self.table.put_item(Item={PK: "SCHEDULER", SK: "SINCE", "since": _num(now)},
                                ConditionExpression="attribute_not_exists(pk)")
            return now
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
        return float(self.table.get_item(Key={PK: "SCHEDULER", SK: "SINCE"}, ConsistentRead=True)["Item"]["since"])

    # --- listing (status, heartbeat) ---------------------------------------------------------------------
    def list_day(self, day: str, *, since_ts: float | None = None) -> Iterable[State]:
        """Every dataset that started on `day` (YYYY-MM-DD, UTC), oldest first, paginated through."""
        condition, values = f"{LIST_PK} = :d", {":d": f"DAY#{day}"}
        if since_ts is not None:
            condition += f" AND {LIST_SK} >= :s"
            values[":s"] = f"{since_ts:017.3f}"
        for item in _query_all(self.table, IndexName=LIST_INDEX, KeyConditionExpression=condition,
                               ExpressionAttributeValues=values):
            yield State.from_item(item)

    def dataset_items(self, dataset_id: str) -> list[dict]:
        """Everything stored about a dataset except its ledger (status detail)."""
        return [it for it in _query_all(self.table, KeyConditionExpression="pk = :pk",
                                        ExpressionAttributeValues={":pk": f"DATASET#{dataset_id}"})
                if not it["sk"].startswith(("OBJECT#", "ERROR#"))]


def landed(reports: list[dict], intervals: dict[str, list], foreign: int) -> bool:
    """Pure: do the persisted records cover what every done producer reported sending?"""
    by_count = 0
    for report in reports:
        sent = report.get("records_sent")
        if sent is None:
            continue
        if report.get("enveloped", True):
            if not envelope.covers(intervals.get(report["producer_id"], []), sent):
                return False
        else:
            by_count += sent
    return foreign >= by_count


def _seqs_bytes(merged: dict[str, list]) -> int:
    return sum(len(p) + len(envelope.encode(v)) for p, v in merged.items())


def _merged(intervals: dict[str, list], objs: list[CountedObject]) -> dict[str, list]:
    merged = {p: list(v) for p, v in intervals.items()}
    for obj in objs:
        for producer, ranges in (obj.scan.seqs if obj.scan else {}).items():
            merged[producer] = envelope.merge(merged.get(producer, []) + ranges)
    return merged


def _query_all(table, **kwargs) -> Iterable[dict]:
    while True:
        response = table.query(**kwargs)
        yield from response.get("Items", [])
        if "LastEvaluatedKey" not in response:
            return
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


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


def _backoff(attempt: int) -> None:
    time.sleep(backoff_s(attempt, base=0.05, cap=2.0))
