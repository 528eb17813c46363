"""Monitor: exact counts under duplicated, shuffled delivery; distinct records under duplicated records; every
notification shape; Firehose's error output; bad input skipped; failures isolated."""

from __future__ import annotations

import base64
import gzip
import json
import os
import random
import time

import boto3
import pytest

from streamwatch.core.envelope import wrap
from streamwatch.core.settings import Settings
from streamwatch.handlers import monitor
from streamwatch.local import infra
from streamwatch.local.chaos import ThrottleOnce
from streamwatch.state.store import Store
from tests.conftest import drain, object_events, s3_message, s3_record, sqs_event

COUNT_ONLY = Settings(mode="stability")  # the monitor reads no object: notifications alone are enough


def counts(table: str, dataset_id: str):
    state = Store(table).get_state(dataset_id)
    return (state.objects, state.bytes, state.records) if state else None


def put(bucket: str, key: str, body: bytes) -> None:
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body)


def lines(records: list[bytes]) -> bytes:
    return b"".join(r + b"\n" for r in records)


def test_every_event_three_times_shuffled_counts_exactly(moto_env, context):
    # Given 10 datasets x 12 objects, each notification delivered 3 times, in random order and batches (moto's
    # TransactWriteItems copies the whole table per action, so more objects cost time, not coverage)
    settings, local = moto_env(COUNT_ONLY)
    bucket = local.resources.bucket
    objects = [(f"d{d}", f"data/dataset=d{d}/obj-{i}.json", 100 + d * 7 + i) for d in range(10) for i in range(12)]
    messages = [s3_message(s3_record(bucket, key, size)) for _, key, size in objects] * 3
    random.Random(1).shuffle(messages)
    # When the monitor consumes them in batches of 37
    for start in range(0, len(messages), 37):
        response = monitor.handler(sqs_event(messages[start:start + 37]), context)
        assert response == {"batchItemFailures": []}
    # Then every dataset has exactly its objects and bytes
    for d in range(10):
        mine = [size for ds, _, size in objects if ds == f"d{d}"]
        assert counts(local.resources.table, f"d{d}") == (12, sum(mine), None)
    # And each dataset's observer chain was started exactly once
    ticks = [json.loads(m["Body"]) for m in drain(local.resources.observer_queue_url)]
    assert sorted(t["dataset_id"] for t in ticks) == sorted(f"d{d}" for d in range(10))
    assert {t["kind"] for t in ticks} == {"tick"} and {t["tick"] for t in ticks} == {0}


def test_records_in_one_message_and_url_encoded_keys(moto_env, context):
    # Given one message holding three records: a '+' key, a multipart upload with an encoded '/', and a copy
    settings, local = moto_env(COUNT_ONLY)
    b = local.resources.bucket
    body = s3_message(s3_record(b, "data/dataset=d1/my+file.json", 10),
                      s3_record(b, "data/dataset=d1/sub%2Fpart+2.json", 20,
                                event="ObjectCreated:CompleteMultipartUpload"),
                      s3_record(b, "data/dataset=d1/copy.json", 30, event="ObjectCreated:Copy"))
    # When the monitor consumes it
    assert monitor.handler(sqs_event([body]), context) == {"batchItemFailures": []}
    # Then all three objects are counted, 60 bytes
    assert counts(local.resources.table, "d1") == (3, 60, None)
    # The same object again, its key encoded differently: still 3
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
    # Given a message the monitor must skip (the parameter), and a good one beside it
    settings, local = moto_env(COUNT_ONLY)
    b = local.resources.bucket
    body = {"OUTSIDE": s3_message(s3_record(b, "elsewhere/dataset=d1/a.json")),
            "MANIFEST": s3_message(s3_record(b, "data/dataset=d1/_manifest.json"))}.get(body, body)
    good = s3_message(s3_record(b, "data/dataset=d1/real.json", 5))
    # When the monitor consumes both
    # Then no message fails and only the good one is counted
    assert monitor.handler(sqs_event([body, good]), context) == {"batchItemFailures": []}
    assert counts(local.resources.table, "d1") == (1, 5, None)


def test_one_unreadable_object_fails_only_its_message_and_a_retry_counts_it_once(moto_env, context):
    # Given records counted (auto mode reads each object), and one object not yet readable
    settings, local = moto_env()
    b = local.resources.bucket
    for i in range(3):
        put(b, f"data/dataset=d1/ok-{i}.json", b'{"a":1}\n{"a":2}\n')
    drain(local.notification_queue_url)
    messages = [s3_message(s3_record(b, f"data/dataset=d1/ok-{i}.json", 16)) for i in range(3)]
    messages.append(s3_message(s3_record(b, "data/dataset=d1/late.json", 8)))
    event = sqs_event(messages, ids=["m0", "m1", "m2", "late"])
    # When the batch is processed
    response = monitor.handler(event, context)
    # Then only the unreadable one is reported, and the others are counted with their records
    assert response == {"batchItemFailures": [{"itemIdentifier": "late"}]}
    assert counts(local.resources.table, "d1") == (3, 48, 6)
    # When the object appears and the whole batch is redelivered
    put(b, "data/dataset=d1/late.json", b'{"a":3}\n')
    # Then it is counted once, the others not again
    assert monitor.handler(event, context) == {"batchItemFailures": []}
    assert counts(local.resources.table, "d1") == (4, 56, 7)


def test_gzip_objects_are_counted_by_their_lines(moto_env, context):
    # Given a gzip object of 1,234 lines, in records mode
    settings, local = moto_env(Settings(mode="records"))
    b = local.resources.bucket
    body = gzip.compress(b"".join(b'{"n":%d}\n' % i for i in range(1234)))
    put(b, "data/dataset=gz/part.gz", body)
    # When the monitor counts its notification
    monitor.handler(sqs_event([s3_message(s3_record(b, "data/dataset=gz/part.gz", len(body)))]), context)
    # Then its dataset has 1,234 records
    assert counts(local.resources.table, "gz")[2] == 1234


def test_a_record_that_lands_twice_counts_once_and_foreign_lines_are_kept_apart(moto_env, context):
    # Given p0's first buffer written twice by Firehose (two objects), and a line someone else wrote
    settings, local = moto_env()
    b, t = local.resources.bucket, local.resources.table
    first = lines([wrap({"i": i}, "p0", i, {"dataset_id": "d1"}) for i in range(500)])
    second = lines([wrap({"i": i}, "p0", i, {"dataset_id": "d1"}) for i in range(500, 800)] + [b'{"other":1}'])
    for name, body in (("a", first), ("a-retry", first), ("b", second)):
        put(b, f"data/dataset=d1/{name}", body)
    notes = object_events(local.notification_queue_url)
    # When the monitor counts them (notifications duplicated too)
    for batch in (notes[:2], notes, notes[1:]):
        assert monitor.handler(sqs_event(batch), context) == {"batchItemFailures": []}
    # Then: 3 objects, 800 distinct records plus 1 foreign, 500 duplicates seen, p0's seqs one interval
    state = Store(t).get_state("d1")
    assert (state.objects, state.distinct, state.foreign, state.duplicates, state.records) == (3, 800, 1, 500, 801)
    assert Store(t).seqs("d1") == {"p0": [(0, 799)]}


def test_concurrent_merges_of_one_dataset_retry_on_the_version(moto_env, context, monkeypatch):
    # Given another monitor batch merging p1's records between this batch's read and its write
    settings, local = moto_env()
    b, t = local.resources.bucket, local.resources.table
    put(b, "data/dataset=d1/a", lines([wrap({}, "p0", i, {"dataset_id": "d1"}) for i in range(10)]))
    put(b, "data/dataset=d1/b", lines([wrap({}, "p1", i, {"dataset_id": "d1"}) for i in range(5)]))
    note_a, note_b = object_events(local.notification_queue_url)
    real_read, raced = Store._read_seqs, []

    def read_then_race(store, ids, outcome=None):
        result = real_read(store, ids, outcome)
        if not raced:
            raced.append(1)
            monitor.handler(sqs_event([note_b]), context)  # the other batch commits first
        return result
    monkeypatch.setattr(Store, "_read_seqs", read_then_race)
    # When this batch commits after it
    assert monitor.handler(sqs_event([note_a]), context) == {"batchItemFailures": []}
    # Then neither merge is lost
    assert Store(t).seqs("d1") == {"p0": [(0, 9)], "p1": [(0, 4)]}
    assert Store(t).get_state("d1").distinct == 15


def test_error_output_records_fail_their_dataset_once(moto_env, context):
    # Given an object of Firehose's error output, shaped as Firehose documents it, holding two of d1's records
    # and one record that is not JSON
    settings, local = moto_env()
    b, t = local.resources.bucket, local.resources.table

    def failed(raw: bytes) -> bytes:
        return json.dumps({"attemptsMade": 1, "arrivalTimestamp": 1732440000000,
                           "errorCode": "DynamicPartitioning.ActivePartitionsLimitExceeded",
                           "errorMessage": "too many partitions", "attemptEndingTimestamp": 1732440001000,
                           "rawData": base64.b64encode(raw).decode()}).encode()
    body = lines([failed(wrap({"i": 1}, "p0", 0, {"dataset_id": "d1"})),
                  failed(wrap({"i": 2}, "p0", 1, {"dataset_id": "d1"})), failed(b"not json")])
    put(b, "errors/processing-failed/2026/11/24/s-1-x", body)
    notes = object_events(local.notification_queue_url)
    # When it is counted, twice
    assert monitor.handler(sqs_event(notes), context) == {"batchItemFailures": []}
    assert monitor.handler(sqs_event(notes), context) == {"batchItemFailures": []}
    # Then d1 holds 2 error records and a failure naming the reason, and its chain was started
    state = Store(t).get_state("d1")
    assert state.error_records == 2 and "ActivePartitionsLimitExceeded" in state.failure
    assert [json.loads(m["Body"])["kind"] for m in drain(local.resources.observer_queue_url)][0] == "tick"


def test_a_throttled_transaction_is_retried_by_botocore_and_counted_once(moto_env, context):
    # Given 5 notifications for d1, and DynamoDB answering the first two transactions with a real 400 throttle
    from botocore.awsrequest import AWSResponse
    settings, local = moto_env(COUNT_ONLY)
    b = local.resources.bucket
    event = sqs_event([s3_message(s3_record(b, f"data/dataset=d1/{i}.json", 10)) for i in range(5)])
    store_client = Store(local.resources.table).client
    sent = []

    class Raw:
        def stream(self, **kwargs):
            yield json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                              "message": "throttled"}).encode()

    def throttle(request, **kwargs):
        sent.append(request.url)
        if len(sent) <= 2:
            return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.0"}, Raw())
        return None
    store_client.meta.events.register("before-send.dynamodb.TransactWriteItems", throttle)
    try:
        # When the monitor consumes them
        response = monitor.handler(event, context)
    finally:
        store_client.meta.events.unregister("before-send.dynamodb.TransactWriteItems", throttle)
    # Then botocore's own retries carried the transaction (three sends), no message failed, and the 5 objects are
    # counted once, 50 bytes
    assert response == {"batchItemFailures": []} and len(sent) == 3
    assert counts(local.resources.table, "d1") == (5, 50, None)


def test_a_throttle_past_botocores_retries_is_left_to_sqs_and_redelivery_counts_once(moto_env, context):
    # Given 5 notifications for d1
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
    settings, local = moto_env(COUNT_ONLY)
    b = local.resources.bucket
    event = sqs_event([s3_message(s3_record(b, f"data/dataset=d1/{i}.json", 10)) for i in range(5)])
    store_client = Store(local.resources.table).client
    # When the store's transaction fails with a throttle every time, as when botocore's retries are spent
    with ThrottleOnce(store_client, "transact_write_items", times=100) as throttle, \
            pytest.raises(BatchProcessingError):
        monitor.handler(event, context)
    # Then it was not retried again (one call), the whole batch failed and nothing is counted
    assert throttle.left == 99
    assert counts(local.resources.table, "d1") is None
    # And its redelivery, twice, counts the 5 objects once
    assert monitor.handler(event, context) == {"batchItemFailures": []}
    monitor.handler(event, context)
    assert counts(local.resources.table, "d1") == (5, 50, None)


def test_real_s3_notifications_from_the_bucket_are_understood(moto_env, context):
    # Given objects written to the bucket (moto sends the ObjectCreated notifications to the queue)
    settings, local = moto_env(COUNT_ONLY)
    keys = ["data/dataset=real/a b.json", "data/dataset=real/c+d.json", "data/dataset=real/e.json"]
    for key in keys:
        put(local.resources.bucket, key, b"x" * 11)
    put(local.resources.bucket, "other/f.json", b"x")  # filtered by S3 itself
    # When the queue's messages are drained
    messages = drain(local.notification_queue_url)
    # Then they are the 3 notifications (other/ filtered out), beside at least one s3:TestEvent
    # S3 (and moto) send an s3:TestEvent when the notification is configured; keys arrive fully URL-encoded
    assert sum("s3:TestEvent" in m["Body"] for m in messages) >= 1
    assert len([m for m in messages if "s3:TestEvent" not in m["Body"]]) == 3
    # And the monitor consumes them all and counts the 3 objects, 33 bytes
    assert monitor.handler(sqs_event([m["Body"] for m in messages]), context) == {"batchItemFailures": []}
    assert counts(local.resources.table, "real") == (3, 33, None)


def test_eventbridge_mode_the_rule_delivers_object_created_for_the_watched_prefixes_only(moto_env, context):
    # Given a bucket in EventBridge mode: S3's events put on the default bus as AWS documents them
    settings, local = moto_env(COUNT_ONLY, notifications="eventbridge")
    b = local.resources.bucket
    for key in ["data/dataset=eb/a+b.json", "data/dataset=eb/c d.json", "other/x.json"]:
        put(b, key, b"y" * 7)
    events = boto3.client("events")
    for m in drain(local.raw_s3_queue_url):
        for record in json.loads(m["Body"]).get("Records", []):
            event = infra.to_eventbridge(record)
            events.put_events(Entries=[{"Source": event["source"], "DetailType": event["detail-type"],
                                        "Detail": json.dumps(event["detail"]), "Resources": event["resources"]}])
    # When the monitor reads what the rule delivered
    delivered = drain(local.notification_queue_url)
    assert len(delivered) == 2  # the rule's pattern keeps other/ out
    assert monitor.handler(sqs_event([m["Body"] for m in delivered]), context) == {"batchItemFailures": []}
    # Then the keys (not URL-encoded on EventBridge: '+' stays '+') are counted under their dataset
    assert counts(local.resources.table, "eb") == (2, 14, None)
    assert Store(local.resources.table).table.get_item(
        Key={"pk": "DATASET#eb", "sk": "OBJECT#data/dataset=eb/a+b.json"}).get("Item")


def test_window_rule_objects_carry_their_window(moto_env, context):
    # Given an hourly window rule, logs/{yyyy}/{MM}/{dd}/{HH}/
    settings, local = moto_env(Settings(mode="stability", datasets=(
        {"pattern": "logs/{yyyy}/{MM}/{dd}/{HH}/", "name": "hourly"},)))
    b = local.resources.bucket
    body = s3_message(s3_record(b, "logs/2026/11/24/23/part-1", 9))
    # When the monitor counts an object of 2026-11-24's 23:00 hour
    assert monitor.handler(sqs_event([body]), context) == {"batchItemFailures": []}
    # Then the object's dataset is that hour's window, one hour long, of rule hourly
    state = Store(local.resources.table).get_state("hourly~2026-11-24T23")
    assert state.window_end - state.window_start == 3600 and state.rule == "hourly"


def test_the_monitor_records_how_far_behind_it_is(moto_env, context):
    # Given a notification sent 42 s ago
    settings, local = moto_env(COUNT_ONLY)
    body = s3_message(s3_record(local.resources.bucket, "data/dataset=d1/a", 1))
    # When the monitor consumes it
    monitor.handler(sqs_event([body], sent_ts=time.time() - 42), context)
    # Then the lag it stores is about 42 s
    batch_ts, oldest = Store(local.resources.table).get_lag()
    assert 41 <= batch_ts - oldest <= 60


def test_a_batch_with_messages_not_counted_keeps_hiding_them_after_a_younger_batch(moto_env):
    # Given a batch whose one object is not readable yet (its message comes back after the visibility timeout);
    # each invocation has its own request id, as in Lambda
    from streamwatch.core.settings import Resources
    from streamwatch.local.context import LambdaContext
    from streamwatch.runtime.observer import Observer
    settings, local = moto_env()
    b, now = local.resources.bucket, time.time()
    drain(local.notification_queue_url)
    put(b, "data/dataset=d1/first.json", b'{"a":1}\n')
    drain(local.notification_queue_url)
    late = s3_message(s3_record(b, "data/dataset=d1/late.json", 8))
    first = s3_message(s3_record(b, "data/dataset=d1/first.json", 8))
    assert monitor.handler(sqs_event([late, first], ids=["late", "first"], sent_ts=now - 300), LambdaContext()) == {
        "batchItemFailures": [{"itemIdentifier": "late"}]}
    # When a younger batch is counted cleanly (the latest lag is 2 s old), while the late message is in flight
    put(b, "data/dataset=d2/a.json", b'{"a":1}\n')
    drain(local.notification_queue_url)
    ok = s3_message(s3_record(b, "data/dataset=d2/a.json", 8))
    assert monitor.handler(sqs_event([ok], sent_ts=now - 2), LambdaContext()) == {"batchItemFailures": []}
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=local.notification_queue_url, MessageBody="{}")
    sqs.receive_message(QueueUrl=local.notification_queue_url, VisibilityTimeout=600)
    # Then the observer's backlog is still the late message's age, not the younger batch's
    assert Observer(settings, Resources.from_env(os.environ)).backlog_s() == pytest.approx(300, abs=5)
    # And once it is counted on redelivery, the batch hides nothing any more
    put(b, "data/dataset=d1/late.json", b'{"a":3}\n')
    again = monitor.handler(sqs_event([late], ids=["late"], sent_ts=now - 1), LambdaContext())
    assert again == {"batchItemFailures": []}
    assert Store(local.resources.table).get_lag()[1] == pytest.approx(now - 1, abs=1)


def test_eventbridge_whole_second_times_are_taken_as_late_as_the_object_can_have_landed():
    # Given EventBridge's `time` (whole seconds) and S3's eventTime (milliseconds)
    from streamwatch.core.events import parse_iso
    from streamwatch.runtime.monitor import event_ts
    second = parse_iso("2026-11-23T10:00:00Z")
    # When event_ts reads them, with and without the time the notification was sent
    # Then a whole second means "within the second after", but never after the notification was sent
    assert event_ts("2026-11-23T10:00:00Z") == second + 1
    assert event_ts("2026-11-23T10:00:00Z", sent_ts=second + 0.25) == second + 0.25
    assert event_ts("2026-11-23T10:00:00.400Z", sent_ts=second + 0.25) == second + 0.4
    assert event_ts("2026-11-23T10:00:00.400Z") == second + 0.4


def test_the_logic_modules_log_through_the_handlers_powertools_logger_with_the_deployments_service_name():
    # Given a function named as the construct names it (service = the construct's path, not "streamwatch")
    import subprocess
    import sys
    code = ("import logging, streamwatch.handlers.monitor as m\n"
            "m.logger.append_keys(function_request_id='req-1')\n"
            "logging.getLogger('streamwatch.runtime.monitor').warning('from the logic')\n")
    env = {**os.environ, "POWERTOOLS_SERVICE_NAME": "Stack/Streamwatch", "AWS_DEFAULT_REGION": "us-east-1"}
    # When a logic module logs in a process that imported the monitor handler
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    # Then the line is the Powertools JSON with the invocation's context
    (line,) = [json.loads(x) for x in result.stdout.splitlines() if "from the logic" in x]
    assert line["function_request_id"] == "req-1" and line["service"] == "Stack/Streamwatch"
    assert line["level"] == "WARNING"
