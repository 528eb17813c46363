"""AWS clients: one per service and process, botocore standard retries, a pool sized for the work."""

from __future__ import annotations

import functools
import random

import boto3
from botocore.config import Config

RETRIES = {"mode": "standard", "max_attempts": 8}


@functools.cache
def client(service: str, max_pool_connections: int = 10):
    config = Config(retries=RETRIES, max_pool_connections=max_pool_connections, connect_timeout=5,
                    read_timeout=30)
    return boto3.client(service, config=config)  # AWS_ENDPOINT_URL points it at a local server


@functools.cache
def table(name: str):
    resource = boto3.resource("dynamodb", config=Config(retries=RETRIES))
    return resource.Table(name)


def backoff_s(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter (the AWS Architecture Blog's recommendation): seconds to wait
    before retry `attempt + 1`."""
    return random.uniform(0, min(cap, base * 2 ** attempt))


def reset() -> None:
    """Forget cached clients (tests and the sandbox point them at a new endpoint)."""
    client.cache_clear()
    table.cache_clear()
