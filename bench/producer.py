"""Producer benchmark (issue 10): the producer client's records/s against a plain boto3 PutRecordBatch loop, at
200-byte and 10 KiB records, and what Firehose bills per record, packed and unpacked.

Fair by construction: one Sandbox (moto on 127.0.0.1), ONE boto3 Firehose client object shared by every
contender (the client gets it as `Run.attach(..., firehose=fh)`), so every PutRecordBatch of either contender goes
through botocore's validation and serialization (base64, JSON), the sandbox's before-call hook (which parses the
body as a server would) and the same LocalFirehose (de-aggregation, partitioning, buffering). The plain loop is
what a user writes by hand: serial, json.dumps per record, calls of <= 500 records and <= 4 MiB, refused entries
resent with backoff. Its records carry their `dataset_id` (the stream partitions by it); the client is given the
same records without it (it adds the rule's fields and its envelope), so both send the same JSON plus the
client's `"_sw":"<producer>:<seq>"`. "200-byte" is the plain record's size. The client's time covers the whole
`with run.producer(...)` block: its started/done reports and nudge to DynamoDB too.

Two conditions, because the emulation answers in microseconds: `cpu` (no added latency: every contender is
CPU-bound in this one process, so the figure is the cost of each one's own work, and the client's 4 calls in
flight cannot help) and `latency` (20 ms of service time per PutRecordBatch, a sleep in front of the emulation,
so calls in flight overlap as they do against Firehose).

Each measurement writes its own partition; buffers are far from their interval (900 s at speed 1) and size
(128 MiB) limits, so nothing is written to S3 while timing (no monitor work in the background): the benchmark
checks the partition holds every record, one line each, then drops it. Billing is LocalFirehose's count (each
Firehose record rounded up to 5 KiB), checked against the client's own report. 3 interleaved rounds (order rotated
each round) after a warm-up; best and median. Prints the figures and pass/fail; the last line is one JSON object.
"""

from __future__ import annotations

import json
import logging
import os
import random
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lambdas"))
sys.path.insert(0, str(ROOT / "bench"))

import boto3  # noqa: E402

from streamwatch import aws  # noqa: E402
from streamwatch.client import Run  # noqa: E402
from streamwatch.local.sandbox import Sandbox  # noqa: E402
from streamwatch.producing import BILLING_UNIT, MAX_BATCH_BYTES, MAX_BATCH_RECORDS  # noqa: E402
from streamwatch.settings import Settings  # noqa: E402

ROUNDS = 3
SIZES = {"200B": (200, 100_000), "10KiB": (10 * 1024, 10_000)}  # record bytes (plain JSON), records per run
CONTENDERS = {"plain": "plain boto3 loop (baseline)", "client": "client, unpacked",
              "client-packed": "client, packed"}
CONDITIONS = {"cpu": 0.0, "latency": 0.020}  # service time per PutRecordBatch (see Latency)
TARGET_PACKING = 20  # packed 200-byte billing <= 1/20 of unpacked (25x is the ideal: 500 x 200 B in 20 units)


def make_records(size: int, n: int, dataset_id: str) -> list[dict]:
    """n records whose compact JSON (with the dataset field, as the plain loop sends it) is exactly `size` bytes."""
    rng, pads, out = random.Random(size), {}, []
    for i in range(n):
        doc = {"dataset_id": dataset_id, "seq": i, "sensor": f"s-{rng.randrange(1000):03d}",
               "value": round(rng.uniform(0, 40), 3), "payload": ""}
        pad = size - len(json.dumps(doc, separators=(",", ":")))
        if pad not in pads:
            pads[pad] = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=pad))
        doc["payload"] = pads[pad]
        out.append(doc)
    return out


def plain_loop(fh, stream: str, records: list[dict]) -> int:
    """What a user writes by hand: serial PutRecordBatch, <= 500 records and <= 4 MiB a call, refused entries
    resent with backoff (8 attempts). Returns the calls made."""
    calls = 0

    def send(pending: list[dict]) -> None:
        nonlocal calls
        for attempt in range(8):
            if attempt:
                time.sleep(random.uniform(0, min(5.0, 0.1 * 2 ** attempt)))
            calls += 1
            response = fh.put_record_batch(DeliveryStreamName=stream, Records=pending)
            if not response["FailedPutCount"]:
                return
            pending = [r for r, x in zip(pending, response["RequestResponses"], strict=True) if x.get("ErrorCode")]
        raise RuntimeError(f"{len(pending)} records refused after 8 attempts")

    batch, size = [], 0
    for record in records:
        data = json.dumps(record, separators=(",", ":")).encode()
        if batch and (len(batch) == MAX_BATCH_RECORDS or size + len(data) > MAX_BATCH_BYTES):
            send(batch)
            batch, size = [], 0
        batch.append({"Data": data})
        size += len(data)
    if batch:
        send(batch)
    return calls


class Latency:
    """Service time per PutRecordBatch, added in front of the emulation (a sleep: concurrent calls overlap, as
    they do against the real service). 0: every contender is CPU-bound in this process."""

    def __init__(self, firehose) -> None:
        self.seconds, self.inner = 0.0, firehose.put_record_batch
        firehose.put_record_batch = self

    def __call__(self, *args, **kwargs) -> dict:
        if self.seconds:
            time.sleep(self.seconds)
        return self.inner(*args, **kwargs)


def measure(sb: Sandbox, fh, contender: str, size_name: str, tag: str, n: int | None = None) -> dict:
    """One timed run into its own partition; checks every record arrived (one line each), then drops it."""
    size, default_n = SIZES[size_name]
    n = n or default_n
    dataset_id = f"{size_name}-{contender[:8]:8s}-{tag}".replace(" ", "_")  # same length for every contender
    plain = make_records(size, n, dataset_id)
    records = plain if contender == "plain" else [{k: v for k, v in r.items() if k != "dataset_id"} for r in plain]
    calls_before, billed_before = sb.firehose.calls, sb.firehose.billed_bytes
    cpu0, t0 = time.process_time(), time.perf_counter()
    report = None
    if contender == "plain":
        calls = plain_loop(fh, sb.resources.stream, records)
    else:
        run = Run.attach(dataset_id, firehose=fh)
        with run.producer("p", pack=contender == "client-packed") as producer:
            producer.put_many(records)
        report = producer.report
        calls = report.batches
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    with sb.firehose.lock:
        buffer = sb.firehose.buffers.pop((dataset_id,), None)
    lines = len(buffer.records) if buffer else 0
    billed = sb.firehose.billed_bytes - billed_before
    assert lines == n, f"{dataset_id}: {lines} of {n} records reached the stream"
    assert sb.firehose.calls - calls_before == calls, (sb.firehose.calls - calls_before, calls)
    wire = (buffer.size - lines) / lines  # bytes per record as sent (LocalFirehose adds a newline to each)
    if report is not None:
        assert report.records_sent == n and not report.failed and report.billed_bytes == billed, report
    return {"elapsed": elapsed, "cpu": cpu, "records": n, "calls": calls, "billed_bytes": billed, "wire_bytes": wire}


def main() -> int:
    started = time.perf_counter()
    logging.getLogger("streamwatch").setLevel(logging.ERROR)  # "producer p ... was not registered": attach, on purpose
    settings = Settings(buffer_interval_s=900, buffer_size_mib=128)
    runs: dict[tuple[str, str, str], list[dict]] = {}
    order = list(CONTENDERS)
    with Sandbox(settings, speed=1.0, log=lambda _m: None, name="bench") as sb:
        latency = Latency(sb.firehose)
        fh = boto3.client("firehose")  # made inside the sandbox: its PutRecordBatch reaches the emulation
        for size_name in SIZES:  # warm-up, untimed
            for contender in CONTENDERS:
                measure(sb, fh, contender, size_name, "w", n=2000)
        for r in range(ROUNDS):
            for condition, seconds in CONDITIONS.items():
                latency.seconds = seconds
                for size_name in SIZES:
                    for contender in order[r % len(order):] + order[:r % len(order)]:
                        runs.setdefault((condition, size_name, contender), []).append(
                            measure(sb, fh, contender, size_name, f"{condition[0]}{r}"))
        assert sb.firehose.errors == 0, f"{sb.firehose.errors} records went to the error output"
        endpoint = sb.endpoint
    aws.reset()
    figures, rows = {}, []
    for condition in CONDITIONS:
        for size_name, (size, _n) in SIZES.items():
            plain_med = statistics.median(x["records"] / x["elapsed"] for x in runs[(condition, size_name, "plain")])
            for contender, label in CONTENDERS.items():
                got = runs[(condition, size_name, contender)]
                rates = [x["records"] / x["elapsed"] for x in got]
                last = got[-1]
                fig = {"records_per_s": round(max(rates)), "median_records_per_s": round(statistics.median(rates)),
                       "median_mb_per_s": round(statistics.median(rates) * size / 1e6, 1),
                       "x_plain": round(statistics.median(rates) / plain_med, 3),
                       "cpu_us_per_record": round(statistics.median(x["cpu"] / x["records"] for x in got) * 1e6, 1),
                       "calls": last["calls"], "wire_bytes_per_record": round(last["wire_bytes"], 1),
                       "billed_kb_per_record": round(last["billed_bytes"] / last["records"] / 1024, 4)}
                figures[f"{condition}/{size_name}/{contender}"] = fig
                rows.append((condition, size_name, label, fig))
    f = figures.__getitem__
    packing = {s: f(f"cpu/{s}/client")["billed_kb_per_record"] / f(f"cpu/{s}/client-packed")["billed_kb_per_record"]
               for s in SIZES}
    targets = {f"{mode}_ge_plain_{c}_{s}": f(f"{c}/{s}/{name}")["x_plain"] >= 1.0
               for c in CONDITIONS for mode, name in (("packed", "client-packed"), ("unpacked", "client"))
               for s in SIZES}
    targets[f"packed_200B_billing_le_1/{TARGET_PACKING}"] = packing["200B"] >= TARGET_PACKING
    elapsed = time.perf_counter() - started
    head = (f"one Sandbox (moto on 127.0.0.1, LocalFirehose behind the botocore hook), one shared boto3 client, "
            f"{os.cpu_count()} cores; best and median of {ROUNDS} interleaved rounds; x plain on medians")
    print(f"{head}; endpoint {endpoint}")
    print("conditions: " + "; ".join(f"{c} = {s * 1000:.0f} ms per PutRecordBatch" for c, s in CONDITIONS.items()))
    print(f"{'':14s}{'contender':30s} {'rec/s':>9s} {'median':>9s} {'MB/s med':>9s} {'x plain':>8s} "
          f"{'CPU us/rec':>10s} {'calls':>6s} {'B/rec sent':>10s} {'billed KB/rec':>13s}")
    for condition, size_name, label, x in rows:
        print(f"{condition:8s}{size_name:6s}{label:30s} {x['records_per_s']:9,d} {x['median_records_per_s']:9,d} "
              f"{x['median_mb_per_s']:9.1f} {x['x_plain']:7.2f}x {x['cpu_us_per_record']:10.1f} {x['calls']:6d} "
              f"{x['wire_bytes_per_record']:10.1f} {x['billed_kb_per_record']:13.4f}")
    print("billing, unpacked / packed: " + ", ".join(f"{s} {v:.1f}x" for s, v in packing.items())
          + f" (target for 200B: >= {TARGET_PACKING}x; ideal 25x)")
    print("targets:", ", ".join(f"{k}={'PASS' if v else 'FAIL'}" for k, v in targets.items()))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"benchmark ran {elapsed:.0f} s, peak RSS {peak:.0f} MiB")
    write_doc(head, rows, packing, targets)
    print(json.dumps({"benchmark": "producer", "rounds": ROUNDS,
                      "conditions_ms_per_call": {c: s * 1000 for c, s in CONDITIONS.items()},
                      "sizes": {k: {"record_bytes": s, "records": n} for k, (s, n) in SIZES.items()},
                      "billing_unit_bytes": BILLING_UNIT, "figures": figures,
                      "billing_ratio_unpacked_over_packed": {k: round(v, 2) for k, v in packing.items()},
                      "targets": targets, "elapsed_s": round(elapsed, 1)}))
    return 0


def write_doc(head: str, rows: list, packing: dict, targets: dict) -> None:
    from docs_section import update_doc
    lines = ["## Producer client (`bench/producer.py`)", "",
             f"{SIZES['200B'][1]:,} x 200-byte and {SIZES['10KiB'][1]:,} x 10 KiB JSON records per run; {head}. "
             "Every PutRecordBatch of every contender goes through botocore's serialization, the sandbox's hook and "
             "the same Firehose emulation (de-aggregation, partitioning, buffering), whose work is in every figure. "
             "The plain loop is serial, <= 500 records and <= 4 MiB a call, resending refused entries; the client "
             "runs at its defaults (4 calls in flight), its time includes its started/done reports to DynamoDB. "
             "Two conditions: `cpu`, the emulation answering at once (everything CPU-bound in one process: what "
             "each contender's own work costs), and `latency`, "
             f"{CONDITIONS['latency'] * 1000:.0f} ms of service time per call in front of it (a sleep, so calls "
             "in flight overlap, as against Firehose).", "",
             "| condition | records | contender | rec/s (best) | rec/s (median) | MB/s (median) | x plain "
             "| CPU µs per record | calls | bytes sent per record | billed KB per record |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {c} | {s} | {label} | {x['records_per_s']:,} | {x['median_records_per_s']:,} | "
              f"{x['median_mb_per_s']:.1f} | {x['x_plain']:.2f}x | {x['cpu_us_per_record']:.1f} | {x['calls']:,} | "
              f"{x['wire_bytes_per_record']:.0f} | {x['billed_kb_per_record']:.3f} |" for c, s, label, x in rows]
    lines += ["", "Firehose bills each record rounded up to 5 KB (5,120 bytes, as `producing.BILLING_UNIT`): "
              f"packing cuts the bill {packing['200B']:.1f}x at 200 bytes (the envelope makes a record a little "
              f"larger than the ideal 25x assumes) and {packing['10KiB']:.2f}x at 10 KiB, where the envelope pushes "
              "an unpacked 10,240-byte record into a third 5 KB unit. CPU is the whole process's (the moto server "
              "and the emulation included), per record.", "",
              "Targets: " + "; ".join(f"{k}: {'pass' if v else 'FAIL'}" for k, v in targets.items()) + "."]
    update_doc("producer", "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
