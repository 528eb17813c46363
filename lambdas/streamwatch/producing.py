"""Producers: records to Firehose with PutRecordBatch, never losing one silently; and the run starter.

Limits (Firehose): <= 500 records and <= 4 MiB per call, <= 1000 KiB per record. A 200 response can still
carry `FailedPutCount > 0`: only the entries with an `ErrorCode` are resent, with exponential backoff and full
jitter, a bounded number of times; whatever still fails is returned with its error (and logged), and the
producer's done-report counts only what Firehose accepted.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from streamwatch import aws, clock
from streamwatch.policy import Policy, complete_now
from streamwatch.s3_events import PARTITION_FIELD, valid_dataset_id
from streamwatch.settings import Resources, Settings
from streamwatch.store import Store
from streamwatch.ticks import Tick, send

MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 4 * 1024 * 1024
MAX_RECORD_BYTES = 1000 * 1024
log = logging.getLogger(__name__)


class RecordTooLarge(ValueError):
    """A record over Firehose's 1000 KiB limit: rejected up front rather than dropped by the service."""


@dataclass
class ProducerReport:
    dataset_id: str
    producer_id: str
    records_sent: int = 0
    batches: int = 0
    retries: int = 0
    failed: list[dict] = field(default_factory=list)  # {"seq": n, "error": "ServiceUnavailableException"}
    reported_done: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def make_records(dataset_id: str, producer_id: str, count: int, start: int = 0,
                 payload_bytes: int = 200) -> Iterator[bytes]:
    """Realistic JSON records: dataset and producer ids, a sequence number, a timestamp, a small payload."""
    rng = random.Random(f"{dataset_id}/{producer_id}")
    for seq in range(start, start + count):
        yield json.dumps({
            PARTITION_FIELD: dataset_id, "producer_id": producer_id, "seq": seq, "ts": round(time.time(), 3),
            "sensor": f"s-{rng.randrange(1000):03d}", "value": round(rng.gauss(20, 5), 3),
            "payload": "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=payload_bytes)),
        }, separators=(",", ":")).encode()


def batches(records: Iterable[bytes]) -> Iterator[list[tuple[int, bytes]]]:
    """(seq, data) batches within every PutRecordBatch limit; a record over the limit raises."""
    batch, size = [], 0
    for seq, data in enumerate(records):
        if len(data) > MAX_RECORD_BYTES:
            raise RecordTooLarge(f"record {seq} is {len(data)} bytes; Firehose accepts at most {MAX_RECORD_BYTES}")
        if batch and (len(batch) == MAX_BATCH_RECORDS or size + len(data) > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append((seq, data))
        size += len(data)
    if batch:
        yield batch


class Producer:
    def __init__(self, settings: Settings, resources: Resources, *, store: Store | None = None,
                 firehose=None, max_attempts: int = 8, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings, self.resources = settings, resources
        self.store = store or Store.from_settings(settings, resources)
        self.firehose = firehose or aws.client("firehose", max_pool_connections=settings.producer_concurrency + 2)
        self.max_attempts, self.sleep = max_attempts, sleep

    def run(self, dataset_id: str, producer_id: str, records: Iterable[bytes],
            pace: Callable[[int], None] | None = None) -> ProducerReport:
        """Send every record, report done once. `pace(i)` is called before batch i is handed out (the local
        run uses it to spread a producer's sending over time)."""
        if not valid_dataset_id(dataset_id):
            raise ValueError(f"dataset id {dataset_id!r} must match [A-Za-z0-9][A-Za-z0-9._-]{{0,127}}")
        report = ProducerReport(dataset_id, producer_id)
        self.store.report_started(dataset_id, producer_id, clock.get().now())
        all_batches = list(batches(records))  # validates every record before the first one is sent
        with ThreadPoolExecutor(max_workers=self.settings.producer_concurrency) as pool:
            futures = []
            for i, batch in enumerate(all_batches):
                if pace:
                    pace(i)
                futures.append(pool.submit(self._put, batch))
            for sent, retries, failed in (f.result() for f in futures):
                report.records_sent += sent
                report.retries += retries
                report.failed += failed
        report.batches = len(all_batches)
        if report.failed:
            log.error("records not accepted by Firehose", extra={"dataset_id": dataset_id,
                      "producer_id": producer_id, "failed": report.failed[:50], "failed_count": len(report.failed)})
        report.reported_done = self.store.report_done(dataset_id, producer_id, report.records_sent,
                                                       clock.get().now())
        self._nudge(dataset_id)
        return report

    def _put(self, batch: list[tuple[int, bytes]]) -> tuple[int, int, list[dict]]:
        pending, sent, errors = batch, 0, {}
        for attempt in range(self.max_attempts):
            if attempt:
                self.sleep(aws.backoff_s(attempt, base=0.1, cap=5.0))
            try:
                response = self.firehose.put_record_batch(
                    DeliveryStreamName=self.resources.stream, Records=[{"Data": data} for _, data in pending])
            except Exception as exc:  # botocore already retried the call; try the batch again, bounded
                errors = {seq: type(exc).__name__ for seq, _ in pending}
                continue
            results = response["RequestResponses"]
            still = [(entry, r) for entry, r in zip(pending, results, strict=True) if r.get("ErrorCode")]
            sent += len(pending) - len(still)
            errors = {entry[0]: r["ErrorCode"] for entry, r in still}
            pending = [entry for entry, _ in still]
            if not pending:
                return sent, attempt, []
        return sent, self.max_attempts - 1, [{"seq": seq, "error": errors.get(seq, "Unknown")} for seq, _ in pending]

    def _nudge(self, dataset_id: str) -> None:
        """In records mode the last done-report may complete the dataset: ask the observer to check now."""
        if not self.settings.count_records:
            return
        state = self.store.get_state(dataset_id)
        if state and state.chain_started and complete_now(Policy.from_settings(self.settings),
                                                          state.view(clock.get().now())):
            send(self.resources.observer_queue_url, [(Tick(dataset_id, state.tick, "nudge"), 0)])


def start_run(settings: Settings, resources: Resources, dataset_id: str, producers: list[dict],
              invoke: Callable[[dict], None], store: Store | None = None) -> list[dict]:
    """Register a dataset with its expected producers, then fan out one produce request per producer."""
    if not valid_dataset_id(dataset_id):
        raise ValueError(f"dataset id {dataset_id!r} must match [A-Za-z0-9][A-Za-z0-9._-]{{0,127}}")
    store = store or Store.from_settings(settings, resources)
    store.register_run(dataset_id, len(producers), clock.get().now())
    requests = [{"action": "produce", "dataset_id": dataset_id, **p} for p in producers]
    for request in requests:
        invoke(request)
    return requests
