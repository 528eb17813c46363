"""The producer client: within Firehose's limits, refused entries resent until every record is in exactly once,
reports made exactly once, failures reported, backpressure, packing; the producer Lambda's record source."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import boto3
import pytest

from streamwatch.client.deployment import Deployment, DeploymentNotFound, MissingOutput, StackNotFound
from streamwatch.client.producer import MAX_BATCH_BYTES, MAX_BATCH_RECORDS, Entry, batches, pack
from streamwatch.client.run import RecordError, RecordsRefused, RecordTooLarge, Run
from streamwatch.core.envelope import scan
from streamwatch.core.rules import RuleError
from streamwatch.core.settings import Settings
from streamwatch.handlers import producer as producer_handler
from streamwatch.local.chaos import FlakyFirehose
from streamwatch.runtime import aws
from streamwatch.state.store import Store
from tests.conftest import drain

ROOT = Path(__file__).resolve().parents[2]


def firehose_to(bucket: str, name: str) -> None:
    """moto's Firehose: every PutRecordBatch becomes an object at once (no partitioning, no delimiter)."""
    boto3.client("firehose").create_delivery_stream(
        DeliveryStreamName=name, DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={"BucketARN": f"arn:aws:s3:::{bucket}", "Prefix": "raw/",
                                            "RoleARN": "arn:aws:iam::123456789012:role/firehose"})


def records_in(bucket: str) -> Counter:
    """(producer, seq) of every record Firehose delivered (moto concatenates records without delimiter)."""
    s3, seen, decoder = boto3.client("s3"), Counter(), json.JSONDecoder()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="raw/"):
        for obj in page.get("Contents", []):
            text, pos = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode(), 0
            while pos < len(text):
                record, pos = decoder.raw_decode(text, pos)
                producer, seq = record["_sw"].split(":")
                seen[(producer, int(seq))] += 1
    return seen


@pytest.fixture
def deployed(moto_env):
    def build(settings: Settings | None = None):
        settings, local = moto_env(settings or Settings(pack_records=False))
        firehose_to(local.resources.bucket, local.resources.stream)
        return settings, local
    return build


def test_batches_and_packing_respect_every_limit():
    # Given 1,200 entries of 100 bytes
    small = [Entry(b"x" * 100, [i]) for i in range(1200)]
    # When they are batched
    # Then no batch holds more than 500
    assert [len(b) for b in batches(small)] == [500, 500, 200]
    # And ten entries of 900 KiB make 3 batches, each within MAX_BATCH_BYTES
    big = [Entry(b"y" * (900 * 1024), [i]) for i in range(10)]  # 4 fit in 4 MiB, not 5
    sizes = [sum(len(e.data) for e in b) for b in batches(big)]
    assert all(s <= MAX_BATCH_BYTES for s in sizes) and len(sizes) == 3
    # And packing 1,234 small records makes entries of 500, 500 and 234
    packed = pack([(i, b'{"a":1}') for i in range(1234)], enabled=True)
    assert [len(e.seqs) for e in packed] == [500, 500, 234] and all(len(b) <= MAX_BATCH_RECORDS for b in [packed])
    # And records of 300 KB are packed 3 to an entry, so that an entry stays within 1,000 KiB
    fat = pack([(i, b"{" + b"z" * 300_000 + b"}") for i in range(7)], enabled=True)
    assert [len(e.seqs) for e in fat] == [3, 3, 1] and all(len(e.data) <= 1000 * 1024 for e in fat)


def test_partial_failures_are_resent_until_every_record_is_in_exactly_once(deployed):
    # Given Firehose refusing 30 % of the entries of every call (HTTP 200, FailedPutCount > 0)
    settings, local = deployed()
    flaky = FlakyFirehose(aws.client("firehose"), rate=0.3)
    run = Run.start("d1", ["p1"], firehose=flaky)
    # When a producer puts 3,000 records
    with run.producer("p1", max_attempts=30) as p:
        p.sender.sleep = lambda s: None
        p.put_many({"i": i} for i in range(3000))
    # Then each record is in S3 exactly once, and the report says how it got there
    assert records_in(local.resources.bucket) == Counter({("p1", i): 1 for i in range(3000)})
    report = p.report
    assert report.records_sent == 3000 and report.failed == [] and report.retries > 0 and flaky.calls > 6
    assert report.reported == "done"
    state = Store(local.resources.table).get_state("d1")
    assert (state.producers_expected, state.producers_done, state.records_sent) == (1, 1, 3000)


def test_records_firehose_never_accepts_fail_the_producer_and_say_so(deployed):
    # Given a Firehose that refuses every entry, and a run for p1
    settings, local = deployed()
    flaky = FlakyFirehose(aws.client("firehose"), rate=1.0)
    run = Run.start("d1", ["p1"], firehose=flaky)
    # When p1 puts 10 records, 3 attempts each
    # Then it raises RecordsRefused for the 10
    with pytest.raises(RecordsRefused, match="refused 10 record"), run.producer("p1", max_attempts=3) as p:
        p.sender.sleep = lambda s: None
        p.put_many({"i": i} for i in range(10))
    # And the dataset has one failed producer, its failure naming Firehose's error
    state = Store(local.resources.table).get_state("d1")
    assert state.producers_failed == 1 and "ServiceUnavailableException" in state.failure


def test_an_oversized_or_unserializable_record_raises_at_put_and_nothing_is_lost(deployed):
    # Given a run for p1
    settings, local = deployed()
    run = Run.start("d1", ["p1"])
    # When p1 puts a good record, one over 1,000 KiB, one not JSON-serializable, then another good one
    with run.producer("p1") as p:
        p.put({"ok": 1})
        # Then each bad one raises at its put
        with pytest.raises(RecordTooLarge, match="Firehose accepts at most 1024000"):
            p.put({"blob": "z" * (1000 * 1024)})
        with pytest.raises(RecordError, match="not JSON-serializable"):
            p.put({"when": object()})
        p.put({"ok": 2})
    # And both good records are in S3, as seqs 0 and 1, and the report counts 2
    assert records_in(local.resources.bucket) == Counter({("p1", 0): 1, ("p1", 1): 1})
    assert p.report.records_sent == 2


def test_an_exception_inside_the_with_reports_failed_once_and_reraises(deployed):
    # Given a run for p1 and p2
    settings, local = deployed()
    run = Run.start("d1", ["p1", "p2"])
    # When the user's code raises KeyError inside p1's with, after one put
    with pytest.raises(KeyError), run.producer("p1") as p:
        p.put({"i": 0})
        raise KeyError("the user's own bug")
    # Then the KeyError propagates, and p1's report says failed
    assert p.report.reported == "failed"
    assert run.fail("p1", "again") is False  # a retried failure report counts once
    # And the dataset has one failed producer with the user's error, and the observer is nudged
    state = Store(local.resources.table).get_state("d1")
    assert state.producers_failed == 1 and state.failure == "producer p1 failed: KeyError: \"the user's own bug\""
    nudges = [json.loads(m["Body"]) for m in drain(local.resources.observer_queue_url)]
    assert {"tick", "nudge"} <= {n["kind"] for n in nudges}  # the chain runs, and the observer is told now


def test_put_is_thread_safe_and_each_record_gets_one_sequence_number(deployed):
    # Given a run for p1, and its producer sending with concurrency 4
    settings, local = deployed()
    run = Run.start("d1", ["p1"])
    with run.producer("p1", concurrency=4) as p:
        # When 6 threads put 700 records each through it
        threads = [threading.Thread(target=lambda k=k: p.put_many({"t": k, "i": i} for i in range(700)))
                   for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    # Then S3 holds 4,200 records, sequence numbers 0 to 4199, each exactly once
    assert records_in(local.resources.bucket) == Counter({("p1", i): 1 for i in range(4200)})


def test_backpressure_bounds_the_batches_waiting(deployed):
    # Given a Firehose whose calls take 20 ms and that records the most calls in flight at once
    class Slow:
        def __init__(self) -> None:
            self.in_flight = self.most = 0
            self.lock = threading.Lock()

        def put_record_batch(self, DeliveryStreamName, Records):  # noqa: N803
            with self.lock:
                self.in_flight += 1
                self.most = max(self.most, self.in_flight)
            time.sleep(0.02)
            with self.lock:
                self.in_flight -= 1
            return {"FailedPutCount": 0, "RequestResponses": [{"RecordId": "x"} for _ in Records]}
    settings, local = deployed()
    slow = Slow()
    run = Run.start("d1", ["p1"], firehose=slow)
    # When a producer of concurrency 2 puts 10,000 records one by one
    with run.producer("p1", concurrency=2) as p:
        for i in range(20 * 500):
            p.put({"i": i})
            # Then never more than 5 batches wait
            assert len(p._futures) <= 4 + 1  # never more than 2 x concurrency batches queued or in flight
    # And Firehose never had more than 2 calls in flight, and all 10,000 records were sent
    assert slow.most <= 2 and p.report.records_sent == 10_000


def test_packing_bills_small_records_25_times_less(deployed):
    # Given a deployment that packs records, and 2,000 records of about 160 bytes
    settings, local = deployed(Settings(pack_records=True))
    billed = {}
    # When they are put once unpacked and once packed, each to its own dataset
    for packed in (False, True):
        run = Run.start(f"d-{packed}", ["p"])
        with run.producer("p", pack=packed) as p:
            p.put_many({"i": i, "payload": "x" * 150} for i in range(2000))
        billed[packed] = p.report.billed_bytes / p.report.records_sent
    # Then unpacked each record bills 5 KiB (Firehose's minimum), packed at least 20 times less
    assert billed[False] == 5120 and billed[True] * 20 <= billed[False]


def test_a_retried_start_or_report_counts_once(deployed):
    # Given a run started for a and b, and started again (a retry)
    settings, local = deployed()
    Run.start("d1", ["a", "b"])
    Run.start("d1", ["a", "b"])  # a retried start
    # When a reports done with 10 records, twice
    run = Run.attach("d1")
    # Then only the first report counts: 2 producers expected, 1 done, 10 records
    assert run.done("a", 10) and not run.done("a", 10)
    state = Store(local.resources.table).get_state("d1")
    assert (state.producers_expected, state.producers_done, state.records_sent) == (2, 1, 10)


def test_an_unregistered_producer_is_counted_and_waited_for(deployed):
    # Given a run registered for producer a only
    settings, local = deployed()
    run = Run.start("d1", ["a"])
    # When a stranger puts a record and a reports done with none
    with run.producer("stranger") as p:  # not registered: counted, not dropped
        p.put({"i": 1})
    run.done("a", 0)
    # Then the stranger is known and done too, as one unregistered report
    state = Store(local.resources.table).get_state("d1")
    assert (state.producers_expected, state.producers_known, state.producers_done,
            state.unregistered_reports) == (1, 2, 2, 1)


def test_two_processes_attached_to_one_run(deployed):
    # Given a run started for a and b
    settings, local = deployed()
    run = Run.start("shared", ["a", "b"])
    # When b puts 250 records from another process attached to the run, and a puts 100 from this one
    code = ("from streamwatch.client.run import Run\n"
            "with Run.attach('shared').producer('b') as p:\n"
            "    p.put_many({'i': i} for i in range(250))\n")
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'lambdas'}"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    with run.producer("a") as p:
        p.put_many({"i": i} for i in range(100))
    # Then S3 holds b's 250 among 350 records, and the dataset has 2 producers done with 350
    seen = records_in(local.resources.bucket)
    assert sum(n for (prod, _), n in seen.items() if prod == "b") == 250 and len(seen) == 350
    state = Store(local.resources.table).get_state("shared")
    assert (state.producers_done, state.records_sent) == (2, 350)


def test_the_producer_lambda_runs_the_users_record_source(deployed, context, monkeypatch):
    # Given the record source tests.fixtures.sources:orders, and a produce event for 120 records
    settings, local = deployed(Settings(pack_records=False, record_source="tests.fixtures.sources:orders"))
    event = {"action": "produce", "dataset_id": "d1", "producer_id": "p7", "records": 120}
    # When the producer Lambda handles it, and again as a retry
    first = producer_handler.handler(event, context)
    second = producer_handler.handler(event, context)  # a Lambda retry after the report: resumes as done
    # Then the first sends 120, the retry resumes as done, and S3 holds the 120 records
    assert first["records_sent"] == 120 and second == {"dataset_id": "d1", "producer_id": "p7", "reported": "done"}
    assert len(records_in(local.resources.bucket)) == 120
    state = Store(local.resources.table).get_state("d1")
    assert (state.producers_done, state.records_sent) == (1, 120)


def test_a_record_source_that_raises_reports_failed(deployed, context):
    # Given a record source that raises on its first row
    settings, local = deployed(Settings(pack_records=False, record_source="tests.fixtures.sources:broken"))
    # When the producer Lambda runs it
    # Then the ValueError propagates
    with pytest.raises(ValueError, match="row 1 is malformed"):
        producer_handler.handler({"action": "produce", "dataset_id": "d1", "producer_id": "p1"}, context)
    # And the dataset's failure names the producer and the error
    state = Store(local.resources.table).get_state("d1")
    assert state.failure == "producer p1 failed: ValueError: row 1 is malformed"


def test_start_run_registers_and_fans_out(deployed, context, monkeypatch):
    # Given a Lambda client that records the invocations instead of making them
    settings, local = deployed()
    invoked = []

    class FakeLambda:
        def invoke(self, FunctionName, InvocationType, Payload):  # noqa: N803
            invoked.append(json.loads(Payload))
    real = aws.client
    monkeypatch.setattr(aws, "client", lambda service, **kw: FakeLambda() if service == "lambda" else real(service,
                                                                                                        **kw))
    # When the producer Lambda handles a start_run for 3 producers of 10 records
    producer_handler.handler({"action": "start_run", "dataset_id": "run-1", "producers": 3,
                              "records_per_producer": 10}, context)
    # Then it invokes a produce for p1, p2 and p3, and the run is registered expecting 3
    assert [r["producer_id"] for r in invoked] == ["p1", "p2", "p3"] and invoked[0]["action"] == "produce"
    monkeypatch.undo()
    assert Store(local.resources.table).get_state("run-1").producers_expected == 3


def test_dataset_ids_that_do_not_fit_the_rules_are_refused(deployed):
    # Given two rules, orders (the stream's) and clicks
    settings, local = deployed(Settings(pack_records=False, datasets=(
        {"pattern": "orders/{dataset_id}/", "name": "orders"}, {"pattern": "clicks/{dataset_id}/", "name": "clicks"})))
    # When a run starts with an id no rule names
    # Then it is refused
    with pytest.raises(RuleError, match="names no rule"):
        Run.start("2026-11-24", ["a"])
    # And a producer for a clicks id is refused: this stream writes rule 'orders'
    with pytest.raises(RuleError, match="stream writes rule 'orders'"):
        Run.start("clicks~2026-11-24", ["a"]).producer("a")
    # And a producer for an orders id is accepted
    Run.start("orders~2026-11-24", ["a"]).producer("a")


def test_where_the_deployment_is_errors_name_the_thing(moto_env):
    # Given an environment that names no deployment
    # When the deployment is resolved
    # Then the error says no deployment was given
    with pytest.raises(DeploymentNotFound, match="no streamwatch deployment given"):
        Deployment.resolve(environ={})
    # And a stack that does not exist is named as not found
    with pytest.raises(StackNotFound, match="stack 'Nope' not found in us-east-1"):
        Deployment.from_stack("Nope")
    # And a stack that is not ours names the output it lacks
    boto3.client("cloudformation").create_stack(StackName="NotOurs", TemplateBody=json.dumps({
        "Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}))
    with pytest.raises(MissingOutput, match="stack 'NotOurs' has no output 'Table'"):
        Deployment.from_stack("NotOurs")


def test_scan_of_what_the_client_sent_finds_every_envelope(deployed):
    # Given producer p put 10 records for d1
    settings, local = deployed()
    with Run.start("d1", ["p"]).producer("p") as p:
        p.put_many({"i": i} for i in range(10))
    # When the objects Firehose wrote are read back and scanned
    s3 = boto3.client("s3")
    bodies = [s3.get_object(Bucket=local.resources.bucket, Key=o["Key"])["Body"].read()
              for o in s3.list_objects_v2(Bucket=local.resources.bucket, Prefix="raw/")["Contents"]]
    # Then the scan finds p's records 0 to 9
    # moto writes records back to back; the stream the construct creates appends a newline to each
    assert scan([b"".join(b.replace(b"}{", b"}\n{") + b"\n" for b in bodies)]).seqs == {"p": [(0, 9)]}
