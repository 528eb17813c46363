"""The producer client: push your own records through the deployment's Firehose and say when you are done.

```python
from streamwatch.client import Run

run = Run.start("orders-2026-11-24", producers=["a", "b"], stack="Streamwatch")  # registers who will write
with run.producer("a") as p:                       # reports started
    p.put({"order_id": 1, "amount": 9.5})           # a dict (JSON) or bytes (one JSON object)
    p.put_many(rows)
# normal exit: flush, report done with records_sent; an exception: report failed (with the error), re-raise
Run.attach("orders-2026-11-24", stack="Streamwatch").producer("b")   # another process joins the same run
```

Each record gets the envelope (`envelope.wrap`: producer id and sequence number, then the fields the dataset
rule partitions by), so the monitor can prove every record landed, duplicates counted once. `put` is
thread-safe; batches go out in the background, at most `concurrency` at a time, and `put` blocks when twice
that many are waiting (backpressure, bounded memory). Records Firehose still refuses after every retry fail the
producer: the dataset can no longer be complete, so the run says so (one Dataset Failed) instead of waiting.

Errors (each a clear type, docs/producing.md): `DeploymentNotFound`, `StackNotFound`, `MissingOutput` (where the
deployment is), `RecordError` / `RecordTooLarge` (a record that cannot be sent, raised by `put`),
`RecordsRefused` (Firehose refused records after all retries), `RuleError` (a dataset id that does not fit the
deployment's dataset rules).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from streamwatch.client.deployment import Deployment, DeploymentNotFound, MissingOutput, StackNotFound
from streamwatch.client.producer import (
    MAX_BATCH_BYTES,
    MAX_BATCH_RECORDS,
    MAX_PACKED,
    MAX_RECORD_BYTES,
    ProducerReport,
    RecordTooLarge,
    Sender,
    batches,
    pack,
)
from streamwatch.core import clock, scope
from streamwatch.core.envelope import RecordError, Wrapper
from streamwatch.core.errors import InputError, RunFailed
from streamwatch.core.ids import check_dataset_id, check_producer_id
from streamwatch.core.rules import RuleError
from streamwatch.core.settings import Resources, Settings
from streamwatch.runtime.chain import nudge, start_run
from streamwatch.state.store import State, Store

__all__ = ["DeploymentNotFound", "MissingOutput", "Producer", "RecordError", "RecordTooLarge", "RecordsRefused",
           "Run", "RuleError", "StackNotFound"]
log = logging.getLogger(__name__)


class RecordsRefused(RunFailed):
    """Firehose refused records after every retry; the producer reported failed."""


def deadline_from(expected_by: str | float | int | None, now: float) -> float | None:
    """`expected_by`: an ISO-8601 time, or seconds after the run starts."""
    if expected_by is None:
        return None
    if isinstance(expected_by, int | float) and not isinstance(expected_by, bool):
        if expected_by <= 0:
            raise InputError(f"expected_by={expected_by!r}: seconds after the start must be > 0")
        return now + float(expected_by)
    try:
        when = datetime.fromisoformat(str(expected_by).replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"expected_by={expected_by!r}: give an ISO-8601 time (2026-11-24T18:00:00Z) or seconds "
                         "after the start") from None
    if when.tzinfo is None:
        raise InputError(f"expected_by={expected_by!r}: give a time zone (e.g. 'Z' for UTC)")
    return clock.get().from_wall(when.timestamp())


class Run:
    """One dataset's run: who writes it, and their reports."""

    def __init__(self, dataset_id: str, deployment: Deployment, *, store: Store | None = None,
                 firehose=None) -> None:
        check_dataset_id(dataset_id)
        self.dataset_id, self.deployment = dataset_id, deployment
        self.settings, self.resources = deployment.settings, deployment.resources
        self.rule = self.settings.rules.rule_for(dataset_id)
        self.rule.parse_id(dataset_id)  # RuleError now, not at the first put
        self.store = store or Store.from_settings(self.settings, self.resources)
        self.firehose = firehose

    @classmethod
    def start(cls, dataset_id: str, producers: Iterable[str] = (), *, stack: str | None = None,
              resources: Resources | None = None, settings: Settings | None = None,
              expected_by: str | float | None = None, **kwargs) -> Run:
        """Register the dataset and the producers that will write it (idempotent: a retried start counts once),
        and start observing it, so a deadline or a failure is seen even if nothing lands."""
        run = cls(dataset_id, Deployment.resolve(stack=stack, resources=resources, settings=settings), **kwargs)
        names = list(producers)
        for name in names:
            check_producer_id(name)
        start_run(run.settings, run.resources, dataset_id, names, store=run.store,
                  deadline_ts=deadline_from(expected_by, clock.get().now()))
        return run

    @classmethod
    def attach(cls, dataset_id: str, *, stack: str | None = None, resources: Resources | None = None,
               settings: Settings | None = None, **kwargs) -> Run:
        """Join a run another process started (or write a dataset nobody registered: it is judged by stability
        until its producers report)."""
        return cls(dataset_id, Deployment.resolve(stack=stack, resources=resources, settings=settings), **kwargs)

    def producer(self, producer_id: str, *, concurrency: int | None = None, pack: bool | None = None,
                 max_attempts: int = 8) -> Producer:
        """A producer sending through the deployment's stream (which writes the first rule's layout)."""
        if self.rule is not self.settings.rules.stream_rule:
            raise RuleError(f"dataset {self.dataset_id!r} belongs to rule {self.rule.name!r}, but the deployment's "
                            f"stream writes rule {self.settings.rules.stream_rule.name!r}'s layout: send with the "
                            "writer that owns that prefix, and report with run.done()/run.fail()")
        return Producer(self, producer_id, concurrency=concurrency or self.settings.producer_concurrency,
                        pack=self.settings.pack_records if pack is None else pack, max_attempts=max_attempts)

    def done(self, producer_id: str, records: int | None = None) -> bool:
        """Report a producer done (with how many records it sent, if it knows): `streamwatch run done`.
        Records sent without the client's envelope are matched by count."""
        ok = self.store.report_done(self.dataset_id, producer_id, records, clock.get().now(), enveloped=False)
        nudge(self.settings, self.resources, self.store, self.dataset_id)
        return ok

    def fail(self, producer_id: str, error: str) -> bool:
        """Report a producer failed: the dataset ends at once with one Dataset Failed."""
        ok = self.store.report_failed(self.dataset_id, producer_id, error, clock.get().now())
        nudge(self.settings, self.resources, self.store, self.dataset_id, always=True)
        return ok

    def state(self) -> State | None:
        return self.store.get_state(self.dataset_id)


class Producer:
    """A context manager: `put` records, and on exit report done (or failed) exactly once."""

    def __init__(self, run: Run, producer_id: str, *, concurrency: int, pack: bool | None,
                 max_attempts: int = 8) -> None:
        check_producer_id(producer_id)
        self.run, self.producer_id = run, producer_id
        self.wrap = Wrapper(producer_id, run.rule.record_fields(run.dataset_id))
        self.concurrency, self.pack = concurrency, bool(pack)
        self.sender = Sender(run.resources.stream, run.firehose, concurrency=concurrency, max_attempts=max_attempts)
        self.report = ProducerReport(run.dataset_id, producer_id)
        self._lock = threading.Lock()
        self._buffer: list[tuple[int, bytes]] = []
        self._buffered_bytes = 0
        self._next_seq = 0
        self._slots = threading.BoundedSemaphore(2 * concurrency)  # batches waiting or in flight
        self._pool: ThreadPoolExecutor | None = None
        self._futures: list[Future] = []
        self._closed = False
        self._limit = MAX_BATCH_RECORDS * (MAX_PACKED if self.pack else 1)

    # --- lifecycle ---------------------------------------------------------------------------------------
    def __enter__(self) -> Producer:
        self.run.store.report_started(self.run.dataset_id, self.producer_id, clock.get().now())
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None:
            self._shutdown(wait=False)
            self._report_failed(f"{exc_type.__name__}: {exc}")
            return False  # re-raise
        try:
            self.flush()
        except RecordsRefused as refused:
            self._report_failed(str(refused))
            raise
        self._shutdown(wait=True)
        self.report.reported = "done" if self.run.store.report_done(
            self.run.dataset_id, self.producer_id, self.report.records_sent, clock.get().now()) else ""
        nudge(self.run.settings, self.run.resources, self.run.store, self.run.dataset_id)
        return False

    @contextlib.contextmanager
    def attempt(self):
        """Send without reporting: what a producer that dies before its report leaves behind (the local run's
        chaos uses it for a Lambda retried after a timeout)."""
        self.run.store.report_started(self.run.dataset_id, self.producer_id, clock.get().now())
        try:
            yield self
            self.flush()
        finally:
            self._shutdown(wait=True)

    def _report_failed(self, error: str) -> None:
        self.report.error = error
        self.report.reported = "failed" if self.run.store.report_failed(
            self.run.dataset_id, self.producer_id, error, clock.get().now()) else ""
        nudge(self.run.settings, self.run.resources, self.run.store, self.run.dataset_id, always=True)

    # --- sending -----------------------------------------------------------------------------------------
    def put(self, record: dict | bytes | str) -> None:
        """Queue one record (thread-safe). Raises RecordError for a record that can never be sent, and
        RecordsRefused once Firehose refused records for good."""
        self.put_many((record,))

    def put_many(self, records: Iterable[dict | bytes | str]) -> int:
        """Queue records in order (thread-safe; each call's records get consecutive sequence numbers)."""
        n = 0
        for chunk in _chunks(records, 500):
            self._raise_if_refused()
            with self._lock:  # numbers for the whole chunk at once; wrapping happens outside the lock
                if self._closed:
                    raise RuntimeError(f"producer {self.producer_id!r} is closed")
                first = self._next_seq
                self._next_seq += len(chunk)
            wrapped = []
            for i, record in enumerate(chunk):
                try:
                    data = self.wrap(record, first + i)
                except RecordError:
                    self._give_back(first + i, len(chunk) - i, wrapped)
                    raise
                if len(data) > MAX_RECORD_BYTES:
                    self._give_back(first + i, len(chunk) - i, wrapped)
                    raise RecordTooLarge(f"record {first + i} is {len(data)} bytes with its envelope; Firehose "
                                         f"accepts at most {MAX_RECORD_BYTES}")
                wrapped.append((first + i, data))
            self._enqueue(wrapped)
            n += len(chunk)
        return n

    def _give_back(self, seq: int, count: int, wrapped: list) -> None:
        """A record of this chunk cannot be sent: queue the ones before it, and hand its number and the rest's
        back (numbers stay consecutive, so the records sent are exactly [0, records_sent))."""
        with self._lock:
            if self._next_seq == seq + count:
                self._next_seq = seq
            else:  # another thread took numbers meanwhile: the gap is filled by nothing, so fail loudly later
                self.report.failed.append({"seq": seq, "error": "RecordError"})
        self._enqueue(wrapped)

    def _enqueue(self, wrapped: list[tuple[int, bytes]]) -> None:
        ready = []
        with self._lock:
            for seq, data in wrapped:
                if self._buffer and (len(self._buffer) >= self._limit
                                     or self._buffered_bytes + len(data) > MAX_BATCH_BYTES):
                    ready.append(self._take())  # a full PutRecordBatch's worth
                self._buffer.append((seq, data))
                self._buffered_bytes += len(data)
        for batch in ready:
            self._submit(batch)

    def flush(self) -> None:
        """Send what is buffered and wait for every batch; raises RecordsRefused if any record was refused."""
        with self._lock:
            batch = self._take()
        if batch:
            self._submit(batch)
        for future in list(self._futures):
            future.result()
        self._raise_if_refused()

    def _take(self) -> list[tuple[int, bytes]]:
        batch, self._buffer, self._buffered_bytes = self._buffer, [], 0
        return batch

    def _submit(self, records: list[tuple[int, bytes]]) -> None:
        self._slots.acquire()  # backpressure: wait while 2 x concurrency batches are queued or in flight
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=f"put-{self.producer_id}")
        try:
            future = self._pool.submit(scope.bound(self._send), records)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _f: self._slots.release())
        self._futures = [f for f in self._futures if not f.done()] + [future]

    def _send(self, records: list[tuple[int, bytes]]) -> None:
        for batch in batches(pack(records, self.pack)):
            result = self.sender.put(batch)
            with self._lock:
                self.report.records_sent += result.records
                self.report.entries += result.entries
                self.report.retries += result.retries
                self.report.billed_bytes += result.billed_bytes
                self.report.batches += 1
                self.report.failed += result.failed
            if result.failed:
                log.error("records not accepted by Firehose", extra={
                    "dataset_id": self.run.dataset_id, "producer_id": self.producer_id,
                    "failed": result.failed[:20], "failed_count": len(result.failed)})

    def _raise_if_refused(self) -> None:
        if self.report.failed:
            errors = sorted({f["error"] for f in self.report.failed})
            raise RecordsRefused(f"producer {self.producer_id!r} of {self.run.dataset_id!r}: Firehose refused "
                                 f"{len(self.report.failed)} record(s) after every retry ({', '.join(errors)})")

    def _shutdown(self, wait: bool) -> None:
        with self._lock:
            self._closed = True
            if not wait:
                self._buffer, self._buffered_bytes = [], 0
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=not wait)

    @property
    def records_put(self) -> int:
        return self._next_seq

    def stats(self) -> dict:
        with self._lock:
            return {"records": self._next_seq, "sent": self.report.records_sent, "batches": self.report.batches,
                    "retries": self.report.retries, "refused": len(self.report.failed)}


def _chunks(records: Iterable, size: int) -> Iterable[list]:
    if isinstance(records, list | tuple) and len(records) <= size:
        yield list(records)
        return
    chunk = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
