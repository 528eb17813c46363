"""Step Functions tasks that wait for a dataset: registered by a `.waitForTaskToken` task, answered once.

The waits function reads one queue that gets two kinds of message:
- a registration, {"dataset_id", "task_token"}, sent by the state machine's task (`sqs:sendMessage
  .waitForTaskToken`): stored as a WAIT# item, and answered at once if the dataset is declared already;
- a streamwatch event from the bus (Dataset Ready, Failed, Stalled): every task waiting for that dataset is
  answered. Ready: SendTaskSuccess, the event's detail as the output. Failed or Stalled: SendTaskFailure, with
  `streamwatch.DatasetFailed` / `streamwatch.DatasetStalled` as the error and the reason as the cause.

Overdue sends nothing: the task's own TimeoutSeconds decides how long a workflow waits, and a heartbeat would only
hide a stuck dataset from its HeartbeatSeconds. A token Step Functions no longer knows (TaskTimedOut: answered
already, or the task timed out; InvalidToken) is dropped with a log line. state/waits.py says why each token gets
one answer.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from streamwatch.core import clock
from streamwatch.core.events import FAILED, READY, STALLED
from streamwatch.core.ids import valid_dataset_id
from streamwatch.core.limits import WAIT_LEASE_S
from streamwatch.core.s3_events import Skip
from streamwatch.core.settings import Resources, Settings
from streamwatch.runtime import aws
from streamwatch.runtime.publishing import declared_event
from streamwatch.state.store import Store
from streamwatch.state.waits import Waits

log = logging.getLogger(__name__)
ANSWERED_BY = {READY: "success", FAILED: "failure", STALLED: "failure"}
ERROR_OF = {FAILED: "streamwatch.DatasetFailed", STALLED: "streamwatch.DatasetStalled"}
GONE = {"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"}  # Step Functions: no such task (any more)
MAX_TOKEN_CHARS = 1024  # Step Functions task tokens: 1..1024 characters (API reference, SendTaskSuccess)
MAX_CAUSE_CHARS = 32768  # SendTaskFailure: cause at most 32,768 characters
MAX_OUTPUT_BYTES = 256 * 1024  # SendTaskSuccess: output at most 256 KiB


@dataclass
class Answered:
    sent: int = 0
    gone: int = 0
    held: int = 0  # another answerer holds the lease: it answers
    kinds: list[str] = field(default_factory=list)


def registration(body: dict) -> tuple[str, str]:
    """(dataset_id, task_token) of a registration message; Skip for one that can never be one."""
    dataset_id, token = body.get("dataset_id"), body.get("task_token")
    if not isinstance(dataset_id, str) or not valid_dataset_id(dataset_id):
        raise Skip("BadDatasetId", f"dataset id {dataset_id!r} is invalid")
    if not isinstance(token, str) or not 1 <= len(token) <= MAX_TOKEN_CHARS:
        raise Skip("BadTaskToken", "task_token is not a Step Functions task token (1..1024 characters)")
    return dataset_id, token


class Waiter:
    def __init__(self, settings: Settings, resources: Resources, *, sfn=None, store: Store | None = None,
                 waits: Waits | None = None, lease_s: float = WAIT_LEASE_S) -> None:
        self.settings, self.resources, self.lease_s = settings, resources, lease_s
        self.sfn = sfn or aws.client("stepfunctions")
        self.store = store or Store(resources.table, ttl_days=settings.dedupe_ttl_days)
        self.waits = waits or Waits(resources.table, ttl_days=settings.dedupe_ttl_days)

    def register(self, dataset_id: str, task_token: str) -> Answered:
        """Store the wait; answer it at once if the dataset is declared already."""
        self.waits.register(dataset_id, task_token, clock.get().wall())
        event = declared_event(self.store.get_state(dataset_id), bucket=self.resources.bucket,
                               settings=self.settings)
        if event is None:
            return Answered()
        return self.answer(event["detail_type"], event["detail"])

    def answer(self, detail_type: str, detail: dict) -> Answered:
        """Every task waiting for the dataset, answered for this event (Ready, Failed, Stalled; others: none)."""
        out = Answered()
        if detail_type not in ANSWERED_BY:
            return out
        for item in self.waits.waiting(detail["dataset_id"]):
            if not self.waits.claim(item, clock.get().wall(), self.lease_s):
                out.held += 1
                continue
            try:
                self._send(item["task_token"], detail_type, detail)
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                if code not in GONE:
                    raise  # the message is retried; the lease runs out and the next delivery sends
                log.warning("task token of %s is gone (%s): dropped", detail["dataset_id"], code)
                self.waits.mark_answered(item, "gone")
                out.gone += 1
                continue
            self.waits.mark_answered(item, ANSWERED_BY[detail_type])
            out.sent += 1
            out.kinds.append(ANSWERED_BY[detail_type])
        return out

    def _send(self, token: str, detail_type: str, detail: dict) -> None:
        if detail_type == READY:
            output = json.dumps({"detail_type": detail_type, "detail": detail})
            if len(output.encode()) > MAX_OUTPUT_BYTES:  # the detail is small; a huge policy must not fail the task
                output = json.dumps({"detail_type": detail_type, "detail": {
                    k: detail[k] for k in ("event_id", "dataset_id", "bucket", "prefix", "objects", "records")}})
            self.sfn.send_task_success(taskToken=token, output=output)
        else:
            cause = detail.get("failure") or detail.get("reason") or detail_type
            self.sfn.send_task_failure(taskToken=token, error=ERROR_OF[detail_type], cause=cause[:MAX_CAUSE_CHARS])
