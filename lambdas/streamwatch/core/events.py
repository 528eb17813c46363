"""The events' names and time format: what consumers match on (docs/events.md). Pure: the construct's rules and
the CLI use them without loading the publisher."""

from __future__ import annotations

from datetime import UTC, datetime

SOURCE = "streamwatch"
READY, AMENDED, STALLED = "Dataset Ready", "Dataset Amended", "Dataset Stalled"
FAILED, OVERDUE = "Dataset Failed", "Dataset Overdue"
DETAIL_TYPES = (READY, AMENDED, STALLED, FAILED, OVERDUE)
KIND_OF = {READY: "ready", AMENDED: "amended", STALLED: "stalled", FAILED: "failed", OVERDUE: "overdue"}
TYPE_OF = {kind: detail_type for detail_type, kind in KIND_OF.items()}


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> float:
    """ISO-8601 ('Z' or offset) -> epoch seconds; the inverse of `iso` (and how S3 writes eventTime)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def waits_pattern() -> dict:
    """What the waits function hears of the bus (the construct's rule and the local run's): the events that answer
    a waiting Step Functions task."""
    return {"source": [SOURCE], "detail-type": [READY, FAILED, STALLED]}
