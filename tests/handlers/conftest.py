"""Helpers for driving the observer chain like Lambda would, on a virtual clock the test moves."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import boto3
import jsonschema
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from streamwatch.core import clock
from streamwatch.core.clock import WallClock
from streamwatch.core.envelope import wrap
from streamwatch.handlers import monitor, observer
from streamwatch.state.store import Store
from tests.conftest import drain, s3_message, s3_record, sqs_event

T0 = datetime.fromisoformat("2026-11-23T10:00:00+00:00").timestamp()
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "event-detail.schema.json").read_text())


class FakeClock(WallClock):
    """Virtual time the test moves, the pipeline's (`t`) and the wall's of the leases (`wall_t`); SQS delays
    collapse to 0 so a test never waits (the wall delays asked for are kept, to be checked)."""

    def __init__(self, now: float) -> None:
        self.t, self.wall_t, self.wall_delays = now, time.time(), []

    def now(self) -> float:
        return self.t

    def delay_seconds(self, seconds: float) -> int:
        return 0

    def wall(self) -> float:
        return self.wall_t

    def wall_delay(self, wall_seconds: float) -> int:
        self.wall_delays.append(wall_seconds)
        return 0


@pytest.fixture
def fake_clock():
    fake = FakeClock(T0)
    clock.install(fake)
    yield fake
    clock.install(WallClock())


def land(local, context, dataset_id: str, names: list[str], at: float, size: int = 10) -> dict:
    when = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    bodies = [s3_message(s3_record(local.resources.bucket, f"data/dataset={dataset_id}/{n}", size, when=when))
              for n in names]
    drain(local.notification_queue_url)  # the monitor has consumed everything S3 sent (no backlog)
    return monitor.handler(sqs_event(bodies), context)


def land_records(local, context, dataset_id: str, name: str, producer: str, seqs: range, at: float) -> None:
    """An object holding records of one producer (with the envelope), written to S3 and counted."""
    body = b"".join(wrap({"n": s}, producer, s, {"dataset_id": dataset_id}) + b"\n" for s in seqs)
    key = f"data/dataset={dataset_id}/{name}"
    boto3.client("s3").put_object(Bucket=local.resources.bucket, Key=key, Body=body)
    drain(local.notification_queue_url)
    when = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    monitor.handler(sqs_event([s3_message(s3_record(local.resources.bucket, key, len(body), when=when))]), context)


def deliver(body: str, context, message_id: str = "m1") -> bool:
    """One message to the observer as Lambda delivers it; False if it was reported failed (-> redelivery).
    With a single record, Powertools fails the whole invocation instead of listing it."""
    try:
        result = observer.handler(sqs_event([body], ids=[message_id]), context)
    except BatchProcessingError:
        return False
    return not result["batchItemFailures"]


def published(local) -> list[dict]:
    out = [json.loads(m["Body"]) for m in drain(local.events_queue_url)]
    for event in out:  # the contract: every event on the bus validates against the published schema
        jsonschema.validate(event["detail"], SCHEMA)
    return out


def run_observer(local, context, fake_clock, *, duplicate: bool = False, max_steps: int = 400,
                 expect_end: bool = True, until: float | None = None) -> list[str]:
    """Deliver observer messages like Lambda would, moving the clock to each message's due time."""
    store, outcomes = Store(local.resources.table), []
    for _ in range(max_steps):
        messages = drain(local.resources.observer_queue_url)
        if not messages:
            return outcomes
        for m in messages:
            body = json.loads(m["Body"])
            state = store.get_state(body["dataset_id"])
            if state and body["kind"] == "tick" and body["tick"] == state.tick and state.tick > 0:
                fake_clock.t += state.next_delay  # it was sent with the policy's delay
            if until is not None and fake_clock.t > until:
                return outcomes
            bodies = [m["Body"], m["Body"]] if duplicate else [m["Body"]]
            for b in bodies:
                outcomes.append("ok" if deliver(b, context) else "failed")
        fake_clock.t += 1
    if expect_end:
        raise AssertionError("observer chain did not end")
    return outcomes


