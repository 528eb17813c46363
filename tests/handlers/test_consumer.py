"""Example consumer: a correct manifest and _SUCCESS, which the monitor then ignores. The reader does its own HTTP
(obstore), so this runs against a moto server rather than mock_aws."""

from __future__ import annotations

import json

import boto3
import pytest

from streamwatch.handlers import consumer, monitor
from streamwatch.state.store import Store
from tests.conftest import drain, ready_event, sqs_event


def test_consumer_writes_a_correct_manifest_and_success_marker_the_monitor_ignores(moto_env, context):
    # Given 4 objects of d1 holding 10, 20, 30 and 40 records, counted by the monitor
    settings, local = moto_env()
    s3, bucket = boto3.client("s3"), local.resources.bucket
    bodies = {f"data/dataset=d1/part-{i}": b"".join(b'{"i":%d}\n' % j for j in range(10 * (i + 1)))
              for i in range(4)}
    for key, body in bodies.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    monitor.handler(sqs_event([m["Body"] for m in drain(local.notification_queue_url)]), context)
    assert Store(local.resources.table).get_state("d1").objects == 4
    # When a Ready for d1 arrives
    event = ready_event("d1", bucket, 4)
    totals = consumer.handler(event, context)
    # Then the manifest lists every object with its size, ETag and record count
    manifest = json.loads(s3.get_object(Bucket=bucket, Key="data/dataset=d1/_manifest.json")["Body"].read())
    assert totals == manifest["totals"] == {"objects": 4, "bytes": sum(map(len, bodies.values())), "records": 100}
    assert [(o["key"], o["size"], o["records"]) for o in manifest["objects"]] == [
        (k, len(b), b.count(b"\n")) for k, b in sorted(bodies.items())]
    assert all(o["etag"].strip('"') for o in manifest["objects"]) and manifest["matches_declaration"]
    assert s3.get_object(Bucket=bucket, Key="data/dataset=d1/_SUCCESS")["Body"].read() == b""
    # And the monitor does not count the manifest or the marker
    notes = [m["Body"] for m in drain(local.notification_queue_url)]
    assert len(notes) == 2
    assert monitor.handler(sqs_event(notes), context) == {"batchItemFailures": []}
    assert Store(local.resources.table).get_state("d1").objects == 4
    # A second Ready with the same event_id (a duplicate) is answered with the first result, and does no work
    s3.delete_object(Bucket=bucket, Key="data/dataset=d1/_SUCCESS")
    assert consumer.handler(event, context) == totals
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="data/dataset=d1/_SUCCESS")


def test_a_consumer_that_fails_half_way_runs_again_on_its_retry(moto_env, context, monkeypatch):
    # Given a Ready whose first run dies after reading, before its markers are written
    from streamwatch.runtime import manifest as manifest_module
    _, local = moto_env()
    s3, bucket = boto3.client("s3"), local.resources.bucket
    s3.put_object(Bucket=bucket, Key="data/dataset=d2/part-0", Body=b'{"i":1}\n')
    event = ready_event("d2", bucket, 1)
    real = manifest_module.write_manifest

    def dies(*args, **kwargs):
        raise TimeoutError("killed half-way")
    monkeypatch.setattr(consumer, "write_manifest", dies)
    with pytest.raises(TimeoutError):
        consumer.handler(event, context)
    # When Lambda retries it
    monkeypatch.setattr(consumer, "write_manifest", real)
    # Then it runs (no record of the failed run is kept) and writes the markers once
    assert consumer.handler(event, context)["objects"] == 1
    assert s3.get_object(Bucket=bucket, Key="data/dataset=d2/_SUCCESS")["Body"].read() == b""
    # And a Ready without an event_id (or anything else that is not a streamwatch event) is skipped alone, never
    # run without its dedupe, never retried into a DLQ
    no_id = {**event, "detail": {k: v for k, v in event["detail"].items() if k != "event_id"}}
    assert consumer.handler(no_id, context) == {"skipped": "malformed event"}
    assert consumer.handler({"detail": "hello"}, context) == {"skipped": "malformed event"}
