"""Reader benchmark: 1,000 objects of 64 KiB behind a loopback S3 endpoint answering every request after 20 ms
(its own process: streamwatch.local.s3_endpoint; moto's server would be the bottleneck at ~180 GetObject/s).
Serial, our reader at concurrency 8/32/64, and `aws s3 cp --recursive` (awscli pinned in requirements-dev.txt)
at its default and at 32 concurrent requests, one run. Prints objects/s and ratios to serial; JSON line last."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lambdas"))
sys.path.insert(0, str(ROOT / "bench"))

from docs_section import update_doc  # noqa: E402

from streamwatch.reader import DatasetReader  # noqa: E402

OBJECTS, SIZE, LATENCY, BUCKET, PREFIX = 1000, 64 * 1024, 0.020, "bench", "data/dataset=bench/"
REPEATS, SERIAL_OBJECTS = 3, 250  # best of 3 for every parallel contender alike; serial on a 250-object subset
# Output on tmpfs when there is one (for every contender alike): 64 MB of writes per run on this VM's disk piled
# up writeback and slowed later runs by a third; the benchmark measures clients, not the disk.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


def serve(queue) -> None:
    from streamwatch.local.s3_endpoint import S3Endpoint
    endpoint = S3Endpoint(latency_s=LATENCY).start()
    body = os.urandom(SIZE)
    for i in range(OBJECTS):
        endpoint.put(BUCKET, f"{PREFIX}part-{i:05d}.json", body)
    queue.put(endpoint.url)
    time.sleep(3600)


def check(directory: Path, n: int = OBJECTS) -> None:
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert len(files) == n and all(p.stat().st_size == SIZE for p in files), f"{len(files)} files"


def best_of(run) -> tuple[float, float, list[float]]:
    rates = sorted(run() for _ in range(REPEATS))
    return rates[-1], rates[len(rates) // 2], rates


def ours(url: str, concurrency: int, processes: int | None = None, subset: int = OBJECTS) -> float:
    out = Path(tempfile.mkdtemp(prefix="sw-reader-", dir=SCRATCH))
    try:
        reader = DatasetReader(concurrency=concurrency, processes=processes, endpoint_url=url)
        objects = reader.list(BUCKET, PREFIX)[:subset]
        t0 = time.perf_counter()
        report = reader.fetch(BUCKET, PREFIX, objects=objects, to_dir=out)
        elapsed = time.perf_counter() - t0
        assert report.complete, report.summary()
        check(out, subset)
        return subset / elapsed
    finally:
        shutil.rmtree(out, ignore_errors=True)


def awscli(url: str, concurrent: int | None) -> float:
    out = Path(tempfile.mkdtemp(prefix="sw-awscli-", dir=SCRATCH))
    config = Path(tempfile.mktemp(prefix="sw-awscfg-"))
    config.write_text("[default]\nregion = us-east-1\n" +
                      (f"s3 =\n    max_concurrent_requests = {concurrent}\n" if concurrent else ""))
    try:
        env = {**os.environ, **ENV, "AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
        aws = str(Path(sys.executable).parent / "aws")
        t0 = time.perf_counter()
        subprocess.run([aws, "s3", "cp", f"s3://{BUCKET}/{PREFIX}", str(out), "--recursive", "--quiet",
                        "--endpoint-url", url], env=env, check=True)
        elapsed = time.perf_counter() - t0
        check(out)
        return OBJECTS / elapsed
    finally:
        shutil.rmtree(out, ignore_errors=True)
        config.unlink(missing_ok=True)


def main() -> int:
    os.environ.update(ENV)
    queue = mp.get_context("fork").Queue()
    server = mp.get_context("fork").Process(target=serve, args=(queue,), daemon=True)
    server.start()
    url = queue.get(timeout=60)
    procs = {c: DatasetReader(concurrency=c).processes for c in (8, 32, 64)}
    try:
        serial = ours(url, 1, 1, subset=SERIAL_OBJECTS)
        rows = [("serial (concurrency 1)", serial, serial, "1 process")]
        for c in (8, 32, 64):
            rows.append((f"streamwatch reader, concurrency {c}", *best_of(lambda c=c: ours(url, c))[:2],
                         f"{procs[c]} process(es)"))
        rows.append(("streamwatch reader, concurrency 32, one process",
                     *best_of(lambda: ours(url, 32, 1))[:2], "1 process"))
        rows.append(("aws s3 cp --recursive (default: 10 requests)", *best_of(lambda: awscli(url, None))[:2],
                     "1 process"))
        rows.append(("aws s3 cp --recursive (max_concurrent_requests 32)", *best_of(lambda: awscli(url, 32))[:2],
                     "1 process"))
    finally:
        server.terminate()
    print(f"{OBJECTS} objects x {SIZE // 1024} KiB, {LATENCY * 1000:.0f} ms per request, endpoint {url}, "
          f"{os.cpu_count()} cores; best (median) of {REPEATS} runs each; files written to {SCRATCH or 'the temp dir'}")
    print(f"{'':55s} {'obj/s':>8s} {'median':>8s} {'x serial':>9s}")
    for name, rate, med, how in rows:
        print(f"{name:55s} {rate:8.1f} {med:8.1f} {rate / serial:8.1f}x   {how}")
    by = {name: rate for name, rate, _, _ in rows}
    ours32 = by["streamwatch reader, concurrency 32"]
    best_cli = max(by["aws s3 cp --recursive (default: 10 requests)"],
                   by["aws s3 cp --recursive (max_concurrent_requests 32)"])
    goals = {"fifteen_x_serial_at_32": ours32 / serial >= 15, "at_least_awscli": ours32 >= best_cli}
    print("goals:", ", ".join(f"{k}={'PASS' if v else 'FAIL'}" for k, v in goals.items()))
    update_doc("reader", "\n".join([
        "## Reader (`bench/reader.py`)", "",
        f"{OBJECTS:,} objects of {SIZE // 1024} KiB behind a loopback S3 endpoint answering after "
        f"{LATENCY * 1000:.0f} ms (its own process), {os.cpu_count()} cores, one run; best and median of "
        f"{REPEATS} runs per contender (serial: one run over {SERIAL_OBJECTS} objects).", "",
        "| client | objects/s (best) | median | x serial | processes |", "|---|---|---|---|---|",
        *[f"| {name} | {rate:.1f} | {med:.1f} | {rate / serial:.1f}x | {how} |" for name, rate, med, how in rows],
        "",
        f"Goals: 15x serial at concurrency 32: {'pass' if goals['fifteen_x_serial_at_32'] else 'FAIL'} "
        f"({ours32 / serial:.1f}x); at least awscli's throughput: {'pass' if goals['at_least_awscli'] else 'FAIL'} "
        f"({ours32 / best_cli:.2f}x the better awscli line). One process of threads tops out at botocore's "
        "CPU per request; the reader spreads its concurrency over processes (16 in flight each).",
    ]))
    print(json.dumps({"benchmark": "reader", "objects": OBJECTS, "object_kib": SIZE // 1024,
                      "latency_ms": LATENCY * 1000, "rates": {name: round(rate, 1) for name, rate, _, _ in rows},
                      "median_rates": {name: round(med, 1) for name, _, med, _ in rows},
                      "x_serial": {name: round(rate / serial, 2) for name, rate, _, _ in rows}, "goals": goals}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
