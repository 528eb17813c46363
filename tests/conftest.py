"""Shared fixtures: a moto server on 127.0.0.1 with the construct's resources, and Lambda-shaped events."""

from __future__ import annotations

import json
import os
import uuid

import boto3
import pytest

from streamwatch.local.context import LambdaContext

os.environ.update({"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                   "AWS_SECRET_ACCESS_KEY": "testing", "POWERTOOLS_METRICS_NAMESPACE": "streamwatch",
                   "POWERTOOLS_SERVICE_NAME": "streamwatch", "POWERTOOLS_TRACE_DISABLED": "true",
                   "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"})
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture
def context() -> LambdaContext:
    return LambdaContext(function_name="test")


def sqs_event(bodies: list[str], ids: list[str] | None = None, sent_ts: float | None = None) -> dict:
    ids = ids or [str(uuid.uuid4()) for _ in bodies]
    attributes = {"SentTimestamp": str(int(sent_ts * 1000))} if sent_ts is not None else {}
    return {"Records": [{"messageId": i, "receiptHandle": f"rh-{i}", "body": b, "attributes": attributes,
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
    """A moto server on 127.0.0.1 with every resource the handlers need, env set as the construct sets it.
    (Server mode, not mock_aws: the reader's Rust HTTP client and threads need a real endpoint.)"""
    from streamwatch.core.settings import Settings
    from streamwatch.local import infra
    from streamwatch.local.server import moto_server
    from streamwatch.runtime import aws

    def build(settings: Settings | None = None, notifications: str = "s3"):
        settings = settings or Settings()
        local = infra.create(settings, notifications=notifications)
        for name in Settings.env_names():  # the environment carries only what differs from the defaults
            monkeypatch.delenv(name, raising=False)
        for k, v in {**settings.to_env(), **local.resources.to_env(),
                     "STREAMWATCH_QUEUES": json.dumps(local.queues)}.items():
            monkeypatch.setenv(k, v)
        return settings, local

    with moto_server():
        aws.reset()
        yield build
    aws.reset()


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


def object_events(queue_url: str) -> list[str]:
    """Bodies of the object notifications waiting in a queue (S3's s3:TestEvent left out)."""
    return [m["Body"] for m in drain(queue_url) if "s3:TestEvent" not in m["Body"]]


def ready_event(dataset_id: str, bucket: str, objects: int, **detail) -> dict:
    """A Dataset Ready as EventBridge delivers it to a Lambda (its whole envelope), the detail a valid one."""
    body = {"event_id": f"{dataset_id}:ready", "dataset_id": dataset_id, "bucket": bucket,
            "prefix": f"data/dataset={dataset_id}/", "objects": objects, "bytes": 0, "records": None,
            "first_object_at": None, "last_object_at": None, "declared_at": "2026-11-23T10:00:00.000Z",
            "mode": "stability", "rule": "default", "ticks": 3, "reads": 3, "reason": "quiet", "fallback": False,
            "policy": {"mode": "stability", "rule": "default"},
            "producers": {"expected": None, "done": 0, "failed": 0, "unregistered": 0, "records_sent": 0},
            "record_counts": {"distinct": None, "duplicates": None, "foreign": None, "error_output": 0}, **detail}
    return {"version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "detail-type": "Dataset Ready",
            "source": "streamwatch", "account": "123456789012", "time": "2026-11-23T10:00:00Z",
            "region": "us-east-1", "resources": [], "detail": body}

