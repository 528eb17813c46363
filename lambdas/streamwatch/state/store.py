"""The state table, as every handler, the client and the CLI use it: `Store` is its parts put together (the
monitor's ledger, run and producer reports, the observer's outbox, the monitor's lag), plus reads and listings.
The layout (keys, attributes, the index) is state/layout.py's; the items as Python are state/items.py's."""

from __future__ import annotations

from collections.abc import Iterable

from streamwatch.state.base import TableAccess, _backoff, _query_all, dynamodb_table  # noqa: F401
from streamwatch.state.items import CountedObject, CountOutcome, ErrorRecords, State, _f, day_of, landed  # noqa: F401
from streamwatch.state.lag import MonitorLag
from streamwatch.state.layout import (  # noqa: F401 (the store's callers name them here too)
    DAY,
    DECLARED,
    ERROR,
    EVENT_KINDS,
    FAILED,
    IDEMPOTENCY_KEY,
    IDEMPOTENCY_TTL,
    LIST_INDEX,
    LIST_PK,
    LIST_SK,
    MAX_SEQS_BYTES,
    MAX_TRANSACTION_ITEMS,
    OBJECT,
    OBSERVING,
    PARTITION,
    PK,
    PRODUCER,
    READY,
    SEQS,
    SK,
    STALLED,
    STATE,
    TTL_ATTRIBUTE,
    dataset_key,
    dataset_pk,
)
from streamwatch.state.ledger import Ledger
from streamwatch.state.outbox import Outbox
from streamwatch.state.reports import Reports


class Store(Ledger, Reports, Outbox, MonitorLag):
    """The state table: one object per process and table, its concerns in their own classes (ledger, reports,
    outbox, lag); reading and listing here."""

    @classmethod
    def from_settings(cls, settings, resources) -> Store:
        """The store every handler uses: the stack's table, the settings' ledger TTL."""
        return cls(resources.table, ttl_days=settings.dedupe_ttl_days)

    # --- reading ---------------------------------------------------------------------------------------
    def get_state(self, dataset_id: str) -> State | None:
        item = self.table.get_item(Key=dataset_key(dataset_id), ConsistentRead=True).get("Item")
        return State.from_item(item) if item else None

    def get_states(self, dataset_ids: Iterable[str]) -> tuple[dict[str, State], int]:
        """Consistent reads of many datasets' state. Returns the states and the calls made."""
        items, calls = self.batch_get([dataset_key(i) for i in sorted(set(dataset_ids))])
        states = {state.dataset_id: state for state in map(State.from_item, items)}
        return states, calls

    def producers(self, dataset_id: str) -> list[dict]:
        """Every producer report of a dataset (expected, started, done, failed)."""
        items = _query_all(self.table, KeyConditionExpression=f"{PARTITION} AND begins_with({SK}, :p)",
                           ExpressionAttributeValues={":pk": dataset_pk(dataset_id), ":p": PRODUCER},
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

    # --- listing (status, heartbeat) ---------------------------------------------------------------------
    def list_day(self, day: str, *, since_ts: float | None = None) -> Iterable[State]:
        """Every dataset that started on `day` (YYYY-MM-DD, UTC), oldest first, paginated through."""
        condition, values = f"{LIST_PK} = :d", {":d": f"{DAY}{day}"}
        if since_ts is not None:
            condition += f" AND {LIST_SK} >= :s"
            values[":s"] = f"{since_ts:017.3f}"
        for item in _query_all(self.table, IndexName=LIST_INDEX, KeyConditionExpression=condition,
                               ExpressionAttributeValues=values):
            yield State.from_item(item)
