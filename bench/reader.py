"""Reader benchmark: two data sets behind a loopback S3 endpoint answering every request after 20 ms (its own
process: streamwatch.local.s3_endpoint; moto's server would be the bottleneck at ~180 GetObject/s):
1,000 x 64 KiB and 16 x 64 MiB, and the large set again behind an endpoint that caps each connection's
bandwidth (`--cap-mb`, as S3 caps one GET stream). Contenders: serial boto3 (one GetObject at a time, the
baseline), the reader at concurrency 32 and at its default, the reader split over two processes (to show one is
enough), s5cmd at its defaults, `aws s3 cp --recursive` at its defaults. Each contender runs in its own process,
so its CPU and peak RSS are its own; `--rounds` interleaved rounds (at least 5), best and median. Every run
measures the machine's other work (bench/quiet.py) and is redone when it was disturbed; a figure that could not
get a clean run is flagged. Files go to /dev/shm and every file is checked.
Prints the figures and pass/fail per target, writes the "reader" section of docs/benchmarks.md and the README's
block; the last line is one JSON object."""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lambdas"))
sys.path.insert(0, str(ROOT / "bench"))
from loopback import (  # noqa: E402
    BIN,
    BUCKET,
    ENV,
    LARGE,
    LATENCY,
    MIN_ROUNDS,
    SCRATCH,
    SMALL,
    DataSet,
    disturbed_warning,
    doc_table,
    figure,
    median_rate,
    print_table,
    print_verdict,
)
from quiet import TRIES, clean_run, spawn, warm_pages  # noqa: E402


def serve(conn, names: tuple[str, ...], cap: float) -> None:
    """An endpoint process: its data sets (one random body per set: memory stays small), then sleep."""
    from streamwatch.local.s3_endpoint import S3Endpoint
    endpoint = S3Endpoint(latency_s=LATENCY, connection_bytes_per_s=cap).start()
    digests = {}
    for ds in (d for d in (SMALL, LARGE) if d.name in names):
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
def measure(contender: str, ds: DataSet, url: str, digest: str) -> dict:
    """One run: {elapsed, cpu, peak_rss_mib, rss_before_mib, objects}. Children of this script time their own
    read (list + fetch); the CLIs are timed from spawn to exit (s5cmd starts in ~10 ms, aws in ~0.4 s)."""
    warm_pages(ds.objects * ds.size + (256 << 20), SCRATCH)  # the files and the buffers: every run alike
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
        row["process_cpu"] = usage.ru_utime + usage.ru_stime  # the whole process, start-up included
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


def measure_clean(contender: str, ds: DataSet, url: str, digest: str, pids: tuple[int, ...]) -> dict:
    return clean_run(lambda: measure(contender, ds, url, digest), pids)


def start_endpoint(names: tuple[str, ...], cap: float):
    ctx = mp.get_context("spawn")  # the endpoint process shares nothing with this one
    parent_end, child_end = ctx.Pipe()
    server = ctx.Process(target=serve, args=(child_end, names, cap), daemon=True)
    server.start()
    url, digests = parent_end.recv()
    return server, url, digests


def main(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS,
                        help=f"interleaved rounds (fewer than {MIN_ROUNDS}: printed, not written to the docs)")
    parser.add_argument("--cap-mb", type=float, default=80.0,
                        help="the capped endpoint's bandwidth per connection, MB/s (default 80)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.cap_mb <= 0:
        parser.error("--rounds and --cap-mb must be positive")
    os.environ.update(ENV)
    from streamwatch.reader import DEFAULT_CONCURRENCY, PART_SIZE
    from streamwatch.reader.objects import RANGE_CONCURRENCY
    default = DEFAULT_CONCURRENCY
    mine = f"reader:{default}"
    labels = {"serial": "serial boto3 (baseline)", "reader:32": "reader, concurrency 32",
              mine: f"reader, default (concurrency {default})",
              "reader2:32": "reader, 2 processes x 16 (for comparison)",
              "s5cmd": "s5cmd, defaults", "aws": "aws s3 cp --recursive, defaults"}
    conditions = {"small": (SMALL, "plain", list(labels)),
                  "large": (LARGE, "plain", [c for c in labels if c != "reader2:32"]),
                  "capped": (LARGE, "capped", ["serial", mine, "s5cmd"])}
    plain, plain_url, digests = start_endpoint(("small", "large"), 0.0)
    capped, capped_url, capped_digests = start_endpoint(("large",), args.cap_mb * 1e6)
    urls, pids = {"plain": plain_url, "capped": capped_url}, (plain.pid, capped.pid)
    bodies = {"plain": digests, "capped": capped_digests}  # each endpoint made its own random bodies
    runs: dict[tuple[str, str], list[dict]] = {}
    started = time.perf_counter()
    try:
        for ds in (SMALL, LARGE):  # untimed: the endpoint and this VM's fresh tmpfs pages warm up for everyone
            for contender in (mine, "s5cmd"):
                measure(contender, ds, plain_url, digests[ds.name])
        for _ in range(args.rounds):
            for condition, (ds, endpoint, contenders) in conditions.items():
                for contender in contenders:
                    runs.setdefault((condition, contender), []).append(
                        measure_clean(contender, ds, urls[endpoint], bodies[endpoint][ds.name], pids))
    finally:
        plain.terminate()
        capped.terminate()
    figures: dict[str, dict] = {}
    for condition, (ds, _, contenders) in conditions.items():
        serial_med = median_rate(runs[(condition, "serial")])
        for contender in contenders:
            figures[f"{condition}/{contender}"] = figure(runs[(condition, contender)], ds, serial_med)
    fig = lambda condition, contender: figures[f"{condition}/{contender}"]  # noqa: E731
    limit = 32 / LATENCY
    parts = math.ceil(LARGE.size / PART_SIZE)
    in_flight = min(LARGE.objects, math.ceil(RANGE_CONCURRENCY / parts) + 1)  # objects streaming at once
    growth = fig("large", mine)["peak_rss_mib"] - (fig("large", mine)["rss_before_mib"] or 0)
    memory_bound = 3 * PART_SIZE / 2**20 * in_flight
    connections = min(RANGE_CONCURRENCY, LARGE.objects * parts)
    capped_limit = min(connections * args.cap_mb, fig("large", mine)["median_mb_per_s"])
    flagged = sorted(name for name, f in figures.items() if f["disturbed_runs"])
    rate = lambda condition, contender: fig(condition, contender)["median_objects_per_s"]  # noqa: E731
    targets = {
        "default_ge_s5cmd_small": rate("small", mine) >= rate("small", "s5cmd"),
        "default_ge_s5cmd_large": rate("large", mine) >= rate("large", "s5cmd"),
        "cpu_per_gib_le_s5cmd_large": fig("large", mine)["cpu_s_per_gib"] <= fig("large", "s5cmd")["cpu_s_per_gib"],
        "c32_ge_80pct_latency_limit": fig("small", "reader:32")["median_objects_per_s"] >= 0.8 * limit,
        "cpu_le_0.5s_per_1000_small": max(fig("small", "reader:32")["cpu_s_per_1000_objects"],
                                          fig("small", mine)["cpu_s_per_1000_objects"]) <= 0.5,
        "capped_ge_80pct_of_limit": fig("capped", mine)["median_mb_per_s"] >= 0.8 * capped_limit,
        "large_peak_memory_le_3_parts_per_object_in_flight": growth <= memory_bound,
        "no_disturbed_figure": not flagged,
    }
    elapsed = time.perf_counter() - started
    head = (f"{LATENCY * 1000:.0f} ms per request, endpoint in its own process, {os.cpu_count()} cores, files to "
            f"{SCRATCH or 'the temp dir'}; best and median of {args.rounds} interleaved rounds; x serial on medians; "
            f"capped: {args.cap_mb:g} MB/s per connection")
    print(f"{head}; endpoints {plain_url} {capped_url}")
    print_table([(condition, labels[contender], fig(condition, contender))
                 for condition, (_, _, contenders) in conditions.items() for contender in contenders], 7, 49)
    print(f"latency limit (small, 32 in flight): {limit:.0f} obj/s; reader at 32 = "
          f"{fig('small', 'reader:32')['median_objects_per_s'] / limit:.0%} of it")
    print(f"capped: limit min({connections} connections x {args.cap_mb:g} MB/s, uncapped "
          f"{fig('large', mine)['median_mb_per_s']:.0f} MB/s) = {capped_limit:.0f} MB/s; reader at its default = "
          f"{fig('capped', mine)['median_mb_per_s'] / capped_limit:.0%} of it")
    print(f"large set peak RSS at the default: {fig('large', mine)['peak_rss_mib']:.0f} MiB, {growth:.0f} MiB above "
          f"the process before reading; bound 3 parts x {PART_SIZE >> 20} MiB x {in_flight} objects in flight = "
          f"{memory_bound:.0f} MiB")
    print_verdict(figures, flagged, targets, elapsed)
    if args.rounds >= MIN_ROUNDS:
        write_doc(head, args.rounds, conditions, labels, figures, targets, limit, growth, memory_bound, in_flight,
                  connections, args.cap_mb, capped_limit, flagged, mine)
    else:
        print(f"fewer than {MIN_ROUNDS} rounds: docs/benchmarks.md and the README left as they are")
    print(json.dumps({"benchmark": "reader", "latency_ms": LATENCY * 1000, "rounds": args.rounds,
                      "cap_mb_per_connection": args.cap_mb,
                      "data_sets": {d.name: {"objects": d.objects, "object_bytes": d.size,
                                             "serial_objects": d.serial_objects} for d in (SMALL, LARGE)},
                      "latency_limit_32": limit, "capped_limit_mb_per_s": capped_limit, "figures": figures,
                      "large_rss_growth_mib": round(growth, 1), "large_memory_bound_mib": memory_bound,
                      "flagged": flagged, "targets": targets}))
    return 0


def write_doc(head, rounds, conditions, labels, figures, targets, limit, growth, bound, in_flight, connections,
              cap_mb, capped_limit, flagged, mine) -> None:
    """The "reader" section of docs/benchmarks.md, and the README's block from the same figures."""
    from docs_section import update_doc

    from streamwatch.reader import PART_SIZE
    fig = lambda condition, contender: figures[f"{condition}/{contender}"]  # noqa: E731
    small = fig("small", "reader:32")["median_objects_per_s"]
    verdict = "; ".join(f"{k}: {'pass' if v else 'FAIL'}" for k, v in targets.items())
    lines = ["## Reader (`bench/reader.py`)", "", *disturbed_warning(flagged, TRIES),
             f"{SMALL.objects:,} x {SMALL.size >> 10} KiB and {LARGE.objects} x {LARGE.size >> 20} MiB behind a "
             f"loopback S3 endpoint, and the large set again behind one that caps each connection at {cap_mb:g} MB/s "
             f"(capped); {head}. Each contender runs in its own process: CPU and peak RSS are its own (the reader's "
             "CPU and time cover its list and fetch; the CLIs are timed from spawn to exit). A run during which other "
             "work took more than 0.25 cores is redone. Before each run the benchmark writes and deletes as many "
             "bytes as the run will need: this VM hands memory freed for about 2 s back to its host, and touching it "
             "again costs about 3x the system time (bench/quiet.py), so without it a contender that starts fast "
             "(s5cmd) ran on warm pages and one that imports for a second (Python) on cold ones.", "",
             *doc_table([(condition, labels[contender], fig(condition, contender))
                         for condition, (_, _, contenders) in conditions.items() for contender in contenders])]
    lines += ["", f"Latency limit for the small set at 32 in flight: {limit:,.0f} obj/s; the reader at 32 reaches "
              f"{small / limit:.0%}. Capped: the limit is the smaller of {connections} connections x {cap_mb:g} MB/s "
              f"and the uncapped reader's {fig('large', mine)['median_mb_per_s']:,.0f} MB/s, {capped_limit:,.0f} MB/s;"
              f" the reader reaches {fig('capped', mine)['median_mb_per_s'] / capped_limit:.0%}. Large set peak "
              f"memory at the default: {growth:.0f} MiB above the process before reading (bound: 3 parts of "
              f"{PART_SIZE >> 20} MiB x {in_flight} objects in flight = {bound:.0f} MiB).", "", f"Targets: {verdict}."]
    update_doc("reader", "\n".join(lines))

    def cell(condition: str, contender: str, key: str, fmt: str) -> str:
        return format(figures[f"{condition}/{contender}"][key], fmt) if f"{condition}/{contender}" in figures else "-"

    readme = ["Measured by `bench/reader.py` (2 cores, a loopback S3 endpoint answering in 20 ms, medians of "
              f"{rounds} interleaved rounds; capped: {cap_mb:g} MB/s per "
              "connection, as S3 caps one GET stream; all figures in docs/benchmarks.md)"
              f"{': DISTURBED, not for publishing' if flagged else ''}:", "",
              f"| client | {SMALL.objects:,} x {SMALL.size >> 10} KiB: obj/s | x serial | CPU s per 1,000 | "
              f"{LARGE.objects} x {LARGE.size >> 20} MiB: MB/s | CPU s per GiB | capped: MB/s | peak RSS, "
              f"{LARGE.size >> 20} MiB set |", "|---|---|---|---|---|---|---|---|"]
    for contender in ("serial", "reader:32", mine, "s5cmd", "aws"):
        label = labels[contender].replace("aws s3 cp --recursive", "`aws s3 cp --recursive`")
        rate = cell("small", contender, "median_objects_per_s", ",.0f")
        if contender == "reader:32":
            rate += f" ({small / limit:.0%} of the {limit:,.0f} latency limit)"
        readme.append(f"| {label} | {rate} | {cell('small', contender, 'x_serial', '.0f')}x | "
                      f"{cell('small', contender, 'cpu_s_per_1000_objects', '.2f')} | "
                      f"{cell('large', contender, 'median_mb_per_s', ',.0f')} | "
                      f"{cell('large', contender, 'cpu_s_per_gib', '.2f')} | "
                      f"{cell('capped', contender, 'median_mb_per_s', ',.0f')} | "
                      f"{cell('large', contender, 'peak_rss_mib', '.0f')} MiB |")
    readme += ["", f"Targets in this run: {verdict}."]
    update_doc("reader", "\n".join(readme), path=ROOT / "README.md")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, url, name, concurrency, out = sys.argv[2:7]
        child(mode, url, name, int(concurrency), out)
        sys.exit(0)
    sys.exit(main())
