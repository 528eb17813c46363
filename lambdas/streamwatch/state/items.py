"""The table's items as Python: the number codec, the dataset's first-write clauses, the counted objects, the
state item (`State`), and the pure checks on what was persisted."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from streamwatch.core import envelope
from streamwatch.core.envelope import Scan
from streamwatch.state.layout import (
    DAY,
    DECLARED,
    EVENT_KINDS,
    LIST_PK,
    LIST_SK,
    OBSERVING,
)


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
    values = {":obs": OBSERVING, ":zero": 0, ":now": _num(now), ":lpk": f"{DAY}{day_of(now)}",
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
    declared_objects: int | None = None  # objects when it was declared (a takeover announces only these)
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
            declared_objects=i("declared_objects"),
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
