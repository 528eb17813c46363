"""Publishing EventBridge events: the detail (docs/events.md, schema in docs/event-detail.schema.json) and
PutEvents. The names and time formats are core/events.py's.

`detail` always has event_id, dataset_id, bucket, prefix, objects, bytes, records (null when not counted),
first_object_at, last_object_at, declared_at (ISO-8601 UTC, null until declared), mode, ticks, policy; plus
the rule, reads, reason, fallback, producer totals, record counts (distinct, duplicates, foreign), the failure
(Dataset Failed), the deadline (Dataset Overdue) and, for a time window, window_start and window_end.
`event_id` is stable per event (`<dataset>:ready`, `<dataset>:amended:<objects>`): consumers dedupe on it.
"""

from __future__ import annotations

import json
import logging
import time

from botocore.exceptions import BotoCoreError, ClientError

from streamwatch.core import clock
from streamwatch.core.backoff import LAMBDA_RESEND
from streamwatch.core.events import (  # re-exported: publishing.READY, publishing.iso, ...
    AMENDED,
    DETAIL_TYPES,
    FAILED,
    KIND_OF,
    OVERDUE,
    READY,
    SOURCE,
    STALLED,
    TYPE_OF,
    iso,
    parse_iso,
)
from streamwatch.core.policy import Policy
from streamwatch.core.rules import RuleError, RuleSet
from streamwatch.core.settings import Settings
from streamwatch.runtime import aws
from streamwatch.runtime.chain import policy_of
from streamwatch.runtime.detail import DatasetDetail
from streamwatch.state.store import FAILED as FAILED_STATUS
from streamwatch.state.store import READY as READY_STATUS
from streamwatch.state.store import STALLED as STALLED_STATUS
from streamwatch.state.store import State

__all__ = ["AMENDED", "DETAIL_TYPES", "FAILED", "KIND_OF", "OVERDUE", "READY", "SOURCE", "STALLED", "TYPE_OF",
           "PublishError", "declared_event", "detail", "iso", "parse_iso", "prefix_of", "publish"]
DECLARED_TYPE = {READY_STATUS: READY, FAILED_STATUS: FAILED, STALLED_STATUS: STALLED}
log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    """EventBridge kept refusing the entry: the caller lets the message be retried."""


def prefix_of(rules: RuleSet, dataset_id: str) -> str:
    try:
        return rules.rule_for(dataset_id).prefix_of(dataset_id)
    except RuleError:  # a dataset of a rule that was since removed: say so rather than fail the event
        return ""


def detail(state: State, *, bucket: str, rules: RuleSet, policy: Policy, detail_type: str,
           deadline_at: float | None = None) -> dict:
    kind = KIND_OF[detail_type]
    event_id = f"{state.dataset_id}:{kind}" + (f":{state.objects}" if kind == "amended" else "")
    extra = {}
    if state.window_start is not None:
        extra.update(window_start=iso(state.window_start), window_end=iso(state.window_end))
    reason = state.reason
    if kind == "failed":
        extra["failure"] = state.failure or state.reason
    if kind == "overdue":
        extra["deadline_at"] = iso(deadline_at if deadline_at is not None else state.deadline_ts)
        reason = f"not Ready by its deadline {extra['deadline_at']}; observation goes on"
    counted = state.lines is not None
    return DatasetDetail(
        event_id=event_id, dataset_id=state.dataset_id, bucket=bucket, prefix=prefix_of(rules, state.dataset_id),
        objects=state.objects, bytes=state.bytes, records=state.records, first_object_at=iso(state.first_object_ts),
        last_object_at=iso(state.last_object_ts), declared_at=iso(state.declared_ts),
        mode=state.declared_mode or policy.mode, rule=state.rule, ticks=state.tick, reads=state.reads,
        reason=reason, fallback=state.fallback, policy=policy.describe(),
        producers={"expected": state.producers_expected, "done": state.producers_done,
                   "failed": state.producers_failed, "unregistered": state.unregistered_reports,
                   "records_sent": state.records_sent},
        record_counts={"distinct": state.distinct if counted else None,
                       "duplicates": state.duplicates if counted else None,
                       "foreign": state.foreign if counted else None, "error_output": state.error_records},
        **extra).body()


def declared_event(state: State | None, *, bucket: str, settings: Settings, overdue_seen: bool = True) -> dict | None:
    """The event a dataset's state stands for, for whoever asks after it was published (a waiting Airflow task, a
    Step Functions task that registers late): its declaration (Ready, Failed, Stalled) with the detail its event
    carried, or, unless `overdue_seen`, Overdue; None while it is open. {"status", "detail_type", "detail"}."""
    if state is None:
        return None
    detail_type = DECLARED_TYPE.get(state.status)
    if detail_type is None and state.overdue_ts is not None and not overdue_seen:
        detail_type = OVERDUE
    if detail_type is None:
        return None
    body = detail(state, bucket=bucket, rules=settings.rules, policy=policy_of(settings, state.rule),
                  detail_type=detail_type)
    return {"status": KIND_OF[detail_type], "detail_type": detail_type, "detail": body}


def publish(bus: str, detail_type: str, body: dict, *, attempts: int = 5, until: float | None = None,
            call_s: float = 0.0) -> None:
    """PutEvents, resending a failed entry with backoff (botocore retries the call itself). With `until` (wall
    clock: the publisher's lease), no call starts that could end after it (`call_s`: the longest one takes)."""
    client = aws.client("events")
    entry = {"Source": SOURCE, "DetailType": detail_type, "Detail": json.dumps(body), "EventBusName": bus}
    for attempt in range(attempts):
        if until is not None and clock.get().wall() + call_s > until:
            raise PublishError(f"{detail_type} for {body.get('dataset_id')} not published: its lease ends first")
        try:
            response = client.put_events(Entries=[entry])
        except (ClientError, BotoCoreError) as exc:  # after botocore's own retries: throttled, denied, unreachable
            raise PublishError(f"{detail_type} for {body.get('dataset_id')} not published: {exc}") from exc
        if not response.get("FailedEntryCount"):
            return
        error = response["Entries"][0].get("ErrorCode")
        log.warning("PutEvents entry failed (%s), attempt %d", error, attempt + 1)
        time.sleep(LAMBDA_RESEND.delay(attempt))
    raise PublishError(f"{detail_type} for {body.get('dataset_id')} not accepted after {attempts} attempts")
