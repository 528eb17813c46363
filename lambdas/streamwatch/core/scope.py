"""Where the code runs: the environment, the AWS session and the clock it reads.

In Lambda a process is one function, so the scope is the process's own: `os.environ`, boto3's default session,
the wall clock (or the one `clock.install` set). The local run gives each Sandbox a scope of its own and enters
it in every thread that works for it (its pollers, its producers, the client's sender threads, which take the
scope of the thread that made them). So two sandboxes share one process, each with its own endpoint, names,
clock and chaos, and nothing is patched process-wide.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, eq=False)
class Scope:
    environ: Mapping[str, str]
    session: Any = None  # a boto3.Session: every client of the handlers and the client is made from it
    clock: Any = None  # a core.clock.WallClock; None: the process's


_current: ContextVar[Scope | None] = ContextVar("streamwatch_scope", default=None)


def current() -> Scope | None:
    return _current.get()


def environ() -> Mapping[str, str]:
    scope = _current.get()
    return os.environ if scope is None else scope.environ


def session() -> Any:
    """The scope's boto3 session; None outside a scope (boto3's default session)."""
    scope = _current.get()
    return None if scope is None else scope.session


def endpoint_url() -> str | None:
    """A scope's endpoint (a local run's server); None outside one: botocore resolves it (AWS_ENDPOINT_URL too)."""
    scope = _current.get()
    return None if scope is None else scope.environ.get("AWS_ENDPOINT_URL")


@contextmanager
def entered(scope: Scope | None) -> Iterator[None]:
    token = _current.set(scope)
    try:
        yield
    finally:
        _current.reset(token)


def bound(fn: Callable) -> Callable:
    """`fn`, run in the scope of the thread that called bound(): for the threads a pool starts, which begin with
    an empty context."""
    scope = _current.get()
    if scope is None:
        return fn

    def run(*args, **kwargs):
        with entered(scope):
            return fn(*args, **kwargs)
    return run
