"""`streamwatch demo`: several datasets streamed at once through the real handlers on a local moto server,
with live progress (one line per dataset, refreshed in place in a terminal), every event as it arrives, a
summary, and checks that fail the run when anything is off: a count, a record that landed twice and was counted
twice, a dataset without exactly one Ready (or Failed, where a producer was made to fail), a message in a DLQ."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from streamwatch.cli.status import plain, rich_table, row
from streamwatch.core import clock, envelope
from streamwatch.core.events import AMENDED, FAILED, READY, STALLED, parse_iso
from streamwatch.core.settings import Settings
from streamwatch.local.sandbox import Chaos, Sandbox
from streamwatch.state.store import Store

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
SCENARIOS = {"default": DEFAULT_SCENARIO, "small": SMALL_SCENARIO, "windows": SMALL_SCENARIO}
# The windows scenario: an hourly rule written by another team's stream, next to the small scenario's runs.
# The run starts 10 minutes before an hour; the writer sends for 20 minutes (across the hour, so the first
# hour's last object holds records that arrived after it, as Firehose stamps prefixes), then stops: three
# windows are judged, the last one empty. Each hour becomes a partition of a Glue table when it is Ready (the empty one
# included: an empty partition answers a query with no rows rather than a missing hour).
WINDOW_RULE = {"name": "hourly", "pattern": "logs/{yyyy}/{MM}/{dd}/{HH}/", "emit_empty": True,
               "catalog": {"database": "streamwatch_demo", "table": "web_hourly", "new_database": True,
                           "columns": [{"name": "event", "type": "bigint"}, {"name": "source", "type": "string"}]}}
WINDOW_SPEED = 240.0


def cdk_settings(overrides: dict) -> Settings:
    """The settings in cdk.json's context (what `cdk deploy` would use), with the command line's overrides."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (base / "cdk.json").exists():
            context = json.loads((base / "cdk.json").read_text()).get("context", {})
            break
    else:
        context = {}
    return Settings.from_mapping(overrides, base=Settings.from_context(context))


@dataclass
class DatasetSummary:
    dataset_id: str
    records_sent: int
    records_persisted: int  # distinct records in S3 (a record written twice counts once)
    record_lines: int  # lines in S3, duplicates included
    records_counted: int | None
    records_failed: int
    objects_landed: int
    objects_counted: int
    ready: int
    amended: int
    stalled: int
    failed: int
    latency_s: float | None  # Ready's declaration after the last landing, virtual seconds
    ok: bool
    problems: list[str]
    repeats: int = 0  # copies of an event (same event_id) whose publisher chaos killed right after PutEvents
    amended_after_gap: int = 0  # 1: declared by stability in a real quiet gap, the later objects then Amended


def run_demo(settings: Settings, *, scenario=DEFAULT_SCENARIO, speed: float = 60.0, chaos: Chaos | None = None,
             timeout_s: float = 150.0, log=print, notifications: str = "s3", fail: tuple[str, ...] = (),
             live: bool | None = None, windows: bool = False) -> dict:
    """Run `scenario`; datasets named in `fail` get a producer whose own code raises (-> one Dataset Failed);
    `windows` adds the hourly rule and its writer (see WINDOW_RULE)."""
    chaos = chaos or Chaos()
    t_start = time.monotonic()
    start = None
    if windows:  # two rules: dataset ids then start with the rule's name
        runs = {**settings.rules.stream_rule.to_spec(), "name": "runs"}
        settings = settings.with_(datasets=(runs, WINDOW_RULE))
        scenario = [(f"runs~{d}", producers) for d, producers in scenario]
        speed = max(speed, WINDOW_SPEED)
        start = (time.time() // 3600 + 1) * 3600 - 600  # 10 minutes before the next hour
    log(f"streamwatch demo: {len(scenario)} datasets, mode={settings.mode}, buffer {settings.buffer_interval_s} s, "
        f"quiet window {settings.quiet_s} s, clock x{speed:g}, notifications via {notifications}"
        + (f", chaos {asdict(chaos)}" if chaos.on() else ""))
    live = sys.stdout.isatty() if live is None else live
    with Sandbox(settings, speed=speed, chaos=chaos, log=log, notifications=notifications, start=start) as sb:
        log(f"moto server on {sb.endpoint}; bucket {sb.resources.bucket}, table {sb.resources.table}")
        window_ids = _write_windows(sb, start) if windows else []
        for dataset_id, producers in scenario:
            unit = settings.buffer_interval_s
            requests = [{"producer_id": p, "records": n, "start_s": start * unit, "duration_s": dur * unit}
                        for p, n, start, dur in producers]
            if dataset_id in fail:
                requests[-1]["fail_after"] = requests[-1]["records"] // 2
            sb.start_dataset(dataset_id, requests)
        store = Store(sb.resources.table, table=sb.table.Table(sb.resources.table))
        ids = [d for d, _ in scenario] + window_ids
        _watch(sb, store, ids, timeout_s, t_start, log, live)
        time.sleep(1.5)  # let late duplicates and their (dropped) follow-ups pass through
        summary = summarize(sb, store, ids, chaos, expect_failed=set(fail), windows=set(window_ids))
    summary["elapsed_s"] = round(time.monotonic() - t_start, 1)
    print_summary(summary, log)
    return summary


def _write_windows(sb: Sandbox, start: float) -> list[str]:
    """Another team's writer on the hourly rule: records for 20 pipeline minutes from `start`, then nothing."""
    import threading

    from streamwatch.core import scope
    from streamwatch.core.rules import window_token
    stream = sb.add_stream(WINDOW_RULE["name"])

    def write() -> None:
        t, n = start, 0
        while t < start + 1200 and not sb.stopping.is_set():
            sb.sleep_until(t)
            batch = [{"Data": json.dumps({"event": n + i, "source": "web"}).encode()} for i in range(50)]
            stream.put_record_batch(stream.stream, batch)
            n, t = n + 50, t + 20
    threading.Thread(target=scope.bound(write), name="window-writer", daemon=True).start()
    first = (start // 3600) * 3600
    return [f"{WINDOW_RULE['name']}~{window_token(first + i * 3600, 3600)}" for i in range(3)]


def _watch(sb: Sandbox, store: Store, ids: list[str], timeout_s: float, t_start: float, log, live: bool) -> None:
    """Until every dataset is declared and nothing is in flight: the status table, in place or as lines."""
    display = None
    if live:
        from rich.live import Live
        display = Live(refresh_per_second=4, transient=False)
        display.start()
    last_print, last_shown = 0.0, None
    try:
        while time.monotonic() - t_start < timeout_s:
            time.sleep(0.25)
            declared = {e["detail"]["dataset_id"] for e in sb.events if e["detail-type"] in (READY, STALLED, FAILED)}
            if time.monotonic() - last_print >= (0.25 if live else 2.0):
                last_print = time.monotonic()
                states, _ = store.get_states(ids)
                now = clock.get().now()
                rows = [row(states[d], now) for d in ids if d in states]
                if display is not None:
                    display.update(rich_table(rows, now, title=f"t = {now - sb_origin(sb):.0f} s (pipeline time)"))
                elif [(r.status, r.objects, r.producers) for r in rows] != last_shown:  # plain: on change only
                    last_shown = [(r.status, r.objects, r.producers) for r in rows]
                    log(f"[t={now - sb_origin(sb):6.0f}s]\n" + plain(rows, now))
            if declared >= set(ids) and sb.quiet():
                break
        else:
            log(f"timed out after {timeout_s:.0f} s")
    finally:
        if display is not None:
            display.stop()


def sb_origin(sb: Sandbox) -> float:
    return sb.clock.origin


def _persisted(sb: Sandbox, keys: list[str], landed: list[float]) -> tuple[int, int, float | None]:
    """Distinct enveloped records plus foreign lines, all lines, and when the data was complete: the landing of
    the object that brought the last new record (a later object can only hold copies)."""
    intervals: dict[str, list] = {}
    lines = foreign = 0
    complete_at, distinct = None, 0
    for at, key in sorted(zip(landed, keys, strict=True)):
        scan = envelope.scan([sb.s3.get_object(Bucket=sb.resources.bucket, Key=key)["Body"].read()])
        lines += scan.lines
        foreign += scan.foreign
        for producer, ranges in scan.seqs.items():
            intervals[producer] = envelope.merge(intervals.get(producer, []) + ranges)
        now_distinct = sum(envelope.size(v) for v in intervals.values()) + foreign
        if now_distinct > distinct or complete_at is None:
            distinct, complete_at = now_distinct, at
    return distinct, lines, complete_at


def summarize(sb: Sandbox, store: Store, ids: list[str], chaos: Chaos, expect_failed: set[str] = frozenset(),
              windows: set[str] = frozenset()) -> dict:
    listing: dict[str, list[str]] = {d: [] for d in ids}
    landed: dict[str, list[float]] = {d: [] for d in ids}  # when S3 stored each object, on the pipeline clock
    # The emulated streams know when they wrote each key; S3's LastModified has whole seconds, a minute at x60.
    written = {key: at for stream in sb.streams.values() for keys in list(stream.delivered.values())
               for key, _, at in keys}
    for prefix in sb.settings.rules.watched_prefixes:
        for page in sb.s3.get_paginator("list_objects_v2").paginate(Bucket=sb.resources.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                match = sb.settings.rules.match(obj["Key"])
                if sb.chaos.hostile_writer and obj["Key"] not in written:
                    continue  # the hostile writer's: no stream wrote it, so it is no part of the truth
                if match and match.dataset_id in listing:
                    listing[match.dataset_id].append(obj["Key"])
                    landed[match.dataset_id].append(
                        written.get(obj["Key"]) or clock.get().from_wall(obj["LastModified"].timestamp()))
    states, _ = store.get_states(ids)
    partitions = {tuple(p["Values"]): p["Location"] for table in sb.partitions().values() for p in table}
    rows = []
    for d in ids:
        state = states.get(d)
        persisted, lines, complete_at = _persisted(sb, listing[d], landed[d])
        reports = [r for r in sb.reports if r.dataset_id == d]
        mine = [e for e in sb.events if e["detail"]["dataset_id"] == d]
        mine, repeats = _without_explained_repeats(mine, sb.crashed_after_publish)
        kinds = [e["detail-type"] for e in mine]
        ready = [e for e in mine if e["detail-type"] == READY]
        latency = None  # the Ready after the dataset's last record landed (copies landing later do not count)
        if ready and complete_at is not None:
            latency = round(parse_iso(ready[0]["detail"]["declared_at"]) - complete_at, 1)
        problems, amended_after_gap = [], 0
        sent = sum(r.records_sent for r in reports)
        if not state or state.objects != len(listing[d]):
            problems.append(f"counted {state.objects if state else 0} objects, S3 has {len(listing[d])}")
        if d in windows:  # another team's records (no envelope): judged by the window rule, no record count
            if kinds.count(READY) != 1:
                problems.append(f"{kinds.count(READY)} Ready events")
            elif ready[0]["detail"]["objects"] != len(listing[d]):
                problems.append(f"Ready announced {ready[0]['detail']['objects']} of {len(listing[d])} objects")
            elif latency is not None and latency < 0:
                problems.append(f"Ready {-latency:.0f} s before the window's last object")
            rule = sb.settings.rules.rule_for(d)
            if rule.catalog is not None and partitions.get(tuple(rule.partition_values(d))) != (
                    f"s3://{sb.resources.bucket}/{rule.prefix_of(d)}"):
                problems.append(f"no partition of {rule.catalog.database}.{rule.catalog.table} for its Ready")
        elif d in expect_failed:
            if kinds.count(FAILED) != 1 or READY in kinds:
                problems.append(f"{kinds.count(FAILED)} Failed and {kinds.count(READY)} Ready events, expected "
                                "one Failed and no Ready")
        else:
            if persisted != sent:
                problems.append(f"{sent} records sent, {persisted} distinct records persisted")
            if state and state.records is not None and state.records != persisted:
                problems.append(f"counted {state.records} distinct records, {persisted} persisted")
            if kinds.count(READY) != 1:
                problems.append(f"{kinds.count(READY)} Ready events" + "".join(
                    f" ({e['detail']['event_id']} declared {e['detail']['declared_at']}, {e['detail']['objects']} "
                    f"objects, {e['detail']['mode']}, id {e.get('id')})" for e in ready))
            elif ready[0]["detail"]["records"] is not None:
                # declared by records: every record is in it; an object that lands later can only be a copy of
                # records already there (Firehose's at-least-once delivery), and must be announced as Amended
                announced = max([e["detail"]["objects"] for e in mine if e["detail-type"] == AMENDED] +
                                [ready[0]["detail"]["objects"]])
                if ready[0]["detail"]["records"] != persisted:
                    problems.append(f"Ready announced {ready[0]['detail']['records']} of {persisted} records")
                elif announced != len(listing[d]):
                    problems.append(f"Ready and Amended announced {announced} of {len(listing[d])} objects")
            elif ready[0]["detail"]["objects"] != len(listing[d]):
                # declared by a count rule (stability): an object after a quiet window longer than the rule's
                # may land after the Ready, as designed; it must then be announced as Amended
                quiet_s = (sb.settings.for_rule(sb.settings.rules.find(state.rule)) if state else sb.settings).quiet_s
                if _amended_after_gap(ready[0], landed[d], mine, quiet_s):
                    amended_after_gap = 1
                else:
                    problems.append(f"Ready announced {ready[0]['detail']['objects']} of {len(listing[d])} "
                                    "objects" + _late_landings(ready[0], landed[d], mine))
            if any(r.failed for r in reports):
                problems.append(f"{sum(len(r.failed) for r in reports)} records refused by Firehose")
        rows.append(DatasetSummary(
            dataset_id=d, records_sent=sent, records_persisted=persisted, record_lines=lines,
            records_counted=state.records if state else None, records_failed=sum(len(r.failed) for r in reports),
            objects_landed=len(listing[d]), objects_counted=state.objects if state else 0,
            ready=kinds.count(READY), amended=kinds.count(AMENDED), stalled=kinds.count(STALLED),
            failed=kinds.count(FAILED), latency_s=latency, ok=not problems, problems=problems, repeats=repeats,
            amended_after_gap=amended_after_gap))
    dlq = sb.dlq_depths()
    pollers = {p.name: asdict(p.stats) for p in sb.pollers}
    unexpected = [e for e in sb.producer_errors if "chaos: the producer's own code failed" not in e]
    return {"ok": all(r.ok for r in rows) and not any(dlq.values()) and not unexpected, "mode": sb.settings.mode,
            "notifications": sb.notifications, "dynamodb_calls_throttled": sb.throttled,
            "mid_batch_crashes": sb.mid_batch_crashes, "duplicated_objects": sb.firehose.duplicated_objects,
            "resent_records": sb.resent_records, "hostile_objects": sb.hostile_objects,
            "datasets": [asdict(r) for r in rows], "dlq": dlq,
            "pollers": pollers, "chaos": asdict(chaos), "firehose_error_records": sb.firehose.errors,
            "producer_errors": unexpected, "put_retries": sum(r.retries for r in sb.reports),
            "crashed_after_publish": len(sb.crashed_after_publish), "dlq_traces": sb.dlq_traces(),
            "partitions": {t: [p["Values"] for p in ps] for t, ps in sb.partitions().items()}}


def _amended_after_gap(ready: dict, landed: list[float], mine: list[dict], quiet_s: float) -> bool:
    """A stability Ready announcing k of n objects is right when the (k+1)th landing came more than the quiet
    window after the kth (nothing landed for that long: the rule's promise), and an Amended announced all n."""
    k, times = ready["detail"]["objects"], sorted(landed)
    amended = max([e["detail"]["objects"] for e in mine if e["detail-type"] == AMENDED], default=0)
    return 0 < k < len(times) and times[k] - times[k - 1] >= quiet_s and amended == len(times)


def _late_landings(ready: dict, landed: list[float], mine: list[dict]) -> str:
    """Why a Ready left objects out: when the last objects landed, against its declaration (pipeline s)."""
    declared, last = parse_iso(ready["detail"]["declared_at"]), parse_iso(ready["detail"]["last_object_at"])
    tail = ", ".join(f"{at - declared:+.0f}" for at in sorted(landed)[-3:])
    amended = [e["detail"]["objects"] for e in mine if e["detail-type"] == AMENDED]
    return (f" (the last landings {tail} s from the declaration; its last object {last - declared:+.0f} s; "
            f"Amended with {amended or 'none'})")


def _without_explained_repeats(mine: list[dict], crashed: list[str]) -> tuple[list[dict], int]:
    """A dataset's events with the copies the one remaining window explains taken out: for each time chaos
    killed a publisher right after PutEvents, one more copy of that event_id. Any other copy stays (a bug)."""
    allowed = {event_id: crashed.count(event_id) for event_id in set(crashed)}
    seen: set[str] = set()
    kept, repeats = [], 0
    for event in mine:
        event_id = event["detail"]["event_id"]
        if event_id in seen and allowed.get(event_id, 0) > 0:
            allowed[event_id] -= 1
            repeats += 1
            continue
        seen.add(event_id)
        kept.append(event)
    return kept, repeats


def print_summary(summary: dict, log=print) -> None:
    log("")
    log(f"{'dataset':10s} {'records sent/persisted':>23s} {'objects landed/counted':>23s} "
        f"{'Ready':>5s} {'Amended':>7s} {'latency s':>9s}  verdict")
    for r in summary["datasets"]:
        latency = "-" if r["latency_s"] is None else f"{r['latency_s']:+.0f}"
        verdict = "ok" if r["ok"] else "WRONG: " + "; ".join(r["problems"])
        if r["ok"] and r["failed"]:
            verdict = "ok (failed as its producer did)"
        elif r["ok"] and r["amended_after_gap"]:
            verdict = "ok (Ready in a quiet gap longer than the rule's window, then Amended, as the rule says)"
        log(f"{r['dataset_id']:10s} {r['records_sent']:>11d}/{r['records_persisted']:<11d} "
            f"{r['objects_landed']:>11d}/{r['objects_counted']:<11d} {r['ready']:>5d} {r['amended']:>7d} "
            f"{latency:>9s}  {verdict}")
    log(f"DLQs: {summary['dlq']}; pollers: {summary['pollers']}; PutRecordBatch retries: {summary['put_retries']}; "
        f"DynamoDB calls throttled: {summary['dynamodb_calls_throttled']}; monitor crashes mid-batch: "
        f"{summary['mid_batch_crashes']}; objects Firehose wrote twice: {summary['duplicated_objects']}; records "
        f"resent by retried producers: {summary['resent_records']}")
    for table, partitions in summary["partitions"].items():
        log(f"Glue table {table}: {len(partitions)} partitions, each registered when its hour was Ready: "
            + ", ".join("/".join(v) for v in partitions))
    for error in summary["producer_errors"]:
        log(f"producer error: {error}")
    if summary["crashed_after_publish"]:
        log(f"events repeated by a publisher killed right after PutEvents (same event_id, the one window left): "
            f"{sum(r['repeats'] for r in summary['datasets'])} of {summary['crashed_after_publish']} such kills")
    for queue, traces in summary["dlq_traces"].items():
        for message_id, deliveries in traces.items():
            log(f"in the {queue} DLQ: {message_id}, its deliveries: {', '.join(deliveries) or 'none seen'}")
    log("latency: the Ready's declaration after the dataset's last record landed, in pipeline seconds")
    log("RESULT: " + ("every dataset exact, exactly one Ready each, nothing in a DLQ" if summary["ok"]
                      else "SOMETHING IS WRONG (see above)"))


__all__ = ["DEFAULT_SCENARIO", "SCENARIOS", "SMALL_SCENARIO", "Chaos", "cdk_settings", "run_demo"]
