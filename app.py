#!/usr/bin/env python3
"""CDK entry point of the example app: settings from context (`cdk.json`, `-c name=value`), validated before
anything is built; a typo in a setting's name fails synth with a did-you-mean."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lambdas"))

import aws_cdk as cdk  # noqa: E402

from stacks.observer_stack import ObserverStack  # noqa: E402
from streamwatch.cdk import register_nag  # noqa: E402
from streamwatch.core.errors import InputError  # noqa: E402
from streamwatch.core.settings import Settings  # noqa: E402


def main() -> None:
    app = cdk.App()
    try:
        settings = Settings.from_context(_context(app))
        register_nag(app)
        ObserverStack(app, app.node.try_get_context("stack_name") or "Streamwatch", settings=settings)
    except InputError as exc:
        sys.exit(f"streamwatch: {exc}")
    app.synth()


def _context(app: cdk.App) -> dict:
    """Every context key (cdk.json and -c): Settings takes its own and flags typos of them."""
    import json
    import os
    values = json.loads(os.environ.get("CDK_CONTEXT_JSON", "{}") or "{}")
    for key in list(values):
        values[key] = app.node.try_get_context(key)
    return values


if __name__ == "__main__":
    main()
