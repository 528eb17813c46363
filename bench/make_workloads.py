"""Generate bench/workloads/*.json (seeded, so the files are reproducible): traces of object landings with
the producers' done-reports, in the DESIGN.md trace format plus a `buffer_interval_s` hint.

Firehose model: one partition (the dataset); a buffer opens at the first record after a flush and flushes
when it is `interval` seconds old or holds `size` bytes; each flush lands as 1..k objects after a delivery
delay (dynamic partitioning adds jitter of up to half the interval: delivery can take ~1.5x the interval).
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


if __name__ == "__main__":
    main()
