"""One object or one listing through obstore: the store, errors and retries, `list_objects`, `stream_object`
(the monitor's hot path: no file system, no thread pool). See the package docstring for why obstore."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta

import obstore
from obstore.exceptions import BaseError as StoreError
from obstore.exceptions import GenericError
from obstore.store import S3Store

from streamwatch.core import scope
from streamwatch.core.backoff import CLIENT

CHUNK = 256 << 10  # bytes per piece of a streamed body (1 MiB pieces: ~1.5x the peak memory, no faster)
PART_SIZE = 16 << 20  # byte range per request for large objects (AWS suggests 8-16 MB; fewer requests, less CPU)
LARGE_THRESHOLD = 16 << 20  # objects larger than this go in ranges (when written to files)
DEFAULT_CONCURRENCY = 128  # requests in flight (s5cmd's default is 256 workers)
RANGE_CONCURRENCY = 16  # of them, byte ranges of large objects: ~16 x one stream's bandwidth; more ranges only
# added buffers and CPU on 2 cores (docs/benchmarks.md); raise it on a machine with a faster network
CLIENT_OPTIONS = {"connect_timeout": "5s", "read_timeout": "30s", "timeout": "10min", "pool_idle_timeout": "60s"}
STATUS = re.compile(r"status code: (\d{3})(?: ([A-Za-z][A-Za-z -]*[A-Za-z]))?")
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


class Outcomes:
    """What a read or a write report says of its `results` (each with .ok and .bytes)."""

    results: list

    @property
    def ok(self) -> list:
        return [r for r in self.results if r.ok]

    @property
    def failed(self) -> list:
        return [r for r in self.results if not r.ok]

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.ok)


@dataclass
class ReadReport(Outcomes):
    bucket: str
    prefix: str
    results: list[ObjectResult] = field(default_factory=list)
    elapsed_s: float = 0.0
    listing_error: str | None = None
    location: object = None  # stores.Location; by default the S3 bucket and prefix

    def __post_init__(self) -> None:
        if self.location is None:
            from streamwatch.reader.stores import Location  # stores builds on this module
            self.location = Location("s3", self.bucket, self.prefix)

    @property
    def source(self) -> str:
        return str(self.location)

    def url_of(self, key: str) -> str:
        """The object's URL, for a person reading the report."""
        return self.location.url_of(key)

    @property
    def complete(self) -> bool:
        return not self.failed and self.listing_error is None

    def summary(self) -> dict:
        return {"bucket": self.bucket, "prefix": self.prefix, "source": self.source,
                "objects": len(self.results), "ok": len(self.ok),
                "failed": [asdict(r) | {"url": self.url_of(r.key)} for r in self.failed], "bytes": self.bytes,
                "elapsed_s": round(self.elapsed_s, 3),
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
    environ = scope.environ()
    return endpoint_url or environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or None


def retry_config(retries: int) -> dict:
    """obstore's retries: off for the reader (it retries, and counts every attempt); on for a multipart upload,
    whose parts only object_store can retry one by one."""
    if not retries:
        return {"max_retries": 0}
    return {"max_retries": retries, "retry_timeout": timedelta(minutes=3),
            "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=15), "base": 2}}


def make_store(bucket: str, endpoint_url: str | None = None, retries: int = 0) -> S3Store:
    """One S3Store per bucket, endpoint, credential environment and retry count (cached: its connection pool is
    reused)."""
    environ = scope.environ()  # the process's; a local run's own (core/scope.py)
    env = tuple(environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                                         "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"))
    return _store(bucket, resolve_endpoint(endpoint_url), env, scope.session(), retries)


@functools.lru_cache(maxsize=32)
def _store(bucket: str, endpoint: str | None, env: tuple, session=None, retries: int = 0) -> S3Store:
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

        session = session or boto3.Session()
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
    return S3Store(bucket, config=config, client_options=options, retry_config=retry_config(retries),
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
        name = code[1] if code else f"HTTP {n}" + (f" {status[2]}" if status[2] else "")  # a plain HTTP server
        message = message[1].strip().split("\n", 1)[0] if message else ""  # Azure adds RequestId and Time lines
        return (f"{name}: {message}" if message else name), n >= 500 or n in (408, 429) or name in TRANSIENT_CODES
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
def with_retries(call: Callable[[], object], max_attempts: int, sleep: Callable[[float], None],
                 label: str = ""):
    """`call()` until it returns: a transient failure is retried with the client backoff, a permanent one (or the
    last) raised as ReadError, its text after `label`. For calls that are whole requests (a listing, an index
    page); a stream that resumes where it broke keeps its own loop."""
    for attempt in range(max(1, max_attempts)):
        try:
            return call()
        except ReadError:
            raise
        except Exception as exc:
            error, transient = classify(exc)
            if not transient or attempt + 1 >= max_attempts:
                raise ReadError(f"{label}{error}", error.split(":", 1)[0], transient, attempt + 1) from exc
            sleep(CLIENT.delay(attempt))
    raise AssertionError("unreachable")


def list_objects(store: S3Store, prefix: str, max_attempts: int = 5,
                 sleep: Callable[[float], None] = time.sleep) -> list[ObjectInfo]:
    """Every object under the prefix, with S3's prefix semantics: obstore lists whole path segments, so a prefix
    not ending in "/" is listed from its parent and filtered. A failed page resumes after the last key seen."""
    parent = prefix if prefix.endswith("/") or not prefix else prefix.rpartition("/")[0]
    out: list[ObjectInfo] = []
    last = None

    def pages() -> list[ObjectInfo]:
        nonlocal last
        for batch in obstore.list(store, parent or None, offset=last, chunk_size=1000):
            for meta in batch:
                last = meta["path"]
                if last.startswith(prefix):
                    out.append(ObjectInfo(last, meta["size"], meta.get("e_tag") or ""))
        return out

    return with_retries(pages, max_attempts, sleep)


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

    from streamwatch.core.backoff import RETRIES
    client = (scope.session() or boto3).client("s3", endpoint_url=endpoint_url or scope.endpoint_url(),
                                               config=Config(retries=RETRIES))
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
            sleep(CLIENT.delay(attempt))
