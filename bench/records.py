"""Records benchmark (issue 15): what exact records by sequence numbers cost, and what they buy. One run, three parts.

1. Extraction: `envelope.scan` (the monitor's one regex scan per object) on a 64 MiB object of ~200-byte enveloped
   records (4 producers, contiguous sequence runs of 500 as Firehose buffers hold them), fed in the reader's
   256 KiB chunks, one process (one core), against a plain `data.count(b"\\n")` on the same bytes; and the same
   object gzip-compressed (as Firehose's GZIP delivery), against zlib inflating it plus counting newlines.
   MB/s are of uncompressed bytes (1 MB = 10^6 bytes). Best of ROUNDS, interleaved.
2. DynamoDB: `Store.count` on one ThreadedMotoServer, the same stream of objects (8 producers, 60 s buffers split
   into 1-3 objects, landing slightly out of order, one buffer written twice) counted with scans (records mode:
   envelope, SEQS merged in the same transaction) and without (stability mode: what the monitor writes today),
   both one object per call and in the monitor's 5 s batching windows. After every call the SEQS item is read
   (apart, not counted) for its size: bytes of the encoded intervals and intervals per producer.
3. The duplicate traces (bench/workloads/dup-*.json) through records mode, as in bench/completion.py, with the
   records rule as it was before (line counts, duplicates included) for reference.
Prints the tables and pass/fail per target, writes the "records" section of docs/benchmarks.md. JSON line last.
"""

from __future__ import annotations

import gzip
import json
import random
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lambdas"))
sys.path.insert(0, str(ROOT / "bench"))

import boto3  # noqa: E402

from streamwatch.core import envelope  # noqa: E402
from streamwatch.core.envelope import Scan  # noqa: E402
from streamwatch.core.settings import Settings  # noqa: E402
from streamwatch.local import infra  # noqa: E402
from streamwatch.local.server import moto_server  # noqa: E402
from streamwatch.reader import CHUNK  # noqa: E402
from streamwatch.runtime import aws  # noqa: E402
from streamwatch.state.store import MAX_SEQS_BYTES, SEQS, CountedObject, Store, dataset_key  # noqa: E402

OBJECT_BYTES = 64 << 20
PRODUCERS_SCAN, RUN = 4, 500  # producers in the object, records per contiguous run (a PutRecordBatch)
ROUNDS = 5
TARGET_MB_S = 100
MB = 1e6


# --- 1. extraction ----------------------------------------------------------------------------------------------
def make_object(rng: random.Random) -> tuple[bytes, dict[str, int]]:
    """~200-byte records as producers send them (envelope, the rule's field, the record), one a line."""
    lines, seqs, size, n = [], dict.fromkeys((f"producer-{i}" for i in range(PRODUCERS_SCAN)), 0), 0, 0
    while size < OBJECT_BYTES:
        producer = f"producer-{n % PRODUCERS_SCAN}"
        for _ in range(RUN):
            record = {"order_id": rng.randrange(10**9), "customer": f"c-{rng.randrange(10**6):06d}",
                      "amount": round(rng.uniform(1, 500), 2), "ts": f"2026-11-23T10:{rng.randrange(60):02d}:00Z",
                      "sku": f"sku-{rng.randrange(10**5):05d}", "note": "x" * rng.randint(20, 40)}
            line = envelope.wrap(record, producer, seqs[producer], {"dataset_id": "orders-2026-11-23"}) + b"\n"
            seqs[producer] += 1
            lines.append(line)
            size += len(line)
        n += 1
    return b"".join(lines)[:OBJECT_BYTES].rsplit(b"\n", 1)[0] + b"\n", seqs


def chunked(data: bytes) -> list[bytes]:
    return [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]


def newline_count(data: bytes) -> int:
    return data.count(b"\n")


def inflate_count(chunks: list[bytes]) -> int:
    inflate, n = zlib.decompressobj(16 + zlib.MAX_WBITS), 0
    for chunk in chunks:
        n += inflate.decompress(chunk).count(b"\n")
    return n + inflate.flush().count(b"\n")


def timed(fn, arg) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(arg)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def extraction(rng: random.Random) -> dict:
    data, _ = make_object(rng)
    lines = data.count(b"\n")
    plain_chunks = chunked(data)
    packed = gzip.compress(data, compresslevel=6)
    gz_chunks = chunked(packed)
    contenders = {"plain": {"envelope.scan": (envelope.scan, plain_chunks),
                            "data.count(b'\\n')": (newline_count, data)},
                  "gzip": {"envelope.scan": (envelope.scan, gz_chunks),
                           "inflate + count(b'\\n')": (inflate_count, gz_chunks)}}
    times = {(k, c): [] for k, cs in contenders.items() for c in cs}
    results = {}
    for _ in range(ROUNDS):  # interleaved, so a neighbour's load hits every contender alike
        for kind, cs in contenders.items():
            for name, (fn, arg) in cs.items():
                wall, cpu, out = timed(fn, arg)
                times[(kind, name)].append((wall, cpu))
                results[(kind, name)] = out
    for kind in contenders:  # the scan found every record and every sequence number
        scan: Scan = results[(kind, "envelope.scan")]
        assert scan.lines == lines and scan.foreign == 0, (kind, scan.lines, lines)
        assert all(len(v) == 1 and v[0][0] == 0 for v in scan.seqs.values()), scan.seqs
        assert sum(envelope.size(v) for v in scan.seqs.values()) == lines
    rows = []
    for kind, cs in contenders.items():
        for name in cs:
            walls = sorted(w for w, _ in times[(kind, name)])
            best, med = walls[0], walls[len(walls) // 2]
            cpu = sorted(c for _, c in times[(kind, name)])[len(walls) // 2]
            row = {"object": kind, "contender": name, "mb_s_best": len(data) / best / MB,
                   "mb_s_median": len(data) / med / MB, "lines_s_median": lines / med, "cpu_s_median": cpu,
                   "wall_s_median": med}
            rows.append(row)
        scan_row, ref_row = rows[-2], rows[-1]  # the scan first, its reference second
        scan_row["vs_reference"] = scan_row["mb_s_median"] / ref_row["mb_s_median"]
    return {"bytes": len(data), "gzip_bytes": len(packed), "lines": lines, "avg_line": len(data) / lines,
            "rows": rows}


# --- 2. DynamoDB ------------------------------------------------------------------------------------------------
def object_stream(rng: random.Random, producers: int = 8, hours: float = 2, interval: int = 60,
                  batches_per_s: float = 1.0) -> list[dict]:
    """Objects as Firehose lands them: each producer puts runs of RUN sequence numbers, 4 calls in flight (so
    neighbouring runs may arrive swapped); a buffer cut every `interval` s of arrival is written as 1-3 objects;
    delivery 3-30 s plus up to half an interval of partitioning jitter, so objects land slightly out of order;
    buffer 40 is written twice."""
    arrivals = []
    for p in range(producers):
        t, seq = rng.uniform(0, 5), 0
        while t < hours * 3600:
            arrivals.append((t + rng.uniform(0.05, 4.0), f"producer-{p}", seq, seq + RUN - 1))
            seq += RUN
            t += rng.expovariate(batches_per_s)
    arrivals.sort()
    buffers: list[list[tuple]] = []
    for a in arrivals:
        index = int(a[0] // interval)
        while len(buffers) <= index:
            buffers.append([])
        buffers[index].append(a)
    objects = []
    for i, buffer in enumerate(buffers):
        if not buffer:
            continue
        flush = (i + 1) * interval
        parts = rng.randint(1, 3)
        cut = [len(buffer) * k // parts for k in range(parts + 1)]
        for k in range(parts):
            part = buffer[cut[k]:cut[k + 1]]
            seqs: dict[str, list[int]] = {}
            for _, producer, first, last in part:
                seqs.setdefault(producer, []).extend((first, last))
            ranges = {p: envelope.merge(zip(v[::2], v[1::2], strict=True)) for p, v in seqs.items()}
            land = flush + rng.uniform(3, 30) + rng.uniform(0, interval / 2)
            objects.append({"key": f"part-{i:05d}-{k}", "t": land, "seqs": ranges,
                            "lines": RUN * len(part), "size": RUN * len(part) * 200})
            if i == 40 and k == 0:  # Firehose writes this buffer again as a second object
                objects.append({**objects[-1], "key": f"part-{i:05d}-{k}-again", "t": land + 20})
    objects.sort(key=lambda o: o["t"])
    return objects


def landing_disorder(objects: list[dict]) -> int:
    """Objects landing before one that was buffered earlier (by key order)."""
    return sum(1 for a, b in zip(objects, objects[1:], strict=False) if b["key"] < a["key"])


def batches(objects: list[dict], cadence: str) -> list[list[dict]]:
    if cadence == "one per call":
        return [[o] for o in objects]
    out, start = [], None  # the monitor's batching window: events within 5 s of the batch's first go together
    for o in objects:
        if start is None or o["t"] - start > 5:
            out.append([])
            start = o["t"]
        out[-1].append(o)
    return out


def seqs_item_size(table, dataset_id: str) -> tuple[int, int, int]:
    """(bytes of the encoded intervals as the store sizes them, max intervals per producer, producers)."""
    item = table.get_item(Key=dataset_key(dataset_id, SEQS), ConsistentRead=True).get("Item") or {}
    encoded = item.get("producers", {})
    size = sum(len(p) + len(v) for p, v in encoded.items())
    most = max((len(envelope.decode(v)) for v in encoded.values()), default=0)
    return size, most, len(encoded)


def dynamodb(rng: random.Random) -> dict:
    import moto_transactions
    moto_transactions.install()  # moto backs up the whole table per transaction action; see that module
    objects = object_stream(rng)
    sent = {}
    for o in objects:
        for p, ranges in o["seqs"].items():
            sent[p] = max(sent.get(p, 0), ranges[-1][1] + 1)
    unmerged = sum(len(p) + len(envelope.encode(r)) for o in objects for p, r in o["seqs"].items())
    out = {"objects": len(objects), "producers": len(sent), "records": sum(sent.values()),
           "lines": sum(o["lines"] for o in objects), "out_of_order": landing_disorder(objects),
           "unmerged_bytes": unmerged, "runs": []}
    with moto_server():
        local = infra.create(Settings(), "bench")
        name = local.resources.table
        store = Store(name)
        inspect = boto3.resource("dynamodb").Table(name)  # its own client: its reads are not counted
        calls = {"n": 0}
        store.client.meta.events.register("before-send.dynamodb.*", lambda **kw: calls.update(n=calls["n"] + 1))
        for cadence in ("one per call", "monitor batches (5 s)"):
            for mode in ("records", "stability"):
                dataset = f"{mode}-{cadence.split()[0]}"
                before, requests, max_bytes, max_intervals = calls["n"], 0, 0, 0
                t0 = time.perf_counter()
                for batch in batches(objects, cadence):
                    counted = [CountedObject(dataset_id=dataset, key=o["key"], size=o["size"], etag=o["key"],
                                             event_ts=o["t"], scan=Scan(lines=o["lines"], foreign=0, seqs=o["seqs"])
                                             if mode == "records" else None) for o in batch]
                    outcome = store.count(counted, now=batch[-1]["t"])
                    assert not outcome.failed and not outcome.duplicates
                    requests += outcome.requests
                    if mode == "records":
                        size, most, _ = seqs_item_size(inspect, dataset)
                        max_bytes, max_intervals = max(max_bytes, size), max(max_intervals, most)
                wall = time.perf_counter() - t0
                state = store.get_state(dataset)
                calls_made = calls["n"] - before - 1  # less the get_state
                assert calls_made == requests, (calls_made, requests)  # the store's own tally is every request
                final_bytes, final_intervals, producers = seqs_item_size(inspect, dataset)
                exact = state.objects == len(objects)
                if mode == "records":
                    intervals = store.seqs(dataset)
                    exact = exact and state.lines == out["lines"] and state.distinct == out["records"] and all(
                        envelope.covers(intervals[p], n) for p, n in sent.items())
                out["runs"].append({"cadence": cadence, "mode": mode, "calls": len(batches(objects, cadence)),
                                    "requests": requests, "requests_seen": calls_made,
                                    "per_object": requests / len(objects), "wall_s": wall, "exact": exact,
                                    "max_seqs_bytes": max_bytes, "max_intervals_per_producer": max_intervals,
                                    "final_seqs_bytes": final_bytes, "final_intervals_per_producer": final_intervals,
                                    "seqs_producers": producers})
    aws.reset()
    return out


# --- 3. duplicate traces ------------------------------------------------------------------------------------------
def duplicates() -> list[dict]:
    from completion import DUPLICATES, TRACES, complete_at, ours, without_seqs

    from streamwatch.core.simulate import simulate
    _, make = ours("records")
    rows = []
    for trace in (t for t in TRACES if t.name in DUPLICATES):
        done = complete_at(trace)
        probe, count_records, _ = make(trace)
        r = simulate(trace, probe, count_records=count_records)
        probe, count_records, _ = make(trace)
        old = simulate(without_seqs(trace), probe, count_records=count_records)
        lines = sum(trace.records)
        sent = sum(p["records_sent"] for p in trace.producers)
        rows.append({"trace": trace.name, "objects": len(trace.times), "lines_per_record": lines / sent,
                     "complete_at": done, "declared_at": r.declared_at, "latency_s": r.declared_at - done,
                     "false_positive": r.false_positive, "fallback": r.fallback, "old_declared_at": old.declared_at,
                     "old_false_positive": old.declared_at < done})
    return rows


# --- report -------------------------------------------------------------------------------------------------------
def main() -> int:
    t_start = time.perf_counter()
    ext = extraction(random.Random(15))
    ddb = dynamodb(random.Random(1515))
    dup = duplicates()
    elapsed = time.perf_counter() - t_start
    by = {(r["object"], r["contender"]): r for r in ext["rows"]}
    scan_plain, scan_gz = by[("plain", "envelope.scan")], by[("gzip", "envelope.scan")]
    runs = {(r["cadence"], r["mode"]): r for r in ddb["runs"]}
    for (cadence, _), r in runs.items():
        r["vs_stability"] = r["per_object"] / runs[(cadence, "stability")]["per_object"]
    max_bytes = max(r["max_seqs_bytes"] for r in ddb["runs"])
    dup_latency = sorted(d["latency_s"] for d in dup if not d["false_positive"])
    targets = {f"scan_plain_ge_{TARGET_MB_S}MB_s_per_core": scan_plain["mb_s_median"] >= TARGET_MB_S,
               f"scan_gzip_ge_{TARGET_MB_S}MB_s_per_core": scan_gz["mb_s_median"] >= TARGET_MB_S,
               "counts_exact": all(r["exact"] for r in ddb["runs"]),
               "seqs_item_le_1pct_of_limit": max_bytes <= MAX_SEQS_BYTES / 100,
               "duplicates_zero_fp": len(dup) >= 3 and not any(d["false_positive"] for d in dup),
               "duplicates_median_latency_after_complete_le_5s":
                   bool(dup_latency) and dup_latency[len(dup_latency) // 2] <= 5}

    t1 = [f"One object: {ext['bytes'] / 2**20:.0f} MiB, {ext['lines']:,} records of {ext['avg_line']:.0f} bytes "
          f"({PRODUCERS_SCAN} producers, runs of {RUN}); gzip level 6: {ext['gzip_bytes'] / 2**20:.1f} MiB. "
          f"Chunks of {CHUNK >> 10} KiB, one process; best and median of {ROUNDS} interleaved rounds.", "",
          "| object | contender | MB/s (best) | MB/s (median) | lines/s (median) | CPU s (median) | scan / reference |",
          "|---|---|---|---|---|---|---|"]
    for r in ext["rows"]:
        ratio = f"{r['vs_reference']:.2f}x" if "vs_reference" in r else "1.00x (reference)"
        t1.append(f"| {r['object']} | {r['contender']} | {r['mb_s_best']:,.0f} | {r['mb_s_median']:,.0f} | "
                  f"{r['lines_s_median']:,.0f} | {r['cpu_s_median']:.3f} | {ratio} |")
    t2 = [f"{ddb['objects']} objects of one dataset ({ddb['producers']} producers, {ddb['records']:,} records, "
          f"{ddb['lines']:,} lines: one buffer written twice), {ddb['out_of_order']} landing before an object "
          "buffered earlier; one moto server, one table.", "",
          "| cadence | mode | Store.count calls | DynamoDB requests | per object | vs stability | exact | max SEQS "
          "bytes | max intervals per producer | final SEQS bytes | final intervals per producer |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in ddb["runs"]:
        seqs = ((f"{r['max_seqs_bytes']:,} | {r['max_intervals_per_producer']} | {r['final_seqs_bytes']:,} | "
                 f"{r['final_intervals_per_producer']}") if r["mode"] == "records" else "- | - | - | -")
        t2.append(f"| {r['cadence']} | {r['mode']} | {r['calls']} | {r['requests']} | {r['per_object']:.2f} | "
                  f"{r['vs_stability']:.2f}x | {r['exact']} | {seqs} |")
    t3 = ["| trace | objects | lines per record sent | complete at s | records mode declares at s | latency after "
          "complete s | false positive | old rule (line count) declares at s | old rule false positive |",
          "|---|---|---|---|---|---|---|---|---|"]
    for d in dup:
        t3.append(f"| {d['trace']} | {d['objects']} | {d['lines_per_record']:.2f} | {d['complete_at']:.1f} | "
                  f"{d['declared_at']:.1f} | {d['latency_s']:+.1f} | {d['false_positive']} | "
                  f"{d['old_declared_at']:.1f} | {d['old_false_positive']} |")
    bound = (f"SEQS item: at most {max_bytes:,} bytes of encoded intervals at any point "
             f"({100 * max_bytes / MAX_SEQS_BYTES:.2f}% of the store's {MAX_SEQS_BYTES:,}-byte cap; the same "
             f"ranges kept per object would take {ddb['unmerged_bytes']:,}); intervals per producer stay at the "
             "gaps left by objects still in flight, and merge to one per producer once all landed.")
    text = "\n".join(["### Extraction", "", *t1, "", "### DynamoDB requests per object", "", *t2, "", bound, "",
                      "### Duplicate traces (records mode)", "", *t3])
    print(text)
    print("\ntargets:", ", ".join(f"{k}={'PASS' if v else 'FAIL'}" for k, v in targets.items()))
    print(f"ran {elapsed:.1f} s")
    update_doc_section(text, targets)
    print(json.dumps({"benchmark": "records", "elapsed_s": round(elapsed, 1), "targets": targets,
                      "extraction": {f"{r['object']} {r['contender']}": {
                          "mb_s_median": round(r["mb_s_median"], 1), "mb_s_best": round(r["mb_s_best"], 1),
                          "lines_s_median": round(r["lines_s_median"]),
                          **({"vs_reference": round(r["vs_reference"], 3)} if "vs_reference" in r else {})}
                          for r in ext["rows"]},
                      "dynamodb": {f"{r['cadence']} / {r['mode']}": {
                          "requests_per_object": round(r["per_object"], 3), "vs_stability": round(r["vs_stability"], 3),
                          "exact": r["exact"], "max_seqs_bytes": r["max_seqs_bytes"],
                          "max_intervals_per_producer": r["max_intervals_per_producer"]} for r in ddb["runs"]},
                      "duplicates": {d["trace"]: {"latency_after_complete_s": round(d["latency_s"], 3),
                                                  "false_positive": d["false_positive"],
                                                  "old_rule_false_positive": d["old_false_positive"]} for d in dup}}))
    return 0 if all(targets.values()) else 1


def update_doc_section(text: str, targets: dict) -> None:
    from docs_section import update_doc
    update_doc("records", "\n".join([
        "## Records (`bench/records.py`)", "",
        "What exact records by sequence numbers (issue 15) cost: extracting the envelope from delivered objects, "
        "DynamoDB requests per object with the SEQS merge against stability mode's plain count, the SEQS item's "
        "size; and what they buy on the duplicate traces. One run.", "", text, "",
        "Targets: " + "; ".join(f"{k}: {'pass' if v else 'FAIL'}" for k, v in targets.items()) + "."]))


if __name__ == "__main__":
    sys.exit(main())
