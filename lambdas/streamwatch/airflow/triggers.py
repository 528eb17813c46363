"""Airflow triggers: they run in the triggerer, which imports them by class path (so they live in this installed
package, never in a DAG bundle) and re-creates them from `serialize()` (plain values only). Each may run more
than once for one task: nothing here assumes it runs alone or once. boto3 calls run in a thread, never on the
triggerer's event loop."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError

from streamwatch.airflow._compat import BaseEventTrigger, BaseTrigger, TriggerEvent
from streamwatch.airflow.hooks import StreamwatchHook, Target, judge
from streamwatch.core.events import DETAIL_TYPES, READY, SOURCE
from streamwatch.runtime.detail import DatasetDetail


class StreamwatchDatasetTrigger(BaseTrigger):
    """Waits for one dataset's declaration: one consistent GetItem of its state item per `poll_interval`.
    Yields once: Ready, Failed or Stalled with the event's detail, or Overdue (once: the sensor may defer again)."""

    def __init__(self, *, dataset_id: str, table: str, bucket: str, settings: dict, aws_conn_id: str | None,
                 region_name: str | None = None, poll_interval: float = 30.0, overdue_seen: bool = False) -> None:
        super().__init__()
        self.target = Target(dataset_id, table, bucket, settings)
        self.aws_conn_id, self.region_name = aws_conn_id, region_name
        self.poll_interval, self.overdue_seen = float(poll_interval), overdue_seen

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {**self.target.serialize(), "aws_conn_id": self.aws_conn_id, "region_name": self.region_name,
                 "poll_interval": self.poll_interval, "overdue_seen": self.overdue_seen})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        store = await asyncio.to_thread(
            StreamwatchHook(self.aws_conn_id, self.region_name).store, self.target.table)
        polls = 0
        while True:
            polls += 1
            state = await asyncio.to_thread(store.get_state, self.target.dataset_id)
            event = judge(state, self.target, overdue_seen=self.overdue_seen)
            if event is not None:
                yield TriggerEvent({**event, "polls": polls})
                return
            await asyncio.sleep(self.poll_interval)


class StreamwatchEventTrigger(BaseEventTrigger):
    """An `AssetWatcher` trigger over an SQS queue that `Streamwatch.on_event(SqsQueue(queue), ...)` feeds: one
    asset event per distinct `event_id`, its payload the event's detail.

    - Filters: `detail_types` (default Dataset Ready), `rules` (rule names; default all) and `dataset_pattern`
      (a glob on the dataset id). A message that passes no filter, or is no streamwatch event at all, is deleted
      with a log line: a queue feeds one watcher (fan out with one EventBridge rule and queue per asset).
    - A message is deleted only after its event was handed to Airflow (the triggerer resumed this generator
      past the yield): a crash before that leaves it on the queue, redelivered after its visibility timeout.
    - Repeats (SQS's at-least-once, or the Ready's one repeat window, same `event_id`) are dropped against the
      last `remember` ids seen. A repeat that arrives after a triggerer restart is not caught by this memory:
      docs/airflow.md says what that costs and how a DAG guards it.
    """

    def __init__(self, *, queue_url: str, aws_conn_id: str | None = "aws_default", region_name: str | None = None,
                 detail_types: list[str] | None = None, rules: list[str] | None = None, dataset_pattern: str = "*",
                 wait_time_seconds: int = 20, max_messages: int = 10, remember: int = 10_000) -> None:
        super().__init__()
        self.queue_url, self.aws_conn_id, self.region_name = queue_url, aws_conn_id, region_name
        self.detail_types = list(detail_types or [READY])
        unknown = [d for d in self.detail_types if d not in DETAIL_TYPES]
        if unknown:
            raise ValueError(f"streamwatch: unknown detail type {unknown[0]!r}: one of {', '.join(DETAIL_TYPES)}")
        self.rules = list(rules) if rules else None
        self.dataset_pattern = dataset_pattern
        self.wait_time_seconds, self.max_messages, self.remember = wait_time_seconds, max_messages, remember
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.skipped: dict[str, int] = {}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"queue_url": self.queue_url, "aws_conn_id": self.aws_conn_id, "region_name": self.region_name,
                 "detail_types": self.detail_types, "rules": self.rules, "dataset_pattern": self.dataset_pattern,
                 "wait_time_seconds": self.wait_time_seconds, "max_messages": self.max_messages,
                 "remember": self.remember})

    def _client(self):
        return StreamwatchHook(self.aws_conn_id, self.region_name).aws(client_type="sqs").conn

    async def run(self) -> AsyncIterator[TriggerEvent]:
        sqs = await asyncio.to_thread(self._client)
        while True:
            got = await asyncio.to_thread(
                sqs.receive_message, QueueUrl=self.queue_url, MaxNumberOfMessages=self.max_messages,
                WaitTimeSeconds=self.wait_time_seconds)
            for message in got.get("Messages", []):
                detail, why = self.match(message.get("Body", ""))
                if detail is not None:
                    yield TriggerEvent(detail)  # handed to Airflow once the triggerer resumes us here
                    self._remember(detail["event_id"])
                elif why:
                    self._skip(why, message)
                await asyncio.to_thread(sqs.delete_message, QueueUrl=self.queue_url,
                                        ReceiptHandle=message["ReceiptHandle"])

    def match(self, body: str) -> tuple[dict | None, str]:
        """(the detail to hand over, "") or (None, why it is skipped: "" for a repeat, dropped without a word)."""
        try:
            event = json.loads(body)
        except ValueError:
            return None, "malformed"
        if not isinstance(event, dict) or event.get("source") != SOURCE or "detail" not in event:
            return None, "foreign"
        detail = event["detail"]
        try:
            DatasetDetail.model_validate(detail)  # handed over as it came: fields added since are kept
        except ValidationError:
            return None, "malformed"
        if event.get("detail-type") not in self.detail_types:
            return None, "filtered"
        if self.rules is not None and detail.get("rule") not in self.rules:
            return None, "filtered"
        if not fnmatch.fnmatchcase(detail["dataset_id"], self.dataset_pattern):
            return None, "filtered"
        if detail["event_id"] in self.seen:
            self.seen.move_to_end(detail["event_id"])
            return None, ""
        return detail, ""

    def _remember(self, event_id: str) -> None:
        self.seen[event_id] = None
        while len(self.seen) > self.remember:
            self.seen.popitem(last=False)

    def _skip(self, why: str, message: dict) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1
        level = logging.INFO if why == "filtered" else logging.WARNING
        self.log.log(level, "streamwatch: skipped a %s message %s (%d so far)", why, message.get("MessageId"),
                     self.skipped[why])
