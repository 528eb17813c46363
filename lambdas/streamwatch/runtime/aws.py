"""AWS clients: one per service and process, botocore standard retries, a pool sized for the work."""

from __future__ import annotations

import functools

import boto3
from botocore.config import Config

from streamwatch.core.backoff import RETRIES

# PutEvents is bounded (limits.PUBLISH_BUDGET_S): 3 attempts x (1 s connect + 4 s read) + standard mode's
# backoff between them (at most 1 s, then 2 s) = 18 s at most
BOUNDED = {"events": {"retries": {"mode": "standard", "max_attempts": 3}, "connect_timeout": 1, "read_timeout": 4}}


@functools.cache
def client(service: str, max_pool_connections: int = 10):
    options = {"retries": RETRIES, "connect_timeout": 5, "read_timeout": 30, **BOUNDED.get(service, {})}
    config = Config(max_pool_connections=max_pool_connections, **options)
    return boto3.client(service, config=config)  # AWS_ENDPOINT_URL points it at a local server


def reset() -> None:
    """Forget cached clients (tests and the sandbox point them at a new endpoint)."""
    from streamwatch.state.store import dynamodb_table
    client.cache_clear()
    dynamodb_table.cache_clear()
