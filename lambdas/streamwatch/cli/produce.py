"""`streamwatch run start|done|fail` and `streamwatch put`: producing from anything that is not Python."""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from streamwatch.client.producer import MAX_RECORD_BYTES, ProducerReport
from streamwatch.core.errors import EXIT_FAILED, InputError
from streamwatch.core.ids import check_dataset_id, check_producer_id

MAX_LINE_BYTES = MAX_RECORD_BYTES  # a longer line cannot be one Firehose record (envelope or not)


def add_parsers(sub, deployment_options: argparse.ArgumentParser) -> None:
    run = sub.add_parser("run", help="start a run, or report a producer done or failed")
    actions = run.add_subparsers(dest="action", required=True)
    p = actions.add_parser("start", parents=[deployment_options], help="register a dataset and its producers")
    p.add_argument("dataset")
    p.add_argument("--producers", default="", help="comma-separated producer ids that will write the dataset")
    p.add_argument("--expected-by", help="a deadline: ISO-8601 time (2026-11-24T18:00:00Z) or seconds from now")
    p.set_defaults(func=cmd_run_start)
    p = actions.add_parser("done", parents=[deployment_options], help="report a producer done")
    p.add_argument("dataset")
    p.add_argument("--producer", required=True)
    p.add_argument("--records", type=int, help="how many records it sent (lets the dataset complete by records)")
    p.set_defaults(func=cmd_run_done)
    p = actions.add_parser("fail", parents=[deployment_options], help="report a producer failed (-> Dataset Failed)")
    p.add_argument("dataset")
    p.add_argument("--producer", required=True)
    p.add_argument("--error", required=True, help="what went wrong (goes into the Dataset Failed event)")
    p.set_defaults(func=cmd_run_fail)

    p = sub.add_parser("put", parents=[deployment_options],
                       help="JSON lines from a file or stdin into the dataset, through the producer client")
    p.add_argument("dataset")
    p.add_argument("file", nargs="?", default="-", help="JSON lines; '-' (default) reads stdin")
    p.add_argument("--producer", required=True, help="this producer's id (registered by `run start`, or not)")
    p.add_argument("--concurrency", type=int, help="PutRecordBatch calls in flight")
    p.add_argument("--json", action="store_true", help="last line: the report as one JSON object")
    p.set_defaults(func=cmd_put, late_positional="file")


def _run(args, *, start: bool = False, producers: list[str] = ()):
    from streamwatch.cli import deployment_of
    from streamwatch.client.run import Run

    deployment = deployment_of(args)
    if start:
        return Run.start(args.dataset, producers, resources=deployment.resources, settings=deployment.settings,
                         expected_by=_expected_by(args.expected_by))
    return Run.attach(args.dataset, resources=deployment.resources, settings=deployment.settings)


def _expected_by(text: str | None):
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _check_ids(args) -> None:
    """The command's own input first, before anything reaches AWS (a bad id is the user's, not the network's)."""
    check_dataset_id(args.dataset)
    if getattr(args, "producer", None) is not None:
        check_producer_id(args.producer)


def cmd_run_start(args: argparse.Namespace) -> int:
    from streamwatch.client.run import deadline_from

    _check_ids(args)
    producers = [p.strip() for p in args.producers.split(",") if p.strip()]
    if not producers:
        raise InputError("--producers is empty: name the producers that will write the dataset, comma-separated "
                         "(--producers a,b)")
    for producer in producers:
        check_producer_id(producer)
    try:
        deadline_from(_expected_by(args.expected_by), time.time())
    except InputError as exc:
        raise InputError(f"--expected-by {args.expected_by!r}: {str(exc).split(': ', 1)[-1]}") from None
    run = _run(args, start=True, producers=producers)
    state = run.state()
    print(f"{args.dataset}: registered {len(producers)} producer(s) ({', '.join(producers) or 'none'}); "
          f"observing since {state.started_ts if state else '?'}")
    return 0


def cmd_run_done(args: argparse.Namespace) -> int:
    _check_ids(args)
    if args.records is not None and args.records < 0:
        raise InputError(f"--records {args.records}: a count of records is >= 0")
    counted = _run(args).done(args.producer, args.records)
    records = f" with {args.records} records" if args.records is not None else ""
    print(f"{args.dataset}: producer {args.producer} done{records}" + ("" if counted else " (already reported)"))
    return 0


def cmd_run_fail(args: argparse.Namespace) -> int:
    _check_ids(args)
    counted = _run(args).fail(args.producer, args.error)
    print(f"{args.dataset}: producer {args.producer} failed: {args.error}" + ("" if counted else " (already reported)"))
    return 0


def _lines(path: str) -> Iterator[tuple[int, str]]:
    """Numbered lines of a file or stdin, read once, each at most MAX_LINE_BYTES (so /dev/zero or a file without
    newlines is refused, not read into memory)."""
    if path == "-":
        yield from _capped(getattr(sys.stdin, "buffer", sys.stdin), "stdin")  # a text stream when replaced
        return
    try:
        with Path(path).open("rb") as fh:
            yield from _capped(fh, path)
    except FileNotFoundError:
        raise InputError(f"file {path!r} not found") from None
    except IsADirectoryError as exc:
        raise InputError(f"file {path!r} cannot be read as text: {exc}") from None


def _capped(fh, source: str) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(iter(lambda: fh.readline(MAX_LINE_BYTES + 1), _end_of(fh)), 1):
        if len(raw) > MAX_LINE_BYTES:
            raise InputError(f"{source} line {number}: longer than {MAX_LINE_BYTES // 1024:,} KiB, more than one "
                             "Firehose record holds")
        try:
            yield number, raw.decode() if isinstance(raw, bytes) else raw
        except UnicodeDecodeError as exc:
            raise InputError(f"{source} line {number}: not UTF-8 text ({exc.reason})") from None


def _end_of(fh) -> bytes | str:
    """What the stream's readline returns at its end: b"" for a binary one, "" for a text one."""
    return "" if isinstance(fh, io.TextIOBase) else b""


def _regular_file(path: str) -> bool:
    try:
        return path != "-" and stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


class MalformedLine(InputError):
    """A line of `streamwatch put`'s input that is not one JSON object."""


def _record(number: int, line: str, source: str) -> dict | None:
    line = line.strip()
    if not line:
        return None
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise MalformedLine(f"{source} line {number}: not JSON ({exc})") from None
    if not isinstance(record, dict):
        raise MalformedLine(f"{source} line {number}: expected a JSON object, got {type(record).__name__}")
    return record


class Progress:
    """records, batches and retries on stderr: in place on a terminal, a line every 5 s otherwise."""

    def __init__(self) -> None:
        self.tty, self.start, self.last = sys.stderr.isatty(), time.monotonic(), 0.0

    def __call__(self, stats: dict, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < (0.2 if self.tty else 5.0):
            return
        self.last = now
        rate = stats["records"] / max(1e-9, now - self.start)
        line = (f"{stats['records']:,} records, {stats['sent']:,} accepted, {stats['batches']} batches, "
                f"{stats['retries']} retries, {rate:,.0f} records/s")
        print(("\r" + line) if self.tty else line, end="\n" if final or not self.tty else "", file=sys.stderr,
              flush=True)


def cmd_put(args: argparse.Namespace) -> int:
    _check_ids(args)
    if args.concurrency is not None and args.concurrency < 1:
        raise InputError(f"--concurrency {args.concurrency}: give 1 or more")
    source = "stdin" if args.file == "-" else args.file
    if _regular_file(args.file):  # a regular file is checked whole first: a malformed line sends nothing at all
        for number, line in _lines(args.file):
            _record(number, line, source)
    lines = _lines(args.file)  # read once from here (stdin, a pipe, a FIFO, a process substitution)
    first = next(lines, None)  # its first line is checked before anything reaches AWS
    if first is not None:
        _record(*first, source)
    run = _run(args)
    progress = Progress()
    producer = run.producer(args.producer, concurrency=args.concurrency)
    try:
        with producer:  # a malformed line on stdin (or any error) reports the producer failed, then re-raises
            for number, line in itertools.chain([first] if first else [], lines):
                record = _record(number, line, source)
                if record is not None:
                    producer.put(record)
                    progress(producer.stats())
            producer.flush()
    finally:
        progress(producer.stats(), final=True)
    report: ProducerReport = producer.report
    print(f"{args.dataset}: producer {args.producer} sent {report.records_sent} records in {report.batches} "
          f"batches ({report.retries} retries); reported {report.reported or 'already'}")
    if args.json:
        print(json.dumps(report.to_dict()))
    return 0 if not report.failed else EXIT_FAILED
