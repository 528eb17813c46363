"""Scheduled work: empty windows get exactly one Ready under duplicated schedules; late objects after a window's
Ready give one Amended; windows from before streamwatch was watching are left alone; the heartbeat."""

from __future__ import annotations

import json

from streamwatch.core.settings import Settings
from streamwatch.handlers import scheduler
from streamwatch.state.store import Store
from tests.conftest import drain, s3_message, s3_record, sqs_event
from tests.handlers.conftest import T0, land, published, run_observer

HOURLY = Settings(buffer_interval_s=60, datasets=({"pattern": "logs/{yyyy}/{MM}/{dd}/{HH}/", "name": "hourly",
                                                   "mode": "window", "emit_empty": True},))


def close(context, fake_clock, at: float, times: int = 1) -> list[str]:
    fake_clock.t = at
    opened = []
    for _ in range(times):
        opened += scheduler.handler({"action": "close_windows"}, context)["opened"]
    return opened


def test_an_empty_window_gets_exactly_one_ready_under_duplicated_schedules(moto_env, context, fake_clock):
    # Given an hourly window rule that emits empty windows, and the schedule's first run at 10:00:05
    settings, local = moto_env(HOURLY)
    drain(local.notification_queue_url)  # S3's test events: no backlog
    assert close(context, fake_clock, T0 + 5) == []  # the first run: watching from now, nothing before it
    # When the 10:00-11:00 window ends empty and the schedule fires three times (and again an hour later)
    assert close(context, fake_clock, T0 + 3600 + 2, times=3) == ["hourly~2026-11-23T10"] * 3
    run_observer(local, context, fake_clock, duplicate=True)
    close(context, fake_clock, fake_clock.t + 3600)
    run_observer(local, context, fake_clock, duplicate=True)
    got = published(local)
    # Then exactly one Ready each, objects 0, with the window's bounds
    ready = {e["detail"]["dataset_id"]: e["detail"] for e in got if e["detail-type"] == "Dataset Ready"}
    assert [e["detail-type"] for e in got].count("Dataset Ready") == len(ready) == 2
    first = ready["hourly~2026-11-23T10"]
    assert first["objects"] == 0 and first["mode"] == "window" and first["prefix"] == "logs/2026/11/23/10/"
    assert (first["window_start"], first["window_end"]) == ("2026-11-23T10:00:00.000Z", "2026-11-23T11:00:00.000Z")
    declared = json.loads(json.dumps(first))["declared_at"]
    assert declared >= "2026-11-23T11:02:30"  # never before its end plus the grace (1.5 x 60 + 60 s)


def test_a_window_with_objects_is_ready_after_its_grace_and_a_late_object_is_one_amended(moto_env, context,
                                                                                       fake_clock):
    # Given the hourly rule watching from 10:00, and two objects of the 10:00 hour, the last landing at 11:01:10
    settings, local = moto_env(HOURLY)
    b = local.resources.bucket

    def land_at(name: str, at: float) -> None:
        from datetime import UTC, datetime
        when = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        drain(local.notification_queue_url)
        from streamwatch.handlers import monitor
        monitor.handler(sqs_event([s3_message(s3_record(b, f"logs/2026/11/23/10/{name}", 7, when=when))]), context)
    close(context, fake_clock, T0)
    land_at("a", T0 + 100)
    land_at("b", T0 + 3600 + 70)  # the hour's last buffer lands after the hour (arrival-time prefix)
    # When the schedule fires after the hour and the observer runs, every message delivered twice
    fake_clock.t = T0 + 3600 + 71
    close(context, fake_clock, T0 + 3600 + 71)
    run_observer(local, context, fake_clock, duplicate=True)
    # Then one Ready with both objects
    ready = published(local)
    assert [(e["detail-type"], e["detail"]["objects"]) for e in ready] == [("Dataset Ready", 2)]
    # a delivery retry far later than the grace: announced, once
    land_at("late", fake_clock.t + 600)
    land_at("late", fake_clock.t + 600)
    run_observer(local, context, fake_clock, duplicate=True)
    assert [(e["detail-type"], e["detail"]["objects"]) for e in published(local)] == [("Dataset Amended", 3)]


def test_the_heartbeat_names_the_stalest_chain(moto_env, context, fake_clock):
    # Given a stability chain for quiet-one that stopped after one tick
    settings, local = moto_env(Settings(mode="stability"))
    land(local, context, "quiet-one", ["a"], at=T0)
    fake_clock.t = T0 + 1
    run_observer(local, context, fake_clock, max_steps=1, expect_end=False)  # one tick, then its chain "dies"
    # When the heartbeat runs 5,000 s later
    fake_clock.t = T0 + 5000
    beat = scheduler.handler({"action": "heartbeat"}, context)
    # Then it names quiet-one, the one chain observing, as the stalest, silent at least 4,900 s, still OBSERVING
    assert beat["observing"] == 1 and beat["stalest"] == "quiet-one" and beat["silence_s"] >= 4900
    assert Store(local.resources.table).get_state("quiet-one").status == "OBSERVING"
