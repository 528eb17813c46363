"""`DatasetReader`: a whole dataset in parallel, bounded concurrency, large objects in byte ranges, a report of
every object."""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

import obstore

from streamwatch.core.backoff import CLIENT
from streamwatch.reader.files import FileSink, _FilesUnder
from streamwatch.reader.objects import (
    CHUNK,
    DEFAULT_CONCURRENCY,
    LARGE_THRESHOLD,
    PART_SIZE,
    RANGE_CONCURRENCY,
    ObjectInfo,
    ObjectResult,
    ReadError,
    ReadReport,
    Sink,
    _list_with_s3,
    _options,
    _Short,
    classify,
    list_objects,
    resolve_endpoint,
    unaddressable,
)
from streamwatch.reader.stores import Location, list_index, parse_location, store_for
from streamwatch.reader.workers import run_jobs


def _located(source: str | Location, prefix: str = "") -> Location:
    return source if isinstance(source, Location) else parse_location(source, prefix)


# --- the dataset reader -------------------------------------------------------------------------------------------
class DatasetReader:
    def __init__(self, *, concurrency: int = DEFAULT_CONCURRENCY, max_attempts: int = 5,
                 endpoint_url: str | None = None, part_size: int = PART_SIZE, large_threshold: int = LARGE_THRESHOLD,
                 chunk_size: int = CHUNK, processes: int | None = None,
                 range_concurrency: int = RANGE_CONCURRENCY) -> None:
        """`concurrency`: requests in flight (objects, or parts of large objects); `range_concurrency` of them at
        most are byte ranges of large objects: a small object costs a request's latency, a range its bandwidth,
        and past a few dozen ranges the bandwidth is spent and each more one only adds buffers. `processes` is
        accepted for callers of the former multi-process reader and ignored: one process reaches the limit."""
        if concurrency < 1 or range_concurrency < 1:
            raise ValueError("concurrency and range_concurrency must be >= 1")
        if part_size < 1 or large_threshold < 1:
            raise ValueError("part_size and large_threshold must be >= 1")
        self.concurrency, self.processes, self.max_attempts = concurrency, 1, max(1, max_attempts)
        self.range_concurrency = range_concurrency
        self.endpoint_url, self.part_size, self.chunk_size = endpoint_url, part_size, chunk_size
        self.large_threshold = max(large_threshold, part_size + 1)
        self.sleep: Callable[[float], None] = time.sleep

    def store(self, source: str | Location):
        """The store for a bucket name or a location (stores.parse_location)."""
        return store_for(_located(source), self.endpoint_url)

    def list(self, source: str | Location, prefix: str = "") -> list[ObjectInfo]:
        """Every object under the prefix: a bucket name and a prefix, or a URL (s3://, gs://, az://, or an HTTP
        folder, whose index pages are followed). obstore refuses an S3 listing that holds a key it cannot address
        (`..`, an empty segment, a control character): then the listing is made again with S3's own API, so such
        keys are reported one by one (fetch refuses them) instead of failing the whole read."""
        location = _located(source, prefix)
        store = self.store(location)
        if location.http:
            return list_index(store, location, self.max_attempts, self.sleep)
        try:
            return list_objects(store, location.prefix, self.max_attempts, self.sleep)
        except ReadError as exc:
            if "InvalidPath" not in str(exc) or location.scheme != "s3":
                raise
            return _list_with_s3(location.root, location.prefix, resolve_endpoint(self.endpoint_url))

    def fetch(self, source: str | Location, prefix: str = "", *, objects: list[ObjectInfo] | None = None,
              to_dir: str | Path | None = None, sink_factory: Callable[[str], Sink] | None = None,
              progress: Callable[[ObjectResult], None] | None = None, overwrite: bool = False) -> ReadReport:
        """Read every object (listed under `prefix`, or given). `source`: a bucket name with `prefix`, or a URL
        (s3://bucket/prefix, gs://, az://, https://host/folder/; a bad one raises stores.BadLocation before
        anything is sent). Files go under `to_dir` by their key relative to the prefix, only under safe names and
        never through a symlink; an existing file is replaced only with `overwrite`. Or pass `sink_factory` to
        consume the bytes (called once per attempt, from worker threads). A key refused as a file name is
        reported for that object alone."""
        started = time.perf_counter()
        location = _located(source, prefix)
        report = ReadReport(location.root, location.prefix, location=location)
        if sink_factory is None:
            if to_dir is None:
                raise ValueError("give to_dir or sink_factory")
            files = sink_factory = _FilesUnder(to_dir, location.prefix, overwrite=overwrite)
            try:
                return self.fetch(location, objects=objects, sink_factory=files, progress=progress)
            finally:
                files.close()
        try:
            store = self.store(location)
            if objects is None:
                objects = self.list(location)
        except Exception as exc:
            report.listing_error = str(exc) if isinstance(exc, ReadError) else f"{type(exc).__name__}: {exc}"
            return report
        report.results = [ObjectResult(key=o.key, ok=False, etag=o.etag) for o in objects]
        lock = threading.Lock()

        def done(result: ObjectResult) -> None:
            if progress:
                with lock:
                    progress(result)

        jobs: list[Callable[[], None]] = []
        ranges = threading.BoundedSemaphore(self.range_concurrency)
        positional = getattr(sink_factory, "positional", False)
        refuse = getattr(sink_factory, "refuse", None)
        for obj, result in zip(objects, report.results, strict=True):
            reason = unaddressable(obj.key) or (refuse(obj.key) if refuse else None)
            if reason:
                result.error = f"Refused: {reason}"
                done(result)
            elif positional and obj.etag and obj.size >= self.large_threshold:
                ranged = _Ranged(self, store, obj, result, sink_factory, done, ranges)
                jobs += [functools.partial(ranged.part, i) for i in range(ranged.parts)]
            else:
                jobs.append(functools.partial(self._fetch_whole, store, obj, result, sink_factory, done))
        run_jobs(jobs, min(self.concurrency, len(jobs)), "reader")
        report.elapsed_s = time.perf_counter() - started
        return report

    def _fetch_whole(self, store, obj: ObjectInfo, result: ObjectResult,
                     sink_factory: Callable[[str], Sink], done: Callable[[ObjectResult], None]) -> None:
        """One GET for the whole object, streamed into a fresh sink; a failed attempt aborts its sink."""
        try:
            for attempt in range(self.max_attempts):
                sink = None
                result.attempts += 1
                try:
                    got = obstore.get(store, obj.key, options=_options(obj.etag))
                    if obj.etag and obj.size >= 0:  # listed, and If-Match held: no need to build got.meta
                        size = obj.size
                    else:
                        meta = got.meta
                        size, result.etag = meta["size"], meta.get("e_tag") or obj.etag
                    sink, received = sink_factory(obj.key), 0
                    if size <= self.chunk_size:  # one call for a small body
                        data = got.bytes()
                        sink.write(data if isinstance(sink, FileSink) else data.to_bytes())
                        received = len(data)
                    else:
                        for chunk in got.stream(self.chunk_size):
                            sink.write(chunk)
                            received += len(chunk)
                    if received != size:
                        raise _Short(f"{received} of {size} bytes")
                    extra = sink.commit()
                    result.ok, result.bytes, result.error = True, received, None
                    result.records, result.path = extra.get("records"), extra.get("path")
                    return
                except Exception as exc:
                    _abort(sink)
                    result.error, transient = classify(exc)
                    if not transient or attempt + 1 >= self.max_attempts:
                        return
                    self.sleep(CLIENT.delay(attempt))
        finally:
            done(result)


class _Ranged:
    """One large object fetched as byte ranges by several workers into one positional sink, committed by the
    part that finishes last (or aborted, if any part failed for good)."""

    def __init__(self, reader: DatasetReader, store, obj: ObjectInfo, result: ObjectResult,
                 sink_factory: Callable[[str], Sink], done: Callable[[ObjectResult], None],
                 ranges: threading.BoundedSemaphore) -> None:
        self.reader, self.store, self.obj, self.result, self.ranges = reader, store, obj, result, ranges
        self.sink_factory, self.done = sink_factory, done
        self.parts = self.remaining = math.ceil(obj.size / reader.part_size)
        self.sink: Sink | None = None
        self.error: str | None = None
        self.lock = threading.Lock()
        result.attempts = 1  # plus one per retried request of any part

    def _open(self) -> Sink:
        with self.lock:
            if self.error:
                raise _Cancelled
            if self.sink is None:
                sink = self.sink_factory(self.obj.key)
                try:
                    sink.allocate(self.obj.size)
                except Exception:
                    _abort(sink)
                    raise
                self.sink = sink
            return self.sink

    def part(self, index: int) -> None:
        with self.ranges:
            self._part(index)

    def _part(self, index: int) -> None:
        reader = self.reader
        offset = start = index * reader.part_size
        end = min(self.obj.size, start + reader.part_size)
        try:
            for attempt in range(reader.max_attempts):
                if self.error:
                    return
                if attempt:
                    with self.lock:
                        self.result.attempts += 1
                try:
                    got = obstore.get(self.store, self.obj.key, options=_options(self.obj.etag, offset, end))
                    sink = self._open()
                    for chunk in got.stream(reader.chunk_size):
                        sink.write_at(offset, chunk)
                        offset += len(chunk)
                        if self.error:
                            return
                    if offset != end:
                        raise _Short(f"{offset - start} of {end - start} bytes of the range from {start}")
                    return
                except _Cancelled:
                    return
                except Exception as exc:
                    error, transient = classify(exc)
                    self.result.error = error
                    if not transient or attempt + 1 >= reader.max_attempts:
                        with self.lock:
                            self.error = self.error or error
                        return
                    reader.sleep(CLIENT.delay(attempt))
        finally:
            self._part_done()

    def _part_done(self) -> None:
        with self.lock:
            self.remaining -= 1
            if self.remaining:
                return
        result = self.result
        if self.error is None:
            try:
                extra = self.sink.commit()
                result.ok, result.bytes, result.error = True, self.obj.size, None
                result.records, result.path = extra.get("records"), extra.get("path")
            except Exception as exc:
                _abort(self.sink)
                result.error = classify(exc)[0]
        else:
            _abort(self.sink)
            result.error = self.error
        self.done(result)


class _Cancelled(Exception):
    """Another part of the same object failed for good: stop."""


def _abort(sink: Sink | None) -> None:
    if sink is not None:
        try:
            sink.abort()
        except Exception:  # the attempt's own error is what the report needs
            pass
