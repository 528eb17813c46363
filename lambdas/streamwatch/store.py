"""DynamoDB access: the only module that knows the table layout.

One table, one partition per dataset:
- `DATASET#<id> / STATE`: counters (objects, bytes, records), the observer chain (status, tick, streak),
  producer totals, and what was declared and published.
- `DATASET#<id> / OBJECT#<key>`: the dedupe ledger, one item per counted object (TTL `expires_at`).
- `DATASET#<id> / PRODUCER#<id>`: a producer's report (started, done, records sent), written once.

Counting is exact under at-least-once delivery: each transaction puts the ledger items of its objects with
`attribute_not_exists` and ADDs their totals to the dataset once. A duplicate object cancels the transaction
with `ConditionalCheckFailed` at its own position (`CancellationReasons`); it is dropped and the rest retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from botocore.exceptions import ClientError

from streamwatch import aws
from streamwatch.policy import Decision, Progress, View

PK, SK = "pk", "sk"
TTL_ATTRIBUTE = "expires_at"
STATE = "STATE"
OBSERVING, READY, STALLED = "OBSERVING", "READY", "STALLED"
MAX_TRANSACTION_ITEMS = 100
RETRYABLE = {"TransactionConflict", "ThrottlingError", "ThrottlingException", "ProvisionedThroughputExceeded",
             "ProvisionedThroughputExceededException", "RequestLimitExceeded", "InternalServerError",
             "TransactionInProgressException", "ServiceUnavailable"}
log = logging.getLogger(__name__)


def dataset_key(dataset_id: str, sk: str = STATE) -> dict:
    return {PK: f"DATASET#{dataset_id}", SK: sk}


def _num(value: float | int) -> Decimal:
    return Decimal(value) if isinstance(value, int) else Decimal(f"{value:.3f}")


def _f(item: dict, name: str) -> float | None:
    return float(item[name]) if name in item else None


@dataclass(frozen=True)
class CountedObject:
    dataset_id: str
    key: str
    size: int
    etag: str
    event_ts: float  # S3 eventTime on the handlers' clock
    records: int | None = None  # newline-delimited records, when counted


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
    records: int | None = None
    status: str = OBSERVING
    tick: int = 0
    repeated: int = 0
    last_count: int | None = None
    reads: int = 0
    started_ts: float | None = None
    first_object_ts: float | None = None
    last_object_ts: float | None = None
    producers_expected: int | None = None
    producers_done: int = 0
    records_sent: int = 0
    last_done_ts: float | None = None
    chain_started: bool = False
    published: bool = False
    declared_ts: float | None = None
    reason: str = ""
    fallback: bool = False
    announced_objects: int = 0  # objects the last published Ready/Stalled/Amended event reported
    amend_pending: int = 0  # objects an Amended event was claimed for
    lease_until: float = 0.0  # wall clock: until then, the declaring/claiming invocation is publishing
    next_delay: int = 0  # the delay the last tick was sent with, seconds

    @classmethod
    def from_item(cls, item: dict) -> State:
        def i(name, default=None):
            return int(item[name]) if name in item else default
        return cls(dataset_id=item[PK].split("#", 1)[1], objects=i("objects", 0), bytes=i("bytes", 0),
                   records=i("records"), status=item.get("status", OBSERVING), tick=i("tick", 0),
                   repeated=i("repeated", 0), last_count=i("last_count"), reads=i("read_count", 0),
                   started_ts=_f(item, "started_ts"), first_object_ts=_f(item, "first_object_ts"),
                   last_object_ts=_f(item, "last_object_ts"), producers_expected=i("producers_expected"),
                   producers_done=i("producers_done", 0), records_sent=i("records_sent", 0),
                   last_done_ts=_f(item, "last_done_ts"), chain_started=bool(item.get("chain_started")),
                   published=bool(item.get("published")), declared_ts=_f(item, "declared_ts"),
                   reason=item.get("reason", ""), fallback=bool(item.get("fallback")),
                   announced_objects=i("announced_objects", 0), amend_pending=i("amend_pending", 0),
                   lease_until=_f(item, "lease_until") or 0.0, next_delay=i("next_delay", 0))

    def view(self, now: float) -> View:
        return View(now=now, objects=self.objects, started_at=self.started_ts if self.started_ts is not None else now,
                    last_object_at=self.last_object_ts, records=self.records,
                    producers_expected=self.producers_expected, producers_done=self.producers_done,
                    records_sent=self.records_sent, last_done_at=self.last_done_ts)

    def progress(self) -> Progress:
        return Progress(repeated=self.repeated, last_count=self.last_count, reads=self.reads)


class Store:
    def __init__(self, table_name: str, *, ttl_days: int = 7, max_attempts: int = 6, table=None) -> None:
        self.table = table if table is not None else aws.table(table_name)
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
        for attempt in range(self.max_attempts):
            items, owners = self._count_items(todo, now, older)
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
                transient = False
                for owner, reason in zip(owners, exc.response.get("CancellationReasons", []), strict=False):
                    rc = reason.get("Code", "None")
                    if rc == "ConditionalCheckFailed" and isinstance(owner, CountedObject):
                        todo.remove(owner)
                        outcome.duplicates.append(owner)
                    elif rc == "ConditionalCheckFailed":
                        older.add(owner)  # an older batch than one already counted: keep last_object_ts
                    elif rc != "None":
                        transient = True
                if not todo:
                    return
                if transient:
                    _backoff(attempt)
        outcome.failed += todo

    def _count_items(self, todo: list[CountedObject], now: float, older: set[str]) -> tuple[list, list]:
        items, owners = [], []
        expires = int(now) + self.ttl_s
        for obj in todo:
            items.append({"Put": {
                "TableName": self.name, "ConditionExpression": "attribute_not_exists(pk)",
                "Item": {**dataset_key(obj.dataset_id, f"OBJECT#{obj.key}"), "size": obj.size, "etag": obj.etag,
                         "event_ts": _num(obj.event_ts), TTL_ATTRIBUTE: expires}}})
            owners.append(obj)
        by_dataset: dict[str, list[CountedObject]] = {}
        for obj in todo:
            by_dataset.setdefault(obj.dataset_id, []).append(obj)
        for dataset_id, objs in by_dataset.items():
            values = {":n": len(objs), ":b": sum(o.size for o in objs), ":obs": OBSERVING, ":zero": 0,
                      ":now": _num(now), ":first": _num(min(o.event_ts for o in objs))}
            adds = "objects :n, bytes :b"
            if all(o.records is not None for o in objs):
                adds += ", records :r"
                values[":r"] = sum(o.records for o in objs)
            sets = ("#status = if_not_exists(#status, :obs), tick = if_not_exists(tick, :zero), "
                    "started_ts = if_not_exists(started_ts, :now), "
                    "first_object_ts = if_not_exists(first_object_ts, :first), counted_ts = :now")
            update = {"TableName": self.name, "Key": dataset_key(dataset_id),
                      "ExpressionAttributeNames": {"#status": "status"}, "ExpressionAttributeValues": values}
            if dataset_id not in older:
                values[":last"] = _num(max(o.event_ts for o in objs))
                sets += ", last_object_ts = :last"
                update["ConditionExpression"] = "attribute_not_exists(last_object_ts) OR last_object_ts <= :last"
            update["UpdateExpression"] = f"ADD {adds} SET {sets}"
            items.append({"Update": update})
            owners.append(dataset_id)
        return items, owners

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

    def mark_chain_started(self, dataset_id: str) -> None:
        self.table.update_item(Key=dataset_key(dataset_id), UpdateExpression="SET chain_started = :t",
                               ExpressionAttributeValues={":t": True})

    # --- producers -------------------------------------------------------------------------------------
    def register_run(self, dataset_id: str, producers_expected: int, now: float) -> None:
        self.table.update_item(
            Key=dataset_key(dataset_id),
            UpdateExpression="SET producers_expected = :n, registered_ts = if_not_exists(registered_ts, :now)",
            ExpressionAttributeValues={":n": producers_expected, ":now": _num(now)})

    def report_started(self, dataset_id: str, producer_id: str, now: float) -> bool:
        try:
            self.table.put_item(Item={**dataset_key(dataset_id, f"PRODUCER#{producer_id}"), "status": "started",
                                      "started_ts": _num(now)}, ConditionExpression="attribute_not_exists(pk)")
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False

    def report_done(self, dataset_id: str, producer_id: str, records_sent: int, now: float) -> bool:
        """Add a producer's totals to its dataset once, however often the report is retried."""
        try:
            self.client.transact_write_items(TransactItems=[
                {"Update": {"TableName": self.name, "Key": dataset_key(dataset_id, f"PRODUCER#{producer_id}"),
                            "UpdateExpression": "SET #st = :done, records_sent = :n, done_ts = :now",
                            "ConditionExpression": "attribute_not_exists(#st) OR #st <> :done",
                            "ExpressionAttributeNames": {"#st": "status"},
                            "ExpressionAttributeValues": {":done": "done", ":n": records_sent, ":now": _num(now)}}},
                {"Update": {"TableName": self.name, "Key": dataset_key(dataset_id),
                            "UpdateExpression": "ADD producers_done :one, records_sent :n SET last_done_ts = :now",
                            "ExpressionAttributeValues": {":one": 1, ":n": records_sent, ":now": _num(now)}}},
            ])
            return True
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons") or [{}]
            if reasons[0].get("Code") == "ConditionalCheckFailed":
                return False
            raise

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
        """OBSERVING -> READY/STALLED, once. `tick` given for a scheduled read, None for a nudge.

        `lease_until` (wall clock) is how long the declaring invocation has to publish before any other
        message may take over the publishing (it then assumes a crash).
        """
        p = decision.progress
        condition = "#status = :obs" + (" AND tick = :tick" if tick is not None else "")
        values = {":v": READY if decision.verdict == "ready" else STALLED, ":now": _num(now), ":obs": OBSERVING,
                  ":reason": decision.reason, ":fb": decision.fallback, ":f": False, ":lease": _num(lease_until)}
        sets = ("#status = :v, declared_ts = :now, reason = :reason, fallback = :fb, published = :f, "
                "lease_until = :lease")
        if tick is not None:
            values.update({":tick": tick, ":next": tick + 1, ":r": p.repeated, ":c": p.last_count,
                           ":reads": p.reads})
            sets += ", tick = :next, repeated = :r, last_count = :c, read_count = :reads"
        else:
            values[":one"] = 1
            sets += " ADD read_count :one"
        return self._conditional_update(dataset_id, f"SET {sets}", condition, values)

    def mark_published(self, dataset_id: str, objects: int) -> None:
        """After PutEvents succeeded: the declaration is out, announcing `objects`."""
        self.table.update_item(Key=dataset_key(dataset_id),
                               UpdateExpression="SET published = :t, announced_objects = :o",
                               ExpressionAttributeValues={":t": True, ":o": objects})

    def claim_amendment(self, dataset_id: str, objects: int, *, lease_until: float) -> bool:
        """True for exactly one caller per new total: that caller publishes the Amended event."""
        return self._conditional_update(
            dataset_id, "SET amend_pending = :o, lease_until = :lease",
            "attribute_not_exists(amend_pending) OR amend_pending < :o", {":o": objects, ":lease": _num(lease_until)})

    def mark_amended(self, dataset_id: str, objects: int) -> None:
        self._conditional_update(dataset_id, "SET announced_objects = :o",
                                 "attribute_not_exists(announced_objects) OR announced_objects < :o", {":o": objects})

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


def _chunks(objects: list[CountedObject]) -> Iterable[list[CountedObject]]:
    """Transactions of <= 100 actions: one ledger put per object plus one update per dataset in the chunk."""
    chunk: list[CountedObject] = []
    datasets: set[str] = set()
    for obj in objects:
        extra = 1 + (obj.dataset_id not in datasets)
        if len(chunk) + len(datasets) + extra > MAX_TRANSACTION_ITEMS:
            yield chunk
            chunk, datasets = [], set()
        chunk.append(obj)
        datasets.add(obj.dataset_id)
    if chunk:
        yield chunk


def _backoff(attempt: int) -> None:
    time.sleep(aws.backoff_s(attempt, base=0.05, cap=2.0))
