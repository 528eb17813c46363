"""Producers: within Firehose's limits, partial failures resent until every record is in exactly once."""

from __future__ import annotations

import json
from collections import Counter

import boto3
import pytest

from streamwatch import aws
from streamwatch.handlers import producer as producer_handler
from streamwatch.local.chaos import FlakyFirehose
from streamwatch.producing import (
    MAX_BATCH_BYTES,
    MAX_BATCH_RECORDS,
    Producer,
    RecordTooLarge,
    batches,
    make_records,
    start_run,
)
from streamwatch.settings import Settings
from streamwatch.store import Store


def firehose_to(bucket: str, name: str) -> None:
    boto3.client("firehose").create_delivery_stream(
        DeliveryStreamName=name, DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={"BucketARN": f"arn:aws:s3:::{bucket}", "Prefix": "raw/",
                                            "RoleARN": "arn:aws:iam::123456789012:role/firehose"})


def records_in(bucket: str) -> Counter:
    """(producer, seq) of every record Firehose delivered (moto concatenates them without delimiter)."""
    s3, seen, decoder = boto3.client("s3"), Counter(), json.JSONDecoder()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="raw/"):
        for obj in page.get("Contents", []):
            text, pos = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode(), 0
            while pos < len(text):
                record, pos = decoder.raw_decode(text, pos)
                seen[(record["producer_id"], record["seq"])] += 1
    return seen


def test_batches_respect_record_count_and_byte_limits():
    small = [b"x" * 100] * 1200
    assert [len(b) for b in batches(small)] == [500, 500, 200]
    big = [b"y" * (900 * 1024)] * 10  # 4 fit in 4 MiB, not 5
    sizes = [sum(len(d) for _, d in b) for b in batches(big)]
    assert all(s <= MAX_BATCH_BYTES for s in sizes) and len(sizes) == 3
    assert all(len(b) <= MAX_BATCH_RECORDS for b in batches(small))


def test_oversized_record_is_a_clear_error_before_anything_is_sent(moto_env):
    settings, local = moto_env()
    firehose_to(local.resources.bucket, local.resources.stream)
    records = [b"{}", b"z" * (1000 * 1024 + 1)]
    with pytest.raises(RecordTooLarge, match=r"record 1 is 1024001 bytes; Firehose accepts at most 1024000"):
        Producer(settings, local.resources).run("d1", "p1", records)
    assert records_in(local.resources.bucket) == Counter()


def test_partial_failures_are_resent_until_every_record_is_in_exactly_once(moto_env):
    # Given Firehose refusing 30 % of the entries of every call (HTTP 200, FailedPutCount > 0)
    settings, local = moto_env(Settings(producer_concurrency=4))
    firehose_to(local.resources.bucket, local.resources.stream)
    flaky = FlakyFirehose(aws.client("firehose"), rate=0.3)
    producer = Producer(settings, local.resources, firehose=flaky, max_attempts=30, sleep=lambda s: None)
    # When a producer sends 3,000 records
    report = producer.run("d1", "p1", make_records("d1", "p1", 3000))
    # Then each record is in S3 exactly once, and the report says how it got there
    assert records_in(local.resources.bucket) == Counter({("p1", i): 1 for i in range(3000)})
    assert report.records_sent == 3000 and report.failed == [] and report.retries > 0
    assert report.batches == 6 and flaky.calls > 6
    state = Store(local.resources.table).get_state("d1")
    assert (state.producers_done, state.records_sent) == (1, 3000)


def test_records_that_never_get_in_are_reported_not_lost(moto_env):
    settings, local = moto_env()
    firehose_to(local.resources.bucket, local.resources.stream)
    flaky = FlakyFirehose(aws.client("firehose"), rate=1.0)
    report = Producer(settings, local.resources, firehose=flaky, max_attempts=3, sleep=lambda s: None).run(
        "d1", "p1", make_records("d1", "p1", 10))
    assert report.records_sent == 0
    assert report.failed == [{"seq": i, "error": "ServiceUnavailableException"} for i in range(10)]
    assert Store(local.resources.table).get_state("d1").records_sent == 0


def test_done_reported_twice_is_counted_once(moto_env):
    settings, local = moto_env()
    store = Store(local.resources.table)
    assert store.report_done("d1", "p1", 100, 1.0) is True
    assert store.report_done("d1", "p1", 100, 2.0) is False
    assert store.report_done("d1", "p2", 50, 3.0) is True
    state = store.get_state("d1")
    assert (state.producers_done, state.records_sent, state.last_done_ts) == (2, 150, 3.0)


def test_a_retried_producer_lambda_reports_once(moto_env, context):
    settings, local = moto_env()
    firehose_to(local.resources.bucket, local.resources.stream)
    event = {"action": "produce", "dataset_id": "d1", "producer_id": "p7", "records": 120}
    first = producer_handler.handler(event, context)
    second = producer_handler.handler(event, context)
    assert first["reported_done"] is True and second["reported_done"] is False
    state = Store(local.resources.table).get_state("d1")
    assert (state.producers_done, state.records_sent) == (1, 120)


def test_start_run_registers_the_dataset_and_fans_out(moto_env):
    settings, local = moto_env()
    sent = []
    requests = start_run(settings, local.resources, "run-1",
                         [{"producer_id": f"p{i}", "records": 10 * i} for i in range(1, 4)], sent.append)
    assert sent == requests and [r["producer_id"] for r in sent] == ["p1", "p2", "p3"]
    assert Store(local.resources.table).get_state("run-1").producers_expected == 3
    with pytest.raises(ValueError, match="dataset id"):
        start_run(settings, local.resources, "bad/id", [], sent.append)
