"""Messages on the observer queue. `tick` is the chain's own (one per dataset, numbered); `nudge` asks for an
immediate completion check (records may add up, a producer failed, a run registered); `amend` says objects
landed after the dataset was declared."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from streamwatch.core.backoff import LAMBDA_RESEND
from streamwatch.core.ids import valid_dataset_id
from streamwatch.core.s3_events import Skip
from streamwatch.runtime import aws

KINDS = ("tick", "nudge", "amend")


@dataclass(frozen=True)
class Tick:
    dataset_id: str
    tick: int = 0
    kind: str = "tick"

    def encode(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def decode(cls, body: str) -> Tick:
        try:
            doc = json.loads(body)
            tick = cls(dataset_id=doc["dataset_id"], tick=int(doc.get("tick", 0)), kind=doc.get("kind", "tick"))
        except (TypeError, ValueError, KeyError) as exc:
            raise Skip("MalformedMessage", repr(exc)[:200]) from None
        if not valid_dataset_id(tick.dataset_id) or tick.kind not in KINDS or tick.tick < 0:
            raise Skip("ForeignMessage", body[:200])
        return tick


class SendError(RuntimeError):
    """The observer queue kept refusing entries: the caller fails its message, and SQS redelivers it."""


def send(queue_url: str, messages: list[tuple[Tick, int]], *, attempts: int = 4) -> None:
    """Send (message, DelaySeconds) pairs, 10 per call; resend refused entries with backoff; raise if any is
    still refused."""
    client = aws.client("sqs")
    for start in range(0, len(messages), 10):
        entries = [{"Id": str(i), "MessageBody": m.encode(), "DelaySeconds": delay}
                   for i, (m, delay) in enumerate(messages[start:start + 10])]
        for attempt in range(attempts):
            if attempt:
                time.sleep(LAMBDA_RESEND.delay(attempt))
            response = client.send_message_batch(QueueUrl=queue_url, Entries=entries)
            failed = {f["Id"] for f in response.get("Failed", [])}
            entries = [e for e in entries if e["Id"] in failed]
            if not entries:
                break
        else:
            raise SendError(f"observer queue refused {len(entries)} messages after {attempts} attempts")
