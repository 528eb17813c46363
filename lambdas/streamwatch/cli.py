"""The `streamwatch` command. `--json` makes the last line of output one JSON object (DESIGN.md contract)."""

from __future__ import annotations

import argparse
import json
import sys
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamwatch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("settings", help="print the effective settings (or the README table)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--markdown", action="store_true")
    p.set_defaults(func=cmd_settings)
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
