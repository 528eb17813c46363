#!/usr/bin/env python3
"""CDK entry point: settings from context (`cdk.json`, `-c name=value`), validated before anything is built."""

import sys
from dataclasses import fields
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lambdas"))

import aws_cdk as cdk  # noqa: E402

from stacks.nag import register  # noqa: E402
from stacks.observer_stack import ObserverStack  # noqa: E402
from streamwatch.settings import Settings, SettingsError  # noqa: E402


def main() -> None:
    app = cdk.App()
    context = {f.name: app.node.try_get_context(f.name) for f in fields(Settings)}
    try:
        settings = Settings.from_mapping(context)
    except SettingsError as exc:
        sys.exit(f"streamwatch: {exc}")
    register(app)
    ObserverStack(app, app.node.try_get_context("stack_name") or "Streamwatch", settings=settings)
    app.synth()


if __name__ == "__main__":
    main()
