"""A Firehose delivery stream for the local run, where moto's writes one object per call at once.

Does what the construct's stream does, in the order Firehose documents: multi-record de-aggregation of JSON
(when records are packed), dynamic partitioning by the stream rule's fields (the MetadataExtraction query), a
newline appended to each record (AppendDelimiterToRecord), one buffer per partition flushed when it is
`buffer_interval_s` old or holds `buffer_size_mib`, written under the rule's prefix with Firehose's object
naming. Time fields (`{yyyy}/{MM}/{dd}/{HH}`) come from the arrival time of the OLDEST record in the buffer, as
Firehose's `!{timestamp:...}` does, so an hour's last object may hold records that arrived after the hour.
Records it cannot partition, and records of partitions over the active-partition limit, go to the error output
as Firehose writes it (JSON lines with `errorCode` and base64 `rawData`). Delivery takes a little longer than
the interval, with jitter, as the real service's does. Time is the handlers' clock, so a scaled clock keeps
every proportion.

Chaos: `duplicate_records` writes a flushed buffer again as a second object (Firehose's at-least-once delivery);
`put_failures` refuses entries with ErrorCode (HTTP 200, FailedPutCount > 0).
"""

from __future__ import annotations

import base64
import json
import random
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from streamwatch.core import clock as pipeline_clock
from streamwatch.core import envelope
from streamwatch.core.ids import valid_field_value
from streamwatch.core.settings import Settings

ACTIVE_PARTITION_LIMIT = 500  # Firehose's default quota of active partitions per stream


@dataclass
class _Buffer:
    opened: float  # arrival of its oldest record (handlers' clock)
    deadline_s: float  # the interval, plus this buffer's delivery delay
    records: list[bytes] = field(default_factory=list)
    size: int = 0


class LocalFirehose:
    """Implements `put_record_batch` like the boto3 client; a thread flushes buffers on time."""

    def __init__(self, s3, bucket: str, settings: Settings, stream: str = "streamwatch-stream", *,
                 jitter: float = 0.25, seed: int = 11, deaggregate: bool | None = None,
                 duplicate_records: float = 0.0, put_failures: float = 0.0,
                 active_partition_limit: int = ACTIVE_PARTITION_LIMIT, rule=None, clock=None) -> None:
        """`clock`: the pipeline's (a sandbox's); default the handlers' (`core.clock.get()` where it is made)."""
        self.s3, self.bucket, self.settings, self.stream = s3, bucket, settings, stream
        self.clock = clock or pipeline_clock.get()
        self.rule = rule or settings.rules.stream_rule  # another rule: a writer of the user's own
        self.deaggregate = settings.pack_records is not False if deaggregate is None else deaggregate
        self.jitter, self.rng = jitter, random.Random(seed)
        self.duplicate_records, self.put_failures = duplicate_records, put_failures
        self.active_partition_limit = active_partition_limit
        self.buffers: dict[tuple, _Buffer] = {}
        self.lock = threading.Lock()
        self.delivered: dict[str, list[tuple[str, int, float]]] = {}  # dataset -> [(key, records, landed)]
        self.duplicated_objects = 0
        self.errors = 0
        self.calls = 0
        self.billed_bytes = 0
        self.writing = 0  # buffers taken off and being written to S3
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="local-firehose", daemon=True)
        self._thread.start()

    # --- the API -----------------------------------------------------------------------------------------
    def put_record_batch(self, DeliveryStreamName: str, Records: list[dict]) -> dict:  # noqa: N803 (boto3 names)
        responses, now, full = [], self.clock.now(), []
        with self.lock:
            self.calls += 1
            for record in Records:
                if self.put_failures and self.rng.random() < self.put_failures:
                    responses.append({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."})
                    continue
                data = record["Data"]
                self.billed_bytes += max(1, -(-len(data) // 5120)) * 5120
                for one in self._deaggregated(data):
                    self._accept(one, now, full)
                responses.append({"RecordId": str(uuid.uuid4())})
        self._write(full)
        failed = sum(1 for r in responses if "ErrorCode" in r)
        return {"FailedPutCount": failed, "Encrypted": False, "RequestResponses": responses}

    def _deaggregated(self, data: bytes) -> list[bytes]:
        """JSON de-aggregation: back-to-back JSON objects become records (at most 500, as Firehose caps it)."""
        if not self.deaggregate:
            return [data]
        records = envelope.json_objects(data)
        return records[:500] if records else [data]  # not JSON: partitioning sends it to the error output

    def _accept(self, data: bytes, now: float, full: list) -> None:
        try:
            doc = json.loads(data)
            values = tuple(doc[n] for n in self.rule.value_fields)
            if not all(valid_field_value(v) for v in values):
                raise ValueError("partition key value")
        except (ValueError, KeyError, TypeError):
            self._write_errors([data], now, "DynamicPartitioning.MetadataExtractionFailed",
                               "Non JSON record provided, or the partitioning key is missing")
            return
        if values not in self.buffers and len(self.buffers) >= self.active_partition_limit:
            self._write_errors([data], now, "DynamicPartitioning.ActivePartitionsLimitExceeded",
                               f"the stream has {self.active_partition_limit} active partitions")
            return
        if values not in self.buffers:
            interval = self.settings.buffer_interval_s
            self.buffers[values] = _Buffer(now, interval * (1 + self.rng.uniform(0, self.jitter)))
        buffer = self.buffers[values]
        buffer.records.append(data + b"\n")
        buffer.size += len(data) + 1
        if buffer.size >= self.settings.buffer_size_mib * 1024 * 1024:
            full.append(self._pop(values))

    # --- delivery ------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(0.05):
            now = self.clock.now()
            with self.lock:  # take the due buffers under the lock, write them outside it (puts never wait on S3)
                due = [self._pop(k) for k, b in list(self.buffers.items()) if now - b.opened >= b.deadline_s]
            self._write(due)

    def _pop(self, values: tuple) -> tuple[tuple, _Buffer]:
        self.writing += 1
        return values, self.buffers.pop(values)

    def _write(self, popped: list[tuple[tuple, _Buffer]]) -> None:
        for values, buffer in popped:
            try:
                self._deliver(values, buffer)
            finally:
                with self.lock:
                    self.writing -= 1

    def _deliver(self, values: tuple, buffer: _Buffer) -> None:
        body = b"".join(buffer.records)
        fields = dict(zip(self.rule.value_fields, values, strict=True))
        arrived = datetime.fromtimestamp(buffer.opened, UTC)  # the oldest record's arrival, as Firehose stamps it
        fields.update(yyyy=f"{arrived:%Y}", MM=f"{arrived:%m}", dd=f"{arrived:%d}", HH=f"{arrived:%H}")
        prefix = self.rule.pattern.format(**fields)
        match = self.rule.match(prefix + "x")
        copies = 2 if self.duplicate_records and self.rng.random() < self.duplicate_records else 1
        self.duplicated_objects += copies - 1
        for _ in range(copies):
            written = datetime.now(UTC)
            key = f"{prefix}{self.stream}-1-{written:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}"
            landing = self.clock.now()  # taken before the PUT, so nothing can be declared ahead of it
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
            self.delivered.setdefault(match.dataset_id, []).append((key, len(buffer.records), landing))

    def _write_errors(self, records: list[bytes], now: float, code: str, message: str) -> None:
        self.errors += len(records)
        ms = int(now * 1000)
        lines = [json.dumps({"attemptsMade": 1, "arrivalTimestamp": ms, "errorCode": code, "errorMessage": message,
                             "attemptEndingTimestamp": ms, "rawData": base64.b64encode(r).decode()}).encode()
                 for r in records]
        when = datetime.fromtimestamp(now, UTC)
        prefix = self.settings.error_prefix or "errors/"
        key = f"{prefix}processing-failed/{when:%Y/%m/%d}/{self.stream}-1-{when:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"\n".join(lines) + b"\n")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def flush_all(self) -> None:
        """Deliver every open buffer now (tests that do not want to wait)."""
        with self.lock:
            popped = [self._pop(key) for key in list(self.buffers)]
        self._write(popped)

    def idle(self) -> bool:
        with self.lock:
            return not self.buffers and not self.writing
