"""A minimal S3 endpoint on 127.0.0.1 for reader and writer tests and benchmarks: ListObjectsV2 and GetObject
(with `Range: bytes=a-b` -> 206 and Content-Range, and `If-Match` -> 412), PutObject and the multipart upload
(create, parts, complete, abort; `Expect: 100-continue` and botocore's aws-chunked bodies), from memory, a fixed
delay per request, and faults on demand.

moto's server is CPU-bound near 180 GetObject/s on this machine, so a throughput benchmark through it measures
moto. This asyncio server costs almost nothing per request (ETags are computed once, at `put`; large bodies
are written as slices of the stored object, not copied whole), so what is measured is the client. Faults
(per key, consumed one per request): "503" SlowDown, "500" InternalError, "broken" (headers promise the whole
body or range, half is sent, the connection drops), "404" NoSuchKey, "403" AccessDenied. Faults for key ""
hit the next ListObjectsV2 page instead. On an upload, "broken" drops the connection half-way through the body;
the faults of one part are keyed "key?partNumber=N". As S3 does, a part number outside 1-10,000 is refused, and
so is a completed upload with a part under 5 MiB that is not the last (EntityTooSmall).

`connection_bytes_per_s` caps each connection's bandwidth, as a single S3 GET stream is capped (AWS's
performance guidelines: parallelize with byte-range GETs to go past one connection's throughput); 0, no cap.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import urllib.parse
import uuid
from collections import defaultdict, deque
from xml.sax.saxutils import escape

ERRORS = {"503": (503, "SlowDown", "Please reduce your request rate."),
          "500": (500, "InternalError", "We encountered an internal error."),
          "404": (404, "NoSuchKey", "The specified key does not exist."),
          "403": (403, "AccessDenied", "Access Denied")}
RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
QUOTE = {'"': "&quot;"}
WRITE_SLICE = 1 << 20  # large bodies go out in 1 MiB slices, drained in between: bounded buffering
PACED_SLICE = 64 << 10  # under a bandwidth cap: smaller slices, so the pace is smooth
MIN_PART, MAX_PARTS = 5 << 20, 10_000  # S3 User Guide, "Amazon S3 multipart upload limits"
READ_LIMIT = 16 << 20  # a request body is read into a buffer this large without pausing the socket (asyncio's
# default, 64 KiB, pauses and resumes it every 128 KiB: uploads through it measured the endpoint, not the client)


class S3Endpoint:
    def __init__(self, latency_s: float = 0.0, connection_bytes_per_s: float = 0.0) -> None:
        self.latency_s, self.connection_bytes_per_s = latency_s, connection_bytes_per_s
        self.objects: dict[str, dict[str, bytes]] = defaultdict(dict)
        self.etags: dict[tuple[str, str], str] = {}
        self.headers: dict[tuple[str, str], dict[str, str]] = {}
        self.ranges: defaultdict[str, list[tuple[int, int]]] = defaultdict(list)  # [start, end) of Range GETs
        self.last_headers: dict[str, str] = {}  # of the latest request (lower-case names): who signed it
        self.faults: dict[str, deque[str]] = defaultdict(deque)
        self.uploads: dict[str, tuple[str, str, dict[int, tuple[bytes, str]]]] = {}  # id -> bucket, key, parts
        self.requests: defaultdict[str, int] = defaultdict(int)
        self.in_flight = self.max_in_flight = 0
        self.ranges_in_flight = self.max_ranges_in_flight = 0  # of them, Range GETs
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # --- setup -----------------------------------------------------------------------------------------
    def put(self, bucket: str, key: str, body: bytes, headers: dict[str, str] | None = None,
            etag: str | None = None) -> None:
        """Store an object; `headers` (e.g. Content-Encoding) are sent back with it, as S3 does. `etag`: an
        upload's own (by default the body's MD5)."""
        self.objects[bucket][key] = body
        self.etags.pop((bucket, key), None)
        if etag:
            self.etags[(bucket, key)] = etag
        self._etag(bucket, key)
        self.headers[(bucket, key)] = dict(headers or {})

    def fail(self, key: str, *faults: str) -> None:
        self.faults[key].extend(faults)

    def _etag(self, bucket: str, key: str) -> str:
        if (bucket, key) not in self.etags:  # stored without put()
            self.etags[(bucket, key)] = f'"{hashlib.md5(self.objects[bucket][key]).hexdigest()}"'  # noqa: S324
        return self.etags[(bucket, key)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Endpoint:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024,
                                                                         limit=READ_LIMIT))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            server.close()
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.close()

        self._thread = threading.Thread(target=run, name="s3-endpoint", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def __enter__(self) -> S3Endpoint:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- HTTP ------------------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line = head.split(b"\r\n", 1)[0].decode()
                method, target, _ = request_line.split(" ", 2)
                headers = {}
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.decode("latin-1").partition(":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                self.last_headers = headers
                length = int(headers.get("content-length", 0))
                if length and headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # botocore and Go wait for it (up to 1 s)
                bucket, key, params = self._parse(target)
                body = b""
                if length:
                    if self._upload_breaks(method, key, params):  # the body stops half-way, the connection drops
                        await reader.readexactly(length // 2)
                        break
                    body = await reader.readexactly(length)
                    if "aws-chunked" in headers.get("content-encoding", "") or \
                            headers.get("x-amz-content-sha256", "").startswith("STREAMING-"):
                        body = _decode_aws_chunked(body)
                ranged = "range" in headers
                with self._lock:
                    self.in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self.in_flight)
                    self.ranges_in_flight += ranged
                    self.max_ranges_in_flight = max(self.max_ranges_in_flight, self.ranges_in_flight)
                try:
                    if self.latency_s:
                        await asyncio.sleep(self.latency_s)
                    keep = await self._respond(method, bucket, key, params, headers, writer, body)
                finally:
                    with self._lock:
                        self.in_flight -= 1
                        self.ranges_in_flight -= ranged
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def _upload_breaks(self, method: str, key: str, params: dict) -> bool:
        if method != "PUT":
            return False
        key = self._fault_key(key, params)
        with self._lock:
            if self.faults.get(key) and self.faults[key][0] == "broken":
                self.faults[key].popleft()
                self.requests[key] += 1
                return True
        return False

    @staticmethod
    def _parse(target: str) -> tuple[str, str, dict]:
        path, _, query = target.partition("?")
        params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        bucket, _, key = urllib.parse.unquote(path.lstrip("/")).partition("/")
        return bucket, key, params

    @staticmethod
    def _fault_key(key: str, params: dict) -> str:
        """Faults and request counts of one part of a multipart upload are keyed "key?partNumber=N"."""
        return f"{key}?partNumber={params['partNumber']}" if "partNumber" in params else key

    async def _write(self, method: str, bucket: str, key: str, params: dict, body: bytes, writer) -> bool:
        """PutObject, and the multipart upload: Create (POST ?uploads), UploadPart (PUT ?partNumber&uploadId),
        Complete (POST ?uploadId, the parts in its XML), Abort (DELETE ?uploadId)."""
        fault_key = self._fault_key(key, params)
        self.requests[fault_key] += 1
        fault = self.faults[fault_key].popleft() if self.faults.get(fault_key) else None
        if fault in ERRORS:
            status, code, message = ERRORS[fault]
            return await self._send(writer, status, _error(code, message, key), "application/xml")
        if method == "POST" and "uploads" in params:
            upload = uuid.uuid4().hex
            self.uploads[upload] = (bucket, key, {})
            return await self._send(writer, 200, (
                '<?xml version="1.0" encoding="UTF-8"?><InitiateMultipartUploadResult><Bucket>'
                f"{escape(bucket)}</Bucket><Key>{escape(key)}</Key><UploadId>{upload}</UploadId>"
                "</InitiateMultipartUploadResult>").encode(), "application/xml")
        upload = self.uploads.get(params.get("uploadId", ""))
        if "uploadId" in params and (upload is None or upload[:2] != (bucket, key)):
            return await self._send(writer, 404, _error("NoSuchUpload", "The specified upload does not exist.", key),
                                    "application/xml")
        if method == "PUT" and upload:
            if not 1 <= int(params["partNumber"]) <= MAX_PARTS:
                return await self._send(writer, 400, _error("InvalidArgument", "Part number must be an integer "
                                                            "between 1 and 10000, inclusive", key), "application/xml")
            etag = _etag_of(body)
            upload[2][int(params["partNumber"])] = (body, etag)
            return await self._send(writer, 200, b"", "application/xml", {"ETag": etag})
        if method == "POST" and upload:
            wanted = [int(n) for n in re.findall(r"<PartNumber>(\d+)</PartNumber>", body.decode())]
            if not wanted or any(n not in upload[2] for n in wanted):
                return await self._send(writer, 400, _error("InvalidPart", "One or more of the specified parts "
                                                            "could not be found.", key), "application/xml")
            if any(len(upload[2][n][0]) < MIN_PART for n in wanted[:-1]):  # S3: 5 MiB, but the last part
                return await self._send(writer, 400, _error("EntityTooSmall", "Your proposed upload is smaller "
                                                            "than the minimum allowed size", key), "application/xml")
            del self.uploads[params["uploadId"]]
            etag = f'"{uuid.uuid4().hex}-{len(wanted)}"'
            self.put(bucket, key, b"".join(upload[2][n][0] for n in wanted), etag=etag)
            return await self._send(writer, 200, (
                '<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUploadResult><Bucket>'
                f"{escape(bucket)}</Bucket><Key>{escape(key)}</Key><ETag>{escape(etag, QUOTE)}</ETag>"
                "</CompleteMultipartUploadResult>").encode(), "application/xml")
        if method == "DELETE" and upload:
            del self.uploads[params["uploadId"]]
            return await self._send(writer, 204, b"", "application/xml", length=0)
        if method == "PUT":
            etag = _etag_of(body)
            self.put(bucket, key, body, etag=etag)
            return await self._send(writer, 200, b"", "application/xml", {"ETag": etag})
        return await self._send(writer, 400, _error("InvalidRequest", f"{method} is not served here", key),
                                "application/xml")

    async def _respond(self, method: str, bucket: str, key: str, params: dict, headers: dict[str, str],
                       writer: asyncio.StreamWriter, body: bytes = b"") -> bool:
        if key and method in ("PUT", "POST", "DELETE"):
            return await self._write(method, bucket, key, params, body, writer)
        if method == "HEAD" and not key:  # HeadBucket: the CLI checks the bucket before a read
            status = 200 if bucket in self.objects else 404
            return await self._send(writer, status, b"", "application/xml", length=0)
        if method == "GET" and not key:
            fault = self.faults[""].popleft() if self.faults.get("") else None
            if fault in ERRORS:
                status, code, message = ERRORS[fault]
                return await self._send(writer, status, _error(code, message, ""), "application/xml")
            page = self._list(bucket, params)
            if fault == "broken":
                writer.write(_head(200, len(page), "application/xml", {}) + page[: len(page) // 2])
                await writer.drain()
                return False
            return await self._send(writer, 200, page, "application/xml")
        self.requests[key] += 1
        fault = self.faults[key].popleft() if self.faults.get(key) else None
        if fault in ERRORS:
            status, code, message = ERRORS[fault]
            return await self._send(writer, status, _error(code, message, key), "application/xml")
        body = self.objects.get(bucket, {}).get(key)
        if body is None:
            return await self._send(writer, 404, _error("NoSuchKey", "The specified key does not exist.", key),
                                    "application/xml")
        etag = self._etag(bucket, key)
        extra = {"ETag": etag, "Accept-Ranges": "bytes", **self.headers.get((bucket, key), {})}
        if "if-match" in headers and headers["if-match"] not in (etag, "*"):
            return await self._send(writer, 412, _error("PreconditionFailed", "At least one of the pre-conditions "
                                                         "you specified did not hold", key), "application/xml")
        if method == "HEAD":
            return await self._send(writer, 200, b"", "binary/octet-stream", extra, length=len(body))
        status, start, end = 200, 0, len(body)  # [start, end)
        if "range" in headers:
            bounds = _range(headers["range"], len(body))
            if bounds is None:
                return await self._send(writer, 416, _error("InvalidRange", "The requested range is not "
                                                            "satisfiable", key), "application/xml")
            status, (start, end) = 206, bounds
            self.ranges[key].append(bounds)
            extra["Content-Range"] = f"bytes {start}-{end - 1}/{len(body)}"
        view = memoryview(body)[start:end]
        if fault == "broken":
            writer.write(_head(status, len(view), "binary/octet-stream", extra))
            writer.write(view[: len(view) // 2])
            await writer.drain()
            return False
        return await self._send(writer, status, view, "binary/octet-stream", extra)

    def _list(self, bucket: str, params: dict) -> bytes:
        prefix = params.get("prefix", "")
        token = max(params.get("continuation-token", ""), params.get("start-after", ""))
        max_keys = int(params.get("max-keys", 1000))
        encode = params.get("encoding-type") == "url"
        keys = sorted(k for k in self.objects.get(bucket, {}) if k.startswith(prefix) and k > token)
        page, truncated = keys[:max_keys], len(keys) > max_keys

        def k(key: str) -> str:
            return urllib.parse.quote(key, safe="/") if encode else escape(key)
        contents = "".join(
            f"<Contents><Key>{k(key)}</Key><LastModified>2026-11-23T10:00:00.000Z</LastModified>"
            f"<ETag>{escape(self._etag(bucket, key), QUOTE)}</ETag>"
            f"<Size>{len(self.objects[bucket][key])}</Size><StorageClass>STANDARD</StorageClass></Contents>"
            for key in page)
        return ('<?xml version="1.0" encoding="UTF-8"?><ListBucketResult '
                'xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<Name>{escape(bucket)}</Name><Prefix>{k(prefix)}</Prefix><KeyCount>{len(page)}</KeyCount>"
                f"<MaxKeys>{max_keys}</MaxKeys>" + ("<EncodingType>url</EncodingType>" if encode else "") +
                f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>" +
                (f"<NextContinuationToken>{escape(page[-1])}</NextContinuationToken>" if truncated else "") +
                contents + "</ListBucketResult>").encode()

    async def _send(self, writer, status: int, body: bytes | memoryview, content_type: str,
                    headers: dict | None = None, length: int | None = None) -> bool:
        head = _head(status, len(body) if length is None else length, content_type, headers or {})
        cap = self.connection_bytes_per_s
        if len(body) <= WRITE_SLICE and not cap:
            writer.write(head + body)
        else:  # a 64 MiB body is not copied into the transport's buffer at once
            writer.write(head)
            step, loop = (PACED_SLICE if cap else WRITE_SLICE), asyncio.get_running_loop()
            started = loop.time()
            for i in range(0, len(body), step):
                writer.write(body[i:i + step])
                await writer.drain()
                if cap:  # one response at a time per connection: pacing the response paces the connection
                    ahead = started + (i + step) / cap - loop.time()
                    if ahead > 0:
                        await asyncio.sleep(ahead)
        await writer.drain()
        return True


def _etag_of(body: bytes) -> str:
    """S3's ETag of a single-part upload is its MD5; past 1 MiB a unique token stands in for it, so the endpoint
    does not spend the client's CPU hashing (no client here checks it)."""
    if len(body) <= 1 << 20:
        return f'"{hashlib.md5(body).hexdigest()}"'  # noqa: S324
    return f'"{uuid.uuid4().hex}"'


def _decode_aws_chunked(body: bytes) -> bytes:
    """The payload of an `aws-chunked` body (SigV4 streaming: "<hex size>[;chunk-signature=..]\r\n<data>\r\n",
    ending with a 0-size chunk and trailers such as x-amz-checksum-crc32), as botocore sends a checksummed PUT."""
    out, i = [], 0
    while True:
        end = body.index(b"\r\n", i)
        size = int(body[i:end].split(b";", 1)[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(body[end + 2:end + 2 + size])
        i = end + 2 + size + 2


def _head(status: int, length: int, content_type: str, headers: dict) -> bytes:
    reason = {200: "OK", 204: "No Content", 206: "Partial Content", 400: "Bad Request", 403: "Forbidden",
              404: "Not Found", 412: "Precondition Failed", 416: "Range Not Satisfiable",
              500: "Internal Server Error", 503: "Service Unavailable"}[status]
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n"
            f"x-amz-request-id: local\r\nLast-Modified: Mon, 23 Nov 2026 10:00:00 GMT\r\n{extra}"
            "Connection: keep-alive\r\n\r\n").encode()


def _range(header: str, size: int) -> tuple[int, int] | None:
    """`bytes=a-b`, `bytes=a-` or `bytes=-n` (RFC 9110) -> [start, end), clipped to the object; None if it cannot
    be satisfied (one range only: S3 ignores multi-range requests and so do we, by refusing them)."""
    match = RANGE.match(header.replace(" ", ""))
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if not first:
        start, end = max(0, size - int(last)), size
    else:
        start, end = int(first), min(size, int(last) + 1) if last else size
    return (start, end) if start < end else None


def _error(code: str, message: str, key: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
            f"<Key>{escape(key)}</Key><RequestId>local</RequestId></Error>").encode()
