"""The producer envelope, and reading it back out of delivered objects. Pure: no AWS.

Every record a streamwatch producer sends (client, `streamwatch put`, the producer Lambda) starts with one
reserved field, `"_sw":"<producer>:<seq>"`, then the fields its dataset rule partitions by, then the user's own
fields: `{"_sw":"a:17","dataset_id":"orders-1","order_id":1}`. The sequence numbers of one producer run
0, 1, 2, ... in the order of `put`, so the records a producer sent are exactly `[0, records_sent)`.

The monitor finds the envelope with one regular-expression scan per object (no JSON parse per line): Firehose
writes each record as it was sent, plus a newline, so the envelope sits right after a newline. Lines without it
are foreign (someone else's writer) and are counted, never used for completion. A producer's sequence numbers
are kept as merged intervals, so a record delivered twice (a Firehose retry, a producer resending) counts once.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from streamwatch.core import ids

FIELD = "_sw"
_ENVELOPE_RE = re.compile(rb'\n\{"_sw":"([A-Za-z0-9._-]+):([0-9]+)"')
GZIP_MAGIC = b"\x1f\x8b"
# What a delivered object can hold: Firehose records are at most 1,000 KiB (a line, with its envelope and
# newline, a little more), and a buffer at most 128 MiB before compression. An object beyond these is not
# Firehose's: the scan stops at once, so memory and time stay bounded whatever a writer puts in the bucket.
MAX_LINE_BYTES = 1_024_000 + 1024
MAX_INFLATED_BYTES = 4 * 128 * 1024 * 1024
INFLATE_PIECE = 1024 * 1024  # gzip output per step: a bomb never inflates more than this at once


class RecordError(ValueError):
    """A record the producer cannot send: not JSON-serializable, not a JSON object, or too large."""


valid_producer_id = ids.valid_producer_id  # the one definition (streamwatch.core.ids)


class Wrapper:
    """The envelope of one producer's records, with everything but the sequence number worked out once: the
    client wraps every record, so this is its hot path (measured in bench/producer.py)."""

    def __init__(self, producer_id: str, fields: dict[str, str]) -> None:
        self.fields = fields
        rest = json.dumps(fields, separators=(",", ":"))[1:-1]
        self.head = f'{{"{FIELD}":"{producer_id}:'
        self.after_seq = '"' + ("," + rest if rest else "")
        self.head_bytes, self.after_seq_bytes = self.head.encode(), self.after_seq.encode()
        self._dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode

    def __call__(self, record: dict | bytes | str, seq: int) -> bytes:
        """One record as it goes to Firehose: envelope first, then the rule's fields, then the record's own."""
        if isinstance(record, dict):
            if FIELD in record:
                raise RecordError(f"record field {FIELD!r} is reserved for streamwatch's envelope")
            fields = self.fields
            if fields and any(name in record for name in fields):
                for name, value in fields.items():  # the rule's fields are ours; a different value would misfile it
                    if name in record and record[name] != value:
                        raise RecordError(f"record field {name!r}={record[name]!r} contradicts its dataset "
                                          f"({value!r})")
                record = {k: v for k, v in record.items() if k not in fields}
            try:
                body = self._dumps(record)
            except (TypeError, ValueError) as exc:
                raise RecordError(f"record is not JSON-serializable: {exc}") from None
            inner = body[1:-1]
            return f"{self.head}{seq}{self.after_seq}{',' if inner else ''}{inner}}}".encode()
        data = record.encode() if isinstance(record, str) else bytes(record)
        data = data.strip()
        if not (data.startswith(b"{") and data.endswith(b"}")):
            raise RecordError("a bytes record must be one JSON object ({...}); dataset rules partition by its fields")
        if b"\n" in data:
            raise RecordError("a record must be one line: newlines delimit records in the delivered objects")
        inner = data[1:-1].strip()
        return self.head_bytes + str(seq).encode() + self.after_seq_bytes + (b"," + inner if inner else b"") + b"}"


def wrap(record: dict | bytes | str, producer_id: str, seq: int, fields: dict[str, str]) -> bytes:
    """One record wrapped (see Wrapper; the client keeps one Wrapper per producer)."""
    return Wrapper(producer_id, fields)(record, seq)


def json_objects(data: bytes) -> list[bytes] | None:
    """Back-to-back JSON values, as Firehose's JSON de-aggregation splits a packed record; None if the data is not
    JSON throughout."""
    text, decoder, pos, out = data.decode("utf-8", "replace"), json.JSONDecoder(), 0, []
    while pos < len(text):
        while pos < len(text) and text[pos] in " \r\n\t":
            pos += 1
        if pos >= len(text):
            break
        try:
            _, end = decoder.raw_decode(text, pos)
        except ValueError:
            return None
        out.append(text[pos:end].encode())
        pos = end
    return out


# --- intervals -----------------------------------------------------------------------------------------------
Interval = tuple[int, int]  # inclusive [first, last]


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    out: list[list[int]] = []
    for first, last in sorted(intervals):
        if out and first <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], last)
        else:
            out.append([first, last])
    return [(a, b) for a, b in out]


def size(intervals: Iterable[Interval]) -> int:
    return sum(b - a + 1 for a, b in intervals)


def covers(intervals: list[Interval], count: int) -> bool:
    """True if the merged intervals hold exactly every number in [0, count)."""
    if count == 0:
        return not intervals
    return len(intervals) == 1 and intervals[0] == (0, count - 1)


def encode(intervals: Iterable[Interval]) -> str:
    """Compact text for DynamoDB: '0-499,600-1099'."""
    return ",".join(f"{a}-{b}" for a, b in intervals)


def decode(text: str | None) -> list[Interval]:
    if not text:
        return []
    return [(int(a), int(b)) for a, b in (part.split("-") for part in text.split(","))]


def from_seqs(seqs: list[int]) -> list[Interval]:
    """Sorted, merged intervals of a list of sequence numbers (duplicates allowed)."""
    if not seqs:
        return []
    seqs = sorted(seqs)
    out, first, last = [], seqs[0], seqs[0]
    for s in seqs[1:]:
        if s > last + 1:
            out.append((first, last))
            first = s
        last = max(last, s)
    out.append((first, last))
    return out


# --- scanning delivered objects -------------------------------------------------------------------------------
@dataclass
class Scan:
    """What one object holds: lines, lines without the envelope, and each producer's sequence numbers."""

    lines: int = 0
    foreign: int = 0
    seqs: dict[str, list[Interval]] = field(default_factory=dict)

    @property
    def enveloped(self) -> int:
        return self.lines - self.foreign


class Rejected(ValueError):
    """An object no Firehose stream writes (a line too long, a gzip bomb, corrupt gzip): skipped, never retried."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class Scanner:
    """Feed an object's bytes in chunks (gzip detected by its magic bytes); read `result()` at the end. Raises
    Rejected past MAX_LINE_BYTES without a newline or MAX_INFLATED_BYTES inflated."""

    def __init__(self) -> None:
        self._tail = b"\n"  # a virtual newline before the first line, so the first envelope matches too
        self._inflate = None
        self._first = True
        self._lines = 0
        self._inflated = 0
        self._found: dict[bytes, list[int]] = {}

    def feed(self, chunk: bytes) -> None:
        if self._first:
            self._first = False
            if chunk[:2] == GZIP_MAGIC:
                self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        if self._inflate is None:
            self._lines_of(chunk)
            return
        pending = chunk
        while pending:
            try:
                piece = self._inflate.decompress(pending, INFLATE_PIECE)
            except zlib.error as exc:
                raise Rejected("CorruptGzip", str(exc)) from None
            pending = self._inflate.unconsumed_tail
            self._inflated += len(piece)
            if self._inflated > MAX_INFLATED_BYTES:
                raise Rejected("GzipBomb", f"inflates past {MAX_INFLATED_BYTES} bytes")
            self._lines_of(piece)

    def _lines_of(self, chunk: bytes) -> None:
        if not chunk:
            return
        data = self._tail + chunk
        cut = data.rfind(b"\n")  # scan whole lines only; the rest waits for the next chunk
        whole, self._tail = data[:cut], data[cut:]
        if len(self._tail) > MAX_LINE_BYTES:  # no newline for longer than a record can be: not Firehose's
            raise Rejected("LineTooLong", f"no newline in {len(self._tail)} bytes")
        self._lines += whole.count(b"\n")  # each line in `whole` starts with the newline before it
        self._collect(whole)

    def _collect(self, data: bytes) -> None:
        found = self._found
        for producer, seq in _ENVELOPE_RE.findall(data):
            bucket = found.get(producer)
            if bucket is None:
                bucket = found[producer] = []
            bucket.append(int(seq))

    def result(self) -> Scan:
        if self._inflate is not None:
            rest = self._inflate.flush()
            if rest:
                self._inflated += len(rest)
                if self._inflated > MAX_INFLATED_BYTES:
                    raise Rejected("GzipBomb", f"inflates past {MAX_INFLATED_BYTES} bytes")
                self._lines_of(rest)
        tail = self._tail
        lines = self._lines
        if tail.strip(b"\n"):  # a last record without a trailing newline is still a record
            self._collect(tail)
            lines += 1
        found = self._found
        enveloped = sum(len(v) for v in found.values())
        return Scan(lines=lines, foreign=lines - enveloped,
                    seqs={p.decode(): from_seqs(v) for p, v in found.items()})


def bounded_lines(chunks: Iterable[bytes], max_line: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """The lines of an object read in chunks, never holding more than one line; Rejected past `max_line`."""
    tail = b""
    for chunk in chunks:
        data = tail + chunk
        lines = data.split(b"\n")
        tail = lines.pop()
        if len(tail) > max_line:
            raise Rejected("LineTooLong", f"no newline in {len(tail)} bytes")
        for line in lines:
            if line:
                yield line
    if tail:
        yield tail


def scan(chunks: Iterable[bytes]) -> Scan:
    scanner = Scanner()
    for chunk in chunks:
        scanner.feed(chunk)
    return scanner.result()


def lines_of(data: bytes) -> Iterator[bytes]:
    """The records of a delivered object (tests and the local Firehose emulation)."""
    for line in data.split(b"\n"):
        if line:
            yield line
