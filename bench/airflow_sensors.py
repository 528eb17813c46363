"""Airflow benchmark (issue 22): on one landing trace, when does each way of waiting in Airflow resume after the
data is complete, and what does it cost? Run with the Airflow tier's venv: `.venv-airflow/bin/python
bench/airflow_sensors.py` (after `make airflow`).

One local run (the real handlers, moto on 127.0.0.1, Firehose buffering 300 s, the clock at x60) lands one
dataset written by two registered producers: p0 for 10 minutes, then, after a 12-minute pause, p1 for 8 more (a
slow upstream job). Beside it, in the same process and on the same pipeline clock, wait:
- `StreamwatchDatasetSensor`'s trigger (the deferrable path), polling every 30 s (its default);
- the amazon provider's `S3KeysUnchangedSensor` at its defaults (inactivity_period 3,600 s, poke_interval 60 s);
- `S3KeysUnchangedSensor` at inactivity_period 600 s.
Each S3 sensor's own `poke` runs at its interval; its clock (`datetime.now` in its module) is the pipeline clock,
so its inactivity is measured in the same pipeline seconds as the landing. Counted: S3 listing calls (LIST
requests, every page), state-table reads, and whether each resumed before the data was complete (with how many
of the objects it had seen). "Complete" is the dataset's last object landing (the state item's last_object_ts).
Latency = resume - complete, in pipeline seconds. Rounds are repeated (--rounds); medians are reported. Writes
the "airflow" section of docs/benchmarks.md and the README's block. JSON line last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime as _datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lambdas"))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="streamwatch-bench-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

SPEED = 60.0
TRACE = [{"producer_id": "p0", "records": 2000, "start_s": 0, "duration_s": 600},
         {"producer_id": "p1", "records": 1000, "start_s": 1320, "duration_s": 480}]
CONTENDERS = [("streamwatch", None, 30), ("s3_unchanged_default", 3600, 60), ("s3_unchanged_600", 600, 60)]


def one_round() -> dict:
    from airflow.providers.amazon.aws.sensors import s3 as s3_sensors

    from streamwatch.airflow.triggers import StreamwatchDatasetTrigger
    from streamwatch.core import clock
    from streamwatch.core.settings import Settings
    from streamwatch.local.sandbox import Sandbox
    from streamwatch.state.store import Store

    class PipelineTime(_datetime):
        @classmethod
        def now(cls, tz=None):
            return _datetime.fromtimestamp(clock.get().now(), tz)
    s3_sensors.datetime = PipelineTime  # the sensor's inactivity, on the pipeline clock
    settings = Settings(buffer_interval_s=300, alarms=False)
    results: dict[str, dict] = {}
    with Sandbox(settings, speed=SPEED, log=lambda s: None) as sb:
        rule = settings.rules.stream_rule
        dataset_id = "orders"
        prefix = rule.prefix_of(dataset_id)
        stop = threading.Event()

        def s3_sensor(name: str, inactivity: float, poke_s: float) -> None:
            sensor = s3_sensors.S3KeysUnchangedSensor(task_id=name, bucket_name=sb.resources.bucket, prefix=prefix,
                                                      inactivity_period=inactivity, aws_conn_id=None)
            listings = [0]
            sensor.hook.conn.meta.events.register("before-call.s3.ListObjectsV2",
                                                   lambda **kw: listings.__setitem__(0, listings[0] + 1))
            t = clock.get().now()
            while not stop.is_set():
                done = sensor.poke({})
                if done:
                    results[name] = {"resumed_at": clock.get().now(), "listings": listings[0],
                                     "objects_seen": len(sensor.previous_objects), "reads": 0}
                    return
                t += poke_s
                while clock.get().now() < t and not stop.is_set():
                    time.sleep(0.01)

        def streamwatch_trigger(poll_s: float) -> None:
            trigger = StreamwatchDatasetTrigger(dataset_id=dataset_id, table=sb.resources.table,
                                                bucket=sb.resources.bucket, settings=settings.changed(),
                                                aws_conn_id=None, poll_interval=poll_s / SPEED)

            async def wait():
                async for event in trigger.run():
                    return event.payload
            payload = asyncio.run(wait())
            results["streamwatch"] = {"resumed_at": clock.get().now(), "listings": 0, "reads": payload["polls"],
                                      "objects_seen": payload["detail"]["objects"]}
        sb.start_dataset(dataset_id, TRACE)
        # in the sandbox's scope (core/scope.py): its clock is the pipeline's
        threads = [threading.Thread(target=sb.in_scope(streamwatch_trigger), args=(30,))]
        threads += [threading.Thread(target=sb.in_scope(s3_sensor), args=(n, i, p)) for n, i, p in CONTENDERS if i]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 4 * 3600 / SPEED
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join(timeout=5)
        state = Store(sb.resources.table, table=sb.table.Table(sb.resources.table)).get_state(dataset_id)
        complete_at, total = state.last_object_ts, state.objects
    for r in results.values():
        r["latency_s"] = round(r["resumed_at"] - complete_at, 1)
        r["early"] = r["resumed_at"] < complete_at or r["objects_seen"] < total
    return {"objects": total, "contenders": results}


def report(rounds: list[dict]) -> dict:
    out = {"rounds": len(rounds), "objects": rounds[0]["objects"], "contenders": {}}
    for name, _, _ in CONTENDERS:
        got = [r["contenders"].get(name) for r in rounds]
        if not all(got):
            out["contenders"][name] = {"resumed": f"{sum(map(bool, got))} of {len(got)} rounds"}
            continue
        out["contenders"][name] = {
            "latency_s": statistics.median(g["latency_s"] for g in got),
            "listings": statistics.median(g["listings"] for g in got),
            "reads": statistics.median(g["reads"] for g in got),
            "early": sum(g["early"] for g in got),
            "objects_seen": statistics.median(g["objects_seen"] for g in got)}
    base = out["contenders"]["streamwatch"].get("latency_s")
    for c in out["contenders"].values():
        if base and "latency_s" in c and not c["early"]:
            c["vs_streamwatch"] = round(c["latency_s"] / base, 1)
    return out


def doc(out: dict) -> tuple[str, str]:
    names = {"streamwatch": "`StreamwatchDatasetSensor` (deferred, polls every 30 s)",
             "s3_unchanged_default": "`S3KeysUnchangedSensor`, defaults (3,600 s inactivity, pokes every 60 s)",
             "s3_unchanged_600": "`S3KeysUnchangedSensor`, 600 s inactivity"}
    rows = ["| waits with | resumed after complete | S3 listings | state-table reads | resumed early |",
            "|---|---|---|---|---|"]
    for key, c in out["contenders"].items():
        if "latency_s" not in c:
            rows.append(f"| {names[key]} | did not resume ({c['resumed']}) | | | |")
            continue
        early = (f"**{c['early']} of {out['rounds']}**: saw {c['objects_seen']:.0f} of {out['objects']} objects"
                 if c["early"] else "no")
        rows.append(f"| {names[key]} | {c['latency_s']:.0f} s | {c['listings']:.0f} | {c['reads']:.0f} | {early} |")
    body = "\n".join([
        "## Airflow: when a DAG resumes (`bench/airflow_sensors.py`)", "",
        f"One dataset, {out['objects']} objects from two registered producers (10 minutes, a 12-minute pause, 8 "
        "more), Firehose buffering 300 s; pipeline seconds, medians of "
        f"{out['rounds']} rounds, every contender in the same Airflow and on the same landing trace.", "",
        *rows, ""])
    sw, default, short = (out["contenders"][k] for k in ("streamwatch", "s3_unchanged_default", "s3_unchanged_600"))

    def said(c: dict) -> str:
        if "latency_s" not in c:
            return "did not resume"
        if c["early"]:
            return (f"resumed before the data was complete ({c['objects_seen']:.0f} of {out['objects']} objects; "
                    f"{c['listings']:.0f} listings)")
        return f"resumed {c['latency_s']:.0f} s after ({c['listings']:.0f} listings)"
    readme = (f"Measured on one landing trace with a 12-minute producer pause (`bench/airflow_sensors.py`, pipeline "
              f"seconds, medians of {out['rounds']} rounds): the sensor {said(sw)}, with {sw.get('reads', 0):.0f} "
              f"state-table reads; `S3KeysUnchangedSensor` at its defaults {said(default)}; at 600 s it "
              f"{said(short)}.")
    return body, readme


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    rounds = []
    for i in range(args.rounds):
        started = time.monotonic()
        rounds.append(one_round())
        print(f"round {i + 1}: {json.dumps(rounds[-1]['contenders'])} ({time.monotonic() - started:.0f} s)",
              flush=True)
    out = report(rounds)
    body, readme = doc(out)
    print(body)
    if not args.no_doc:
        from docs_section import update_doc
        update_doc("airflow", body)
        if readme:
            update_doc("airflow", readme, path=ROOT / "README.md")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
