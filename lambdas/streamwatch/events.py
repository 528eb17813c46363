"""EventBridge event shapes (the contract in DESIGN.md) and publishing them.

`detail` always has dataset_id, bucket, prefix, objects, bytes, records (null when not counted),
first_object_at, last_object_at, declared_at (ISO-8601 UTC), mode, ticks; plus reads, reason, fallback,
the policy parameters, the producer totals and a stable `event_id` a consumer can dedupe on.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

from streamwatch import aws
from streamwatch.policy import Policy
from streamwatch.s3_events import dataset_prefix
from streamwatch.store import State

SOURCE = "streamwatch"
READY, AMENDED, STALLED = "Dataset Ready", "Dataset Amended", "Dataset Stalled"
DETAIL_TYPES = (READY, AMENDED, STALLED)
log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    """EventBridge kept refusing the entry: the caller lets the message be retried."""


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> float:
    """ISO-8601 ('Z' or offset) -> epoch seconds; the inverse of `iso` (and how S3 writes eventTime)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def detail(state: State, *, bucket: str, data_prefix: str, policy: Policy, detail_type: str) -> dict:
    return {
        "event_id": f"{state.dataset_id}:{detail_type.split()[-1].lower()}:{state.objects}",
        "dataset_id": state.dataset_id,
        "bucket": bucket,
        "prefix": dataset_prefix(data_prefix, state.dataset_id),
        "objects": state.objects,
        "bytes": state.bytes,
        "records": state.records,
        "first_object_at": iso(state.first_object_ts),
        "last_object_at": iso(state.last_object_ts),
        "declared_at": iso(state.declared_ts),
        "mode": policy.mode,
        "ticks": state.tick,
        "reads": state.reads,
        "reason": state.reason,
        "fallback": state.fallback,
        "policy": policy.describe(),
        "producers": {"expected": state.producers_expected, "done": state.producers_done,
                      "records_sent": state.records_sent},
    }


def publish(bus: str, detail_type: str, body: dict, *, attempts: int = 5) -> None:
    """PutEvents, resending a failed entry with backoff (botocore retries the call itself)."""
    client = aws.client("events")
    entry = {"Source": SOURCE, "DetailType": detail_type, "Detail": json.dumps(body), "EventBusName": bus}
    for attempt in range(attempts):
        response = client.put_events(Entries=[entry])
        if not response.get("FailedEntryCount"):
            return
        error = response["Entries"][0].get("ErrorCode")
        log.warning("PutEvents entry failed (%s), attempt %d", error, attempt + 1)
        time.sleep(aws.backoff_s(attempt, base=0.1, cap=2.0))
    raise PublishError(f"{detail_type} for {body.get('dataset_id')} not accepted after {attempts} attempts")
