"""The commands for producers and operators, run in-process inside a local run (the sandbox routes the client's
PutRecordBatch to its Firehose emulation): run start/done/fail, put, status, dlq."""

from __future__ import annotations

import io
import json
import time

import boto3
import pytest

from streamwatch.cli import main
from streamwatch.core.settings import Settings
from streamwatch.local.sandbox import Sandbox
from streamwatch.runtime.ticks import Tick

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sandbox():
    settings = Settings(buffer_interval_s=60, monitor_batch_size=20, monitor_batch_window_s=1, alarms=False)
    with Sandbox(settings, speed=120, log=lambda s: None) as sb:
        yield sb


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def wait_for(sb: Sandbox, dataset: str, detail_type: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in list(sb.events):
            if event["detail"]["dataset_id"] == dataset and event["detail-type"] == detail_type:
                return event["detail"]
        time.sleep(0.2)
    raise AssertionError(f"no {detail_type} for {dataset}: {[e['detail-type'] for e in sb.events]}")


def test_a_shell_pipeline_start_put_done_ends_in_one_ready(sandbox, tmp_path, capsys):
    # Given 1,000 JSON rows in a file for producer a
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"order": i, "amount": i * 1.5}) + "\n" for i in range(1000)))
    # When a run starts for producers a and b, a puts the rows and b reports done with no records
    assert main(["run", "start", "orders-1", "--producers", "a,b"]) == 0
    assert main(["put", "orders-1", "--producer", "a", str(rows), "--json"]) == 0
    report = last_json(capsys)
    assert report["records_sent"] == 1000 and report["reported"] == "done" and report["failed_count"] == 0
    assert main(["run", "done", "orders-1", "--producer", "b", "--records", "0"]) == 0
    # Then one Dataset Ready arrives with all 1,000 records, in records mode
    ready = wait_for(sandbox, "orders-1", "Dataset Ready")
    assert ready["records"] == 1000 and ready["mode"] == "records"
    # status: the table, and the dataset in detail
    assert main(["status", "--json"]) == 0
    listed = {d["dataset_id"]: d for d in last_json(capsys)["datasets"]}
    assert listed["orders-1"]["status"] == "READY" and listed["orders-1"]["producers"] == "2/2"
    assert main(["status", "orders-1", "--json"]) == 0
    detail = last_json(capsys)
    assert {p["producer_id"]: p["records_persisted"] for p in detail["producers"]} == {"a": 1000, "b": 0}
    assert detail["events"]["sent"] == ["ready"]
    assert main(["status", "--status", "FAILED", "--json"]) == 0
    assert "orders-1" not in {d["dataset_id"] for d in last_json(capsys)["datasets"]}


def test_a_malformed_line_on_stdin_stops_and_fails_the_run(sandbox, monkeypatch, capsys):
    # Given six lines on stdin, the sixth not JSON
    lines = "".join(json.dumps({"i": i}) + "\n" for i in range(5)) + "{oops\n" + json.dumps({"i": 9}) + "\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    # When they are piped into put (it exits 2)
    assert main(["put", "piped-1", "--producer", "p"]) == 2
    # Then stderr names line 6, and the dataset fails with that line in its failure
    assert "stdin line 6: not JSON" in capsys.readouterr().err
    failed = wait_for(sandbox, "piped-1", "Dataset Failed")
    assert "stdin line 6" in failed["failure"]


def test_run_fail_ends_the_dataset_with_one_failed(sandbox):
    # Given a run nightly-1 started for producer spark
    assert main(["run", "start", "nightly-1", "--producers", "spark"]) == 0
    # When spark reports failed, and again as a retry
    assert main(["run", "fail", "nightly-1", "--producer", "spark", "--error", "executor lost"]) == 0
    assert main(["run", "fail", "nightly-1", "--producer", "spark", "--error", "executor lost"]) == 0  # a retry
    # Then one Dataset Failed names the producer and its error, and no second event follows
    detail = wait_for(sandbox, "nightly-1", "Dataset Failed")
    assert detail["failure"] == "producer spark failed: executor lost"
    time.sleep(1)
    assert [e["detail-type"] for e in sandbox.events if e["detail"]["dataset_id"] == "nightly-1"] == [
        "Dataset Failed"]


def test_dlq_shows_what_is_there_and_redrives_it(sandbox, capsys):
    # Given one tick for ghost-1 in the observer's DLQ
    sqs = boto3.client("sqs")
    dlq = sandbox.local.observer_dlq_url
    sqs.send_message(QueueUrl=dlq, MessageBody=Tick("ghost-1", 3).encode())
    # When dlq lists the DLQs
    assert main(["dlq", "--json"]) == 0
    # Then the observer's shows that message with a sample naming ghost-1, the notifications' none
    report = last_json(capsys)["dlqs"]
    assert report["observer"]["messages"] == 1 and report["observer"]["sample"][0]["dataset"] == "ghost-1"
    assert report["notifications"]["messages"] == 0
    # When the DLQs are redriven
    assert main(["dlq", "--redrive", "--json"]) == 0
    # Then the message is reported moved back and the observer's DLQ is empty
    assert "moved 1 message(s) back" in last_json(capsys)["dlqs"]["observer"]["redrive"]
    attrs = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"

