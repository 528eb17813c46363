"""Reader benchmark: two data sets behind one loopback S3 endpoint answering every request after 20 ms (its own
process: streamwatch.local.s3_endpoint; moto's server would be the bottleneck at ~180 GetObject/s):
1,000 x 64 KiB and 16 x 64 MiB. Contenders: serial boto3 (one GetObject at a time, the baseline), the reader at
concurrency 32 and at its default, the reader split over two processes (to show one is enough), s5cmd at its
defaults, `aws s3 cp --recursive` at its defaults. Each contender runs in its own process, so its CPU and peak
RSS are its own; 3 interleaved rounds, best and median. Files go to /dev/shm and every file is checked.
Prints the figures and pass/fail per target; the last line is one JSON object."""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lambdas"))
sys.path.insert(0, str(ROOT / "bench"))

LATENCY, BUCKET, ROUNDS = 0.020, "bench", 3
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
       "AWS_REGION": "us-east-1"}
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class DataSet:
    name: str
    objects: int
    size: int
    serial_objects: int  # serial boto3 reads a subset: its rate is what matters

    @property
    def prefix(self) -> str:
        return f"{self.name}/"


SMALL, LARGE = DataSet("small", 1000, 64 * 1024, 200), DataSet("large", 16, 64 << 20, 3)


def serve(conn) -> None:
    """The endpoint process: both data sets (one random body per set: memory stays small), then sleep."""
    from streamwatch.local.s3_endpoint import S3Endpoint
    endpoint = S3Endpoint(latency_s=LATENCY).start()
    digests = {}
    for ds in (SMALL, LARGE):
        body = os.urandom(ds.size)
        digest = hashlib.md5(body).hexdigest()  # noqa: S324 (S3's ETag, and the files' check)
        for i in range(ds.objects):
            key = f"{ds.prefix}part-{i:05d}.json"
            endpoint.objects[BUCKET][key], endpoint.etags[(BUCKET, key)] = body, f'"{digest}"'
        digests[ds.name] = digest
    conn.send((endpoint.url, digests))
    time.sleep(3600)


# --- contenders that run in a child of this script ---------------------------------------------------------------
def child(mode: str, url: str, name: str, concurrency: int, out: str) -> None:
    """Runs in its own process; prints {elapsed, cpu, rss_before_kib}: what the parent cannot see from outside."""
    ds = {d.name: d for d in (SMALL, LARGE)}[name]
    os.environ.update(ENV)
    if mode == "reader2":  # imported, then forked before obstore starts its runtime; each lists and takes half
        import streamwatch.reader  # noqa: F401 (the workers inherit it loaded, as the former reader's did)
        ctx = mp.get_context("fork")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        workers = [ctx.Process(target=_shard, args=(url, ds, concurrency // 2, out, i, 2)) for i in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
            assert w.exitcode == 0
        elapsed, cpu = time.perf_counter() - t0, _cpu(resource.RUSAGE_CHILDREN, before)
        print(json.dumps({"elapsed": elapsed, "cpu": cpu, "rss_before_kib": None, "objects": ds.objects}))
        return
    if mode == "reader":
        from streamwatch.reader import DatasetReader
        reader = DatasetReader(concurrency=concurrency, endpoint_url=url)

        def run() -> int:
            report = reader.fetch(BUCKET, ds.prefix, to_dir=out)
            assert report.complete, report.summary()
            return len(report.results)
    else:  # serial boto3: list, then GetObject one at a time, streamed to a temp file and renamed
        import boto3
        s3 = boto3.client("s3", endpoint_url=url)

        def run() -> int:
            keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=ds.prefix)
                    for o in page.get("Contents", [])][:ds.serial_objects]
            for key in keys:
                target = Path(out, key[len(ds.prefix):])
                with open(f"{target}.part", "wb") as fh:
                    for chunk in s3.get_object(Bucket=BUCKET, Key=key)["Body"].iter_chunks(1 << 20):
                        fh.write(chunk)
                os.replace(f"{target}.part", target)
            return len(keys)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    n = run()
    elapsed, cpu = time.perf_counter() - t0, _cpu(resource.RUSAGE_SELF, before)
    print(json.dumps({"elapsed": elapsed, "cpu": cpu, "rss_before_kib": rss_before, "objects": n}))


def _shard(url: str, ds: DataSet, concurrency: int, out: str, i: int, n: int) -> None:
    from streamwatch.reader import DatasetReader
    reader = DatasetReader(concurrency=concurrency, endpoint_url=url)
    objects = reader.list(BUCKET, ds.prefix)[i::n]
    assert reader.fetch(BUCKET, ds.prefix, objects=objects, to_dir=out).complete


def _cpu(who: int, before) -> float:
    now = resource.getrusage(who)
    return (now.ru_utime - before.ru_utime) + (now.ru_stime - before.ru_stime)


# --- the parent: run, time, check ----------------------------------------------------------------------------------
def spawn(cmd: list[str], env: dict) -> tuple[float, str, resource.struct_rusage]:
    """Run to exit; wall time, stdout and the child's own rusage (wait4: CPU and peak RSS of that process)."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err)  # noqa: S603
        out = proc.stdout.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t0
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        if code:
            err.seek(0)
            raise RuntimeError(f"{cmd[:3]} exited {code}: {err.read().decode()[-2000:]}")
    return elapsed, out, usage


def measure(contender: str, ds: DataSet, url: str, digest: str) -> dict:
    """One run: {elapsed, cpu, peak_rss_mib, rss_before_mib, objects}. Children of this script time their own
    read (list + fetch); the CLIs are timed from spawn to exit (s5cmd starts in ~10 ms, aws in ~0.4 s)."""
    out = tempfile.mkdtemp(prefix=f"sw-{ds.name}-", dir=SCRATCH)
    env = {**os.environ, **ENV}
    try:
        if contender.startswith(("reader", "serial")):
            mode, _, concurrency = contender.partition(":")
            _, text, usage = spawn([sys.executable, __file__, "--child", mode, url, ds.name, concurrency or "1", out],
                                   env)
            row = json.loads(text.strip().splitlines()[-1])
        elif contender == "s5cmd":
            row = _cli([str(BIN / "s5cmd"), "--endpoint-url", url, "--log", "error", "cp",
                        f"s3://{BUCKET}/{ds.prefix}*", out + "/"], env, ds)
            usage = row.pop("usage")
        else:  # aws s3 cp --recursive, defaults (10 requests, 8 MiB parts from 8 MiB up)
            config = Path(out, ".aws-config")
            config.write_text("[default]\nregion = us-east-1\n")
            env |= {"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
            row = _cli([str(BIN / "aws"), "s3", "cp", f"s3://{BUCKET}/{ds.prefix}", out, "--recursive", "--quiet",
                        "--endpoint-url", url], env, ds)
            usage = row.pop("usage")
            config.unlink()
        check(Path(out), ds, row["objects"], digest)
        row["peak_rss_mib"] = usage.ru_maxrss / 1024
        row["rss_before_mib"] = row["rss_before_kib"] / 1024 if row.get("rss_before_kib") else None
        return row
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _cli(cmd: list[str], env: dict, ds: DataSet) -> dict:
    elapsed, _, usage = spawn(cmd, env)
    return {"elapsed": elapsed, "cpu": usage.ru_utime + usage.ru_stime, "objects": ds.objects, "usage": usage}


def check(directory: Path, ds: DataSet, n: int, digest: str) -> None:
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert len(files) == n and all(p.stat().st_size == ds.size for p in files), f"{len(files)} files of {n}"
    with open(files[-1], "rb") as fh:  # one file's content, whole
        assert hashlib.file_digest(fh, "md5").hexdigest() == digest


def main() -> int:
    os.environ.update(ENV)
    from streamwatch.reader import DEFAULT_CONCURRENCY, PART_SIZE
    ctx = mp.get_context("spawn")  # the endpoint process shares nothing with this one
    parent_end, child_end = ctx.Pipe()
    server = ctx.Process(target=serve, args=(child_end,), daemon=True)
    server.start()
    url, digests = parent_end.recv()
    default = DEFAULT_CONCURRENCY
    contenders = {"serial": "serial boto3 (baseline)", "reader:32": "reader, concurrency 32",
                  f"reader:{default}": f"reader, default (concurrency {default})",
                  "reader2:32": "reader, 2 processes x 16 (for comparison)",
                  "s5cmd": "s5cmd, defaults", "aws": "aws s3 cp --recursive, defaults"}
    runs: dict[tuple[str, str], list[dict]] = {}
    started = time.perf_counter()
    try:
        for ds in (SMALL, LARGE):  # untimed: the endpoint and this VM's fresh tmpfs pages warm up for everyone
            for contender in (f"reader:{default}", "s5cmd"):
                measure(contender, ds, url, digests[ds.name])
        for _ in range(ROUNDS):
            for ds in (SMALL, LARGE):
                for contender in contenders:
                    if contender == "reader2:32" and ds is LARGE:
                        continue
                    runs.setdefault((ds.name, contender), []).append(measure(contender, ds, url, digests[ds.name]))
    finally:
        server.terminate()
    rows, figures = [], {}
    for ds in (SMALL, LARGE):
        serial_med = _stats(runs[(ds.name, "serial")], ds)[1]
        for contender, label in contenders.items():
            if (ds.name, contender) not in runs:
                continue
            best, med, cpu_per_1000, peak, before = _stats(runs[(ds.name, contender)], ds)
            fig = {"objects_per_s": round(best, 1), "median_objects_per_s": round(med, 1),
                   "mb_per_s": round(best * ds.size / 1e6, 1), "median_mb_per_s": round(med * ds.size / 1e6, 1),
                   "x_serial": round(med / serial_med, 1), "cpu_s_per_1000_objects": round(cpu_per_1000, 3),
                   "cpu_s_per_gib": round(cpu_per_1000 / 1000 / (ds.size / 2**30), 2),
                   "peak_rss_mib": round(peak, 1), "rss_before_mib": round(before, 1) if before else None}
            figures[f"{ds.name}/{contender}"] = fig
            rows.append((ds, label, fig))
    limit = 32 / LATENCY
    small, large = (lambda c: figures[f"small/{c}"]), (lambda c: figures[f"large/{c}"])
    mine = f"reader:{default}"
    parts = math.ceil(LARGE.size / PART_SIZE)
    in_flight = min(LARGE.objects, math.ceil(default / parts) + 1)  # objects open at once at the default
    growth = large(mine)["peak_rss_mib"] - (large(mine)["rss_before_mib"] or 0)
    memory_bound = 3 * PART_SIZE / 2**20 * in_flight
    targets = {
        "default_ge_s5cmd_small": small(mine)["median_objects_per_s"] >= small("s5cmd")["median_objects_per_s"],
        "default_ge_s5cmd_large": large(mine)["median_objects_per_s"] >= large("s5cmd")["median_objects_per_s"],
        "c32_ge_80pct_latency_limit": small("reader:32")["median_objects_per_s"] >= 0.8 * limit,
        "cpu_le_0.5s_per_1000_small": max(small("reader:32")["cpu_s_per_1000_objects"],
                                          small(mine)["cpu_s_per_1000_objects"]) <= 0.5,
        "large_peak_memory_le_3_parts_per_object_in_flight": growth <= memory_bound,
    }
    elapsed = time.perf_counter() - started
    head = (f"{LATENCY * 1000:.0f} ms per request, endpoint in its own process, {os.cpu_count()} cores, files to "
            f"{SCRATCH or 'the temp dir'}; best and median of {ROUNDS} interleaved rounds; x serial on medians")
    print(f"{head}; endpoint {url}")
    print(f"{'':50s} {'obj/s':>8s} {'median':>8s} {'MB/s med':>9s} {'x serial':>9s} {'CPU s/1k':>9s} "
          f"{'CPU s/GiB':>9s} {'peak RSS':>9s}")
    for ds, label, f in rows:
        print(f"{ds.name:6s}{label:44s} {f['objects_per_s']:8.1f} {f['median_objects_per_s']:8.1f} "
              f"{f['median_mb_per_s']:9.1f} {f['x_serial']:8.1f}x {f['cpu_s_per_1000_objects']:9.3f} "
              f"{f['cpu_s_per_gib']:9.2f} {f['peak_rss_mib']:5.0f} MiB")
    print(f"latency limit (small, 32 in flight): {limit:.0f} obj/s; reader at 32 = "
          f"{small('reader:32')['median_objects_per_s'] / limit:.0%} of it")
    print(f"large set peak RSS at the default: {large(mine)['peak_rss_mib']:.0f} MiB, {growth:.0f} MiB above the "
          f"process before reading; bound 3 parts x {PART_SIZE >> 20} MiB x {in_flight} objects in flight = "
          f"{memory_bound:.0f} MiB")
    print("targets:", ", ".join(f"{k}={'PASS' if v else 'FAIL'}" for k, v in targets.items()))
    print(f"benchmark ran {elapsed:.0f} s")
    write_doc(head, rows, targets, limit, figures, growth, memory_bound, in_flight)
    print(json.dumps({"benchmark": "reader", "latency_ms": LATENCY * 1000, "rounds": ROUNDS,
                      "data_sets": {d.name: {"objects": d.objects, "object_bytes": d.size,
                                             "serial_objects": d.serial_objects} for d in (SMALL, LARGE)},
                      "latency_limit_32": limit, "figures": figures, "large_rss_growth_mib": round(growth, 1),
                      "large_memory_bound_mib": memory_bound, "targets": targets}))
    return 0


def _stats(runs: list[dict], ds: DataSet) -> tuple[float, float, float, float, float | None]:
    rates = [r["objects"] / r["elapsed"] for r in runs]
    cpu = statistics.median(r["cpu"] / r["objects"] * 1000 for r in runs)
    before = [r["rss_before_mib"] for r in runs if r.get("rss_before_mib")]
    return max(rates), statistics.median(rates), cpu, max(r["peak_rss_mib"] for r in runs), \
        (max(before) if before else None)


def write_doc(head, rows, targets, limit, figures, growth, bound, in_flight) -> None:
    from docs_section import update_doc

    from streamwatch.reader import PART_SIZE
    part_mib = PART_SIZE >> 20
    small = figures["small/reader:32"]["median_objects_per_s"]
    lines = ["## Reader (`bench/reader.py`)", "",
             f"{SMALL.objects:,} x {SMALL.size >> 10} KiB and {LARGE.objects} x {LARGE.size >> 20} MiB behind a "
             f"loopback S3 endpoint; {head}. Each contender runs in its own process: CPU and peak RSS are its own "
             "(the reader's CPU and time cover its list and fetch; the CLIs are timed from spawn to exit).", "",
             "| set | client | obj/s (best) | obj/s (median) | MB/s (median) | x serial | CPU s per 1,000 objects "
             "| CPU s per GiB | peak RSS MiB |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {ds.name} | {label} | {f['objects_per_s']:,.1f} | {f['median_objects_per_s']:,.1f} | "
              f"{f['median_mb_per_s']:,.1f} | {f['x_serial']:.1f}x | {f['cpu_s_per_1000_objects']:.3f} | "
              f"{f['cpu_s_per_gib']:.2f} | {f['peak_rss_mib']:.0f} |" for ds, label, f in rows]
    lines += ["", f"Latency limit for the small set at 32 in flight: {limit:,.0f} obj/s; the reader at 32 reaches "
              f"{small / limit:.0%}. Large set peak memory at the default: {growth:.0f} MiB above the process before "
              f"reading (bound: 3 parts of {part_mib} MiB x {in_flight} objects in flight = {bound:.0f} MiB).",
              "", "Targets: " + "; ".join(f"{k}: {'pass' if v else 'FAIL'}" for k, v in targets.items()) + "."]
    update_doc("reader", "\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, url, name, concurrency, out = sys.argv[2:7]
        child(mode, url, name, int(concurrency), out)
        sys.exit(0)
    sys.exit(main())
