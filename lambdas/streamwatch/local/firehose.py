"""A Firehose delivery stream for the local run, where moto's writes one object per call at once.

Does what the stack's stream does: dynamic partitioning by the record's `dataset_id` (the MetadataExtraction
query), a newline appended to each record (AppendDelimiterToRecord), one buffer per partition flushed when
it is `buffer_interval_s` old or holds `buffer_size_mib`, written under the same prefix
(`s3_events.firehose_prefix`) with Firehose's object naming, records it cannot partition under the error
prefix. Delivery takes a little longer than the interval, with jitter, as the real service's does. Time is
the handlers' clock, so a scaled clock keeps every proportion.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from streamwatch import clock
from streamwatch.s3_events import PARTITION_FIELD, dataset_prefix, valid_dataset_id
from streamwatch.settings import Settings


@dataclass
class _Buffer:
    opened: float
    deadline_s: float  # the interval, plus this buffer's delivery delay
    records: list[bytes] = field(default_factory=list)
    size: int = 0


class LocalFirehose:
    """Implements `put_record_batch` like the boto3 client; a thread flushes buffers on time."""

    def __init__(self, s3, bucket: str, settings: Settings, stream: str = "streamwatch-stream",
                 jitter: float = 0.25, seed: int = 11) -> None:
        self.s3, self.bucket, self.settings, self.stream = s3, bucket, settings, stream
        self.jitter, self.rng = jitter, random.Random(seed)
        self.buffers: dict[str, _Buffer] = {}
        self.lock = threading.Lock()
        self.delivered: dict[str, list[tuple[str, int, float]]] = {}  # dataset -> [(key, records, landed)]
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="local-firehose", daemon=True)
        self._thread.start()

    def put_record_batch(self, DeliveryStreamName: str, Records: list[dict]) -> dict:  # noqa: N803 (boto3 names)
        responses, now = [], clock.get().now()
        with self.lock:
            for record in Records:
                data = record["Data"]
                try:
                    dataset_id = json.loads(data)[PARTITION_FIELD]
                    assert valid_dataset_id(dataset_id)
                except Exception:
                    self._write_error(data)
                    responses.append({"RecordId": str(uuid.uuid4())})
                    continue
                if dataset_id not in self.buffers:
                    interval = self.settings.buffer_interval_s
                    self.buffers[dataset_id] = _Buffer(now, interval * (1 + self.rng.uniform(0, self.jitter)))
                buffer = self.buffers[dataset_id]
                buffer.records.append(data + b"\n")
                buffer.size += len(data) + 1
                if buffer.size >= self.settings.buffer_size_mib * 1024 * 1024:
                    self._flush(dataset_id)
                responses.append({"RecordId": str(uuid.uuid4())})
        return {"FailedPutCount": 0, "Encrypted": False, "RequestResponses": responses}

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            now = clock.get().now()
            with self.lock:
                due = [d for d, b in self.buffers.items() if now - b.opened >= b.deadline_s]
                for dataset_id in due:
                    self._flush(dataset_id)

    def _flush(self, dataset_id: str) -> None:
        buffer = self.buffers.pop(dataset_id)
        body = b"".join(buffer.records)
        now = datetime.now(UTC)
        key = (f"{dataset_prefix(self.settings.data_prefix, dataset_id)}{self.stream}-1-"
               f"{now:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}")
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        self.delivered.setdefault(dataset_id, []).append((key, len(buffer.records), clock.get().now()))

    def _write_error(self, data: bytes) -> None:
        self.errors += 1
        key = f"errors/processing-failed/{datetime.now(UTC):%Y/%m/%d}/{uuid.uuid4()}"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data + b"\n")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def idle(self) -> bool:
        with self.lock:
            return not self.buffers

