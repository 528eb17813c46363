"""The `streamwatch` command. `--json` makes the last line of output one JSON object (DESIGN.md contract)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict

from streamwatch.settings import Settings, SettingsError


def cmd_settings(args: argparse.Namespace) -> int:
    if args.markdown:
        print("| setting | default | allowed | meaning |\n|---|---|---|---|")
        for row in Settings.describe():
            default = "derived" if row["default"] is None else f"`{row['default']!r}`".replace("''", "\"\"")
            print(f"| `{row['name']}` | {default} | {row['allowed']} | {row['help']} |")
        return 0
    s = Settings.from_mapping(dict(kv.split("=", 1) for kv in args.set))
    print(json.dumps({**asdict(s), "quiet_s": s.quiet_s, "producers_settle_s": s.producers_settle_s}))
    return 0


SIM_OPTIONS = {"mode": "mode", "max_num_repeat": "max_num_repeat", "delay": "base_delay_s", "decay": "decay",
               "min_quiet": "min_quiet_s", "buffer_interval": "buffer_interval_s", "settle": "settle_s",
               "min_objects": "min_objects", "max_observation": "max_observation_s"}


def simulation_settings(args: argparse.Namespace, trace) -> Settings:
    """The same Settings object the stack uses, from simulate's options (and the trace's buffer hint)."""
    values = {field: getattr(args, opt) for opt, field in SIM_OPTIONS.items() if getattr(args, opt) is not None}
    if "buffer_interval_s" not in values and trace.buffer_interval_s:
        values["buffer_interval_s"] = trace.buffer_interval_s
    return Settings.from_mapping(values)


def cmd_simulate(args: argparse.Namespace) -> int:
    from streamwatch.policy import Policy
    from streamwatch.simulate import PolicyProbe, Trace, simulate

    trace = Trace.load(args.trace)
    settings = simulation_settings(args, trace)
    policy = Policy.from_settings(settings)
    result = simulate(trace, PolicyProbe(policy), event_delay=args.event_delay, count_records=settings.count_records)
    if result.stalled:
        print(f"{trace.name}: STALLED after {result.ticks} ticks ({result.reason})")
    else:
        verdict = "FALSE POSITIVE" if result.false_positive else "complete"
        print(f"{trace.name}: declared at {result.declared_at:.1f} s, {result.latency_s:+.1f} s after the last "
              f"object ({verdict}: {result.objects_declared}/{result.objects_total} objects), "
              f"{result.ticks} ticks, {result.reads} reads; {result.reason}")
    print(f"policy: {json.dumps(policy.describe())}")
    if args.json:
        keys = ("declared_at", "last_object_at", "latency_s", "false_positive", "ticks", "reads")
        out = {k: round(v, 3) if isinstance(v, float) else v for k in keys for v in [getattr(result, k)]}
        if result.stalled:
            out["stalled"] = True
        out.update(objects_declared=result.objects_declared, objects_total=result.objects_total,
                   fallback=result.fallback)
        print(json.dumps(out))
    return 0


CHAOS_FLAGS = ("duplicate_notifications", "duplicate_observer", "put_failures", "throttle", "crash",
               "publish_failures")


def cmd_demo(args: argparse.Namespace) -> int:
    from streamwatch.local.demo import DEFAULT_SCENARIO, SMALL_SCENARIO, Chaos, cdk_settings, run_demo

    overrides = dict(kv.split("=", 1) for kv in args.set)
    if args.mode:
        overrides["mode"] = args.mode
    settings = cdk_settings(overrides)
    chaos = Chaos.everything() if args.chaos else Chaos()
    for name in CHAOS_FLAGS:
        value = getattr(args, name)
        if value is not None:
            setattr(chaos, name, value)
    summary = run_demo(settings, scenario=SMALL_SCENARIO if args.small else DEFAULT_SCENARIO,
                       speed=args.time_scale, chaos=chaos, timeout_s=args.timeout)
    if args.json:
        print(json.dumps(summary))
    return 0 if summary["ok"] else 1


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
    from streamwatch.reader import DatasetReader
    from streamwatch.s3_events import dataset_prefix

    settings = Settings.from_env(os.environ)
    bucket = args.bucket or os.environ.get("STREAMWATCH_RES_BUCKET")
    if not bucket:
        print("streamwatch: give --bucket (or set STREAMWATCH_RES_BUCKET)", file=sys.stderr)
        return 2
    prefix = args.prefix if args.prefix is not None else dataset_prefix(settings.data_prefix, args.dataset)
    kwargs = {"concurrency": args.concurrency} if args.concurrency else {}
    reader = DatasetReader(max_attempts=args.max_attempts, endpoint_url=args.endpoint_url, **kwargs)
    try:
        objects = reader.list(bucket, prefix)
    except Exception as exc:
        print(f"streamwatch: cannot list s3://{bucket}/{prefix}: {exc}", file=sys.stderr)
        return 1
    bar = ProgressBar(len(objects))
    report = reader.fetch(bucket, prefix, objects=objects, to_dir=args.to, progress=bar)
    if bar.tty:
        print(file=sys.stderr)
    print(f"s3://{bucket}/{prefix} -> {args.to}: {len(report.ok)}/{len(report.results)} objects, "
          f"{report.bytes / 2**20:.1f} MiB in {report.elapsed_s:.2f} s "
          f"(concurrency {reader.concurrency})")
    for failure in report.failed:
        print(f"FAILED {failure.key}: {failure.error} after {failure.attempts} attempt(s)")
    if args.json:
        print(json.dumps(report.summary()))
    return 0 if report.complete else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamwatch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("settings", help="print the effective settings (or the README table)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--markdown", action="store_true")
    p.set_defaults(func=cmd_settings)

    p = sub.add_parser("simulate", help="replay a trace through the observer's policy on a virtual clock")
    p.add_argument("trace", help="JSON trace: {objects: [{t, records}] | [t, ...], producers: [...]}")
    p.add_argument("--mode", choices=("stability", "producers", "records"))
    p.add_argument("--max-num-repeat", type=int)
    p.add_argument("--delay", type=int, help="base probe delay, seconds")
    p.add_argument("--decay", choices=("constant", "divide", "exponential"))
    p.add_argument("--min-quiet", type=int, help="minimum quiet window, seconds")
    p.add_argument("--buffer-interval", type=int, help="Firehose buffer interval the windows derive from")
    p.add_argument("--settle", type=int, help="producers mode settle window, seconds")
    p.add_argument("--min-objects", type=int)
    p.add_argument("--max-observation", type=int, help="hard cap, seconds")
    p.add_argument("--event-delay", type=float, default=2.0, help="landing -> counted, seconds (default 2)")
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("demo", help="the whole pipeline locally (moto on 127.0.0.1), real handlers, checked")
    p.add_argument("--mode", choices=("stability", "producers", "records"), help="override cdk.json's mode")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a setting")
    p.add_argument("--time-scale", type=float, default=60.0,
                   help="pipeline seconds per wall second (default 60: a 300 s buffer takes 5 s)")
    p.add_argument("--chaos", action="store_true", help="duplicates, reordering, partial failures, "
                   "throttling, crashes, lost PutEvents: the run must still end exact")
    for name in CHAOS_FLAGS:
        p.add_argument(f"--{name.replace('_', '-')}", type=float, metavar="P", help=f"chaos: {name} probability")
    p.add_argument("--small", action="store_true", help="a two-dataset scenario (what the e2e test runs)")
    p.add_argument("--timeout", type=float, default=150.0, help="give up after this many wall seconds")
    p.add_argument("--json", action="store_true", help="last line: the summary as one JSON object")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("fetch", help="download a dataset in parallel, with retries and a per-object report")
    p.add_argument("dataset", help="dataset id (prefix <data_prefix>dataset=<id>/), or anything with --prefix")
    p.add_argument("--to", required=True, help="directory to write into (files appear whole or not at all)")
    p.add_argument("--bucket", help="default: $STREAMWATCH_RES_BUCKET")
    p.add_argument("--prefix", help="read this prefix instead of the dataset's")
    p.add_argument("--concurrency", type=int, help="requests in flight: objects, or ranges of large ones (default 64)")
    p.add_argument("--processes", type=int, help=argparse.SUPPRESS)  # former multi-process reader; ignored
    p.add_argument("--max-attempts", type=int, default=5)
    p.add_argument("--endpoint-url", help="another S3 endpoint (default: AWS_ENDPOINT_URL or AWS)")
    p.add_argument("--json", action="store_true", help="last line: the report as one JSON object")
    p.set_defaults(func=cmd_fetch)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SettingsError as exc:
        print(f"streamwatch: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
