"""Shared fixtures: an in-process moto account with the stack's resources, and Lambda-shaped events."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass

import boto3
import pytest

os.environ.update({"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                   "AWS_SECRET_ACCESS_KEY": "testing", "POWERTOOLS_METRICS_NAMESPACE": "streamwatch",
                   "POWERTOOLS_SERVICE_NAME": "streamwatch", "POWERTOOLS_TRACE_DISABLED": "true"})
os.environ.pop("AWS_ENDPOINT_URL", None)


@dataclass
class LambdaContext:
    function_name: str = "test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test"
    aws_request_id: str = "req"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@pytest.fixture
def context() -> LambdaContext:
    return LambdaContext()


def sqs_event(bodies: list[str], ids: list[str] | None = None) -> dict:
    ids = ids or [str(uuid.uuid4()) for _ in bodies]
    return {"Records": [{"messageId": i, "receiptHandle": f"rh-{i}", "body": b, "attributes": {},
                         "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"}
                        for i, b in zip(ids, bodies, strict=True)]}


def s3_record(bucket: str, key: str, size: int = 100, event: str = "ObjectCreated:Put",
              when: str = "2026-11-23T10:00:00.000Z") -> dict:
    return {"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": event, "eventTime": when,
            "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": size, "eTag": "abc"}}}


def s3_message(*records: dict) -> str:
    return json.dumps({"Records": list(records)})


@pytest.fixture
def moto_env(monkeypatch):
    """A fresh moto account with every resource the handlers need, env set as the stack sets it."""
    from moto import mock_aws

    from streamwatch import aws
    from streamwatch.local import infra
    from streamwatch.settings import Settings

    def build(settings: Settings | None = None):
        settings = settings or Settings()
        local = infra.create(settings)
        for k, v in {**settings.to_env(), **local.resources.to_env()}.items():
            monkeypatch.setenv(k, v)
        return settings, local

    with mock_aws():
        aws.reset()
        yield build
    aws.reset()


@pytest.fixture
def moto_server_env(monkeypatch):
    """moto_env over a moto server on 127.0.0.1 (AWS_ENDPOINT_URL points at it): for code that does its own
    HTTP, like the reader's obstore path, which mock_aws cannot intercept."""
    from streamwatch.local import infra
    from streamwatch.local.server import moto_server
    from streamwatch.settings import Settings

    def build(settings: Settings | None = None):
        settings = settings or Settings()
        local = infra.create(settings)
        for k, v in {**settings.to_env(), **local.resources.to_env()}.items():
            monkeypatch.setenv(k, v)
        return settings, local

    with moto_server():
        yield build


def drain(queue_url: str, max_messages: int = 1000) -> list[dict]:
    sqs = boto3.client("sqs")
    out = []
    while len(out) < max_messages:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                  VisibilityTimeout=60).get("Messages", [])
        if not got:
            return out
        out += got
        for m in got:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return out
