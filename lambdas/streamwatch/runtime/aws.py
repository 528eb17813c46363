"""AWS clients: one per service, session and pool size, botocore standard retries. The session is the scope's
(core/scope.py): boto3's default in Lambda, a local run's own in the sandbox."""

from __future__ import annotations

import functools

import boto3
from botocore.config import Config

from streamwatch.core import scope
from streamwatch.core.backoff import RETRIES

# PutEvents is bounded (limits.PUBLISH_BUDGET_S): 3 attempts x (1 s connect + 4 s read) + standard mode's
# backoff between them (at most 1 s, then 2 s) = 18 s at most
BOUNDED = {"events": {"retries": {"mode": "standard", "max_attempts": 3}, "connect_timeout": 1, "read_timeout": 4}}


def client(service: str, max_pool_connections: int = 10):
    return _client(scope.session(), scope.endpoint_url(), service, max_pool_connections)


@functools.cache
def _client(session, endpoint: str | None, service: str, max_pool_connections: int):
    options = {"retries": RETRIES, "connect_timeout": 5, "read_timeout": 30, **BOUNDED.get(service, {})}
    config = Config(max_pool_connections=max_pool_connections, **options)
    return (session or boto3).client(service, config=config, endpoint_url=endpoint)


def reset() -> None:
    """Forget cached clients (tests and the sandbox point them at a new endpoint)."""
    from streamwatch.state.base import forget_tables
    _client.cache_clear()
    forget_tables()
