"""Observer: one chain per dataset, exactly one Ready under duplicates and crashes, Amended, Stalled."""

from __future__ import annotations

import json
import time
from datetime import datetime

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from streamwatch import clock, events
from streamwatch.clock import WallClock
from streamwatch.handlers import monitor, observer
from streamwatch.settings import Settings
from streamwatch.store import Store
from tests.conftest import drain, s3_message, s3_record, sqs_event

T0 = datetime.fromisoformat("2026-11-23T10:00:00+00:00").timestamp()


class FakeClock(WallClock):
    """Virtual time the test moves; SQS delays collapse to 0 so a test never waits."""

    def __init__(self, now: float) -> None:
        self.t = now

    def now(self) -> float:
        return self.t

    def delay_seconds(self, seconds: float) -> int:
        return 0


@pytest.fixture
def fake_clock():
    fake = FakeClock(T0)
    clock.install(fake)
    yield fake
    clock.install(WallClock())


def land(local, context, dataset_id: str, names: list[str], at: float, size: int = 10) -> dict:
    when = datetime.utcfromtimestamp(at).isoformat(timespec="milliseconds") + "Z"
    bodies = [s3_message(s3_record(local.resources.bucket, f"data/dataset={dataset_id}/{n}", size, when=when))
              for n in names]
    return monitor.handler(sqs_event(bodies), context)


def deliver(body: str, context, message_id: str = "m1") -> bool:
    """One message to the observer as Lambda delivers it; False if it was reported failed (-> redelivery).
    With a single record, Powertools fails the whole invocation instead of listing it."""
    try:
        result = observer.handler(sqs_event([body], ids=[message_id]), context)
    except BatchProcessingError:
        return False
    return not result["batchItemFailures"]


def published(local) -> list[dict]:
    return [json.loads(m["Body"]) for m in drain(local.events_queue_url)]


def run_observer(local, context, fake_clock, *, duplicate: bool = False, max_steps: int = 400,
                 expect_end: bool = True) -> list[str]:
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
            bodies = [m["Body"], m["Body"]] if duplicate else [m["Body"]]
            for b in bodies:
                outcomes.append("ok" if deliver(b, context) else "failed")
        fake_clock.t += 1
    if expect_end:
        raise AssertionError("observer chain did not end")
    return outcomes


def test_stability_declares_once_after_the_quiet_window(moto_env, context, fake_clock):
    settings, local = moto_env(Settings(min_quiet_s=400, buffer_interval_s=300))
    land(local, context, "d1", ["a", "b"], at=T0)
    fake_clock.t = T0 + 1
    run_observer(local, context, fake_clock)
    ready = published(local)
    assert [e["detail-type"] for e in ready] == ["Dataset Ready"]
    detail = ready[0]["detail"]
    assert detail["dataset_id"] == "d1" and detail["objects"] == 2 and detail["bytes"] == 20
    assert detail["records"] is None and detail["mode"] == "stability" and detail["ticks"] >= 4
    assert detail["prefix"] == "data/dataset=d1/" and detail["bucket"] == local.resources.bucket
    declared = datetime.fromisoformat(detail["declared_at"].replace("Z", "+00:00")).timestamp()
    assert declared - T0 >= 400  # never before the quiet window
    for field in ("first_object_at", "last_object_at", "declared_at"):
        assert detail[field].endswith("Z")


def test_every_message_delivered_twice_still_one_ready(moto_env, context, fake_clock):
    settings, local = moto_env(Settings(min_quiet_s=300, buffer_interval_s=300, decay="exponential"))
    land(local, context, "d1", ["a"], at=T0)
    land(local, context, "d1", ["a"], at=T0)  # the notification again: chain start may be re-sent
    fake_clock.t = T0 + 1
    run_observer(local, context, fake_clock, duplicate=True)
    assert [e["detail-type"] for e in published(local)] == ["Dataset Ready"]


def test_crash_between_transition_and_publish_publishes_on_redelivery_once(moto_env, context, fake_clock,
                                                                          monkeypatch):
    settings, local = moto_env(Settings(min_quiet_s=300, buffer_interval_s=300))
    land(local, context, "d1", ["a"], at=T0)
    real_publish, crashes = events.publish, []

    def crash_once(*args, **kwargs):
        if not crashes:
            crashes.append(1)
            raise ConnectionError("crash after the READY transition, before PutEvents")
        return real_publish(*args, **kwargs)

    monkeypatch.setattr(events, "publish", crash_once)
    store = Store(local.resources.table)
    fake_clock.t = T0 + 1
    # Drive the chain until the declaring tick crashes
    for _ in range(100):
        messages = drain(local.resources.observer_queue_url)
        assert messages, "chain ended without declaring"
        ok = deliver(messages[0]["Body"], context)
        fake_clock.t += 60
        if not ok:
            failed_body = messages[0]["Body"]
            break
    state = store.get_state("d1")
    assert state.status == "READY" and not state.published and published(local) == []
    # A redelivery inside the publisher's lease is told to come back later, not to publish a second copy
    assert not deliver(failed_body, context)
    # SQS redelivers after the visibility timeout (> the lease): it publishes, once
    later = time.time() + 3600
    monkeypatch.setattr("streamwatch.observing.time.time", lambda: later)
    assert deliver(failed_body, context) and deliver(failed_body, context)
    assert [e["detail-type"] for e in published(local)] == ["Dataset Ready"]
    assert store.get_state("d1").published


def test_late_object_after_ready_is_announced_as_amended_once(moto_env, context, fake_clock):
    settings, local = moto_env(Settings(min_quiet_s=300, buffer_interval_s=300))
    land(local, context, "d1", ["a", "b"], at=T0)
    fake_clock.t = T0 + 1
    run_observer(local, context, fake_clock)
    assert [e["detail"]["objects"] for e in published(local)] == [2]
    # When a straggler lands after the Ready (and its notification is delivered twice)
    late = fake_clock.t + 100
    land(local, context, "d1", ["late"], at=late)
    land(local, context, "d1", ["late"], at=late)
    run_observer(local, context, fake_clock, duplicate=True)
    amended = published(local)
    assert [(e["detail-type"], e["detail"]["objects"]) for e in amended] == [("Dataset Amended", 3)]


def test_hard_cap_ends_in_stalled(moto_env, context, fake_clock):
    settings, local = moto_env(Settings(min_objects=10, max_observation_s=1800))
    land(local, context, "d1", ["only-one"], at=T0)
    fake_clock.t = T0 + 1
    run_observer(local, context, fake_clock)
    stalled = published(local)
    assert [e["detail-type"] for e in stalled] == ["Dataset Stalled"]
    assert stalled[0]["detail"]["objects"] == 1 and "hard cap" in stalled[0]["detail"]["reason"]


def test_missing_state_item_is_a_failure_not_a_silent_drop(moto_env, context, fake_clock):
    settings, local = moto_env()
    body = json.dumps({"dataset_id": "ghost", "tick": 0, "kind": "tick"})
    good = json.dumps({"dataset_id": "ghost", "tick": 0, "kind": "tick"})
    assert not deliver(good, context)
    # in a batch with other messages, only it is reported
    result = observer.handler(sqs_event([body, "{junk"], ids=["ghost-1", "junk"]), context)
    assert result == {"batchItemFailures": [{"itemIdentifier": "ghost-1"}]}


def test_foreign_message_on_the_observer_queue_is_skipped(moto_env, context, fake_clock):
    settings, local = moto_env()
    assert observer.handler(sqs_event(["{nope", json.dumps({"dataset_id": "a/b"})]), context) == {
        "batchItemFailures": []}


def test_stale_tick_is_dropped_and_forks_no_second_chain(moto_env, context, fake_clock):
    settings, local = moto_env()
    land(local, context, "d1", ["a"], at=T0)
    fake_clock.t = T0 + 1
    first = drain(local.resources.observer_queue_url)[0]["Body"]
    observer.handler(sqs_event([first]), context)  # tick 0 -> 1, sends tick 1
    assert len(drain(local.resources.observer_queue_url)) == 1
    observer.handler(sqs_event([first]), context)  # tick 0 again: stale
    assert drain(local.resources.observer_queue_url) == []


def test_records_mode_is_ready_as_soon_as_every_record_landed(moto_env, context, fake_clock):
    # Given a run with 2 producers that reported 3 records in all
    settings, local = moto_env(Settings(mode="records"))
    store = Store(local.resources.table)
    store.register_run("r1", 2, T0)
    s3 = boto3.client("s3")
    s3.put_object(Bucket=local.resources.bucket, Key="data/dataset=r1/a", Body=b'{"x":1}\n{"x":2}\n')
    s3.put_object(Bucket=local.resources.bucket, Key="data/dataset=r1/b", Body=b'{"x":3}\n')
    drain(local.notification_queue_url)
    land(local, context, "r1", ["a"], at=T0)
    fake_clock.t = T0 + 5
    run_observer(local, context, fake_clock, max_steps=2, expect_end=False)  # chain started, waiting
    store.report_done("r1", "p1", 2, T0 + 5)
    store.report_done("r1", "p2", 1, T0 + 6)
    # When the last object lands, the monitor nudges and the observer declares at once
    fake_clock.t = T0 + 10
    land(local, context, "r1", ["b"], at=T0 + 10)
    messages = [m["Body"] for m in drain(local.resources.observer_queue_url)]
    nudges = [b for b in messages if json.loads(b)["kind"] == "nudge"]
    assert nudges, messages
    assert deliver(nudges[0], context)
    ready = published(local)
    assert [e["detail-type"] for e in ready] == ["Dataset Ready"]
    d = ready[0]["detail"]
    assert (d["records"], d["producers"]["records_sent"], d["objects"]) == (3, 3, 2)
    declared = datetime.fromisoformat(d["declared_at"].replace("Z", "+00:00")).timestamp()
    assert declared - (T0 + 10) < 60
