"""Monitor: exact counts under duplicated, shuffled delivery; bad input skipped; failures isolated."""

from __future__ import annotations

import json
import random

import boto3
import pytest

from streamwatch.handlers import monitor
from streamwatch.local.chaos import ThrottleOnce
from streamwatch.store import Store
from tests.conftest import drain, s3_message, s3_record, sqs_event


def counts(table: str, dataset_id: str):
    state = Store(table).get_state(dataset_id)
    return (state.objects, state.bytes, state.records) if state else None


def test_every_event_three_times_shuffled_counts_exactly(moto_env, context):
    # Given 20 datasets x 25 objects, each notification delivered 3 times, in random order and batches
    settings, local = moto_env()
    bucket = local.resources.bucket
    objects = [(f"d{d}", f"data/dataset=d{d}/obj-{i}.json", 100 + d * 7 + i) for d in range(20) for i in range(25)]
    messages = [s3_message(s3_record(bucket, key, size)) for _, key, size in objects] * 3
    random.Random(1).shuffle(messages)
    # When the monitor consumes them in batches of 37
    for start in range(0, len(messages), 37):
        response = monitor.handler(sqs_event(messages[start:start + 37]), context)
        assert response == {"batchItemFailures": []}
    # Then every dataset has exactly its objects and bytes
    for d in range(20):
        mine = [size for ds, _, size in objects if ds == f"d{d}"]
        assert counts(local.resources.table, f"d{d}") == (25, sum(mine), None)
    # And each dataset's observer chain was started exactly once
    ticks = [json.loads(m["Body"]) for m in drain(local.resources.observer_queue_url)]
    assert sorted(t["dataset_id"] for t in ticks) == sorted(f"d{d}" for d in range(20))
    assert {t["kind"] for t in ticks} == {"tick"} and {t["tick"] for t in ticks} == {0}


def test_records_in_one_message_and_url_encoded_keys(moto_env, context):
    settings, local = moto_env()
    b = local.resources.bucket
    body = s3_message(s3_record(b, "data/dataset=d1/my+file.json", 10),
                      s3_record(b, "data/dataset=d1/sub%2Fpart+2.json", 20,
                                event="ObjectCreated:CompleteMultipartUpload"),
                      s3_record(b, "data/dataset=d1/copy.json", 30, event="ObjectCreated:Copy"))
    assert monitor.handler(sqs_event([body]), context) == {"batchItemFailures": []}
    assert counts(local.resources.table, "d1") == (3, 60, None)
    # The same objects again, once with the key decoded differently encoded: still 3
    again = s3_message(s3_record(b, "data/dataset=d1/my%20file.json", 10))
    monitor.handler(sqs_event([again]), context)
    assert counts(local.resources.table, "d1") == (3, 60, None)


@pytest.mark.parametrize("body", [
    json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "x"}),
    "{not json",
    json.dumps(["a", "list"]),
    json.dumps({"hello": "world"}),
    s3_message(s3_record("someone-elses-bucket", "data/dataset=d1/a.json")),
    "OUTSIDE",
    "MANIFEST",
    s3_message({"eventName": "ObjectRemoved:Delete", "s3": {"bucket": {"name": "B"}, "object": {"key": "k"}}}),
])
def test_foreign_or_malformed_messages_are_skipped_without_failing_the_batch(moto_env, context, body):
    settings, local = moto_env()
    b = local.resources.bucket
    body = {"OUTSIDE": s3_message(s3_record(b, "elsewhere/dataset=d1/a.json")),
            "MANIFEST": s3_message(s3_record(b, "data/dataset=d1/_manifest.json"))}.get(body, body)
    good = s3_message(s3_record(b, "data/dataset=d1/real.json", 5))
    assert monitor.handler(sqs_event([body, good]), context) == {"batchItemFailures": []}
    assert counts(local.resources.table, "d1") == (1, 5, None)


def test_one_unreadable_object_fails_only_its_message_and_a_retry_counts_it_once(moto_env, context):
    # Given records mode (the monitor reads each object), and one object not yet readable
    from streamwatch.settings import Settings
    settings, local = moto_env(Settings(mode="records"))
    s3 = boto3.client("s3")
    b = local.resources.bucket
    for i in range(3):
        s3.put_object(Bucket=b, Key=f"data/dataset=d1/ok-{i}.json", Body=b'{"a":1}\n{"a":2}\n')
    drain(local.notification_queue_url)
    messages = [s3_message(s3_record(b, f"data/dataset=d1/ok-{i}.json", 16)) for i in range(3)]
    messages.append(s3_message(s3_record(b, "data/dataset=d1/late.json", 8)))
    event = sqs_event(messages, ids=["m0", "m1", "m2", "late"])
    # When the batch is processed
    response = monitor.handler(event, context)
    # Then only the unreadable one is reported, and the others are counted with their records
    assert response == {"batchItemFailures": [{"itemIdentifier": "late"}]}
    assert counts(local.resources.table, "d1") == (3, 48, 6)
    # When the object appears and the whole batch is redelivered, Then it is counted once, the others not again
    s3.put_object(Bucket=b, Key="data/dataset=d1/late.json", Body=b'{"a":3}\n')
    assert monitor.handler(event, context) == {"batchItemFailures": []}
    assert counts(local.resources.table, "d1") == (4, 56, 7)


def test_gzip_objects_are_counted_by_their_lines(moto_env, context):
    import gzip

    from streamwatch.settings import Settings
    settings, local = moto_env(Settings(mode="records"))
    b = local.resources.bucket
    body = gzip.compress(b"".join(b'{"n":%d}\n' % i for i in range(1234)))
    boto3.client("s3").put_object(Bucket=b, Key="data/dataset=gz/part.gz", Body=body)
    monitor.handler(sqs_event([s3_message(s3_record(b, "data/dataset=gz/part.gz", len(body)))]), context)
    assert counts(local.resources.table, "gz")[2] == 1234


def test_throttled_transaction_is_retried_and_counted_once(moto_env, context):
    settings, local = moto_env()
    b = local.resources.bucket
    event = sqs_event([s3_message(s3_record(b, f"data/dataset=d1/{i}.json", 10)) for i in range(5)])
    store_client = Store(local.resources.table).client
    with ThrottleOnce(store_client, "transact_write_items", times=2):
        assert monitor.handler(event, context) == {"batchItemFailures": []}
    assert counts(local.resources.table, "d1") == (5, 50, None)


def test_persistent_throttling_fails_the_batch_and_redelivery_counts_once(moto_env, context):
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
    settings, local = moto_env()
    b = local.resources.bucket
    event = sqs_event([s3_message(s3_record(b, f"data/dataset=d1/{i}.json", 10)) for i in range(5)])
    store_client = Store(local.resources.table).client
    with ThrottleOnce(store_client, "transact_write_items", times=100), pytest.raises(BatchProcessingError):
        monitor.handler(event, context)
    assert counts(local.resources.table, "d1") is None
    assert monitor.handler(event, context) == {"batchItemFailures": []}
    monitor.handler(event, context)
    assert counts(local.resources.table, "d1") == (5, 50, None)


def test_real_s3_notifications_from_the_bucket_are_understood(moto_env, context):
    # Given objects written to the bucket (moto sends the ObjectCreated notifications to the queue)
    settings, local = moto_env()
    s3 = boto3.client("s3")
    keys = ["data/dataset=real/a b.json", "data/dataset=real/c+d.json", "data/dataset=real/e.json"]
    for key in keys:
        s3.put_object(Bucket=local.resources.bucket, Key=key, Body=b"x" * 11)
    s3.put_object(Bucket=local.resources.bucket, Key="other/f.json", Body=b"x")  # filtered by S3 itself
    messages = drain(local.notification_queue_url)
    # S3 (and moto) send an s3:TestEvent when the notification is configured; keys arrive fully URL-encoded
    assert len(messages) == 4 and sum("s3:TestEvent" in m["Body"] for m in messages) == 1
    assert monitor.handler(sqs_event([m["Body"] for m in messages]), context) == {"batchItemFailures": []}
    assert counts(local.resources.table, "real") == (3, 33, None)
