"""`streamwatch fetch` and `streamwatch push`: a dataset (or any store's folder) down to a directory in parallel,
and a directory's files up to an object store, each with a per-object report and a non-zero exit when anything
did not make it."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from streamwatch.core.errors import EXIT_FAILED, InputError, NotFound
from streamwatch.core.settings import Settings


def add_parsers(sub) -> None:
    p = sub.add_parser("fetch", help="download a dataset in parallel, with retries and a per-object report")
    p.add_argument("dataset", help="dataset id (its prefix from the dataset rules; anything with --prefix), or a "
                   "URL: s3://bucket/prefix/, gs://bucket/prefix/, az://container/prefix/, https://host/folder/")
    p.add_argument("--to", required=True, help="a new or empty directory to write into (files appear whole or not "
                   "at all; only safe names, never through a symlink)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty directory, replacing files "
                   "of the same name")
    p.add_argument("--list", metavar="FILE", help="read only these: one key or URL under the source URL per line "
                   "(an HTTP folder's files otherwise come from its index pages)")
    p.add_argument("--bucket", help="default: $STREAMWATCH_RES_BUCKET")
    p.add_argument("--prefix", help="read this prefix instead of the dataset's")
    p.add_argument("--concurrency", type=int, help="requests in flight: objects, or ranges of large ones (default 128, "
                   "of them at most 16 ranges)")
    p.add_argument("--processes", type=int, help=argparse.SUPPRESS)  # former multi-process reader; ignored
    p.add_argument("--max-attempts", type=int, default=5)
    p.add_argument("--endpoint-url", help="another S3 endpoint (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL or "
                   "AWS), or for gs:// and az:// the GCS base URL or Azure endpoint")
    p.add_argument("--json", action="store_true", help="last line: the report as one JSON object")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("push", help="write a folder's files to an object store in parallel, with retries, multipart "
                       "for large files and a per-object report")
    p.add_argument("dir", help="the folder: every file under it, by its path relative to it")
    p.add_argument("url", help="where: s3://bucket/prefix/, gs://bucket/prefix/ or az://container/prefix/")
    p.add_argument("--concurrency", type=int,
                   help="objects in flight (default 128; a large file sends 4 parts at once, 16 for all)")
    p.add_argument("--max-attempts", type=int, default=5)
    p.add_argument("--endpoint-url", help="another S3 endpoint (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL or "
                   "AWS), or the GCS base URL or Azure endpoint")
    p.add_argument("--json", action="store_true", help="last line: the report as one JSON object")
    p.set_defaults(func=cmd_push)


class ProgressBar:
    """A one-line bar on stderr (a line every 10 % when stderr is not a terminal)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.failed, self.bytes, self.shown = total, 0, 0, 0, -1
        self.tty, self.start = sys.stderr.isatty(), time.monotonic()

    def __call__(self, result) -> None:
        self.done += 1
        self.failed += not result.ok
        self.bytes += result.bytes
        pct = int(100 * self.done / max(1, self.total))
        if self.tty or pct // 10 != self.shown // 10 or self.done == self.total:
            self.shown = pct
            rate = self.done / max(1e-9, time.monotonic() - self.start)
            bar = "#" * (pct // 4) + "." * (25 - pct // 4)
            line = (f"[{bar}] {self.done}/{self.total} {self.bytes / 2**20:.1f} MiB {rate:.0f} obj/s, "
                    f"{self.failed} failed")
            print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)


def cmd_fetch(args: argparse.Namespace) -> int:
    from streamwatch.reader import DatasetReader, UnsafeTarget, check_target
    from streamwatch.reader.stores import BadLocation, objects_from_lines

    if args.concurrency is not None and args.concurrency < 1:
        raise InputError(f"--concurrency {args.concurrency}: give 1 or more")
    try:  # the source, the file list and the target first: before anything reaches the network
        location = _fetch_location(args)
        objects = objects_from_lines(location, _read_list(args.list)) if args.list else None
    except BadLocation as exc:
        raise InputError(str(exc)) from None
    try:
        check_target(args.to, overwrite=args.overwrite)
    except UnsafeTarget as exc:
        raise InputError(f"--to {exc}") from None
    if location.scheme == "s3":
        check_bucket(location.root, args.endpoint_url)
    kwargs = {"concurrency": args.concurrency} if args.concurrency else {}
    reader = DatasetReader(max_attempts=args.max_attempts, endpoint_url=args.endpoint_url, **kwargs)
    if objects is None:
        objects = reader.list(location)
    bar = ProgressBar(len(objects))
    report = reader.fetch(location, objects=objects, to_dir=args.to, progress=bar, overwrite=args.overwrite)
    if bar.tty:
        print(file=sys.stderr)
    print(f"{report.source} -> {args.to}: {len(report.ok)}/{len(report.results)} objects, "
          f"{report.bytes / 2**20:.1f} MiB in {report.elapsed_s:.2f} s "
          f"(concurrency {reader.concurrency})")
    for failure in report.failed:
        print(f"FAILED {report.url_of(failure.key)}: {failure.error} after {failure.attempts} attempt(s)")
    if args.json:
        print(json.dumps(report.summary()))
    return 0 if report.complete else EXIT_FAILED


def _fetch_location(args: argparse.Namespace):
    """What `fetch` reads: a URL, or a dataset id in the deployment's bucket (its prefix from the rules)."""
    from streamwatch.reader.stores import parse_location

    if "://" in args.dataset:
        if args.bucket or args.prefix is not None:
            raise InputError(f"{args.dataset}: a URL names its own bucket and prefix; drop --bucket and --prefix")
        return parse_location(args.dataset)
    if args.list:
        raise InputError("--list reads keys under a URL: give the source as a URL (s3://, gs://, az://, https://)")
    settings = Settings.from_env(os.environ)
    bucket = args.bucket or os.environ.get("STREAMWATCH_RES_BUCKET")
    if not bucket:
        raise InputError("no bucket: give --bucket (or set STREAMWATCH_RES_BUCKET), or a URL")
    prefix = args.prefix if args.prefix is not None else settings.rules.rule_for(args.dataset).prefix_of(args.dataset)
    return parse_location(bucket, prefix)


def _read_list(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--list {path}: cannot read it ({exc.strerror if isinstance(exc, OSError) else exc})") \
            from None


def cmd_push(args: argparse.Namespace) -> int:
    from streamwatch.reader.stores import BadLocation, parse_location
    from streamwatch.reader.writer import DatasetWriter

    if args.concurrency is not None and args.concurrency < 1:
        raise InputError(f"--concurrency {args.concurrency}: give 1 or more")
    if not os.path.isdir(args.dir):
        raise InputError(f"{args.dir}: not a directory: give the folder whose files to write")
    if "://" not in args.url:
        raise InputError(f"{args.url}: give the destination as a URL, e.g. s3://bucket/prefix/")
    try:  # the destination is a folder: its files go under "prefix/", as `aws s3 cp --recursive` puts them
        location = parse_location(args.url)
        if location.prefix and not location.prefix.endswith("/"):
            location = parse_location(args.url + "/")
        kwargs = {"concurrency": args.concurrency} if args.concurrency else {}
        writer = DatasetWriter(str(location), max_attempts=args.max_attempts, endpoint_url=args.endpoint_url,
                               **kwargs)
    except (BadLocation, ValueError) as exc:
        raise InputError(str(exc)) from None
    files = sorted(os.path.join(folder, name) for folder, _, names in os.walk(args.dir) for name in names)
    if location.scheme == "s3":
        check_bucket(location.root, args.endpoint_url)
    bar = ProgressBar(len(files))
    report = writer.put_many(files, base=args.dir, progress=bar)
    if bar.tty:
        print(file=sys.stderr)
    print(f"{args.dir} -> {report.destination}: {len(report.ok)}/{len(report.results)} objects, "
          f"{report.bytes / 2**20:.1f} MiB in {report.elapsed_s:.2f} s (concurrency {writer.concurrency})")
    for failure in report.failed:
        print(f"FAILED {failure.source or failure.key} -> {location.url_of(failure.key)}: {failure.error} after "
              f"{failure.attempts} attempt(s)")
    if report.failed:
        print(f"did not land: {len(report.failed)} of {len(report.results)} objects; run the same command again "
              "to write them (objects that landed are written again)")
    if args.json:
        print(json.dumps(report.summary()))
    return 0 if report.complete else EXIT_FAILED


def check_bucket(bucket: str, endpoint_url: str | None = None) -> None:
    """Fail early and clearly (credentials, a missing bucket) before a parallel read starts."""
    import boto3
    from botocore.exceptions import ClientError

    session = boto3.Session()
    try:
        session.client("s3", endpoint_url=endpoint_url).head_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchBucket"):
            raise NotFound(f"bucket {bucket!r} does not exist in {session.region_name or 'the default region'}: "
                           "check --bucket and AWS_REGION") from None
        raise
