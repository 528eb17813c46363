"""Scale benchmark (issue 11): what one dataset costs in AWS requests, measured with the real handlers in the
sandbox at N = 10, 100, 1000 concurrent datasets (--max 3000 adds 3000), in records mode (auto, a run registered
through the client) and in stability mode (mode=stability, nothing registered), each dataset landing exactly two
objects. Counts every request per service and per dataset, converts them to a cost per 1,000 datasets at on-demand
list prices, and checks every dataset got exactly one Ready (none early, no Amended, nothing in a DLQ).

How requests are counted (all in this process):
- botocore: a `before-parameter-build` hook on the sandbox's Lambda session (sb.lambda_session), which the handlers
  (streamwatch.runtime.aws) and the client use in its scope; the cached clients are forgotten after, so each is
  made again with it (a client copies the session's hooks when it is made). It fires once per API call, before
  the sandbox's Firehose hook answers PutRecordBatch, so those count too. Calls are attributed by thread: the
  `monitor` and `observer` pollers run the handlers; everything else on that session is the producer client (this
  script's driver threads and the client's sender threads).
  `before-send` counts HTTP attempts, so botocore retries show.
- The sandbox's own calls (its pollers' ReceiveMessage/DeleteMessageBatch standing in for Lambda's SQS event
  source, the Firehose emulation's PutObject, the event reader) go through its separate session's clients:
  hooked separately and reported apart, never mixed into the handlers'. The event source's requests are priced
  from them (non-empty receives and batch deletes); S3's notification to SQS is one message per object.
- obstore (Rust) does the monitor's GetObject outside botocore: `obstore.get` is wrapped in this process, one count
  per call (each is one GET; the monitor reads small objects in one call), and checked against the objects landed.
- DynamoDB request units are counted per call from its items: writes ceil(item KB) WRU (x2 inside
  TransactWriteItems), plus the same again for the `by_day` index on every write of a STATE item (it holds the
  index keys, projection ALL); consistent reads ceil(item / 4 KB) RRU per key (a missing key still costs 1),
  Query ceil(returned bytes / 4 KB), at least 1. Item sizes are each kind's LARGEST size at the end of the run
  (STATE, SEQS, OBJECT#, PRODUCER#, ...), by DynamoDB's size rules: an upper bound, as items grow.
- Lambda: invocations from the pollers; GB-s is a rough model, 512 MB x (10 ms per invocation + 10 ms per AWS
  request it makes), since in-process wall time on a shared moto says little about Lambda's.

Each dataset: one producer through the client, two bursts of 5 records 120 s (pipeline time) apart, more than a
buffer interval (60 s, up to 75 s with the emulation's jitter), so each burst lands as its own object. All N start
at once (16 driver threads, as fast as they go). Everything shares one GIL (~0.3 CPU s per dataset, most of it
moto's), so the clock runs at min(10, 3000 / N): slower for more datasets, keeping the drift of a busy process
small in pipeline seconds. moto is patched for the run (bench/moto_transactions.py and fast_moto here): same
answers, less CPU. The emulated stream's active-partition quota is raised above N (Firehose's default, 500, would
send the records of N = 1,000 datasets at once partly to the error output, and fail those datasets). The
sandbox's Powertools metrics are cleared after every invocation (see _wrap_handlers). The two modes run at once,
N < 1,000 in one process and the larger N in another per mode (2 cores). Prints the figures and pass/fail; the
last line is one JSON object.
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lambdas"))
sys.path.insert(0, str(ROOT / "bench"))

SIZES = (10, 100, 1000)
BIG = 3000  # sizes from here on run in a phase of their own (clock x1)
SPEED_MAX, SPEED_BUDGET = 10.0, 3000.0  # clock speed = min(10, 3000 / N): N x ~0.3 CPU s fit the pipeline's time
ACTIVE_PARTITIONS = 10_000  # the emulated stream's active-partition quota for the run (Firehose's default: 500)
GAP_S = 120  # pipeline seconds between a dataset's two bursts (> 60 s buffer x 1.25 jitter, with margin)
BURST = 5  # records per burst
DRIVERS = 4  # threads starting datasets (the client calls of N datasets at once)
MEMORY_GB, REQUEST_S, INVOCATION_S = 0.5, 0.010, 0.010  # the GB-s model
PRICES = {  # USD, on-demand list prices (us-east-1)
    "dynamodb_wru": 1.25e-6, "dynamodb_rru": 0.25e-6, "sqs_request": 0.40e-6, "eventbridge_event": 1.00e-6,
    "lambda_request": 0.20e-6, "lambda_gb_s": 0.0000166667, "s3_get": 0.0004e-3}
PRICE_TEXT = ("DynamoDB on-demand $1.25 per million WRU and $0.25 per million RRU; SQS $0.40 per million requests; "
              "EventBridge custom events $1.00 per million; Lambda $0.20 per million requests and $0.0000166667 per "
              "GB-s; S3 GET $0.0004 per 1,000")


# --- counting ---------------------------------------------------------------------------------------------------
def _who() -> str:
    name = threading.current_thread().name
    return name if name in ("monitor", "observer") else "client"


def _plain(value):
    """A typed DynamoDB value ({"S": "x"}) or a plain one -> the plain one (only keys are read)."""
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("S", "N", "B"):
        return next(iter(value.values()))
    return value


def kind_of(key: dict) -> str:
    sk = str(_plain(key.get("sk", "")))
    for prefix in ("OBJECT#", "PRODUCER#", "ERROR#"):
        if sk.startswith(prefix):
            return prefix[:-1]
    return sk


class Requests:
    """Every request of the run, by who, service and operation; DynamoDB with the item kinds each touches."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: Counter = Counter()  # (who, service, op)
        self.attempts: Counter = Counter()  # (who, service) HTTP attempts
        self.ddb: Counter = Counter()  # (who, op, kinds tuple, consistent)
        self.sandbox: Counter = Counter()  # (thread, service, op[, "empty"])
        self.gets: Counter = Counter()

    def install(self, sb) -> None:
        import obstore

        from streamwatch.runtime import aws
        events = sb.lambda_session.events
        events.register("before-parameter-build", self._call)
        events.register("before-send", self._send)
        events.register("after-call.dynamodb.Query", self._query)
        for client in (sb.sqs, sb.s3):
            client.meta.events.register("before-parameter-build", self._sandbox_call)
            client.meta.events.register("after-call.sqs.ReceiveMessage", self._receive)
        original = obstore.get

        def get(*args, **kwargs):  # only the monitor reads objects in this run
            with self.lock:
                self.gets["monitor"] += 1
            return original(*args, **kwargs)
        obstore.get = get
        self._undo = lambda: (events.unregister("before-parameter-build", self._call),
                              events.unregister("before-send", self._send),
                              events.unregister("after-call.dynamodb.Query", self._query),
                              setattr(obstore, "get", original))
        aws.reset()  # every client from now on is made from the session with these hooks

    def uninstall(self) -> None:
        self._undo()

    def _call(self, params, model, context, **kwargs) -> None:
        service, op, who = model.service_model.endpoint_prefix, model.name, _who()
        context["sw_who"] = who
        with self.lock:
            self.calls[(who, service, op)] += 1
            if service != "dynamodb" or op == "Query":
                return
            consistent = bool(params.get("ConsistentRead"))
            if op == "TransactWriteItems":
                kinds = tuple(sorted(kind_of(next(iter(a.values())).get("Key") or next(iter(a.values()))["Item"])
                                     for a in params["TransactItems"]))
            elif op == "BatchGetItem":
                table = next(iter(params["RequestItems"].values()))
                kinds, consistent = tuple(sorted(kind_of(k) for k in table["Keys"])), bool(table.get("ConsistentRead"))
            elif op in ("GetItem", "UpdateItem", "DeleteItem"):
                kinds = (kind_of(params["Key"]),)
            elif op == "PutItem":
                kinds = (kind_of(params["Item"]),)
            else:
                kinds = ("?",)
            self.ddb[(who, op, kinds, consistent)] += 1

    def _query(self, parsed, model, context, **kwargs) -> None:
        kinds = tuple(sorted(kind_of(item) for item in parsed.get("Items", [])))
        with self.lock:
            self.ddb[(context.get("sw_who", _who()), "Query", kinds, True)] += 1

    def _send(self, event_name, **kwargs) -> None:
        with self.lock:
            self.attempts[(_who(), event_name.split(".")[1])] += 1

    def _sandbox_call(self, params, model, **kwargs) -> None:
        with self.lock:
            self.sandbox[(threading.current_thread().name, model.service_model.endpoint_prefix, model.name)] += 1

    def _receive(self, parsed, **kwargs) -> None:
        if not parsed.get("Messages"):
            with self.lock:
                self.sandbox[(threading.current_thread().name, "sqs", "ReceiveMessage", "empty")] += 1


# --- moto, made cheaper per request (same semantics) -------------------------------------------------------------
def fast_moto() -> None:
    """Benchmark-only, as bench/moto_transactions.py for DynamoDB: everything here runs in one process (moto's
    server, the handlers, the client), so moto's own CPU decides how far the scaled clock drifts under load.
    moto 5.2.5's server lists its package directory (a stat per entry) under a global lock for every request
    to find the backend: cached, the list never changes. Its SQS recomputes every queue attribute (three scans
    of all messages, each taking utcnow() per message) once per attribute name asked for, and again for every
    message it hands out (the retention check asks for MessageRetentionPeriod through get_queue_attributes):
    with N datasets' delayed ticks in the observer queue that is quadratic. Here the attributes are computed
    once per call, the retention period is read directly, and the time comes from time.time()."""
    import functools

    import moto.backends
    import moto.sqs.models as sqs

    if not hasattr(moto.backends.list_of_moto_modules, "cache_info"):
        modules = moto.backends.list_of_moto_modules
        moto.backends.list_of_moto_modules = functools.cache(lambda: tuple(modules()))
    _fast_query()

    backend = sqs.SQSBackend
    if getattr(backend.get_queue_attributes, "_streamwatch_fast", False):
        return
    original_time, original_millis = sqs.unix_time, sqs.unix_time_millis
    sqs.unix_time = lambda dt=None: time.time() if dt is None else original_time(dt)
    sqs.unix_time_millis = lambda dt=None: time.time() * 1000.0 if dt is None else original_millis(dt)
    original = backend.get_queue_attributes

    def get_queue_attributes(self, queue_name: str, attribute_names: list[str]) -> dict:
        if not attribute_names or "All" in attribute_names:
            return original(self, queue_name, attribute_names)
        original(self, queue_name, [])  # the queue must exist
        queue = self.get_queue(queue_name)
        valid = ["All", *queue.BASE_ATTRIBUTES, *queue.FIFO_ATTRIBUTES, *queue.KMS_ATTRIBUTES]
        if any(name not in valid for name in attribute_names):
            return original(self, queue_name, attribute_names)  # moto's own error
        attributes = queue.attributes
        return {n: attributes[n] for n in attribute_names if attributes.get(n) is not None}

    def is_message_valid_based_on_retention_period(self, queue_name: str, message) -> bool:
        queue = self.get_queue(queue_name)
        return int(queue.message_retention_period) + message.sent_timestamp / 1000 > time.time()

    get_queue_attributes._streamwatch_fast = True
    backend.get_queue_attributes = get_queue_attributes
    backend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period


def _fast_query() -> None:
    """moto 5.2.5's Query on a table's key sorts every item of the table, then keeps the partition's: quadratic in
    N datasets. Same result from the partition's items only (the filter that follows is unchanged)."""
    import inspect

    from moto.dynamodb.models.table import Table

    if getattr(Table.query, "_streamwatch_fast", False):
        return
    local, query, all_items = threading.local(), Table.query, Table.all_items
    signature = inspect.signature(query)

    def partition_items(self):
        if getattr(local, "table", None) is not self:
            return all_items(self)
        found = self.items.get(local.hash_key, {})
        items = list(found.values()) if self.range_key_attr else [found]
        return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)

    def fast(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        if bound.arguments.get("index_name") or bound.arguments.get("hash_key") is None:
            return query(self, *args, **kwargs)
        local.table, local.hash_key = self, bound.arguments["hash_key"]
        try:
            return query(self, *args, **kwargs)
        finally:
            local.table = None

    fast._streamwatch_fast = True
    Table.query, Table.all_items = fast, partition_items


# --- DynamoDB sizes and units -------------------------------------------------------------------------------------
def value_size(v: dict) -> int:
    (t, x), = v.items()
    if t == "S":
        return len(x.encode())
    if t == "N":
        digits = x.lstrip("-").replace(".", "").strip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if t == "B":
        return len(x)
    if t in ("BOOL", "NULL"):
        return 1
    if t == "SS":
        return sum(len(s.encode()) for s in x)
    if t == "NS":
        return sum(value_size({"N": n}) for n in x)
    if t == "L":
        return 3 + sum(value_size(e) + 1 for e in x)
    if t == "M":
        return 3 + sum(len(k.encode()) + value_size(e) + 1 for k, e in x.items())
    raise ValueError(t)


def item_sizes(client, table: str) -> dict[str, int]:
    """Largest item of each kind at the end of the run, in bytes by DynamoDB's rules."""
    sizes: dict[str, int] = {}
    for page in client.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            size = sum(len(k.encode()) + value_size(v) for k, v in item.items())
            kind = kind_of(item)
            sizes[kind] = max(sizes.get(kind, 0), size)
    return sizes


def units(ddb: Counter, sizes: dict[str, int]) -> dict[str, dict[str, float]]:
    """who -> {"wru", "rru"}: request units of every DynamoDB call (see the module docstring)."""
    out: dict[str, dict[str, float]] = {}

    def kb(kind: str, unit: int) -> int:
        return max(1, math.ceil(sizes.get(kind, 1) / unit))
    for (who, op, kinds, consistent), n in ddb.items():
        u = out.setdefault(who, {"wru": 0.0, "rru": 0.0})
        if op in ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"):
            factor = 2 if op == "TransactWriteItems" else 1
            u["wru"] += n * sum(factor * kb(k, 1024) + (kb(k, 1024) if k == "STATE" else 0) for k in kinds)
        elif op in ("GetItem", "BatchGetItem"):
            u["rru"] += n * sum(kb(k, 4096) for k in kinds) * (1 if consistent else 0.5)
        elif op == "Query":
            u["rru"] += n * max(1, math.ceil(sum(sizes.get(k, 0) for k in kinds) / 4096))
    return out


# --- one run: N datasets in one sandbox -------------------------------------------------------------------------
def run(mode: str, n: int, log=print) -> dict:
    """N datasets in a fresh sandbox; returns the counts, per dataset, and the checks."""
    import moto_transactions

    from streamwatch.client.run import Run
    from streamwatch.core import clock
    from streamwatch.core.events import AMENDED, FAILED, READY, STALLED, parse_iso
    from streamwatch.core.settings import Settings
    from streamwatch.local.sandbox import Sandbox, stack_timing
    moto_transactions.install()  # moto's TransactWriteItems copies the whole table per action otherwise
    fast_moto()
    settings = Settings(buffer_interval_s=60, pack_records=True, mode="stability" if mode == "stability" else "auto")
    messages: list[str] = []
    t_start, cpu_start = time.perf_counter(), time.process_time()
    speed = speed_for(n)
    # every size gets the stack's own timeouts, visibility and lease: this run measures what a dataset costs, and
    # its load (hundreds of datasets per process, 4 processes on 2 cores) slows the emulator past the demo's
    # seconds; a timeout there is a failure AWS never sees, and its retries are requests AWS never bills (at
    # N = 3,000, 4,510 notifications ended in the DLQ that way; at N = 1,000 beside it, 1,670). Nothing here
    # crashes or throttles, so the longer lease and visibility never delay a dataset
    timing = stack_timing(settings)
    with LogCounter() as logs, Sandbox(settings, speed=speed, log=messages.append, name="scale",
                                       timing=timing) as sb:
        requests = Requests()
        requests.install(sb)
        timers = _wrap_handlers(sb)
        # Firehose's default quota is 500 active partitions per stream (adjustable on request); N datasets at once
        # need N: beyond it the emulation (as Firehose) sends records to the error output and those datasets fail.
        sb.firehose.active_partition_limit = max(ACTIVE_PARTITIONS, n + 1)
        peak = {"partitions": 0}
        ids = [f"ds-{i:05d}" for i in range(n)]
        producers, bursts, errors, late = {}, {}, [], []
        firsts, seconds, cond = deque(range(n)), [], threading.Condition()  # seconds: heap of (due, i)
        starting = [0]  # first bursts under way (each queues its dataset's second)

        def first(i: int) -> None:
            d = ids[i]
            run_ = Run.start(d, ["p"]) if mode == "records" else Run.attach(d)
            p = run_.producer("p")
            p.__enter__()
            p.put_many({"n": k, "burst": 1} for k in range(BURST))
            p.flush()
            producers[i], bursts[d] = p, [clock.get().now()]
            with cond:
                heapq.heappush(seconds, (bursts[d][0] + GAP_S, i))

        def second(i: int) -> None:
            late.append(clock.get().now() - bursts[ids[i]][0] - GAP_S)
            p = producers.pop(i)
            p.put_many({"n": k, "burst": 2} for k in range(BURST, 2 * BURST))
            bursts[ids[i]].append(clock.get().now())
            p.__exit__(None, None, None)

        def take():
            """The next job: a second burst that is due first (its gap must stay under the quiet window), else
            the next dataset to start; None when everything is done."""
            with cond:
                while True:
                    now = clock.get().now()
                    if seconds and seconds[0][0] <= now:
                        return second, heapq.heappop(seconds)[1]
                    if firsts:
                        starting[0] += 1
                        return first, firsts.popleft()
                    if not seconds and not starting[0]:
                        return None
                    cond.wait(min(0.05, max(0.005, (seconds[0][0] - now) / speed if seconds else 0.05)))

        def drive() -> None:
            while job := take():
                fn, i = job
                try:
                    fn(i)
                except Exception as exc:  # shown in the checks, never hidden
                    errors.append(f"{ids[i]}: {exc!r}")
                finally:
                    if fn is first:
                        with cond:
                            starting[0] -= 1
                            cond.notify_all()
        drivers = [threading.Thread(target=sb.in_scope(drive), name=f"driver-{k}", daemon=True) for k in range(DRIVERS)]
        for t in drivers:  # every dataset starts at once: as fast as the drivers go
            t.start()
        while any(t.is_alive() for t in drivers):
            peak["partitions"] = max(peak["partitions"], len(sb.firehose.buffers))
            time.sleep(0.1)
        produced_s = time.perf_counter() - t_start
        deadline = time.monotonic() + 60 + 900 / speed + n * 0.3
        while time.monotonic() < deadline:
            declared = {e["detail"]["dataset_id"] for e in sb.events if e["detail-type"] in (READY, STALLED, FAILED)}
            if declared >= set(ids) and sb.quiet():
                time.sleep(2)  # late duplicates and dropped follow-ups
                if sb.quiet():
                    break
            peak["partitions"] = max(peak["partitions"], len(sb.firehose.buffers))
            time.sleep(0.5)
        timed_out = time.monotonic() >= deadline
        elapsed, cpu = time.perf_counter() - t_start, time.process_time() - cpu_start
        dlq = sb.dlq_depths()
        invocations = {p.name: p.stats.invocations for p in sb.pollers}
        failed_records = {p.name: p.stats.failed_records for p in sb.pollers}
        requests.uninstall()
        sizes = item_sizes(sb.session.client("dynamodb"), sb.resources.table)
        states = {}
        for page in sb.session.client("dynamodb").get_paginator("scan").paginate(TableName=sb.resources.table):
            for item in page["Items"]:
                if item["sk"]["S"] == "STATE":
                    states[item["pk"]["S"].split("#", 1)[1]] = item
        delivered = {d: sorted(t for _k, _n, t in sb.firehose.delivered.get(d, [])) for d in ids}
        firehose_calls, billed, firehose_errors = sb.firehose.calls, sb.firehose.billed_bytes, sb.firehose.errors
        events = list(sb.events)
    # --- checks --------------------------------------------------------------------------------------------
    by = {d: [e for e in events if e["detail"]["dataset_id"] == d] for d in ids}
    problems, early, objects_off, quiet_gaps, gaps = [], [], [], [], []
    for d in ids:
        kinds = Counter(e["detail-type"] for e in by[d])
        landed = delivered[d]
        if len(landed) != 2:
            objects_off.append(f"{d}: {len(landed)} objects")
        gap = landed[-1] - landed[0] if len(landed) > 1 else 0.0
        gaps.append(gap)
        # stability may declare a dataset quiet for its whole window between two objects (then Amended): the
        # driver keeps the gap under it, so this is counted apart, not as a fault
        quiet_gap = mode == "stability" and gap >= settings.quiet_s
        state = states.get(d, {})
        counted = int(state.get("objects", {}).get("N", 0))
        if counted != len(landed):
            problems.append(f"{d}: counted {counted} objects, {len(landed)} landed")
        ready = [e for e in by[d] if e["detail-type"] == READY]
        if kinds[READY] != 1 or kinds[STALLED] or kinds[FAILED] or (kinds[AMENDED] and not quiet_gap):
            problems.append(f"{d}: events {dict(kinds)}")
        if ready:
            detail = ready[0]["detail"]
            declared = parse_iso(detail["declared_at"])
            if detail["objects"] != len(landed):
                if quiet_gap:
                    quiet_gaps.append(f"{d}: {gap:.0f} s between its objects, Ready with {detail['objects']}")
                else:
                    problems.append(f"{d}: Ready announced {detail['objects']} of {len(landed)} objects ("
                                    f"{sum(t <= declared for t in landed)} had landed when it was declared)")
            if mode == "records" and detail["records"] != 2 * BURST:
                problems.append(f"{d}: Ready announced {detail['records']} of {2 * BURST} records")
            if landed and declared < landed[-1] and not quiet_gap:
                early.append(f"{d}: Ready {landed[-1] - declared:.0f} s before its last object")
    burst_gaps = [b[1] - b[0] for b in bursts.values() if len(b) > 1]
    flush_delays = [t - b for d in ids if d in bursts for t, b in zip(delivered[d], bursts[d], strict=False)]
    objects = sum(len(v) for v in delivered.values())
    spans = sorted([(bursts[d][0], 1) for d in ids if d in bursts] + [  # datasets started and not yet declared
        (parse_iso(e["detail"]["declared_at"]), -1) for e in events if e["detail-type"] in (READY, STALLED, FAILED)])
    in_flight = peak_in_flight = 0
    for _t, step in spans:
        in_flight += step
        peak_in_flight = max(peak_in_flight, in_flight)
    return {"mode": mode, "n": n, "speed": speed, "elapsed_s": round(elapsed, 1), "produced_s": round(produced_s, 1),
            "cpu_s": round(cpu, 1), "peak_in_flight": peak_in_flight, "peak_partitions": peak["partitions"],
            "firehose_error_records": firehose_errors, "backlog_deferrals": logs.deferrals,
            "log_warnings": dict(logs.warnings),
            "max_object_gap_s": round(max(gaps, default=0), 1), "quiet_s": settings.quiet_s,
            "max_burst_gap_s": round(max(burst_gaps, default=0), 1),
            "max_second_late_s": round(max(late, default=0), 1),
            "flush_delay_s": [round(min(flush_delays, default=0), 1), round(max(flush_delays, default=0), 1)],
            "quiet_gap_readies": quiet_gaps[:20], "quiet_gap_count": len(quiet_gaps),
            "timed_out": timed_out, "calls": [[*k, v] for k, v in requests.calls.items()],
            "attempts": [[*k, v] for k, v in requests.attempts.items()],
            "ddb": [[k[0], k[1], list(k[2]), k[3], v] for k, v in requests.ddb.items()],
            "sandbox": [[*k, v] for k, v in requests.sandbox.items()], "gets": sum(requests.gets.values()),
            "item_sizes": sizes, "invocations": invocations, "failed_records": failed_records,
            "handler_wall_s": timers, "objects": objects, "firehose_calls": firehose_calls,
            "firehose_billed_bytes": billed, "dlq": dlq, "problems": problems[:20], "problem_count": len(problems),
            "early": early[:20], "early_count": len(early), "objects_off": objects_off[:20],
            "objects_off_count": len(objects_off), "producer_errors": errors[:20],
            "sandbox_messages": [m for m in messages if not m.startswith("EVENT ")][:20]}


class LogCounter(logging.Handler):
    """The library's log, counted instead of printed: warnings by message, and the observer's "monitor backlog
    ... not declaring yet" (the lagging-monitor check holding back a count-based declaration, logged at INFO)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.warnings: Counter = Counter()
        self.deferrals = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.warnings[str(record.msg)[:100]] += 1
        elif str(record.msg).startswith("monitor backlog of"):
            self.deferrals += 1

    def __enter__(self) -> LogCounter:
        self.saved = [(name, logging.getLogger(name).level, logging.getLogger(name).propagate)
                      for name in ("streamwatch", "streamwatch.runtime.observer")]
        top = logging.getLogger("streamwatch")
        top.addHandler(self)
        top.setLevel(logging.WARNING)
        top.propagate = False
        logging.getLogger("streamwatch.runtime.observer").setLevel(logging.INFO)
        return self

    def __exit__(self, *exc) -> None:
        logging.getLogger("streamwatch").removeHandler(self)
        for name, level, propagate in self.saved:
            logging.getLogger(name).setLevel(level)
            logging.getLogger(name).propagate = propagate


def speed_for(n: int) -> float:
    """Clock speed for N datasets at once: the run is CPU-bound (moto, handlers and client share one GIL, ~0.3 s
    per dataset), so the pipeline's clock slows with N, keeping GIL waits small in pipeline seconds."""
    return min(SPEED_MAX, SPEED_BUDGET / n)


def _wrap_handlers(sb) -> dict:
    """Each poller's handler timed (local wall time: for scale, not for Lambda's bill), and Powertools' metric
    set cleared after every invocation. Works around a sandbox-only failure: the handlers' Metrics objects are
    made at import, before the sandbox sets POWERTOOLS_METRICS_NAMESPACE, and with metrics disabled nothing
    clears their (class-wide) metric set, so the 100th value of a metric in this process makes add_metric
    serialize it, raise SchemaValidationError (no namespace) and fail that invocation (see the report)."""
    from streamwatch.handlers import monitor, observer

    totals = {}
    for poller in sb.pollers:
        totals[poller.name] = 0.0
        inner = poller.handler

        def timed(event, context, _inner=inner, _name=poller.name):
            t0 = time.perf_counter()
            try:
                return _inner(event, context)
            finally:
                totals[_name] += time.perf_counter() - t0
                for module in (monitor, observer):
                    module.metrics.clear_metrics()
        poller.handler = timed
    return totals


# --- figures ------------------------------------------------------------------------------------------------------
HANDLERS = ("monitor", "observer")


def per_dataset(r: dict) -> dict:
    """Requests per dataset by service and the cost per 1,000 datasets of one run."""
    n = r["n"]
    calls = Counter({(who, service, op): v for who, service, op, v in r["calls"]})
    u = units(Counter({(w, op, tuple(k), c): v for w, op, k, c, v in r["ddb"]}), r["item_sizes"])

    def total(pred) -> float:
        return sum(v for k, v in calls.items() if pred(*k)) / n
    sandbox = Counter()
    for thread, service, op, *rest in r["sandbox"]:
        sandbox[(thread, service, op, rest[0] if len(rest) > 1 else "")] += rest[-1]
    # Lambda's SQS event source, as the pollers did it: receives that returned messages, and batch deletes
    esm = sum(v for (t, s, op, empty), v in sandbox.items()
              if t in HANDLERS and op in ("ReceiveMessage", "DeleteMessageBatch") and not empty)
    esm -= sum(v for (t, s, op, empty), v in sandbox.items() if t in HANDLERS and empty)
    fig = {
        "ddb_monitor": total(lambda w, s, o: w == "monitor" and s == "dynamodb"),
        "ddb_observer": total(lambda w, s, o: w == "observer" and s == "dynamodb"),
        "ddb_client": total(lambda w, s, o: w == "client" and s == "dynamodb"),
        "wru": sum(x["wru"] for x in u.values()) / n, "rru": sum(x["rru"] for x in u.values()) / n,
        "wru_client": u.get("client", {}).get("wru", 0) / n, "rru_client": u.get("client", {}).get("rru", 0) / n,
        "sqs_sends": total(lambda w, s, o: s == "sqs" and o.startswith("SendMessage")),
        "sqs_sends_client": total(lambda w, s, o: w == "client" and s == "sqs" and o.startswith("SendMessage")),
        "sqs_other": total(lambda w, s, o: s == "sqs" and not o.startswith("SendMessage")),
        "sqs_event_source": esm / n, "s3_notifications": r["objects"] / n,
        "put_events": total(lambda w, s, o: s == "events" and o == "PutEvents"),
        "s3_get": r["gets"] / n,
        "invocations_monitor": r["invocations"].get("monitor", 0) / n,
        "invocations_observer": r["invocations"].get("observer", 0) / n,
        "firehose_put_record_batch": total(lambda w, s, o: s == "firehose"),
        "other_calls": total(lambda w, s, o: s not in ("dynamodb", "sqs", "events", "firehose")),
    }
    handler_requests = total(lambda w, s, o: w in HANDLERS) + fig["s3_get"]
    invocations = fig["invocations_monitor"] + fig["invocations_observer"]
    fig["gb_s"] = MEMORY_GB * (INVOCATION_S * invocations + REQUEST_S * handler_requests)
    attempts = sum(v for _w, _s, v in r["attempts"])
    fig["botocore_retries"] = attempts / n - total(lambda w, s, o: s != "firehose")
    sqs = fig["sqs_sends"] + fig["sqs_other"] + fig["sqs_event_source"] + fig["s3_notifications"]
    fig["requests"] = (fig["ddb_monitor"] + fig["ddb_observer"] + fig["ddb_client"] + sqs + fig["put_events"]
                       + fig["s3_get"] + invocations)  # every billed request but Firehose's
    cost = {"dynamodb": fig["wru"] * PRICES["dynamodb_wru"] + fig["rru"] * PRICES["dynamodb_rru"],
            "sqs": sqs * PRICES["sqs_request"], "eventbridge": fig["put_events"] * PRICES["eventbridge_event"],
            "lambda": invocations * PRICES["lambda_request"] + fig["gb_s"] * PRICES["lambda_gb_s"],
            "s3_get": fig["s3_get"] * PRICES["s3_get"]}
    client = (fig["wru_client"] * PRICES["dynamodb_wru"] + fig["rru_client"] * PRICES["dynamodb_rru"]
              + fig["sqs_sends_client"] * PRICES["sqs_request"])
    fig["cost_per_1000"] = {k: round(v * 1000, 5) for k, v in cost.items()}
    fig["cost_per_1000"]["total"] = round(sum(cost.values()) * 1000, 5)
    fig["cost_per_1000"]["of_which_client"] = round(client * 1000, 5)
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in fig.items()}


def ops_table(r: dict) -> dict[str, float]:
    """who/service/op -> calls per dataset (the detail behind the totals)."""
    out = Counter()
    for who, service, op, v in r["calls"]:
        out[f"{who} {service} {op}"] += v / r["n"]
    return {k: round(v, 3) for k, v in sorted(out.items())}


def child(mode: str, sizes: list[int]) -> None:
    for n in sizes:
        result = run(mode, n, log=lambda *_: None)
        print("RESULT " + json.dumps(result), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=int, default=max(SIZES), help="largest N (3000 for the big run)")
    parser.add_argument("--child", choices=("records", "stability"), help=argparse.SUPPRESS)
    parser.add_argument("--sizes", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, [int(s) for s in args.sizes.split(",")])
        return 0
    sizes = sorted({s for s in (*SIZES, 3000) if s <= args.max} | {args.max})
    started = time.perf_counter()
    # each sandbox is one GIL (moto, handlers, client): the two modes run at once, each in two processes (N < 1,000
    # one after the other next to the large ones, which are CPU-bound: 2 cores). N >= 3,000 runs at clock x1 and
    # fills a core per mode, so it has a phase of its own: beside it, the runs at x3 and x10 starve and their
    # invocations pass their scaled timeouts (a run that tried it put 1,670 messages of N = 1,000 in a DLQ)
    phases = [[g for g in ([n for n in sizes if n < 1000], [n for n in sizes if 1000 <= n < BIG]) if g],
              [g for g in ([n for n in sizes if n >= BIG],) if g]]
    results = []
    for groups in filter(None, phases):
        results += _children(groups)
    report(results, sizes, time.perf_counter() - started)
    return 0


def _children(groups: list[list[int]]) -> list[dict]:
    """Run each mode's size groups in child processes at once, and collect their results."""
    procs = {(mode, tuple(g)): subprocess.Popen(
        [sys.executable, __file__, "--child", mode, "--sizes", ",".join(map(str, g))], stdout=subprocess.PIPE,
        text=True) for mode in ("records", "stability") for g in groups}
    # every child's output read at once: read one after the other, a child whose pipe fills blocks (its threads
    # wait on stdout) until the one before it has ended, and the "parallel" run becomes a serial one
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=len(procs)) as pool:
        outputs = dict(zip(procs, pool.map(lambda p: p.communicate()[0], procs.values()), strict=True))
    results = []
    for key, proc in procs.items():
        if proc.returncode:
            raise RuntimeError(f"{key} run exited {proc.returncode}")
        results += [json.loads(line[7:]) for line in outputs[key].splitlines() if line.startswith("RESULT ")]
    return results


FLAT_KEYS = ("requests", "wru", "rru")  # totals per dataset: which component pays may shift, the sum may not grow
COLUMNS = [("ddb_monitor", "DDB mon"), ("ddb_observer", "DDB obs"), ("ddb_client", "DDB cli"), ("wru", "WRU"),
           ("rru", "RRU"), ("sqs_sends", "SQS send"), ("sqs_other", "SQS othr"), ("sqs_event_source", "SQS ESM"),
           ("s3_notifications", "S3->SQS"), ("put_events", "PutEvts"), ("s3_get", "S3 GET"),
           ("invocations_monitor", "λ mon"), ("invocations_observer", "λ obs"),
           ("firehose_put_record_batch", "Firehose"), ("requests", "requests")]


def report(results: list[dict], sizes: list[int], elapsed: float) -> None:
    results.sort(key=lambda r: (r["mode"] != "records", r["n"]))
    figures = {f"{r['mode']}/{r['n']}": per_dataset(r) for r in results}
    print(f"N datasets at once, clock x min({SPEED_MAX:g}, {SPEED_BUDGET:g} / N), buffer 60 s, 2 objects and "
          f"{2 * BURST} records per dataset; requests per dataset; prices: {PRICE_TEXT}")
    print(f"{'mode/N':16s}" + "".join(f"{label:>9s}" for _, label in COLUMNS) + f"{'$/1000':>9s}{'peak':>6s}"
          f"{'wall s':>7s}{'CPU s':>7s}")
    for r in results:
        f = figures[f"{r['mode']}/{r['n']}"]
        print(f"{r['mode'] + '/' + str(r['n']):16s}" + "".join(f"{f[k]:9.2f}" for k, _ in COLUMNS)
              + f"{f['cost_per_1000']['total']:9.4f}{r['peak_in_flight']:6d}{r['elapsed_s']:7.0f}{r['cpu_s']:7.0f}")
    print("peak: datasets started and not yet declared at the same time; the clock ran at "
          + ", ".join(f"x{r['speed']:g} for N={r['n']}" for r in results if r["mode"] == "records"))
    checks, grew = {}, []
    for r in results:
        key = f"{r['mode']}/{r['n']}"
        checks[key] = {"ok": r["problem_count"] == 0 and not r["early_count"] and not sum(r["dlq"].values())
                       and not r["timed_out"] and not r["producer_errors"] and not r["objects_off_count"],
                       "problems": r["problem_count"], "early_ready": r["early_count"], "dlq": sum(r["dlq"].values()),
                       "datasets_not_two_objects": r["objects_off_count"], "timed_out": r["timed_out"],
                       "producer_errors": len(r["producer_errors"]), "firehose_error_records":
                       r["firehose_error_records"], "backlog_deferrals": r["backlog_deferrals"],
                       "failed_messages": r["failed_records"], "botocore_retries": figures[key]["botocore_retries"],
                       "max_object_gap_s": r["max_object_gap_s"], "quiet_s": r["quiet_s"],
                       "ready_after_quiet_gap": r["quiet_gap_count"], "log_warnings": r["log_warnings"]}
        for text in (r["problems"] + r["early"] + r["objects_off"] + r["producer_errors"] + r["sandbox_messages"]
                     + [f"(not a fault) {q}" for q in r["quiet_gap_readies"]]):
            print(f"  {key}: {text}")
    for mode in ("records", "stability"):
        base = figures[f"{mode}/{sizes[0]}"]
        for n in sizes[1:]:
            now = figures[f"{mode}/{n}"]
            grew += [f"{mode} {k}: {base[k]:.2f} at N={sizes[0]} -> {now[k]:.2f} at N={n}" for k in FLAT_KEYS
                     if now[k] > base[k] * 1.1]
    for line in grew:
        print(f"  grew: {line}")
    targets = {f"{k}_exact_one_ready_none_early_no_dlq": v["ok"] for k, v in checks.items()}
    targets |= {f"{m}_per_dataset_flat_{sizes[0]}_to_{sizes[-1]}": not any(g.startswith(m) for g in grew)
                for m in ("records", "stability")}
    print("checks:", json.dumps(checks))
    print("targets:", ", ".join(f"{k}={'PASS' if v else 'FAIL'}" for k, v in targets.items()))
    for r in results:
        print(f"{r['mode']}/{r['n']}: calls per dataset {ops_table(r)}; item bytes {r['item_sizes']}; handler wall s "
              f"{ {k: round(v, 1) for k, v in r['handler_wall_s'].items()} }; peak partitions {r['peak_partitions']}")
    print(f"benchmark ran {elapsed:.0f} s (both modes at once, small and large N in separate processes, N >= "
          f"{BIG:,} in a phase of its own)")
    write_doc(results, figures, checks, targets, sizes, elapsed)
    print(json.dumps({"benchmark": "scale", "sizes": sizes, "speeds": {r["n"]: r["speed"] for r in results},
                      "prices_usd": PRICES, "gb_s_model": {"memory_gb": MEMORY_GB, "per_request_s": REQUEST_S,
                                                           "per_invocation_s": INVOCATION_S},
                      "figures": figures, "checks": checks, "targets": targets,
                      "peak_in_flight": {f"{r['mode']}/{r['n']}": r["peak_in_flight"] for r in results},
                      "calls_per_dataset": {f"{r['mode']}/{r['n']}": ops_table(r) for r in results},
                      "item_bytes": {f"{r['mode']}/{r['n']}": r["item_sizes"] for r in results},
                      "elapsed_s": round(elapsed, 1)}))


def write_doc(results, figures, checks, targets, sizes, elapsed) -> None:
    from docs_section import update_doc
    lines = ["## Cost per dataset at scale (`bench/scale.py`)", "",
             "N datasets started at once through the real handlers in the sandbox (moto on 127.0.0.1, buffer 60 s), "
             f"each one producer through the client landing 2 objects ({2 * BURST} records). Records: auto mode, "
             "the run registered. Stability: mode=stability, nothing registered (the producer still reports "
             "through the client). Everything shares one GIL, ~0.3 CPU s per dataset, so the pipeline's clock "
             f"runs at min({SPEED_MAX:g}, {SPEED_BUDGET:g} / N) times real time. Requests per dataset: a botocore "
             "hook on the session the handlers and the client use (told apart by thread), obstore's GetObject by "
             "wrapping `obstore.get`, Lambda's SQS event source as the sandbox's pollers did it (non-empty "
             "receives and batch deletes), S3's notification as one SQS message per object. `requests` is every "
             "billed request but Firehose's. Peak: datasets started and not yet declared at the same moment. "
             "moto is patched for the run to cost less CPU per request with the same answers (`fast_moto`, "
             "`bench/moto_transactions.py`). "
             f"Run time: {elapsed:.0f} s for N = {', '.join(f'{n:,}' for n in sizes)} on {os.cpu_count()} cores "
             "(both modes at once, small and large N in separate processes; N of 3,000 and more in a phase of its "
             "own, since at clock x1 it fills a core per mode). Every function gets the stack's own timeout, "
             "visibility and publish lease: the load slows the emulator, and a timeout from that would be a failure "
             "AWS never sees.", "",
             "| mode | N | DynamoDB calls (monitor / observer / client) | WRU | RRU | SQS sends | SQS other | "
             "SQS event source | S3→SQS | PutEvents | S3 GET | Lambda invocations (monitor / observer) | "
             "Firehose calls | requests | $ per 1,000 datasets (client's part) | peak |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        f = figures[f"{r['mode']}/{r['n']}"]
        lines.append(
            f"| {r['mode']} | {r['n']:,} | {f['ddb_monitor']:.2f} / {f['ddb_observer']:.2f} / {f['ddb_client']:.2f} "
            f"| {f['wru']:.1f} | {f['rru']:.1f} | {f['sqs_sends']:.2f} | {f['sqs_other']:.2f} | "
            f"{f['sqs_event_source']:.2f} | {f['s3_notifications']:.2f} | {f['put_events']:.2f} | {f['s3_get']:.2f} "
            f"| {f['invocations_monitor']:.2f} / {f['invocations_observer']:.2f} | "
            f"{f['firehose_put_record_batch']:.2f} | {f['requests']:.1f} | {f['cost_per_1000']['total']:.4f} "
            f"({f['cost_per_1000']['of_which_client']:.4f}) | {r['peak_in_flight']:,} |")
    costs = []
    for r in (r for r in results if r["n"] == sizes[-1]):
        c = figures[f"{r['mode']}/{r['n']}"]["cost_per_1000"]
        costs.append(f"{r['mode']}: " + ", ".join(f"{k} {v:.4f}" for k, v in c.items()))
    lines += ["", f"Cost per 1,000 datasets at N = {sizes[-1]:,}, by service (USD): " + "; ".join(costs) + ".", "",
              f"Prices: {PRICE_TEXT}. DynamoDB units per call from the items it touches (writes ceil(KB), x2 in a "
              "transaction, plus the `by_day` index for every STATE write; consistent reads ceil(4 KB) per key; "
              "Query ceil(bytes / 4 KB)), each kind at its largest size at the end of the run: an upper bound. "
              f"Lambda GB-s is a model, {MEMORY_GB * 1024:.0f} MB x ({INVOCATION_S * 1000:.0f} ms per invocation + "
              f"{REQUEST_S * 1000:.0f} ms per AWS request). Not included: Firehose (billed per GB ingested), S3 PUTs "
              "of Firehose's deliveries, storage. The emulated stream's active-partition quota is raised for the run "
              "(Firehose's default is 500 per stream, adjustable): with the default, N = 1,000 datasets at once "
              "send the records of the partitions over it to the error output, and those datasets end Failed.", "",
              "Checks (every dataset exactly one Ready announcing its 2 objects, and its 10 records in records "
              "mode, no Amended, none declared before its last object landed, nothing in a DLQ; a stability "
              f"dataset whose objects landed more than the quiet window ({checks[next(iter(checks))]['quiet_s']} s) "
              "apart may be declared in between and Amended, as designed, and is counted apart): " + "; ".join(
                  f"{k} {'ok' if v['ok'] else 'FAIL'} ({v['problems']} wrong, {v['early_ready']} early, "
                  f"{v['ready_after_quiet_gap']} Ready+Amended after a quiet gap, widest gap "
                  f"{v['max_object_gap_s']:.0f} s, lagging-monitor deferrals {v['backlog_deferrals']})"
                  for k, v in checks.items()) + ". Requests, WRU and RRU per dataset "
              f"do not grow from N = {sizes[0]} to {sizes[-1]:,} (> 10%): " + ", ".join(
                  f"{m} {'yes' if targets[f'{m}_per_dataset_flat_{sizes[0]}_to_{sizes[-1]}'] else 'NO'}"
                  for m in ("records", "stability")) + "."]
    update_doc("scale", "\n".join(lines))
    update_doc("costs", readme_costs(results, figures, sizes), path=ROOT / "README.md")


def readme_costs(results, figures, sizes) -> str:
    """The README's cost table: the same run's figures at the largest N (never typed twice)."""
    n = sizes[-1]
    rows = {r["mode"]: figures[f"{r['mode']}/{r['n']}"] for r in results if r["n"] == n}
    label = {"records": "records (a registered run through the client)", "stability": "stability (nobody registers)"}
    lines = [f"**Costs**, measured with the real handlers in the local run (`bench/scale.py`, docs/benchmarks.md: "
             f"scale), per dataset of two objects with {n:,} datasets started at once:", "",
             "| mode | DynamoDB (WRU / RRU) | SQS requests | PutEvents | S3 GET | Lambda invocations "
             "| $ per 1,000 datasets |", "|---|---|---|---|---|---|---|"]
    for mode, f in rows.items():
        sqs = f["sqs_sends"] + f["sqs_other"] + f["sqs_event_source"] + f["s3_notifications"]
        client = f["cost_per_1000"]["of_which_client"]
        lines.append(f"| {label[mode]} | {f['wru']:.0f} / {f['rru']:.0f} | {sqs:.1f} | {f['put_events']:.0f} | "
                     f"{f['s3_get']:.0f} | {f['invocations_monitor'] + f['invocations_observer']:.2f} | "
                     f"{f['cost_per_1000']['total']:.3f}" + (f" ({client:.3f} of it the client's reports)"
                                                             if mode == "records" else "") + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
