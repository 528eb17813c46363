"""`streamwatch demo`: several datasets streamed at once through the real handlers on a local moto server,
with live progress, every event as it arrives, a summary, and checks that fail the run when anything is off:
a count, a dataset without exactly one Ready, a message in a DLQ."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from streamwatch import clock
from streamwatch.events import AMENDED, READY, STALLED, parse_iso
from streamwatch.local.sandbox import Chaos, Sandbox
from streamwatch.s3_events import dataset_of_key
from streamwatch.settings import Settings
from streamwatch.store import Store

# (dataset, [(producer, records, start, duration)]), start and duration in Firehose buffer intervals, so the
# proportions hold for any settings. "sensors" has a slow producer that starts after the others are done.
DEFAULT_SCENARIO = [
    ("orders", [(f"p{i}", 5000, 0, 2.0) for i in range(1, 5)]),
    ("clicks", [(f"p{i}", 3000, 0.1 * i, 1.5) for i in range(1, 7)]),
    ("sensors", [*[(f"p{i}", 8000, 0, 1.2) for i in range(1, 4)], ("slow", 2000, 1.8, 0.5)]),
    ("audit", [("p1", 500, 0, 0.2), ("p2", 500, 0.05, 0.2)]),
]
SMALL_SCENARIO = [
    ("alpha", [("p1", 1500, 0, 1.5), ("p2", 1000, 0.2, 1.2)]),
    ("beta", [("p1", 800, 0, 0.6), ("slow", 400, 1.3, 0.3)]),
]


def cdk_settings(overrides: dict) -> Settings:
    """The settings in cdk.json's context (what `cdk deploy` would use), with the command line's overrides."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (base / "cdk.json").exists():
            context = json.loads((base / "cdk.json").read_text()).get("context", {})
            break
    else:
        context = {}
    names = {f.name for f in fields(Settings)}
    return Settings.from_mapping({**{k: v for k, v in context.items() if k in names}, **overrides})


@dataclass
class DatasetSummary:
    dataset_id: str
    records_sent: int
    records_persisted: int
    records_counted: int | None
    records_failed: int
    objects_landed: int
    objects_counted: int
    ready: int
    amended: int
    stalled: int
    latency_s: float | None  # Ready's declaration after the last landing, virtual seconds
    ok: bool
    problems: list[str]


def run_demo(settings: Settings, *, scenario=DEFAULT_SCENARIO, speed: float = 60.0, chaos: Chaos | None = None,
             timeout_s: float = 150.0, log=print) -> dict:
    chaos = chaos or Chaos()
    t_start = time.monotonic()
    log(f"streamwatch demo: {len(scenario)} datasets, mode={settings.mode}, buffer {settings.buffer_interval_s} s, "
        f"quiet window {settings.quiet_s} s, clock x{speed:g}" + (f", chaos {asdict(chaos)}" if chaos.on() else ""))
    with Sandbox(settings, speed=speed, chaos=chaos, log=log) as sb:
        log(f"moto server on {sb.endpoint}; bucket {sb.resources.bucket}, table {sb.resources.table}")
        origin = clock.get().now()
        for dataset_id, producers in scenario:
            unit = settings.buffer_interval_s
            sb.start_dataset(dataset_id, [{"producer_id": p, "records": n, "start_s": start * unit,
                                           "duration_s": dur * unit} for p, n, start, dur in producers])
        store = Store(sb.resources.table, table=sb.table.Table(sb.resources.table))
        ids = [d for d, _ in scenario]
        last_print = 0.0
        while time.monotonic() - t_start < timeout_s:
            time.sleep(0.25)
            ready = {e["detail"]["dataset_id"] for e in sb.events if e["detail-type"] in (READY, STALLED)}
            if time.monotonic() - last_print >= 1.0:
                last_print = time.monotonic()
                log(progress_line(sb, store, ids, clock.get().now() - origin))
            if ready >= set(ids) and sb.quiet():
                break
        else:
            log(f"timed out after {timeout_s:.0f} s")
        time.sleep(1.5)  # let late duplicates and their (dropped) follow-ups pass through
        summary = summarize(sb, store, ids, chaos)
    summary["elapsed_s"] = round(time.monotonic() - t_start, 1)
    print_summary(summary, log)
    return summary


def progress_line(sb: Sandbox, store: Store, ids: list[str], t: float) -> str:
    states, _ = store.get_states(ids)
    landed = {d: len(v) for d, v in sb.firehose.delivered.items()}
    done = {}
    for r in list(sb.reports):
        done[r.dataset_id] = done.get(r.dataset_id, 0) + 1
    parts = []
    for d in ids:
        s = states.get(d)
        expected = s.producers_expected if s and s.producers_expected else "?"
        parts.append(f"{d}: producers {done.get(d, 0)}/{expected} landed {landed.get(d, 0)} counted "
                     f"{s.objects if s else 0} tick {s.tick if s else 0} {s.status if s else 'WAITING'}")
    return f"[t={t:6.0f}s] " + " | ".join(parts)


def summarize(sb: Sandbox, store: Store, ids: list[str], chaos: Chaos) -> dict:
    listing: dict[str, list[str]] = {d: [] for d in ids}
    for page in sb.s3.get_paginator("list_objects_v2").paginate(Bucket=sb.resources.bucket,
                                                              Prefix=sb.settings.data_prefix):
        for obj in page.get("Contents", []):
            d = dataset_of_key(obj["Key"], sb.settings.data_prefix)
            if d in listing:
                listing[d].append(obj["Key"])
    states, _ = store.get_states(ids)
    rows = []
    for d in ids:
        state = states.get(d)
        persisted = sum(sb.s3.get_object(Bucket=sb.resources.bucket, Key=k)["Body"].read().count(b"\n")
                        for k in listing[d])
        reports = [r for r in sb.reports if r.dataset_id == d]
        mine = [e for e in sb.events if e["detail"]["dataset_id"] == d]
        kinds = [e["detail-type"] for e in mine]
        ready = [e for e in mine if e["detail-type"] == READY]
        landings = [t for _k, _n, t in sb.firehose.delivered.get(d, [])]
        latency = None
        if ready and landings:
            latency = round(parse_iso(ready[0]["detail"]["declared_at"]) - max(landings), 1)
        problems = []
        sent = sum(r.records_sent for r in reports)
        if not state or state.objects != len(listing[d]):
            problems.append(f"counted {state.objects if state else 0} objects, S3 has {len(listing[d])}")
        if persisted != sent:
            problems.append(f"{sent} records sent, {persisted} persisted")
        if sb.settings.count_records and state and state.records != persisted:
            problems.append(f"counted {state.records} records, {persisted} persisted")
        if kinds.count(READY) != 1:
            problems.append(f"{kinds.count(READY)} Ready events")
        elif ready[0]["detail"]["objects"] != len(listing[d]):
            problems.append(f"Ready announced {ready[0]['detail']['objects']} of {len(listing[d])} objects")
        if any(r.failed for r in reports):
            problems.append(f"{sum(len(r.failed) for r in reports)} records refused by Firehose")
        rows.append(DatasetSummary(
            dataset_id=d, records_sent=sent, records_persisted=persisted,
            records_counted=state.records if state else None, records_failed=sum(len(r.failed) for r in reports),
            objects_landed=len(listing[d]), objects_counted=state.objects if state else 0,
            ready=kinds.count(READY), amended=kinds.count(AMENDED), stalled=kinds.count(STALLED),
            latency_s=latency, ok=not problems, problems=problems))
    dlq = sb.dlq_depths()
    pollers = {p.name: asdict(p.stats) for p in sb.pollers}
    return {"ok": all(r.ok for r in rows) and not any(dlq.values()), "mode": sb.settings.mode,
            "dynamodb_calls_throttled": sb.throttled, "mid_batch_crashes": sb.mid_batch_crashes,
            "datasets": [asdict(r) for r in rows], "dlq": dlq, "pollers": pollers, "chaos": asdict(chaos),
            "firehose_error_records": sb.firehose.errors,
            "put_retries": sum(r.retries for r in sb.reports)}


def print_summary(summary: dict, log=print) -> None:
    log("")
    log(f"{'dataset':10s} {'records sent/persisted':>23s} {'objects landed/counted':>23s} "
        f"{'Ready':>5s} {'Amended':>7s} {'latency s':>9s}  verdict")
    for r in summary["datasets"]:
        latency = "-" if r["latency_s"] is None else f"{r['latency_s']:+.0f}"
        log(f"{r['dataset_id']:10s} {r['records_sent']:>11d}/{r['records_persisted']:<11d} "
            f"{r['objects_landed']:>11d}/{r['objects_counted']:<11d} {r['ready']:>5d} {r['amended']:>7d} "
            f"{latency:>9s}  {'ok' if r['ok'] else 'WRONG: ' + '; '.join(r['problems'])}")
    log(f"DLQs: {summary['dlq']}; pollers: {summary['pollers']}; PutRecordBatch retries: {summary['put_retries']}; "
        f"DynamoDB calls throttled: {summary['dynamodb_calls_throttled']}; monitor crashes mid-batch: "
        f"{summary['mid_batch_crashes']}")
    log("latency: the Ready's declaration after the dataset's last object landed, in pipeline seconds")
    log("RESULT: " + ("every dataset exact, exactly one Ready each, nothing in a DLQ" if summary["ok"]
                      else "SOMETHING IS WRONG (see above)"))


__all__ = ["DEFAULT_SCENARIO", "SMALL_SCENARIO", "Chaos", "cdk_settings", "run_demo"]
