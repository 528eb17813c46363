"""`DatasetWriter`: the downstream's output in parallel, the other half of the reader: bounded objects in flight,
multipart for large bodies, retries, a report of every object and a summary of what did not land.

Same store, credentials and error classes as the reader (stores.py): any URL it reads, it writes. A body under
`multipart_threshold` is one PUT, retried here (every attempt counted in the report). A larger one is a multipart
upload whose parts object_store sends `part_concurrency` at a time and retries one by one: a part that broke is
sent again alone, the parts already sent stay (resuming where it broke); only when a part's retries are spent is
the upload aborted and, while attempts are left, started again.

Items are taken from the iterable only as workers free up, so a generator of (key, bytes) holds at most
`concurrency` bodies in memory whatever its length."""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import obstore

from streamwatch.core.backoff import CLIENT
from streamwatch.reader.objects import Outcomes, classify, unaddressable
from streamwatch.reader.stores import Location, parse_location, store_for
from streamwatch.reader.workers import run_jobs

DEFAULT_WRITE_CONCURRENCY = 128  # objects in flight (s5cmd's default is 256 workers)
MULTIPART_THRESHOLD = 16 << 20  # bodies this large go as a multipart upload
WRITE_PART_SIZE = 8 << 20  # bytes per part (S3: at least 5 MiB but the last, at most 10,000 parts)
PART_CONCURRENCY = 4  # parts of one object in flight
PARTS_IN_FLIGHT = 16  # parts of all objects: each is a part_size buffer, so memory stays ~16 x 8 MiB
MAX_KEY_BYTES = 1024  # S3's limit on a key
MAX_PARTS = 10_000  # S3's limit on parts per upload (S3 User Guide, "Amazon S3 multipart upload limits")


@dataclass
class WriteResult:
    key: str
    ok: bool = False
    bytes: int = 0
    attempts: int = 0
    error: str | None = None
    etag: str | None = None
    source: str | None = None  # the local file, when the item was one


@dataclass
class WriteReport(Outcomes):
    destination: str
    results: list[WriteResult] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.failed

    def summary(self) -> dict:
        return {"destination": self.destination, "objects": len(self.results), "ok": len(self.ok),
                "failed": [asdict(r) for r in self.failed], "bytes": self.bytes,
                "elapsed_s": round(self.elapsed_s, 3),
                "objects_per_s": round(len(self.ok) / self.elapsed_s, 1) if self.elapsed_s else None}


class DatasetWriter:
    def __init__(self, destination: str, prefix: str = "", *, concurrency: int = DEFAULT_WRITE_CONCURRENCY,
                 max_attempts: int = 5, endpoint_url: str | None = None,
                 multipart_threshold: int = MULTIPART_THRESHOLD, part_size: int = WRITE_PART_SIZE,
                 part_concurrency: int = PART_CONCURRENCY, parts_in_flight: int = PARTS_IN_FLIGHT) -> None:
        """`destination`: a bucket name with `prefix`, or a URL (s3://bucket/prefix/, gs://, az://); a bad one
        raises stores.BadLocation before anything is sent. At most `parts_in_flight // part_concurrency` large
        bodies are uploaded at once, since each part in flight is a buffer of `part_size`."""
        if concurrency < 1 or part_concurrency < 1:
            raise ValueError("concurrency and part_concurrency must be >= 1")
        if part_size < 5 << 20:
            raise ValueError("part_size must be >= 5 MiB (S3's smallest part but the last)")
        self.location: Location = parse_location(destination, prefix)
        if self.location.http:
            raise ValueError(f"{self.location}: writing goes to an object store (s3://, gs://, az://), not HTTP")
        self.concurrency, self.max_attempts = concurrency, max(1, max_attempts)
        self.endpoint_url, self.part_size, self.part_concurrency = endpoint_url, part_size, part_concurrency
        self.multipart_threshold = max(multipart_threshold, part_size + 1)
        self.large = threading.BoundedSemaphore(max(1, parts_in_flight // part_concurrency))  # bodies at once
        self.sleep: Callable[[float], None] = time.sleep

    def key_of(self, relative: str) -> str:
        return self.location.prefix + relative

    def put_many(self, items: Iterable, *, base: str | Path | None = None,
                 progress: Callable[[WriteResult], None] | None = None) -> WriteReport:
        """Write every item: a file path (its key: the path relative to `base`, or its name), or a (key, body)
        pair with a bytes-like body or a Path. Keys are relative to the destination's prefix. Never raises
        half-way: each item ends ok or failed in the report, in the order taken."""
        started = time.perf_counter()
        report = WriteReport(str(self.location))
        store = store_for(self.location, self.endpoint_url)
        lock = threading.Lock()

        def jobs():  # read by run_jobs under its lock: results are appended in the order items are taken
            source = iter(items)
            while True:
                try:
                    item = next(source)
                except StopIteration:
                    return
                except Exception as exc:  # the caller's generator broke: what it gave so far is still written
                    report.results.append(WriteResult(key="", error=f"ItemsFailed: the items raised "
                                                                    f"{type(exc).__name__}: {exc}"))
                    return
                result = WriteResult(key="")
                report.results.append(result)
                yield functools.partial(self._put_item, store, item, base, result, progress, lock)

        run_jobs(jobs(), self.concurrency, "writer")
        report.elapsed_s = time.perf_counter() - started
        return report

    # --- one object ------------------------------------------------------------------------------------------
    def _put_item(self, store, item, base, result: WriteResult, progress=None, lock=None) -> None:
        try:
            self._put(store, item, base, result)
        finally:
            if progress:
                with lock:
                    progress(result)

    def _put(self, store, item, base, result: WriteResult) -> None:
        try:
            relative, body = self._unpack(item, base, result)
        except (TypeError, ValueError, OSError) as exc:
            result.key = result.key or repr(item)[:200]
            result.error = f"Refused: {exc}"
            return
        result.key = key = self.key_of(relative)
        reason = unaddressable(key) or ("a key over 1,024 bytes" if len(key.encode()) > MAX_KEY_BYTES else None)
        if reason:
            result.error = f"Refused: {reason}"
            return
        size = body.stat().st_size if isinstance(body, Path) else memoryview(body).nbytes
        large = size >= self.multipart_threshold
        for attempt in range(self.max_attempts):
            result.attempts += 1
            try:
                if large:
                    with self.large:
                        put = self._put_multipart(key, body, size)
                else:
                    put = obstore.put(store, key, body, use_multipart=False)
                result.ok, result.bytes, result.error, result.etag = True, size, None, put.get("e_tag")
                return
            except Exception as exc:
                result.error, transient = classify(exc)
                if not transient or attempt + 1 >= self.max_attempts:
                    return
                self.sleep(CLIENT.delay(attempt))

    def part_size_for(self, size: int) -> int:
        """`part_size`, or larger for a body that would need more than S3's 10,000 parts (whole MiB)."""
        return max(self.part_size, -(-size // (MAX_PARTS << 20)) << 20)

    def _put_multipart(self, key: str, body, size: int) -> dict:
        """An open file is read a part at a time (a Path would be read whole)."""
        options = {"use_multipart": True, "chunk_size": self.part_size_for(size),
                   "max_concurrency": self.part_concurrency}
        if isinstance(body, Path):
            with open(body, "rb") as fh:
                return obstore.put(self._multipart_store(), key, fh, **options)
        return obstore.put(self._multipart_store(), key, body, **options)

    def _unpack(self, item, base, result: WriteResult) -> tuple[str, bytes | memoryview | Path]:
        if isinstance(item, str | os.PathLike):
            path = Path(item)
            result.source = str(path)
            relative = path.relative_to(base).as_posix() if base is not None else path.name
            if not path.is_file():
                raise ValueError(f"{path} is not a file")
            return relative, path
        if not isinstance(item, tuple) or len(item) != 2 or not isinstance(item[0], str):
            raise TypeError(f"an item is a path or a (key, body) pair, not {type(item).__name__}")
        key, body = item
        result.key = self.key_of(key)
        if isinstance(body, os.PathLike):
            result.source = os.fspath(body)
            if not Path(body).is_file():
                raise ValueError(f"{body} is not a file")
            return key, Path(body)
        if isinstance(body, str):
            raise TypeError("a body is bytes (encode the text first) or a Path")
        memoryview(body)  # TypeError if it is not bytes-like
        return key, body

    def _multipart_store(self):
        """The same store with object_store's own retries on: a multipart upload's parts are retried one by one
        (the single PUTs' store has them off, so that every attempt is counted)."""
        return store_for(self.location, self.endpoint_url, retries=self.max_attempts - 1)
