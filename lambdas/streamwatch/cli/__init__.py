"""The `streamwatch` command. `--json` makes the last line of output one JSON object.

One error boundary (`main`): a person's mistake or an expected AWS condition prints one line on stderr that
names the thing and what to do, and exits 2 (input), 1 (the run failed) or 130 (interrupted); anything else
is a bug, exits 3 and says so. `--debug` adds the traceback. docs/errors.md lists the common messages.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from dataclasses import asdict

from streamwatch.core.errors import EXIT_BUG, EXIT_FAILED, EXIT_INPUT, EXIT_INTERRUPTED, InputError, RunFailed
from streamwatch.core.settings import DECAYS, MODES, NOTIFICATIONS, Settings


def cmd_settings(args: argparse.Namespace) -> int:
    if args.markdown:
        print("| setting | default | allowed | meaning |\n|---|---|---|---|")
        for row in Settings.describe():
            default = (("derived" if row["derived"] else "none") if row["default"] is None
                       else f"`{row['default']!r}`".replace("''", "\"\""))
            print(f"| `{row['name']}` | {default} | {row['allowed']} | {row['help']} |")
        return 0
    s = Settings.from_mapping(parse_sets(args.set))
    print(json.dumps({**asdict(s), "quiet_s": s.quiet_s, "producers_settle_s": s.producers_settle_s,
                      "window_grace_s": s.window_grace_s}))
    return 0


def parse_sets(pairs: list[str]) -> dict[str, str]:
    """`--set name=value` pairs; the names are checked by Settings.from_mapping."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise InputError(f"--set {pair!r}: expected NAME=VALUE, e.g. --set max_num_repeat=5")
        out[name.strip()] = value
    return out


SIM_OPTIONS = {"mode": "mode", "max_num_repeat": "max_num_repeat", "delay": "base_delay_s", "decay": "decay",
               "min_quiet": "min_quiet_s", "buffer_interval": "buffer_interval_s", "settle": "settle_s",
               "min_objects": "min_objects", "max_observation": "max_observation_s", "grace": "grace_s"}


def simulation_settings(args: argparse.Namespace, trace) -> Settings:
    """The same Settings object the stack uses, from simulate's options (and the trace's buffer hint)."""
    values = {field: getattr(args, opt) for opt, field in SIM_OPTIONS.items() if getattr(args, opt) is not None}
    if "buffer_interval_s" not in values and trace.buffer_interval_s:
        values["buffer_interval_s"] = trace.buffer_interval_s
    if trace.window_s is not None:  # a window trace judges every window it lists, empty ones included
        values.setdefault("mode", "window")
        values["emit_empty"] = True
        values["datasets"] = ["{yyyy}/{MM}/{dd}/{HH}/"]
    elif values.get("mode") == "window":
        raise InputError(f"--mode window needs a window trace (window_s and each object's window); {trace.name!r} "
                         "has none")
    return Settings.from_mapping(values)


def cmd_simulate(args: argparse.Namespace) -> int:
    from streamwatch.core.policy import Policy
    from streamwatch.core.simulate import PolicyProbe, Trace, simulate, simulate_windows

    trace = Trace.load(args.trace)
    settings = simulation_settings(args, trace)
    policy = Policy.from_settings(settings, settings.rules.rules[0])
    if trace.window_s is not None:
        results = simulate_windows(trace, lambda: PolicyProbe(policy), event_delay=args.event_delay)
        for r in results:
            verdict = "FALSE POSITIVE" if r.false_positive else "ok"
            when = "never" if r.declared_at is None else f"{r.after_end_s:+.1f} s after its end"
            print(f"{trace.name} window {r.window:g}: {r.objects} objects, Ready {when} ({verdict}); {r.reason}")
        print(f"policy: {json.dumps(policy.describe())}")
        if args.json:
            print(json.dumps({"windows": [r.to_json() for r in results]}))
        return 0
    result = simulate(trace, PolicyProbe(policy), event_delay=args.event_delay)
    if result.stalled or result.failed:
        print(f"{trace.name}: {'STALLED' if result.stalled else 'FAILED'} after {result.ticks} ticks ({result.reason})")
    else:
        verdict = "FALSE POSITIVE" if result.false_positive else "complete"
        print(f"{trace.name}: declared at {result.declared_at:.1f} s, {result.latency_s:+.1f} s after the last "
              f"object ({verdict}: {result.objects_declared}/{result.objects_total} objects), "
              f"{result.ticks} ticks, {result.reads} reads, by {result.mode}; {result.reason}")
    print(f"policy: {json.dumps(policy.describe())}")
    if args.json:
        keys = ("declared_at", "last_object_at", "latency_s", "false_positive", "ticks", "reads")
        out = {k: round(v, 3) if isinstance(v, float) else v for k in keys for v in [getattr(result, k)]}
        if result.stalled:
            out["stalled"] = True
        if result.failed:
            out["failed"] = True
        out.update(objects_declared=result.objects_declared, objects_total=result.objects_total,
                   fallback=result.fallback, mode=result.mode)
        print(json.dumps(out))
    return 0


CHAOS_FLAGS = ("duplicate_notifications", "duplicate_observer", "put_failures", "throttle", "crash",
               "publish_failures", "duplicate_records", "resend_prefix")


def cmd_demo(args: argparse.Namespace) -> int:
    from streamwatch.local.demo import SCENARIOS, Chaos, cdk_settings, run_demo

    if not args.time_scale > 0 or args.time_scale > 10_000:
        raise InputError(f"--time-scale {args.time_scale:g}: give pipeline seconds per wall second, > 0 and at most "
                         "10000 (default 60)")
    if args.timeout is not None and not args.timeout > 0:
        raise InputError(f"--timeout {args.timeout:g}: give seconds > 0")
    overrides = parse_sets(args.set)
    if args.mode:
        overrides["mode"] = args.mode
    settings = cdk_settings(overrides)
    chaos = Chaos.everything() if args.chaos else Chaos()
    for name in CHAOS_FLAGS:
        value = getattr(args, name)
        if value is not None:
            setattr(chaos, name, value)
    scenario = "small" if args.small else args.scenario
    names = [d for d, _ in SCENARIOS[scenario]]
    for name in args.fail:
        if name not in names:
            raise InputError(f"--fail {name!r}: no such dataset in the {scenario} scenario ({', '.join(names)})")
    summary = run_demo(settings, scenario=SCENARIOS[scenario], speed=args.time_scale, chaos=chaos,
                       timeout_s=args.timeout, notifications=args.notifications, fail=tuple(args.fail),
                       live=False if args.json else None, windows=scenario == "windows")
    if args.json:
        print(json.dumps(summary))
    return 0 if summary["ok"] else 1


def deployment_of(args: argparse.Namespace):
    """The deployment a command works on: --local (a running `streamwatch demo`), --stack NAME (its outputs),
    or the environment (STREAMWATCH_STACK, or STREAMWATCH_RES_* as inside the stack's Lambdas)."""
    from streamwatch.client.deployment import Deployment

    if getattr(args, "local", False):
        from streamwatch.local.sandbox import attach_local_run
        return attach_local_run()
    return Deployment.resolve(stack=getattr(args, "stack", None))


def build_parser() -> argparse.ArgumentParser:
    from streamwatch.cli import operate, produce, transfer

    parser = argparse.ArgumentParser(prog="streamwatch", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    where = argparse.ArgumentParser(add_help=False)
    group = where.add_mutually_exclusive_group()
    group.add_argument("--stack", help="the deployed stack's name (its outputs say where everything is); "
                       "default: $STREAMWATCH_STACK")
    group.add_argument("--local", action="store_true", help="the local run `streamwatch demo` is running")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_sub_parser(common))
    produce.add_parsers(sub, where)
    operate.add_parsers(sub, where)
    transfer.add_parsers(sub)
    p = sub.add_parser("settings", help="print the effective settings (or the README table)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--markdown", action="store_true")
    p.set_defaults(func=cmd_settings)

    p = sub.add_parser("simulate", help="replay a trace through the observer's policy on a virtual clock")
    p.add_argument("trace", help="JSON trace (docs/trace-format.md): {objects: [{t, records, seqs}] | [t, ...], "
                   "producers: [...]}, or a window trace")
    p.add_argument("--mode", choices=MODES)
    p.add_argument("--max-num-repeat", type=int)
    p.add_argument("--delay", type=int, help="base probe delay, seconds")
    p.add_argument("--decay", choices=DECAYS)
    p.add_argument("--min-quiet", type=int, help="minimum quiet window, seconds")
    p.add_argument("--buffer-interval", type=int, help="Firehose buffer interval the windows derive from")
    p.add_argument("--settle", type=int, help="producers mode settle window, seconds")
    p.add_argument("--min-objects", type=int)
    p.add_argument("--max-observation", type=int, help="hard cap, seconds")
    p.add_argument("--grace", type=int, help="window mode: how long after a window's end objects may land")
    p.add_argument("--event-delay", type=float, default=2.0, help="landing -> counted, seconds (default 2)")
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("demo", help="the whole pipeline locally (moto on 127.0.0.1), real handlers, checked")
    p.add_argument("--mode", choices=[m for m in MODES if m != "window"],  # a window rule needs its pattern
                   help="override cdk.json's mode")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a setting")
    p.add_argument("--time-scale", type=float, default=60.0,
                   help="pipeline seconds per wall second (default 60: a 300 s buffer takes 5 s)")
    p.add_argument("--chaos", action="store_true", help="duplicates, reordering, partial failures, "
                   "throttling, crashes, lost PutEvents: the run must still end exact")
    for name in CHAOS_FLAGS:
        p.add_argument(f"--{name.replace('_', '-')}", type=float, metavar="P", help=f"chaos: {name} probability")
    p.add_argument("--scenario", choices=("default", "small", "windows"), default="default",
                   help="windows: an hourly rule (three windows, the last one empty) next to the small scenario")
    p.add_argument("--small", action="store_true", help="the two-dataset scenario (what the e2e test runs)")
    p.add_argument("--notifications", choices=[n for n in NOTIFICATIONS if n != "auto"], default="s3",
                   help="object events through the bucket's notification (default) or EventBridge")
    p.add_argument("--fail", action="append", default=[], metavar="DATASET",
                   help="make one producer of DATASET fail half-way (-> one Dataset Failed)")
    p.add_argument("--timeout", type=float, default=150.0, help="give up after this many wall seconds")
    p.add_argument("--json", action="store_true", help="last line: the summary as one JSON object")
    p.set_defaults(func=cmd_demo)

    return parser


def _sub_parser(common: argparse.ArgumentParser):
    class SubParser(argparse.ArgumentParser):
        """Every subcommand also takes --debug (after its name, where people type it)."""

        def __init__(self, *args, **kwargs) -> None:
            kwargs.setdefault("parents", [common])
            super().__init__(*args, **kwargs)
    return SubParser


def explain(exc: BaseException) -> tuple[str, int]:
    """One line and an exit code for an error that escaped a command."""
    if isinstance(exc, InputError):
        return str(exc), EXIT_INPUT
    if isinstance(exc, RunFailed):
        return str(exc), EXIT_FAILED
    try:
        from botocore import exceptions as bx
    except ImportError:  # pragma: no cover - botocore comes with boto3, a dependency
        bx = None
    if bx is not None:
        if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
            return ("no AWS credentials found: set AWS_PROFILE or run `aws configure` (or set AWS_ACCESS_KEY_ID "
                    "and AWS_SECRET_ACCESS_KEY)"), EXIT_INPUT
        if isinstance(exc, bx.NoRegionError):
            return "no AWS region set: set AWS_REGION (or AWS_DEFAULT_REGION), or run `aws configure`", EXIT_INPUT
        if isinstance(exc, bx.ProfileNotFound):
            return f"{exc}: check AWS_PROFILE and ~/.aws/config", EXIT_INPUT
        if isinstance(exc, bx.EndpointConnectionError | bx.ConnectTimeoutError):
            return f"cannot reach AWS ({exc}): check the network, AWS_REGION and AWS_ENDPOINT_URL", EXIT_FAILED
        if isinstance(exc, bx.ClientError):
            error = exc.response.get("Error", {})
            code, message, op = error.get("Code", ""), error.get("Message", ""), exc.operation_name
            if code in ("ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException",
                        "SignatureDoesNotMatch", "InvalidAccessKeyId", "RequestExpired"):
                return (f"AWS rejected the credentials ({code}): refresh them (e.g. `aws sso login`) or check "
                        "AWS_PROFILE"), EXIT_INPUT
            if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError",
                        "403", "Forbidden"):
                return (f"access denied to {op}: the credentials in use need that permission ({message or code})",
                        EXIT_INPUT)
            if code in ("Throttling", "ThrottlingException", "SlowDown", "RequestLimitExceeded", "TooManyRequests",
                        "ProvisionedThroughputExceededException", "TooManyRequestsException"):
                return f"AWS throttled {op} beyond retries ({code}): try again in a minute", EXIT_FAILED
            if code in ("NoSuchBucket", "404"):
                bucket = error.get("BucketName")
                return (f"bucket {bucket!r} does not exist" if bucket else f"{op}: not found") + \
                    ": check the bucket name and AWS_REGION", EXIT_INPUT
            if code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
                return f"queue not found ({op}): is the stack deployed in this account and region?", EXIT_INPUT
            if code == "ResourceNotFoundException":
                return f"{message or 'resource not found'} ({op}): is the stack deployed in this region?", EXIT_INPUT
            return f"AWS error in {op}: {code}: {message}", EXIT_FAILED
    return (f"unexpected error ({type(exc).__name__}: {exc}); this is a bug in streamwatch: please report it "
            "with the output of `streamwatch --debug ...`"), EXIT_BUG


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Usage errors: argparse prints usage and exits 2. A trailing positional after options (`put D --producer
    a FILE`) is accepted, which plain argparse refuses once it has matched the positionals before the option."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    late = getattr(args, "late_positional", None)
    if late and len(extra) == 1 and not extra[0].startswith("-") and getattr(args, late) == "-":
        setattr(args, late, extra.pop())
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("streamwatch: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `streamwatch status | head`
        sys.stderr.close()
        return 0
    except Exception as exc:
        message, code = explain(exc)
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"streamwatch: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
