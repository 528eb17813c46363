"""Generate bench/workloads/*.json (seeded, so the files are reproducible): traces of object landings with
the producers' done-reports, in the trace format of docs/trace-format.md plus a `buffer_interval_s` hint.

Firehose model: one partition (the dataset); a buffer opens at the first record after a flush and flushes
when it is `interval` seconds old or holds `size` bytes; each flush lands as 1..k objects after a delivery
delay (dynamic partitioning adds jitter of up to half the interval: delivery can take ~1.5x the interval).

Duplicate workloads (issue 15, `dup-*`) carry each object's sequence ranges ("seqs"): records delivered twice
by Firehose or resent by a retried producer, which a count of lines mistakes for completeness. Window workloads
(issue 12, `windows-*`) are hourly arrival-time prefixes over six hours, judged window by window.
Each family has its own seed, so adding one never changes another's files.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent / "workloads"
MIB = 1024 * 1024


def firehose(rng: random.Random, producers: list[tuple[str, float, float, int]], *, interval: int,
             size_mib: int = 64, record_bytes: int = 1024, delivery: tuple[float, float] = (3, 30),
             jitter: float = 0.0, split: int = 1) -> dict:
    """producers: (id, start, end, records per second)."""
    objects, sent = [], {p[0]: 0 for p in producers}
    buffered, opened = 0, None
    end = max(p[2] for p in producers)

    def flush(at: float) -> None:
        nonlocal buffered, opened
        land = at + rng.uniform(*delivery) + rng.uniform(0, jitter * interval)
        parts = rng.randint(1, split)
        shares = [buffered // parts + (1 if i < buffered % parts else 0) for i in range(parts)]
        for i, n in enumerate(shares):
            if n:
                objects.append({"t": round(land + i * rng.uniform(0.2, 4), 3), "records": n})
        buffered, opened = 0, None

    t = 0
    while t <= end or buffered:
        for pid, start, stop, rate in producers:
            if start <= t < stop:
                n = max(0, int(rng.gauss(rate, rate * 0.2)))
                sent[pid] += n
                buffered += n
                if n and opened is None:
                    opened = t
        if buffered and (t - opened >= interval or buffered * record_bytes >= size_mib * MIB):
            flush(t)
        t += 1
    objects.sort(key=lambda o: o["t"])
    return {"buffer_interval_s": interval, "objects": objects,
            "producers": [{"id": pid, "done_at": float(stop), "records_sent": sent[pid]}
                          for pid, _, stop, _ in producers]}


def direct(times: list[float], records_each: int, done_at: float, interval: int = 60) -> dict:
    objects = [{"t": round(t, 3), "records": records_each} for t in sorted(times)]
    return {"buffer_interval_s": interval, "objects": objects,
            "producers": [{"id": "uploader", "done_at": round(done_at, 3), "records_sent": records_each * len(times)}]}


def firehose_seqs(rng: random.Random, producers: list[tuple[str, float, float, int]], *, interval: int,
                  delivery: tuple[float, float] = (3, 30), duplicate: dict[int, float] | None = None,
                  resend: dict[str, float] | None = None, late: dict[int, float] | None = None) -> dict:
    """`firehose` with sequence numbers: each producer numbers its records 0, 1, ... and each object lists the
    ranges it holds. `duplicate`: flush index (negative counts from the end) -> seconds after it that Firehose
    writes the same buffer again as a second object. `resend`: producer -> the fraction of its run after which it
    is retried and sends again from 0 (its records so far land twice). `late`: flush index -> extra delivery
    delay (a delivery retry)."""
    sent, flushes = {p[0]: 0 for p in producers}, []
    retried = {pid: False for pid in sent}
    stops = {pid: stop for pid, _, stop, _ in producers}
    buffer: dict[str, list[list[int]]] = {}
    opened = None
    t = 0
    while t <= max(stops.values()) or buffer:
        for pid, start, _, rate in producers:
            if resend and pid in resend and not retried[pid] and t >= start + resend[pid] * (stops[pid] - start):
                retried[pid] = True  # a retried invocation puts again, at once, what the first one had put
                buffer.setdefault(pid, []).append([0, sent[pid] - 1])
                opened = t if opened is None else opened
            if start <= t < stops[pid]:
                n = max(0, int(rng.gauss(rate, rate * 0.2)))
                if n:
                    ranges = buffer.setdefault(pid, [])
                    if ranges and ranges[-1][1] + 1 == sent[pid]:
                        ranges[-1][1] += n
                    else:
                        ranges.append([sent[pid], sent[pid] + n - 1])
                    sent[pid] += n
                    if opened is None:
                        opened = t
        if buffer and (t - opened >= interval or t > max(stops.values())):
            flushes.append((t, buffer))
            buffer, opened = {}, None
        t += 1
    total = {pid: max((r[1] + 1 for _, b in flushes for r in b.get(pid, [])), default=0) for pid in sent}
    objects = []
    for i, (at, seqs) in enumerate(flushes):
        land = at + rng.uniform(*delivery) + (late or {}).get(i, (late or {}).get(i - len(flushes), 0))
        obj = {"t": round(land, 3), "records": sum(b - a + 1 for r in seqs.values() for a, b in r), "seqs": seqs}
        objects.append(obj)
        again = (duplicate or {}).get(i, (duplicate or {}).get(i - len(flushes)))
        if again is not None:
            objects.append({**obj, "t": round(land + again, 3)})
    objects.sort(key=lambda o: o["t"])
    return {"buffer_interval_s": interval, "objects": objects,
            "producers": [{"id": pid, "done_at": round(stops[pid], 3), "records_sent": total[pid]}
                          for pid, _, _, _ in producers]}


def late_buffer(rng: random.Random, interval: int = 300) -> dict:
    """Issue 15's example at the default settings (300 s buffers): p0 is retried and its records land 1.5 times;
    p1's last 500 land at t=400. Lines reach the 2,000 records sent at ~t=125, when half of p1 is still missing."""
    def at(t: float) -> float:
        return round(t + rng.uniform(-1.5, 1.5), 3)
    objects = [{"t": at(64), "records": 1000, "seqs": {"p0": [[0, 499]], "p1": [[0, 499]]}},
               {"t": at(96), "records": 500, "seqs": {"p0": [[500, 999]]}},
               {"t": 125.0, "records": 500, "seqs": {"p0": [[0, 499]]}},
               {"t": 400.0, "records": 500, "seqs": {"p1": [[500, 999]]}}]
    return {"description": "issue 15: p0's records land 1.5 times (a retried producer), p1's last 500 at t=400",
            "buffer_interval_s": interval, "objects": objects,
            "producers": [{"id": "p0", "done_at": 110.0, "records_sent": 1000},
                          {"id": "p1", "done_at": 58.0, "records_sent": 1000}]}


HOUR = 3600


def hourly(rng: random.Random, interval: int, *, size_mib: int = 64, record_bytes: int = 1024,
           delivery: tuple[float, float] = (3, 30), retry_window: int = 3, retry_s: float = 60) -> dict:
    """Six hours through one Firehose stream to plain arrival-time prefixes (yyyy/MM/dd/HH/): a buffer opens at
    its first record and flushes `interval` later (or at `size_mib`); its object goes under the hour of that
    OLDEST record and lands after a delivery delay, so an hour's last object lands up to ~interval + 30 s after
    the hour and holds records that arrived after it. Hours: 0 steady; 1 steady with a burst in its last 5 min;
    2 empty (no record at all); 3 steady, its last object retried (`retry_s` later, inside the default grace of
    1.5 x interval + 60 s); 4 steady with 20 min of silence in the middle; 5 lighter traffic."""
    def rate(t: int) -> float:
        hour, minute = divmod(t, HOUR)
        if hour == 2:
            return 0
        if hour == 1 and minute >= HOUR - 300:
            return 400
        if hour == 4 and 1200 <= minute < 2400:
            return 0
        return 20 if hour == 5 else 50
    objects, buffered, opened = [], 0, None
    end = 6 * HOUR

    def flush(at: int) -> None:
        nonlocal buffered, opened
        objects.append({"t": round(at + rng.uniform(*delivery), 3), "records": buffered,
                        "window": opened // HOUR * HOUR})
        buffered, opened = 0, None

    for t in range(end + 2 * interval):
        r = rate(t) if t < end else 0
        n = max(0, int(rng.gauss(r, r * 0.2))) if r else 0
        if n and opened is None:
            opened = t
        buffered += n
        if buffered and (t - opened >= interval or buffered * record_bytes >= size_mib * MIB):
            flush(t)
    retried = max((o for o in objects if o["window"] == retry_window * HOUR), key=lambda o: o["t"])
    retried["t"] = round(retried["t"] + retry_s, 3)
    objects.sort(key=lambda o: o["t"])
    return {"description": f"six hours, {interval} s buffers, arrival-time hourly prefixes; hour 1 ends in a "
                           "burst, hour 2 is empty, hour 3's last object is a delivery retry (+60 s), hour 4 has "
                           "20 min of silence", "window_s": HOUR, "buffer_interval_s": interval,
            "windows": [h * HOUR for h in range(6)], "objects": objects}


def extra_workloads() -> dict[str, dict]:
    """The duplicate and window families (each with its own seed: the first six files stay byte-identical)."""
    rng = random.Random(15)
    out = {
        "dup-firehose-retry": firehose_seqs(rng, [(f"p{i}", rng.uniform(0, 20), rng.uniform(400, 420), 40)
                                                  for i in range(4)], interval=60, duplicate={3: 25.0, -2: 30.0}),
        "dup-producer-resend": firehose_seqs(rng, [(f"p{i}", rng.uniform(0, 30), rng.uniform(850, 900), 15)
                                                   for i in range(6)], interval=120, resend={"p2": 0.6},
                                             late={-1: 75.0}),
        "dup-late-buffer": late_buffer(rng),
    }
    out["dup-firehose-retry"]["description"] = ("Firehose writes two buffers twice (at-least-once delivery), one of "
                                                "them just before the last buffer lands")
    out["dup-producer-resend"]["description"] = ("p2 is retried 60% into its run and puts its records so far again; "
                                                 "the last buffer's delivery is retried (+75 s)")
    rng = random.Random(12)
    out["windows-60s"] = hourly(rng, 60)
    out["windows-300s"] = hourly(rng, 300)
    return out


def describe_extra(name: str, doc: dict) -> str:
    if "window_s" in doc:
        last = {}
        for o in doc["objects"]:
            last[o["window"]] = max(last.get(o["window"], 0), o["t"])
        late = ", ".join(f"{w // HOUR}h:+{last[w] - w - HOUR:.0f}" if w in last else f"{w // HOUR}h:empty"
                         for w in doc["windows"])
        return f"{name:18s} {len(doc['objects']):4d} objects, last object after each hour's end: {late}"
    lines = sum(o["records"] for o in doc["objects"])
    sent = sum(p["records_sent"] for p in doc["producers"])
    return (f"{name:18s} {len(doc['objects']):4d} objects, {lines} lines for {sent} records sent "
            f"({lines / sent:.2f}x), last at {doc['objects'][-1]['t']:7.1f} s")


def main() -> None:
    OUT.mkdir(exist_ok=True)
    rng = random.Random(20261123)
    workloads = {
        "firehose-300s": firehose(rng, [(f"p{i}", rng.uniform(0, 60), rng.uniform(900, 1200), 20)
                                        for i in range(6)], interval=300),
        "firehose-60s": firehose(rng, [(f"p{i}", rng.uniform(0, 30), rng.uniform(500, 600), 20)
                                       for i in range(6)], interval=60),
        "partition-jitter": firehose(rng, [(f"p{i}", rng.uniform(0, 20), rng.uniform(700, 800), 300)
                                           for i in range(4)], interval=120, jitter=0.5, split=3),
        "slow-producer": firehose(rng, [*[(f"p{i}", rng.uniform(0, 30), 600, 30) for i in range(4)],
                                        ("slow", 840, 960, 30)], interval=60),
        "parallel-500": direct([rng.uniform(0, 50) for _ in range(500)], 1000, done_at=50.5),
    }
    trickle, t = [], 0.0
    for _ in range(40):
        t += rng.expovariate(1 / 45) if rng.random() > 0.1 else rng.uniform(120, 200)
        trickle.append(t)
    workloads["trickle"] = direct(trickle, 50, done_at=trickle[-1] + 0.5)
    for name, doc in workloads.items():
        (OUT / f"{name}.json").write_text(json.dumps(doc, indent=None, separators=(",", ":")) + "\n")
        gaps = [b["t"] - a["t"] for a, b in zip(doc["objects"], doc["objects"][1:], strict=False)]
        print(f"{name:18s} {len(doc['objects']):4d} objects, last at {doc['objects'][-1]['t']:7.1f} s, "
              f"max gap {max(gaps, default=0):6.1f} s, producers done by "
              f"{max(p['done_at'] for p in doc['producers']):7.1f} s")
    for name, doc in extra_workloads().items():
        (OUT / f"{name}.json").write_text(json.dumps(doc, indent=None, separators=(",", ":")) + "\n")
        print(describe_extra(name, doc))


if __name__ == "__main__":
    main()
