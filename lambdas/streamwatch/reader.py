"""Read a finished dataset in parallel: bounded concurrency, retries, a per-object report, atomic files.

Why threads across processes (bench/reader.py on this 2-core machine: a loopback endpoint answering in 20 ms,
1,000 objects of 64 KiB): serial 42 obj/s; one process with 32 threads ~440 obj/s (10.6x), and more threads do
not help: botocore spends ~1.5 ms of CPU per request under the GIL, and that, not the network, is the ceiling.
Two processes with 16 threads each: ~860 obj/s (20.8x; awscli 5x). asyncio (aiobotocore) runs the same botocore
request pipeline on one core, so it meets the same ceiling; threads keep plain boto3 and its retry modes. Each
process gets one client sized for its threads (`max_pool_connections`), made from a session forked warm, and
timestamps are left unparsed (botocore's parser hook) since the reader never reads them. In Lambda (no /dev/shm
for multiprocessing) the reader uses one process.

Retries: botocore's standard retry mode for API errors (5xx, SlowDown, throttling, connection errors), plus our
own retry with exponential backoff and full jitter when a body stream breaks mid-read. Permanent errors
(NoSuchKey, AccessDenied, a changed object) are reported at once. `fetch` never raises half-way: it returns
a report with every object's outcome, attempts and last error. Files are written to a temp name and renamed,
so a failed object leaves no partial file.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from urllib3.exceptions import ProtocolError

from streamwatch.aws import backoff_s

CHUNK = 1 << 20
THREADS_PER_PROCESS = 16
BODY_ERRORS = (IncompleteReadError, ResponseStreamingError, ReadTimeoutError, ConnectionClosedError, ProtocolError,
               EndpointConnectionError)


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


class Sink:
    """Where one attempt at one object goes. `abort` after a failed attempt leaves nothing behind."""

    def write(self, chunk: bytes) -> None: ...
    def commit(self) -> dict: return {}
    def abort(self) -> None: ...


class FileSink(Sink):
    """temp file next to the target, renamed on success: a reader never sees a partial file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        self.fh = open(self.tmp, "wb", buffering=0)  # noqa: SIM115 (closed in commit/abort); chunks are large

    def write(self, chunk: bytes) -> None:
        self.fh.write(chunk)

    def commit(self) -> dict:
        self.fh.close()
        os.replace(self.tmp, self.path)
        return {"path": str(self.path)}

    def abort(self) -> None:
        self.fh.close()
        self.tmp.unlink(missing_ok=True)


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


def in_lambda() -> bool:
    return "AWS_LAMBDA_FUNCTION_NAME" in os.environ


def make_session() -> boto3.session.Session:
    """A session whose response parser leaves timestamps as text: the reader never looks at Last-Modified, and
    dateutil parsing it is a measurable share of botocore's CPU per GetObject (botocore's documented hook)."""
    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=lambda value: value)
    return boto3.session.Session(botocore_session=core)


def make_client(threads: int, max_attempts: int, endpoint_url: str | None = None, session=None):
    config = Config(retries={"mode": "standard", "max_attempts": max_attempts}, max_pool_connections=threads,
                    connect_timeout=5, read_timeout=30, tcp_keepalive=True)
    return (session or make_session()).client("s3", config=config, endpoint_url=endpoint_url)


def list_objects(client, bucket: str, prefix: str) -> list[ObjectInfo]:
    """Every object under the prefix (ListObjectsV2, paginated)."""
    out = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [ObjectInfo(o["Key"], o["Size"], o["ETag"]) for o in page.get("Contents", [])]
    return out


def fetch_one(client, bucket: str, obj: ObjectInfo, sink_factory: Callable[[str], Sink], max_attempts: int,
              sleep: Callable[[float], None] = time.sleep) -> ObjectResult:
    result = ObjectResult(key=obj.key, ok=False, etag=obj.etag)
    for attempt in range(max_attempts):
        kwargs = {"IfMatch": obj.etag} if obj.etag else {}
        sink = None
        try:
            response = client.get_object(Bucket=bucket, Key=obj.key, **kwargs)
            result.attempts += 1 + response["ResponseMetadata"].get("RetryAttempts", 0)
            result.etag = response.get("ETag", obj.etag)
            sink, size = sink_factory(obj.key), 0
            for chunk in response["Body"].iter_chunks(CHUNK):
                sink.write(chunk)
                size += len(chunk)
            extra = sink.commit()
            result.ok, result.bytes, result.error = True, size, None
            result.records, result.path = extra.get("records"), extra.get("path")
            return result
        except ClientError as exc:  # botocore already retried what is retryable
            if sink:
                sink.abort()
            result.attempts += 1 + exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
            result.error = f"{exc.response['Error'].get('Code')}: {exc.response['Error'].get('Message', '')}"
            return result
        except (*BODY_ERRORS, BotoCoreError) as exc:  # the stream broke: start the object again
            if sink:
                sink.abort()
            else:
                result.attempts += 1
            result.error = f"{type(exc).__name__}: {exc}"
            if attempt + 1 < max_attempts:
                sleep(backoff_s(attempt, base=0.1, cap=5.0))
        except Exception as exc:  # never raise half-way: whatever it was, it is in the report
            if sink:
                sink.abort()
            result.attempts += 1
            result.error = f"{type(exc).__name__}: {exc}"
            return result
    return result


class DatasetReader:
    def __init__(self, *, concurrency: int = 32, processes: int | None = None, max_attempts: int = 5,
                 endpoint_url: str | None = None, client=None) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if processes is None:
            processes = 1 if in_lambda() or client is not None else min(
                os.cpu_count() or 1, math.ceil(concurrency / THREADS_PER_PROCESS))
        self.concurrency, self.processes = concurrency, max(1, min(processes, concurrency))
        self.max_attempts, self.endpoint_url = max_attempts, endpoint_url
        self._client = client
        self._session = make_session()

    @property
    def client(self):
        if self._client is None:
            self._client = make_client(self.concurrency, self.max_attempts, self.endpoint_url, self._session)
        return self._client

    def list(self, bucket: str, prefix: str) -> list[ObjectInfo]:
        return list_objects(self.client, bucket, prefix)

    def fetch(self, bucket: str, prefix: str = "", *, objects: list[ObjectInfo] | None = None,
              to_dir: str | Path | None = None, sink_factory: Callable[[str], Sink] | None = None,
              progress: Callable[[ObjectResult], None] | None = None) -> ReadReport:
        """Read every object (listed under `prefix`, or given). Files go under `to_dir` by their key relative
        to `prefix`; or pass `sink_factory` (single process) to consume the bytes."""
        started = time.perf_counter()
        report = ReadReport(bucket, prefix)
        if objects is None:
            try:
                objects = self.list(bucket, prefix)
            except Exception as exc:
                report.listing_error = f"{type(exc).__name__}: {exc}"
                return report
        if sink_factory is None:
            if to_dir is None:
                raise ValueError("give to_dir or sink_factory")
            root = Path(to_dir)
            sink_factory = _FilesUnder(root, prefix)
        shards = [objects[i::self.processes] for i in range(self.processes)]
        threads = [len(range(i, self.concurrency, self.processes)) for i in range(self.processes)]
        if self.processes == 1 or not isinstance(sink_factory, _FilesUnder):  # custom sinks stay in-process
            report.results = _fetch_shard(self.client, bucket, objects, sink_factory, self.concurrency,
                                          self.max_attempts, progress)
        else:
            report.results = self._fetch_in_processes(bucket, shards, threads, sink_factory, progress)
        report.elapsed_s = time.perf_counter() - started
        return report

    def _fetch_in_processes(self, bucket, shards, threads, sink_factory, progress) -> list[ObjectResult]:
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        self.client  # noqa: B018 - load the service model here, so forked workers inherit it warm
        with ctx.Pool(len(shards), initializer=_init_worker, initargs=(queue, self._session)) as pool:
            pending = pool.map_async(_process_shard, [
                (bucket, shard, sink_factory, n, self.max_attempts, self.endpoint_url)
                for shard, n in zip(shards, threads, strict=True)])
            seen = 0
            while seen < sum(map(len, shards)):
                try:
                    item = queue.get(timeout=0.5)
                except Exception:
                    if pending.ready():
                        break
                    continue
                seen += 1
                if progress:
                    progress(item)
            return [r for part in pending.get() for r in part]


class _FilesUnder:
    """Picklable sink factory: key -> file under root, relative to the dataset prefix. Checked lexically (no
    filesystem calls per key): a key with `..` or an absolute path cannot write outside the root."""

    def __init__(self, root: Path, prefix: str) -> None:
        self.root, self.prefix = Path(os.path.abspath(root)), prefix
        self._made: set[Path] = set()

    def __call__(self, key: str) -> Sink:
        relative = key[len(self.prefix):] if key.startswith(self.prefix) else key
        parts = [p for p in relative.split("/") if p not in ("", ".")]
        if not parts or ".." in parts:
            raise ValueError(f"key {key!r} would write outside {self.root}")
        target = self.root.joinpath(*parts)
        if target.parent not in self._made:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(target.parent)
        return FileSink(target)


def _fetch_shard(client, bucket, objects, sink_factory, threads, max_attempts, progress) -> list[ObjectResult]:
    def one(obj: ObjectInfo) -> ObjectResult:
        result = fetch_one(client, bucket, obj, sink_factory, max_attempts)
        if progress:
            progress(result)
        return result
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return list(pool.map(one, objects))


_progress_queue = None
_session = None


def _init_worker(queue, session) -> None:
    """A forked worker inherits the parent's progress queue (queues cannot travel as task arguments) and its
    session, whose loaded service model makes a new client cheap (connections are the worker's own)."""
    global _progress_queue, _session
    _progress_queue, _session = queue, session


def _process_shard(args) -> list[ObjectResult]:
    bucket, objects, sink_factory, threads, max_attempts, endpoint_url = args
    client = make_client(threads, max_attempts, endpoint_url, _session)
    return _fetch_shard(client, bucket, objects, sink_factory, threads, max_attempts, _progress_queue.put)
