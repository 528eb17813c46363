"""What the transfer benchmarks (reader.py, writer.py) share: the two data sets, the loopback endpoint's delay,
the scratch folder and the credentials every contender gets, and how their figures are computed and shown."""

from __future__ import annotations

import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

LATENCY, BUCKET, MIN_ROUNDS = 0.020, "bench", 5  # s per request; rounds below MIN_ROUNDS are not published
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
       "AWS_REGION": "us-east-1"}
BIN = Path(sys.executable).parent  # s5cmd and aws come with the dev requirements


@dataclass(frozen=True)
class DataSet:
    name: str
    objects: int
    size: int
    serial_objects: int  # serial boto3 moves a subset: its rate is what matters

    @property
    def prefix(self) -> str:
        return f"{self.name}/"


SMALL, LARGE = DataSet("small", 1000, 64 * 1024, 200), DataSet("large", 16, 64 << 20, 3)


# --- figures, the console table and the docs table, alike for both benchmarks ---------------------------------------
def median_rate(runs: list[dict]) -> float:
    return statistics.median(r["objects"] / r["elapsed"] for r in runs)


def figure(runs: list[dict], ds: DataSet, serial_median: float) -> dict:
    """One contender's figures on one set from its runs: best and median rates, CPU per 1,000 objects and per GiB
    (medians), peak RSS, and how many runs were redone or stayed disturbed."""
    rates = [r["objects"] / r["elapsed"] for r in runs]
    best, median = max(rates), statistics.median(rates)
    cpu = statistics.median(r["cpu"] / r["objects"] * 1000 for r in runs)
    before = [r["rss_before_mib"] for r in runs if r.get("rss_before_mib")]
    foreign = [r["foreign_cores"] for r in runs if r.get("foreign_cores") is not None]
    return {"objects_per_s": round(best, 1), "median_objects_per_s": round(median, 1),
            "mb_per_s": round(best * ds.size / 1e6, 1), "median_mb_per_s": round(median * ds.size / 1e6, 1),
            "x_serial": round(median / serial_median, 1), "cpu_s_per_1000_objects": round(cpu, 3),
            "cpu_s_per_gib": round(cpu / 1000 / (ds.size / 2**30), 2),
            "peak_rss_mib": round(max(r["peak_rss_mib"] for r in runs), 1),
            "rss_before_mib": round(max(before), 1) if before else None,
            "runs_redone": sum(r["tries"] - 1 for r in runs),
            "disturbed_runs": sum(1 for r in runs if r.get("disturbed")),
            "foreign_cores_max": round(max(foreign), 2) if foreign else None}


def print_table(rows: list[tuple[str, str, dict]], set_width: int, label_width: int) -> None:
    """(set, client, figures) rows on the console."""
    print(f"{'':{set_width + label_width}s} {'obj/s':>8s} {'median':>8s} {'MB/s med':>9s} {'x serial':>9s} "
          f"{'CPU s/1k':>9s} {'CPU s/GiB':>9s} {'peak RSS':>9s} {'redone':>6s}")
    for name, label, f in rows:
        print(f"{name:{set_width}s}{label:{label_width}s} {f['objects_per_s']:8.1f} {f['median_objects_per_s']:8.1f} "
              f"{f['median_mb_per_s']:9.1f} {f['x_serial']:8.1f}x {f['cpu_s_per_1000_objects']:9.3f} "
              f"{f['cpu_s_per_gib']:9.2f} {f['peak_rss_mib']:5.0f} MiB {f['runs_redone']:6d}"
              f"{'  DISTURBED' if f['disturbed_runs'] else ''}")


def doc_table(rows: list[tuple[str, str, dict]]) -> list[str]:
    """The same rows as a markdown table for docs/benchmarks.md."""
    lines = ["| set | client | obj/s (best) | obj/s (median) | MB/s (median) | x serial | CPU s per 1,000 objects "
             "| CPU s per GiB | peak RSS MiB | runs redone |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, label, f in rows:
        lines.append(f"| {name} | {label} | {f['objects_per_s']:,.1f} | {f['median_objects_per_s']:,.1f} | "
                     f"{f['median_mb_per_s']:,.1f} | {f['x_serial']:.1f}x | {f['cpu_s_per_1000_objects']:.3f} | "
                     f"{f['cpu_s_per_gib']:.2f} | {f['peak_rss_mib']:.0f} | "
                     f"{f['runs_redone']}{' (disturbed)' if f['disturbed_runs'] else ''} |")
    return lines


def disturbed_warning(flagged: list[str], tries: int) -> list[str]:
    return ([f"**Disturbed:** no clean run in {tries} tries for {', '.join(flagged)}; these figures are not for "
             "publishing.", ""] if flagged else [])


def print_verdict(figures: dict, flagged: list[str], targets: dict, elapsed: float) -> None:
    print(f"runs redone for other work on the machine: {sum(f['runs_redone'] for f in figures.values())}; "
          f"figures without a clean run: {', '.join(flagged) or 'none'}")
    print("targets:", ", ".join(f"{k}={'PASS' if v else 'FAIL'}" for k, v in targets.items()))
    print(f"benchmark ran {elapsed:.0f} s")
