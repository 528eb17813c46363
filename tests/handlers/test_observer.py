"""Observer: one chain per dataset; exactly one Ready, Failed or Overdue under duplicates, delays and crashes;
Amended, Stalled; the monitor's backlog respected; every event valid against the published JSON Schema."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime

import boto3
import pytest

from streamwatch.core.settings import Resources, Settings
from streamwatch.handlers import observer
from streamwatch.runtime import publishing as events
from streamwatch.runtime.chain import start_run
from streamwatch.state.store import Store
from tests.conftest import drain, sqs_event
from tests.handlers.conftest import T0, deliver, land, land_records, published, run_observer


def test_stability_declares_once_after_the_quiet_window(moto_env, context, fake_clock):
    # Given stability mode with a 400 s quiet window, and d1's 2 objects landed at T0
    settings, local = moto_env(Settings(mode="stability", min_quiet_s=400, buffer_interval_s=300))
    land(local, context, "d1", ["a", "b"], at=T0)
    # When the observer runs d1's chain to its end
    fake_clock.t = T0 + 1
    run_observer(local, context, fake_clock)
    # Then one Dataset Ready, with d1's counts, bucket and prefix, declared no sooner than the quiet window allows
    ready = published(local)
    assert [e["detail-type"] for e in ready] == ["Dataset Ready"]
    detail = ready[0]["detail"]
    assert detail["dataset_id"] == "d1" and detail["objects"] == 2 and detail["bytes"] == 20
    assert detail["records"] is None and detail["mode"] == "stability" and detail["ticks"] >= 4
    assert detail["prefix"] == "data/dataset=d1/" and detail["bucket"] == local.resources.bucket
    assert detail["event_id"] == "d1:ready" and detail["rule"] == "default"
    declared = datetime.fromisoformat(detail["declared_at"].replace("Z", "+00:00")).timestamp()
    assert declared - T0 >= 400  # never before the quiet window
    for field in ("first_object_at", "last_object_at", "declared_at"):
        assert detail[field].endswith("Z")


def test_every_message_delivered_twice_still_one_ready(moto_env, context, fake_clock):
    # Given stability mode, and d1's object notified twice (the chain's start may be sent twice)
    settings, local = moto_env(Settings(mode="stability", min_quiet_s=300, buffer_interval_s=300,
                                        decay="exponential"))
    land(local, context, "d1", ["a"], at=T0)
    land(local, context, "d1", ["a"], at=T0)  # the notification again: chain start may be re-sent
    # When every observer message is delivered twice
    fake_clock.t = T0 + 1
    run_observer(local, context, fake_clock, duplicate=True)
    # Then exactly one Dataset Ready
    assert [e["detail-type"] for e in published(local)] == ["Dataset Ready"]


def drive_until_a_delivery_fails(local, context, fake_clock) -> str:
    """Deliver the chain's messages one by one (a minute apart) until one fails; its body (SQS redelivers it)."""
    for _ in range(100):
        messages = drain(local.resources.observer_queue_url)
        assert messages, "chain ended without a failed delivery"
        ok = deliver(messages[0]["Body"], context)
        fake_clock.t += 60
        if not ok:
            return messages[0]["Body"]
    raise AssertionError("no delivery failed in 100 steps")


def test_crash_between_transition_and_publish_publishes_on_redelivery_once(moto_env, context, fake_clock,
                                                                          monkeypatch):
    # Given d1's object, a 1 s publish lease, and a publish that crashes the first time, after the READY transition
    settings, local = moto_env(Settings(mode="stability", min_quiet_s=300, buffer_interval_s=300))
    monkeypatch.setenv("STREAMWATCH_LEASE_S", "1")
    land(local, context, "d1", ["a"], at=T0)
    real_publish, crashes = events.publish, []

    def crash_once(*args, **kwargs):
        if not crashes:
            crashes.append(1)
            raise ConnectionError("crash after the READY transition, before PutEvents")
        return real_publish(*args, **kwargs)

    monkeypatch.setattr(events, "publish", crash_once)
    store = Store(local.resources.table)
    # When the chain runs until the declaring tick crashes
    fake_clock.t = T0 + 1
    failed_body = drive_until_a_delivery_fails(local, context, fake_clock)  # the declaring tick crashes
    # Then d1 is READY but not published, its Ready still pending, and nothing is on the bus
    state = store.get_state("d1")
    assert state.status == "READY" and not state.published and "ready" in state.pending
    assert published(local) == []
    # A message inside the publisher's lease publishes nothing: it sends itself a check for after the lease
    assert deliver(failed_body, context) and published(local) == []
    assert 1 <= fake_clock.wall_delays[-1] <= 2.01  # the lease (1 s here) left, plus a second
    (check,) = [m["Body"] for m in drain(local.resources.observer_queue_url)]
    assert json.loads(check)["kind"] == "nudge"
    # After the lease (the publisher died), that check and SQS's redelivery publish it, once
    fake_clock.wall_t += 3600
    assert deliver(check, context) and deliver(failed_body, context) and deliver(check, context)
    assert [e["detail-type"] for e in published(local)] == ["Dataset Ready"]
    assert store.get_state("d1").published


def test_late_object_after_ready_is_announced_as_amended_once(moto_env, context, fake_clock):
    # Given d1's Ready for its 2 objects
    settings, local = moto_env(Settings(mode="stability", min_quiet_s=300, buffer_interval_s=300))
    land(local, context, "d1", ["a", "b"], at=T0)
    fake_clock.t = T0 + 1
    run_observer(local, context, fake_clock)
    assert [e["detail"]["objects"] for e in published(local)] == [2]
    # When a straggler lands after the Ready (and its notification is delivered twice)
    late = fake_clock.t + 100
    land(local, context, "d1", ["late"], at=late)
    land(local, context, "d1", ["late"], at=late)
    run_observer(local, context, fake_clock, duplicate=True)
    # Then one Dataset Amended with 3 objects, event_id d1:amended:3
    amended = published(local)
    assert [(e["detail-type"], e["detail"]["objects"], e["detail"]["event_id"]) for e in amended] == [
        ("Dataset Amended", 3, "d1:amended:3")]


def test_hard_cap_ends_in_stalled(moto_env, context, fake_clock):
    # Given stability mode wanting 10 objects, a 1,800 s cap on observation, and d1 with only one
    settings, local = moto_env(Settings(mode="stability", min_objects=10, max_observation_s=1800))
    land(local, context, "d1", ["only-one"], at=T0)
    # When the observer runs d1's chain
    fake_clock.t = T0 + 1
    run_observer(local, context, fake_clock)
    # Then one Dataset Stalled, with its one object and a reason naming the hard cap
    stalled = published(local)
    assert [e["detail-type"] for e in stalled] == ["Dataset Stalled"]
    assert stalled[0]["detail"]["objects"] == 1 and "hard cap" in stalled[0]["detail"]["reason"]


def test_missing_state_item_is_a_failure_not_a_silent_drop(moto_env, context, fake_clock):
    # Given a tick for a dataset that has no state item
    settings, local = moto_env()
    body = json.dumps({"dataset_id": "ghost", "tick": 0, "kind": "tick"})
    # When it is delivered
    # Then its delivery fails
    assert not deliver(body, context)
    # in a batch with other messages, only it is reported
    result = observer.handler(sqs_event([body, "{junk"], ids=["ghost-1", "junk"]), context)
    assert result == {"batchItemFailures": [{"itemIdentifier": "ghost-1"}]}


def test_foreign_message_on_the_observer_queue_is_skipped(moto_env, context, fake_clock):
    # Given a message that is not JSON and one whose dataset id is invalid
    settings, local = moto_env()
    # When the observer handles them in one batch
    # Then no message fails
    assert observer.handler(sqs_event(["{nope", json.dumps({"dataset_id": "a/b"})]), context) == {
        "batchItemFailures": []}


def test_stale_tick_is_dropped_and_forks_no_second_chain(moto_env, context, fake_clock):
    # Given d1's chain started, its tick 0 on the observer queue
    settings, local = moto_env(Settings(mode="stability"))
    land(local, context, "d1", ["a"], at=T0)
    fake_clock.t = T0 + 1
    # When tick 0 is delivered
    first = drain(local.resources.observer_queue_url)[0]["Body"]
    observer.handler(sqs_event([first]), context)  # tick 0 -> 1, sends tick 1
    # Then it sends tick 1
    assert len(drain(local.resources.observer_queue_url)) == 1
    # And delivered again it is stale: it sends nothing, so no second chain
    observer.handler(sqs_event([first]), context)  # tick 0 again: stale
    assert drain(local.resources.observer_queue_url) == []


def register(settings, local, dataset_id: str, producers: list[str], **kwargs) -> Store:
    store = Store(local.resources.table)
    start_run(settings, Resources.from_env(os.environ), dataset_id, producers, store=store, **kwargs)
    return store


def test_records_mode_is_ready_as_soon_as_every_record_landed_duplicates_counted_once(moto_env, context,
                                                                                      fake_clock):
    # Given a run of 2 producers (auto mode: records, since they will report counts)
    settings, local = moto_env()
    store = register(settings, local, "r1", ["p1", "p2"])
    land_records(local, context, "r1", "a", "p1", range(0, 2), at=T0)
    land_records(local, context, "r1", "a-again", "p1", range(0, 2), at=T0 + 1)  # Firehose wrote it twice
    fake_clock.t = T0 + 5
    run_observer(local, context, fake_clock, max_steps=2, expect_end=False)  # chain started, waiting
    store.report_done("r1", "p1", 2, T0 + 5)
    store.report_done("r1", "p2", 1, T0 + 6)
    # When the last object lands, the monitor nudges and the observer declares at once
    fake_clock.t = T0 + 10
    land_records(local, context, "r1", "b", "p2", range(0, 1), at=T0 + 10)
    messages = [m["Body"] for m in drain(local.resources.observer_queue_url)]
    nudges = [b for b in messages if json.loads(b)["kind"] == "nudge"]
    assert nudges, messages
    assert deliver(nudges[0], context)
    # Then one Dataset Ready by records: 3 records, each counted once though 2 landed twice
    ready = published(local)
    assert [e["detail-type"] for e in ready] == ["Dataset Ready"]
    d = ready[0]["detail"]
    assert (d["records"], d["producers"]["records_sent"], d["objects"], d["mode"]) == (3, 3, 3, "records")
    assert d["record_counts"] == {"distinct": 3, "duplicates": 2, "foreign": 0, "error_output": 0}


def test_a_failed_producer_ends_the_dataset_with_one_failed_even_before_anything_landed(moto_env, context,
                                                                                        fake_clock):
    # Given a registered run (its chain starts at registration) and nothing landed yet
    settings, local = moto_env()
    store = register(settings, local, "f1", ["a", "b"])
    fake_clock.t = T0 + 5
    # When producer b reports failure, twice (a retry), and every observer message is delivered twice
    assert store.report_failed("f1", "b", "ValueError: bad row 17", T0 + 5)
    assert not store.report_failed("f1", "b", "ValueError: bad row 17", T0 + 6)
    from streamwatch.runtime.chain import nudge
    nudge(settings, Resources.from_env(os.environ), store, "f1", always=True)
    run_observer(local, context, fake_clock, duplicate=True)
    # Then exactly one Dataset Failed naming the producer and its error
    failed = published(local)
    assert [e["detail-type"] for e in failed] == ["Dataset Failed"]
    assert failed[0]["detail"]["failure"] == "producer b failed: ValueError: bad row 17"
    assert failed[0]["detail"]["objects"] == 0 and failed[0]["detail"]["producers"]["failed"] == 1
    # And objects that land afterwards produce no Ready (and no Amended)
    land_records(local, context, "f1", "late", "a", range(0, 3), at=T0 + 50)
    store.report_done("f1", "a", 3, T0 + 51)
    run_observer(local, context, fake_clock, duplicate=True)
    assert published(local) == []


def test_overdue_once_under_duplicated_and_delayed_messages_then_ready_still_comes(moto_env, context, fake_clock):
    # Given a run expected within 600 s, whose data lands later than that
    settings, local = moto_env(Settings(mode="stability", min_quiet_s=300, buffer_interval_s=300))
    register(settings, local, "late-run", [], deadline_ts=T0 + 600)
    land(local, context, "late-run", ["a"], at=T0 + 700)
    fake_clock.t = T0 + 1
    # When every observer message is delivered twice
    run_observer(local, context, fake_clock, duplicate=True)
    got = published(local)
    # Then one Overdue (after the deadline), and the Ready when it is due
    assert [e["detail-type"] for e in got] == ["Dataset Overdue", "Dataset Ready"]
    overdue = got[0]["detail"]
    assert overdue["event_id"] == "late-run:overdue" and overdue["deadline_at"].startswith("2026-11-23T10:10:00")
    assert overdue["declared_at"] is None


def test_a_default_deadline_applies_to_unregistered_datasets(moto_env, context, fake_clock):
    # Given a 900 s default deadline, a 3,600 s cap, and an unregistered dataset with 1 of the 5 objects it needs
    settings, local = moto_env(Settings(mode="stability", min_objects=5, deadline_s=900, max_observation_s=3600))
    land(local, context, "slow", ["a"], at=T0)
    # When the observer runs its chain, every message delivered twice
    fake_clock.t = T0 + 1
    run_observer(local, context, fake_clock, duplicate=True)
    # Then one Overdue, then one Stalled
    assert [e["detail-type"] for e in published(local)] == ["Dataset Overdue", "Dataset Stalled"]


def test_a_backlog_in_the_monitor_holds_the_stability_declaration(moto_env, context, fake_clock, monkeypatch):
    # Given notifications waiting in the queue since long before the count last changed
    settings, local = moto_env(Settings(mode="stability", min_quiet_s=300, buffer_interval_s=300))
    land(local, context, "d1", ["a"], at=T0)
    store = Store(local.resources.table)
    fake_clock.t = T0 + 1
    monkeypatch.setattr("streamwatch.runtime.observer.Observer.backlog_s", lambda self: fake_clock.t - T0 + 5)
    outcomes = run_observer(local, context, fake_clock, expect_end=False, max_steps=15)
    assert published(local) == [] and store.get_state("d1").status == "OBSERVING" and outcomes
    # When the monitor caught up
    monkeypatch.setattr("streamwatch.runtime.observer.Observer.backlog_s", lambda self: 0.0)
    run_observer(local, context, fake_clock)
    # Then it declares
    assert [e["detail-type"] for e in published(local)] == ["Dataset Ready"]


def test_backlog_is_measured_from_the_queue_and_the_monitors_batches(moto_env, context, fake_clock):
    # Given the observer, and the notification queue drained of S3's test events
    from streamwatch.runtime.observer import Observer
    settings, local = moto_env()
    obs = Observer(settings, Resources.from_env(os.environ))
    store = Store(local.resources.table)
    drain(local.notification_queue_url)  # S3's test events
    # When the backlog is measured with nothing waiting
    # Then it is 0
    assert obs.backlog_s() == 0.0  # nothing waiting, nothing in flight
    # And a waiting message is as old as the last batch's oldest, or infinitely old before any batch ended
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=local.notification_queue_url, MessageBody="{}")
    assert obs.backlog_s() == float("inf")  # waiting, and the monitor never finished a batch
    store.end_batch("b0", T0 - 100, T0 - 130)
    assert obs.backlog_s() == pytest.approx(130, abs=1)  # waiting: at least as old as the last batch's oldest now
    # A batch being counted right now (its messages in flight, none waiting) holds a message sent 100 s ago
    sqs.receive_message(QueueUrl=local.notification_queue_url, VisibilityTimeout=600)
    store.start_batch("b1", T0 - 1, T0 - 100)
    store.end_batch("b2", T0, T0 - 2)  # a younger batch that ended meanwhile does not hide it
    assert obs.backlog_s() == pytest.approx(100, abs=1)
    store.end_batch("b1", T0, T0 - 100)
    store.end_batch("b3", T0, T0 - 2)
    assert obs.backlog_s() == pytest.approx(2, abs=1)  # in flight, no batch recorded: the last batch's oldest


def test_registered_after_the_first_object_the_dataset_switches_to_records_at_once(moto_env, context, fake_clock):
    # Given an unregistered dataset whose chain runs by stability
    settings, local = moto_env()
    land_records(local, context, "sw", "a", "p", range(0, 4), at=T0)
    fake_clock.t = T0 + 2
    run_observer(local, context, fake_clock, max_steps=1, expect_end=False)
    # When a run registers it and the producer reports its count
    store = register(settings, local, "sw", ["p"])
    store.report_done("sw", "p", 4, T0 + 3)
    from streamwatch.runtime.chain import nudge
    assert nudge(settings, Resources.from_env(os.environ), store, "sw")
    run_observer(local, context, fake_clock)
    # Then it is declared by records, long before a quiet window could pass
    ready = published(local)
    assert [e["detail"]["mode"] for e in ready] == ["records"]
    declared = datetime.fromisoformat(ready[0]["detail"]["declared_at"].replace("Z", "+00:00")).timestamp()
    assert declared - T0 < 60


def test_a_putevents_client_error_is_counted_as_not_published_and_retried(moto_env, context, fake_clock,
                                                                         monkeypatch, capsys):
    # Given a declaration whose PutEvents fails with botocore's errors (not ConnectionError): AccessDenied, say
    from botocore.exceptions import ClientError, EndpointConnectionError
    settings, local = moto_env(Settings(mode="stability", min_quiet_s=300, buffer_interval_s=300))
    monkeypatch.setenv("STREAMWATCH_LEASE_S", "1")
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    land(local, context, "d1", ["a"], at=T0)
    errors = [ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "PutEvents"),
              EndpointConnectionError(endpoint_url="https://events.us-east-1.amazonaws.com")]
    client = events.aws.client("events")
    real_put = client.put_events

    def failing_put(**kwargs):
        if errors:
            raise errors.pop(0)
        return real_put(**kwargs)
    monkeypatch.setattr(client, "put_events", failing_put)
    # When the chain runs, each failed delivery handed out again, a publish lease apart
    fake_clock.t = T0 + 1
    failures = 0
    for _ in range(200):
        messages = drain(local.resources.observer_queue_url)
        if not messages:
            break
        for m in messages:
            if not deliver(m["Body"], context, message_id=m["MessageId"]):
                failures += 1  # SQS hands the failed message out again after its visibility timeout
                boto3.client("sqs").send_message(QueueUrl=local.resources.observer_queue_url, MessageBody=m["Body"])
        fake_clock.t += 60
        fake_clock.wall_t += 120  # the publish lease is wall time: each round comes after the last one's lease
    # Then each failure was the EventsNotPublished metric and a retried message, and one Ready came in the end
    assert not errors and failures >= 1
    assert capsys.readouterr().out.count('"EventsNotPublished":[') == failures == 2  # one EMF value each
    assert [e["detail-type"] for e in published(local)] == ["Dataset Ready"]


def test_every_write_after_a_claim_is_fenced_on_its_lease(moto_env, context, fake_clock):
    # Given a declaration whose publisher's lease another message took over (it assumed a crash)
    from streamwatch.core.policy import Decision, Progress
    settings, local = moto_env(Settings(mode="stability"))
    land(local, context, "d1", ["a"], at=T0)
    store = Store(local.resources.table)
    first = time.time() + 60
    assert store.declare("d1", Decision("ready", 0, Progress(), "test"), T0 + 1, lease_until=first)
    second = first + 60
    assert store.renew_lease("d1", "ready", first, second)
    assert not store.renew_lease("d1", "ready", first, second + 1)  # the old token cannot renew again
    # When the first publisher comes back and records its event as sent
    # Then it is refused
    assert not store.mark_sent("d1", "ready", lease=first, objects=1)
    assert store.get_state("d1").pending == {"ready": pytest.approx(second, abs=1e-3)}  # stored to the ms
    assert not store.get_state("d1").published
    # And the holder's own write goes through
    assert store.mark_sent("d1", "ready", lease=second, objects=1)
    assert store.get_state("d1").published and store.get_state("d1").pending == {}


@pytest.mark.parametrize("short", ["lease", "invocation"])
def test_a_publisher_with_too_little_left_lets_the_next_holder_publish(moto_env, context, fake_clock, monkeypatch,
                                                                      short):
    # Given a declaring invocation whose lease, or whose invocation, has less left than PutEvents may take
    from streamwatch.runtime import observer as observing
    settings, local = moto_env(Settings(mode="stability", min_quiet_s=300, buffer_interval_s=300))
    monkeypatch.setenv("STREAMWATCH_LEASE_S", "1")  # PutEvents' budget scales with it: 1/3 s
    land(local, context, "d1", ["a"], at=T0)
    real_lease = observing.Observer._lease
    if short == "lease":
        monkeypatch.setattr(observing.Observer, "_lease", lambda self: real_lease(self) - 0.8)
    else:
        monkeypatch.setattr(context, "get_remaining_time_in_millis", lambda: 100, raising=False)
    # When the chain runs until it declares
    fake_clock.t = T0 + 1
    outcomes = run_observer(local, context, fake_clock, max_steps=50, expect_end=False, until=T0 + 3000)
    # Then it claimed the Ready but published nothing: it sent itself a check for when its lease ends
    state = Store(local.resources.table).get_state("d1")
    assert state.status == "READY" and "ready" in state.pending and published(local) == []
    assert outcomes and all(o == "ok" for o in outcomes)
    # When that check comes after the lease, with a full lease of its own
    monkeypatch.setattr(observing.Observer, "_lease", real_lease)
    monkeypatch.setattr(context, "get_remaining_time_in_millis", lambda: 30_000, raising=False)
    fake_clock.wall_t += 3600  # the lease is over
    run_observer(local, context, fake_clock)
    # Then it publishes, once
    assert [e["detail-type"] for e in published(local)] == ["Dataset Ready"]
    assert Store(local.resources.table).get_state("d1").published


def test_a_takeover_after_a_lost_mark_sent_announces_later_objects_as_amended(moto_env, context, fake_clock,
                                                                              monkeypatch):
    # Given a Ready out on the bus with 1 object whose publisher died before recording it (its mark_sent lost)
    settings, local = moto_env(Settings(mode="stability", min_quiet_s=300, buffer_interval_s=300))
    monkeypatch.setenv("STREAMWATCH_LEASE_S", "1")
    land(local, context, "d1", ["a"], at=T0)
    store = Store(local.resources.table)
    real_mark = Store.mark_sent
    lost = []

    def lose_first(self, *args, **kwargs):
        if not lost:
            lost.append(1)
            raise ConnectionError("chaos: killed right after PutEvents")
        return real_mark(self, *args, **kwargs)
    monkeypatch.setattr(Store, "mark_sent", lose_first)
    fake_clock.t = T0 + 1
    failed_body = drive_until_a_delivery_fails(local, context, fake_clock)  # dies after its PutEvents
    assert [e["detail"]["objects"] for e in published(local)] == [1] and "ready" in store.get_state("d1").pending
    # When a copy of a delivery lands and is counted, and the next holder takes over after the lease
    land(local, context, "d1", ["b"], at=T0 + 5)
    fake_clock.wall_t += 3600
    assert deliver(failed_body, context)  # SQS hands the dead invocation's message out again
    run_observer(local, context, fake_clock, expect_end=False)
    # Then the repeat (same event_id) is followed by a Dataset Amended with both objects: a consumer that drops
    # the repeat still hears of the second object
    kinds = [(e["detail-type"], e["detail"]["objects"]) for e in published(local)]  # the events since the first
    assert kinds == [("Dataset Ready", 2), ("Dataset Amended", 2)], kinds
