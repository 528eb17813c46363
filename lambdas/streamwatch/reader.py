"""Read a finished dataset in parallel through obstore: bounded concurrency, retries, a per-object report, atomic
files, large objects in parallel byte ranges.

Why obstore (Rust object_store bindings): botocore spends 1.3-1.9 ms of CPU per GetObject under the GIL, so on
2 cores (or a 1-vCPU Lambda) no boto3 design reached the latency limit, and the former two-process reader
could not run in Lambda at all. obstore signs, sends and reads in Rust with the GIL released, ~0.25 CPU-s per
1,000 GETs, so one process is bounded by requests in flight only. bench/reader.py (2 cores, loopback endpoint
answering in 20 ms, medians, docs/benchmarks.md): 1,000 x 64 KiB at concurrency 32: 1,341 obj/s, 84 % of the
latency limit (32 / 20 ms = 1,600), 0.37 CPU-s per 1,000 objects including the listing; at the default (64):
2,280 obj/s against s5cmd's 1,567 (serial boto3: 42). 16 x 64 MiB: 1,307 MB/s against s5cmd's 1,184, peak
RSS 104 MiB above the idle process. Two processes of 16 measured slower than one of 32 (1,267 obj/s, more
CPU), so there is one process.

Threads, not asyncio: `concurrency` threads make blocking obstore calls (the GIL is released while they wait).
Measured against asyncio over obstore's async API at the same concurrency, threads were as fast at half the CPU
(0.25 vs 0.45 CPU-s per 1,000 objects): an asyncio wake-up per request costs more than a thread switch.

Large objects (at least `large_threshold` bytes, ETag known, a file destination): split into `part_size` byte
ranges, each a work item like any small object, streamed in `chunk_size` pieces with os.pwrite at its offset into
a preallocated temp file. Parts of one object are queued together, so few objects are open at once and memory
is ~requests in flight x chunk_size whatever the object size.

Retries: obstore's own retries are off (RetryConfig max_retries=0) and the reader retries, so every attempt is
counted in the report and one policy (exponential backoff, full jitter) covers 5xx, SlowDown, throttling,
connection errors and bodies that break mid-stream; a ranged part resumes at the byte where it broke. Permanent
errors (NoSuchKey, AccessDenied, PreconditionFailed: the object changed since it was listed, since every GET
carries If-Match with the listed ETag) are reported at once. `fetch` never raises half-way: it returns a report
with every object's outcome, attempts and last error. Files are written under a temp name and renamed, so a
failed object leaves nothing.

Credentials and endpoint, where boto3 finds them: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN
from the environment (the Lambda role's credentials arrive that way); otherwise boto3's own chain (profiles,
AWS_PROFILE, SSO, assume-role, web identity, container and instance roles) through obstore's
Boto3CredentialProvider, refreshed as boto3 refreshes. Region: AWS_REGION, AWS_DEFAULT_REGION, then the profile.
Endpoint: the `endpoint_url` argument, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL (path-style; http allowed for it).
obstore cannot address keys with empty, "." or ".." path segments, and reads "dir/" as "dir": Firehose never
writes such keys.
"""

from __future__ import annotations

import errno
import functools
import math
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import obstore
from obstore.exceptions import BaseError as StoreError
from obstore.exceptions import GenericError
from obstore.store import S3Store

from streamwatch.aws import backoff_s

CHUNK = 256 << 10  # bytes per piece of a streamed body (1 MiB pieces: ~1.5x the peak memory, no faster)
PART_SIZE = 8 << 20  # byte range per request for large objects
LARGE_THRESHOLD = 16 << 20  # objects this large go in ranges (when written to files)
DEFAULT_CONCURRENCY = 64  # requests in flight
CLIENT_OPTIONS = {"connect_timeout": "5s", "read_timeout": "30s", "timeout": "10min", "pool_idle_timeout": "60s"}
STATUS = re.compile(r"status code: (\d{3})")
CODE, MESSAGE = re.compile(r"<Code>([^<]*)</Code>"), re.compile(r"<Message>([^<]*)</Message>")
TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "Throttling", "ThrottlingException", "InternalError",
                   "ServiceUnavailable", "RequestTimeTooSkewed"}


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int = -1
    etag: str = ""


@dataclass
class ObjectResult:
    key: str
    ok: bool
    bytes: int = 0
    etag: str = ""
    attempts: int = 0
    error: str | None = None
    records: int | None = None
    path: str | None = None


@dataclass
class ReadReport:
    bucket: str
    prefix: str
    results: list[ObjectResult] = field(default_factory=list)
    elapsed_s: float = 0.0
    listing_error: str | None = None

    @property
    def ok(self) -> list[ObjectResult]:
        return [r for r in self.results if r.ok]

    @property
    def failed(self) -> list[ObjectResult]:
        return [r for r in self.results if not r.ok]

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.ok)

    @property
    def complete(self) -> bool:
        return not self.failed and self.listing_error is None

    def summary(self) -> dict:
        return {"bucket": self.bucket, "prefix": self.prefix, "objects": len(self.results), "ok": len(self.ok),
                "failed": [asdict(r) for r in self.failed], "bytes": self.bytes, "elapsed_s": round(self.elapsed_s, 3),
                "objects_per_s": round(len(self.ok) / self.elapsed_s, 1) if self.elapsed_s else None,
                "listing_error": self.listing_error}


class ReadError(Exception):
    """An object or a listing could not be read. `code` is S3's error code or what broke (IncompleteRead,
    ConnectionError); `transient` says whether it was still failing after retries rather than refused."""

    def __init__(self, message: str, code: str = "", transient: bool = False, attempts: int = 0) -> None:
        super().__init__(message)
        self.code, self.transient, self.attempts = code, transient, attempts


class Sink:
    """Where one attempt at one object goes. `abort` after a failed attempt leaves nothing behind. A positional
    sink also takes pieces at any offset (`allocate` once, then `write_at` from several threads): large
    objects are fetched into it in parallel ranges."""

    positional = False

    def write(self, chunk: bytes) -> None: ...
    def commit(self) -> dict: return {}
    def abort(self) -> None: ...

    def allocate(self, size: int) -> None:
        raise NotImplementedError

    def write_at(self, offset: int, chunk: bytes) -> None:
        raise NotImplementedError


class FileSink(Sink):
    """temp file next to the target, renamed on success: a reader never sees a partial file. Takes any buffer
    (obstore's Bytes too: no copy into a Python bytes first). With `dir_fd` (a directory opened without following
    symlinks) the names are relative to it and the temp file is opened with O_NOFOLLOW; without `overwrite` the
    commit links the file in and fails if the name exists (FileExistsError), so an existing file is never
    replaced. The sink owns `dir_fd` (closed when it ends); `shown` is the path its result reports."""

    positional = True

    def __init__(self, path: str | Path, *, dir_fd: int | None = None, overwrite: bool = True,
                 shown: str | None = None) -> None:
        self.path, self.dir_fd, self.overwrite = os.fspath(path), dir_fd, overwrite
        self.shown = shown or self.path
        head, tail = os.path.split(self.path)
        self.tmp = os.path.join(head, f".{tail}.{uuid.uuid4().hex}.part")
        self.fd: int | None = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                                      0o666, dir_fd=dir_fd)

    def write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            view = view[os.write(self.fd, view):]

    def allocate(self, size: int) -> None:
        """Reserve the whole file first: a full disk fails the object now, not after most of it arrived."""
        try:
            os.posix_fallocate(self.fd, 0, size)
        except OSError as exc:
            if exc.errno not in (95, 22):  # EOPNOTSUPP / EINVAL: a file system without fallocate
                raise
            os.ftruncate(self.fd, size)

    def write_at(self, offset: int, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            written = os.pwrite(self.fd, view, offset)
            view, offset = view[written:], offset + written

    def commit(self) -> dict:
        self._close()
        try:
            if self.overwrite:
                os.replace(self.tmp, self.path, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
            else:
                self._commit_new()
        finally:
            self._close_dir()
        return {"path": self.shown}

    def _commit_new(self) -> None:
        """Link the file in (fails if the name exists). A file system without hard links (FAT, some FUSE and
        SMB mounts): claim the name with O_EXCL first, then rename over that claim."""
        try:
            try:
                os.link(self.tmp, self.path, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd, follow_symlinks=False)
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
                    raise
                claim = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                0o666, dir_fd=self.dir_fd)  # FileExistsError: an existing file stays as it was
                os.close(claim)
                os.replace(self.tmp, self.path, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        finally:
            try:
                os.unlink(self.tmp, dir_fd=self.dir_fd)
            except FileNotFoundError:  # renamed into place
                pass

    def abort(self) -> None:
        self._close()
        try:
            os.unlink(self.tmp, dir_fd=self.dir_fd)
        except FileNotFoundError:
            pass
        finally:
            self._close_dir()

    def _close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def _close_dir(self) -> None:
        if self.dir_fd is not None:
            fd, self.dir_fd = self.dir_fd, None
            os.close(fd)


class LineCountSink(Sink):
    """Counts newline-delimited records (what the consumer's manifest reports), keeps nothing."""

    def __init__(self) -> None:
        self.lines = 0

    def write(self, chunk: bytes) -> None:
        self.lines += chunk.count(b"\n")

    def commit(self) -> dict:
        return {"records": self.lines}

    def abort(self) -> None:
        self.lines = 0


# --- the store: credentials, region and endpoint as boto3 resolves them -----------------------------------------
def resolve_endpoint(endpoint_url: str | None = None) -> str | None:
    return endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def make_store(bucket: str, endpoint_url: str | None = None) -> S3Store:
    """One S3Store per bucket, endpoint and credential environment (cached: its connection pool is reused)."""
    env = tuple(os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                                            "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"))
    return _store(bucket, resolve_endpoint(endpoint_url), env)


@functools.lru_cache(maxsize=32)
def _store(bucket: str, endpoint: str | None, env: tuple) -> S3Store:
    access_key, secret_key, token, region, default_region, _profile = env
    config: dict = {"region": region or default_region}
    provider = None
    if access_key and secret_key:  # boto3's first source; in Lambda, the function role's credentials
        config |= {"access_key_id": access_key, "secret_access_key": secret_key}
        if token:
            config["session_token"] = token
    else:  # profiles, SSO, assume-role, container and instance roles: boto3's chain, refreshed by boto3
        import boto3
        from obstore.auth.boto3 import Boto3CredentialProvider

        session = boto3.Session()
        if session.get_credentials() is None:
            raise ReadError("NoCredentials: no AWS credentials in the environment, profile or instance role",
                            "NoCredentials")
        provider = Boto3CredentialProvider(session, ttl=timedelta(minutes=5))
        config["region"] = config["region"] or session.region_name
    config["region"] = config["region"] or "us-east-1"
    options: dict = dict(CLIENT_OPTIONS)
    if endpoint:
        config |= {"endpoint": endpoint, "aws_endpoint_url_s3": endpoint, "virtual_hosted_style_request": False}
        options["allow_http"] = endpoint.startswith("http://")
    return S3Store(bucket, config=config, client_options=options, retry_config={"max_retries": 0},
                   credential_provider=provider)


# --- errors -------------------------------------------------------------------------------------------------------
class _Short(Exception):
    """The body ended before the bytes it promised."""


def classify(exc: BaseException) -> tuple[str, bool]:
    """(text for the report, transient?) for one failed request. S3 answered: its code decides (5xx, 408, 429,
    SlowDown are transient). No answer (refused, reset, timed out, body broke): transient. Anything else (a bad
    key, a local file error): permanent."""
    text = str(exc)
    if isinstance(exc, _Short):
        return f"IncompleteRead: {text}", True
    status = STATUS.search(text) if isinstance(exc, StoreError | FileNotFoundError) else None
    if status:
        n, code, message = int(status[1]), CODE.search(text), MESSAGE.search(text)
        name = code[1] if code else f"HTTP{n}"
        return (f"{name}: {message[1]}" if message else name), n >= 500 or n in (408, 429) or name in TRANSIENT_CODES
    first = text.split("\n", 1)[0]
    if isinstance(exc, GenericError):
        return (f"IncompleteRead: {first}" if "body" in first else f"ConnectionError: {first}"), True
    return f"{type(exc).__name__}: {first}", False


def _options(etag: str | None, start: int = 0, end: int | None = None) -> dict:
    options: dict = {"if_match": etag} if etag else {}
    if end is not None:
        options["range"] = (start, end)
    elif start:
        options["range"] = {"offset": start}
    return options


# --- listing and one-object streams -------------------------------------------------------------------------------
def list_objects(store: S3Store, prefix: str, max_attempts: int = 5,
                 sleep: Callable[[float], None] = time.sleep) -> list[ObjectInfo]:
    """Every object under the prefix, with S3's prefix semantics: obstore lists whole path segments, so a prefix
    not ending in "/" is listed from its parent and filtered. A failed page resumes after the last key seen."""
    parent = prefix if prefix.endswith("/") or not prefix else prefix.rpartition("/")[0]
    out: list[ObjectInfo] = []
    last, attempt = None, 0
    while True:
        try:
            for batch in obstore.list(store, parent or None, offset=last, chunk_size=1000):
                for meta in batch:
                    last = meta["path"]
                    if last.startswith(prefix):
                        out.append(ObjectInfo(last, meta["size"], meta.get("e_tag") or ""))
            return out
        except Exception as exc:
            error, transient = classify(exc)
            attempt += 1
            if not transient or attempt >= max_attempts:
                raise ReadError(error, error.split(":", 1)[0], transient, attempt) from exc
            sleep(backoff_s(attempt - 1, base=0.1, cap=5.0))


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def unaddressable(key: str) -> str | None:
    """Why obstore cannot read this key (its paths have no empty, '.' or '..' segment and no control character),
    or None."""
    if _CONTROL.search(key):
        return "obstore cannot address a key with a control character"
    if any(part in ("", ".", "..") for part in key.split("/")):
        return "obstore cannot address a key with an empty, '.' or '..' segment"
    return None


def _list_with_s3(bucket: str, prefix: str, endpoint_url: str | None) -> list[ObjectInfo]:
    """ListObjectsV2 through boto3 (only when obstore refused the listing): every key, addressable or not."""
    import boto3
    from botocore.config import Config

    from streamwatch.aws import RETRIES
    client = boto3.client("s3", endpoint_url=endpoint_url, config=Config(retries=RETRIES))
    out = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [ObjectInfo(o["Key"], o["Size"], o.get("ETag", "")) for o in page.get("Contents", [])]
    return out


def stream_object(bucket: str, key: str, *, chunk_size: int = CHUNK, max_attempts: int = 5,
                  endpoint_url: str | None = None, sleep: Callable[[float], None] = time.sleep) -> Iterator[bytes]:
    """The object's bytes exactly as stored (a gzip object stays compressed: the caller inflates), in chunks of
    at least `chunk_size` bytes but the last. Same store, credentials and retries as DatasetReader; safe from many
    threads. A body that breaks is resumed where it broke (a Range GET with If-Match on the first response's
    ETag, so a replaced object raises instead of splicing two versions). Raises ReadError (`.code`: NoSuchKey,
    AccessDenied, PreconditionFailed, IncompleteRead, ...) once retries are spent or the error is permanent."""
    store = make_store(bucket, endpoint_url)
    offset, etag, size = 0, None, None
    for attempt in range(max_attempts):
        try:
            got = obstore.get(store, key, options=_options(etag, offset))
            if etag is None:
                meta = got.meta
                etag, size = meta.get("e_tag"), meta["size"]
            if offset == 0 and size <= chunk_size:  # one call, not a stream, for a small object
                data = got.bytes().to_bytes()
                offset = len(data)
                if offset < size:
                    raise _Short(f"{offset} of {size} bytes")
                yield data
                return
            for chunk in got.stream(chunk_size):
                offset += len(chunk)
                yield chunk
            if offset < size:
                raise _Short(f"{offset} of {size} bytes")
            return
        except Exception as exc:
            error, transient = classify(exc)
            if not transient or attempt + 1 >= max_attempts:
                raise ReadError(f"s3://{bucket}/{key}: {error}", error.split(":", 1)[0], transient,
                                attempt + 1) from exc
            sleep(backoff_s(attempt, base=0.1, cap=5.0))


# --- the dataset reader -------------------------------------------------------------------------------------------
class DatasetReader:
    def __init__(self, *, concurrency: int = DEFAULT_CONCURRENCY, max_attempts: int = 5,
                 endpoint_url: str | None = None, part_size: int = PART_SIZE, large_threshold: int = LARGE_THRESHOLD,
                 chunk_size: int = CHUNK, processes: int | None = None) -> None:
        """`concurrency`: requests in flight (objects, or parts of large objects). `processes` is accepted for
        callers of the former multi-process reader and ignored: one process reaches the limit."""
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if part_size < 1 or large_threshold < 1:
            raise ValueError("part_size and large_threshold must be >= 1")
        self.concurrency, self.processes, self.max_attempts = concurrency, 1, max(1, max_attempts)
        self.endpoint_url, self.part_size, self.chunk_size = endpoint_url, part_size, chunk_size
        self.large_threshold = max(large_threshold, part_size + 1)
        self.sleep: Callable[[float], None] = time.sleep

    def store(self, bucket: str) -> S3Store:
        return make_store(bucket, self.endpoint_url)

    def list(self, bucket: str, prefix: str) -> list[ObjectInfo]:
        """Every object under the prefix. obstore refuses a listing that holds a key it cannot address (`..`, an
        empty segment, a control character): then the listing is made again with S3's own API, so such keys are
        reported one by one (fetch refuses them) instead of failing the whole read."""
        try:
            return list_objects(self.store(bucket), prefix, self.max_attempts, self.sleep)
        except ReadError as exc:
            if "InvalidPath" not in str(exc):
                raise
            return _list_with_s3(bucket, prefix, resolve_endpoint(self.endpoint_url))

    def fetch(self, bucket: str, prefix: str = "", *, objects: list[ObjectInfo] | None = None,
              to_dir: str | Path | None = None, sink_factory: Callable[[str], Sink] | None = None,
              progress: Callable[[ObjectResult], None] | None = None, overwrite: bool = False) -> ReadReport:
        """Read every object (listed under `prefix`, or given). Files go under `to_dir` by their key relative
        to `prefix`, only under safe names and never through a symlink; an existing file is replaced only with
        `overwrite`. Or pass `sink_factory` to consume the bytes (called once per attempt, from worker threads).
        A key refused as a file name is reported for that object alone."""
        started = time.perf_counter()
        report = ReadReport(bucket, prefix)
        if sink_factory is None:
            if to_dir is None:
                raise ValueError("give to_dir or sink_factory")
            files = sink_factory = _FilesUnder(to_dir, prefix, overwrite=overwrite)
            try:
                return self.fetch(bucket, prefix, objects=objects, sink_factory=files, progress=progress)
            finally:
                files.close()
        try:
            store = self.store(bucket)
            if objects is None:
                objects = self.list(bucket, prefix)
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
        positional = getattr(sink_factory, "positional", False)
        refuse = getattr(sink_factory, "refuse", None)
        for obj, result in zip(objects, report.results, strict=True):
            reason = unaddressable(obj.key) or (refuse(obj.key) if refuse else None)
            if reason:
                result.error = f"Refused: {reason}"
                done(result)
            elif positional and obj.etag and obj.size >= self.large_threshold:
                ranged = _Ranged(self, store, obj, result, sink_factory, done)
                jobs += [functools.partial(ranged.part, i) for i in range(ranged.parts)]
            else:
                jobs.append(functools.partial(self._fetch_whole, store, obj, result, sink_factory, done))
        _run(jobs, min(self.concurrency, len(jobs)))
        report.elapsed_s = time.perf_counter() - started
        return report

    def _fetch_whole(self, store: S3Store, obj: ObjectInfo, result: ObjectResult,
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
                    self.sleep(backoff_s(attempt, base=0.1, cap=5.0))
        finally:
            done(result)


class _Ranged:
    """One large object fetched as byte ranges by several workers into one positional sink, committed by the
    part that finishes last (or aborted, if any part failed for good)."""

    def __init__(self, reader: DatasetReader, store: S3Store, obj: ObjectInfo, result: ObjectResult,
                 sink_factory: Callable[[str], Sink], done: Callable[[ObjectResult], None]) -> None:
        self.reader, self.store, self.obj, self.result = reader, store, obj, result
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
                    reader.sleep(backoff_s(attempt, base=0.1, cap=5.0))
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


def _run(jobs: list[Callable[[], None]], threads: int) -> None:
    """`threads` workers take jobs in order until none are left (each job reports its own outcome)."""
    lock, queue = threading.Lock(), iter(jobs)

    def work() -> None:
        while True:
            with lock:
                job = next(queue, None)
            if job is None:
                return
            job()

    workers = [threading.Thread(target=work, name=f"reader-{i}", daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


# A key's path components a reader writes to disk (README: security model): no leading dot (.git, .ssh, .bashrc),
# no backslash, colon, NUL or control character (Windows paths, alternate streams), each short enough to leave room
# for the temp suffix (".<name>.<32 hex>.part") within the file system's 255 bytes.
SAFE_COMPONENT = re.compile(r"[A-Za-z0-9_+=@,~-][A-Za-z0-9_.+=@,~ -]*")
MAX_COMPONENT_BYTES = 255 - len(".." + "0" * 32 + ".part")
MAX_PATH_BYTES = 4000


def unsafe_name(relative: str) -> str | None:
    """Why a key (relative to the dataset's prefix) may not become a file, or None if it may."""
    parts = relative.split("/")
    if not relative or relative.endswith("/"):
        return "a folder marker, not a file"
    if len(relative.encode()) > MAX_PATH_BYTES:
        return "the path is too long"
    for part in parts:
        if part in ("", ".", ".."):
            return f"an empty, '.' or '..' path component in {relative!r}"
        if not SAFE_COMPONENT.fullmatch(part):
            return f"component {part[:60]!r} is not a safe file name (no leading dot, no \\ : NUL or control " \
                   "characters)"
        if len(part.encode()) > MAX_COMPONENT_BYTES:
            return f"component {part[:40]!r}... is longer than {MAX_COMPONENT_BYTES} bytes"
    return None


class UnsafeTarget(ValueError):
    """The directory to write into is not empty (and --overwrite was not given), or is not a directory."""


def check_target(root: str | Path, *, overwrite: bool = False) -> None:
    """Refuse a target that is a file, a symlink, or a non-empty directory without `overwrite`."""
    path = Path(root)
    if path.is_symlink():
        raise UnsafeTarget(f"{root} is a symlink: give the directory itself")
    if path.exists() and not path.is_dir():
        raise UnsafeTarget(f"{root} is not a directory")
    if path.is_dir() and not overwrite and any(path.iterdir()):
        raise UnsafeTarget(f"{root} is not empty: give an empty or new directory, or --overwrite to add to it "
                           "(existing files are then replaced, symlinks never followed)")


class _FilesUnder:
    """Sink factory: key -> file under root, relative to the dataset prefix. Only safe names (`unsafe_name`), and
    every directory is opened relative to the root with O_NOFOLLOW, so a symlink inside the target is never
    followed; without `overwrite` an existing file is never replaced."""

    positional = True

    def __init__(self, root: str | Path, prefix: str, *, overwrite: bool = False) -> None:
        self.root, self.prefix, self.overwrite = os.path.abspath(root), prefix, overwrite
        os.makedirs(self.root, exist_ok=True)
        self._dirs: OrderedDict[tuple[str, ...], int] = OrderedDict({(): os.open(self.root, _DIR_FLAGS)})
        self._lock = threading.Lock()

    def relative(self, key: str) -> str:
        return key[len(self.prefix):] if key.startswith(self.prefix) else key

    def refuse(self, key: str) -> str | None:
        return unsafe_name(self.relative(key))

    def __call__(self, key: str) -> Sink:
        reason = self.refuse(key)
        if reason:
            raise UnsafeName(reason)
        relative = self.relative(key)
        *folders, name = relative.split("/")
        return FileSink(name, dir_fd=self._dir(tuple(folders)), overwrite=self.overwrite,
                        shown=os.path.join(self.root, relative))

    def _dir(self, folders: tuple[str, ...]) -> int:
        """A descriptor of its own for the folder (the sink closes it). Folders opened are kept for the next
        object, the most recent OPEN_FOLDERS of them, so a dataset of many folders never runs out of
        descriptors."""
        with self._lock:
            return os.dup(self._dir_locked(folders))

    def _dir_locked(self, folders: tuple[str, ...]) -> int:
        fd = self._dirs.get(folders)
        if fd is not None:
            self._dirs.move_to_end(folders)
            return fd
        parent = self._dir_locked(folders[:-1])
        try:
            os.mkdir(folders[-1], 0o777, dir_fd=parent)
        except FileExistsError:
            pass
        fd = os.open(folders[-1], _DIR_FLAGS, dir_fd=parent)  # ELOOP on a symlink
        self._dirs[folders] = fd
        while len(self._dirs) > OPEN_FOLDERS:
            oldest = next(k for k in self._dirs if k and k != folders and k != folders[:-1])
            os.close(self._dirs.pop(oldest))
        return fd

    def close(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()


class UnsafeName(ValueError):
    """A key the reader will not write as a file (reported for that object)."""


OPEN_FOLDERS = 64
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
