"""Producing: records to Firehose with PutRecordBatch, never losing one silently, and the producer's report.
(Registering a run and nudging the observer are the observer chain's: runtime/chain.py.)

Limits (Firehose): <= 500 records and <= 4 MiB per call, <= 1000 KiB per record. A 200 response can still
carry `FailedPutCount > 0`: only the entries with an `ErrorCode` are resent, with exponential backoff and full
jitter, a bounded number of times; whatever still fails is returned with its error (and logged).

Packing: Firehose bills each record rounded up to 5 KB, so a 200-byte record costs as much as 5 KB. A stream that
de-aggregates JSON (`RecordDeAggregationProcessor`, which the construct's stream turns on) splits a record made
of several JSON objects back into them before partitioning, so the sender packs up to 500 small records (and at
most 1000 KiB) into one Firehose record. Each still lands as one line.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

from streamwatch.core.backoff import CLIENT
from streamwatch.core.envelope import RecordError
from streamwatch.runtime import aws

MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 4 * 1024 * 1024
MAX_RECORD_BYTES = 1000 * 1024
MAX_PACKED = 500  # Firehose de-aggregates at most 500 records from one
BILLING_UNIT = 5 * 1024  # Firehose ingestion is billed per record, rounded up to 5 KB
log = logging.getLogger(__name__)


class RecordTooLarge(RecordError):
    """A record over Firehose's 1000 KiB limit: rejected up front rather than dropped by the service."""




@dataclass
class Entry:
    """One Firehose record: one record, or several packed together; `seqs` are the sequence numbers it holds."""

    data: bytes
    seqs: list[int]


@dataclass
class SendResult:
    records: int = 0  # records accepted
    entries: int = 0  # Firehose records accepted (packed ones hold several)
    retries: int = 0
    billed_bytes: int = 0  # ingestion as Firehose bills it: each accepted entry rounded up to 5 KB
    failed: list[dict] = field(default_factory=list)  # {"seq": n, "error": "ServiceUnavailableException"}

    def add(self, other: SendResult) -> None:
        self.records += other.records
        self.entries += other.entries
        self.retries += other.retries
        self.billed_bytes += other.billed_bytes
        self.failed += other.failed


def billed(size: int) -> int:
    return max(1, math.ceil(size / BILLING_UNIT)) * BILLING_UNIT


def pack(records: list[tuple[int, bytes]], enabled: bool) -> list[Entry]:
    """(seq, data) records -> Firehose entries: back-to-back JSON objects when packing, else one each."""
    if not enabled:
        return [Entry(data, [seq]) for seq, data in records]
    entries, data, seqs = [], [], []
    size = 0
    for seq, record in records:
        if data and (len(seqs) == MAX_PACKED or size + len(record) > MAX_RECORD_BYTES):
            entries.append(Entry(b"".join(data), seqs))
            data, seqs, size = [], [], 0
        data.append(record)
        seqs.append(seq)
        size += len(record)
    if data:
        entries.append(Entry(b"".join(data), seqs))
    return entries


def batches(entries: Iterable[Entry]) -> Iterator[list[Entry]]:
    """Entries in PutRecordBatch calls within every limit."""
    batch, size = [], 0
    for entry in entries:
        if len(entry.data) > MAX_RECORD_BYTES:
            raise RecordTooLarge(f"record {entry.seqs[0]} is {len(entry.data)} bytes; Firehose accepts at most "
                                 f"{MAX_RECORD_BYTES}")
        if batch and (len(batch) == MAX_BATCH_RECORDS or size + len(entry.data) > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += len(entry.data)
    if batch:
        yield batch


class Sender:
    """PutRecordBatch with resends of refused entries (backoff with full jitter), on one shared client."""

    def __init__(self, stream: str, firehose=None, *, concurrency: int = 4, max_attempts: int = 8,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.stream = stream
        self.firehose = firehose or aws.client("firehose", max_pool_connections=concurrency + 2)
        self.max_attempts, self.sleep = max_attempts, sleep

    def put(self, batch: list[Entry]) -> SendResult:
        result, pending, errors = SendResult(), batch, {}
        for attempt in range(self.max_attempts):
            if attempt:
                result.retries += 1
                self.sleep(CLIENT.delay(attempt))
            try:
                response = self.firehose.put_record_batch(
                    DeliveryStreamName=self.stream, Records=[{"Data": e.data} for e in pending])
            except Exception as exc:  # botocore already retried the call; try the batch again, bounded
                errors = {id(e): type(exc).__name__ for e in pending}
                continue
            refused = []
            for entry, r in zip(pending, response["RequestResponses"], strict=True):
                if r.get("ErrorCode"):
                    refused.append(entry)
                    errors[id(entry)] = r["ErrorCode"]
                else:
                    result.records += len(entry.seqs)
                    result.entries += 1
                    result.billed_bytes += billed(len(entry.data))
            pending = refused
            if not pending:
                return result
        result.failed = [{"seq": seq, "error": errors.get(id(e), "Unknown")} for e in pending for seq in e.seqs]
        return result


# --- the sample records (the producer Lambda's default record source) -------------------------------------
def sample_records(request: dict) -> Iterator[dict]:
    """Realistic records: a timestamp, a sensor, a value and a payload (the envelope adds producer and seq)."""
    producer_id = str(request.get("producer_id", "p"))
    rng = random.Random(f"{request.get('dataset_id')}/{producer_id}")
    payload_bytes = int(request.get("payload_bytes", 200))
    for _ in range(int(request.get("records", 0))):
        yield {"ts": round(time.time(), 3), "sensor": f"s-{rng.randrange(1000):03d}",
               "value": round(rng.gauss(20, 5), 3),
               "payload": "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=payload_bytes))}


@dataclass
class ProducerReport:
    dataset_id: str
    producer_id: str
    records_sent: int = 0
    entries: int = 0
    batches: int = 0
    retries: int = 0
    billed_bytes: int = 0
    failed: list[dict] = field(default_factory=list)
    reported: str = ""  # "done", "failed", or "" (a retry of a report already made)
    error: str | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["failed"] = self.failed[:50]
        out["failed_count"] = len(self.failed)
        return out


def load_record_source(spec: str) -> Callable[[dict], Iterable]:
    """`package.module:function` -> the function (the producer Lambda's record source); empty: sample records."""
    if not spec:
        return sample_records
    import importlib

    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"record_source {spec!r}: cannot import {module_name!r} ({exc}); is producer_code_dir "
                          "bundled?") from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ImportError(f"record_source {spec!r}: {module_name!r} has no {attribute!r}") from None
