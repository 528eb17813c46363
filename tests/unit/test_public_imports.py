"""The public imports users and docs rely on keep working after the code moved into rooms (docs/layout.md)."""

import importlib

import pytest

PUBLIC = [("streamwatch.client", "Run"), ("streamwatch.cdk", "Streamwatch"), ("streamwatch.cdk", "register_nag"),
          ("streamwatch.reader", "DatasetReader"), ("streamwatch.reader", "stream_object"),
          ("streamwatch.settings", "Settings"), ("streamwatch.local.sandbox", "Sandbox")]
HANDLERS = ["monitor", "observer", "scheduler", "producer", "consumer"]


@pytest.mark.parametrize(("module", "name"), PUBLIC)
def test_a_public_name_imports_from_where_the_docs_say(module, name):
    # Given a name the README or the docs import (the parameter)
    # When it is imported from there
    # Then it is the real thing
    assert callable(getattr(importlib.import_module(module), name))


@pytest.mark.parametrize("name", HANDLERS)
def test_every_handler_is_where_the_stack_points(name):
    # Given a handler module the stack points at (the parameter)
    # When it is imported
    # Then it has a callable handler
    assert callable(importlib.import_module(f"streamwatch.handlers.{name}").handler)


def test_streamwatch_settings_is_the_one_settings_module():
    # Given the public name streamwatch.settings and the core module
    # When both are imported
    import streamwatch.settings
    from streamwatch.core import settings
    # Then they are one module (one Settings class, one set of checks)
    assert streamwatch.settings is settings and streamwatch.settings.Settings is settings.Settings
