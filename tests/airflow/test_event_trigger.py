"""StreamwatchEventTrigger, the AssetWatcher trigger, over an SQS queue fed by an EventBridge rule on the local
run's bus (as `Streamwatch.on_event(SqsQueue(q))` wires it in the stack)."""

from __future__ import annotations

import asyncio
import json
import time

import boto3
import pytest
from airflow.sdk import Asset, AssetWatcher

from streamwatch.airflow.triggers import StreamwatchEventTrigger
from streamwatch.core.events import DETAIL_TYPES, READY, SOURCE
from streamwatch.core.settings import Settings
from streamwatch.local.sandbox import Sandbox
from tests.airflow.conftest import import_string


def watched_queue(sb: Sandbox, name: str, **attributes: str) -> str:
    sqs, events = boto3.client("sqs"), boto3.client("events")
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=name, EventBusName=sb.resources.event_bus,
                    EventPattern=json.dumps({"source": [SOURCE], "detail-type": list(DETAIL_TYPES)}))
    events.put_targets(Rule=name, EventBusName=sb.resources.event_bus, Targets=[{"Id": "q", "Arn": arn}])
    return url


def drain(url: str) -> list[str]:
    sqs, bodies = boto3.client("sqs"), []
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
        for m in got:
            bodies.append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return bodies


def ready_bodies(sb: Sandbox, url: str, *dataset_ids: str) -> list[str]:
    """The Ready events of these datasets, as EventBridge delivered them to the queue (taken off it)."""
    for dataset_id in dataset_ids:
        sb.start_dataset(dataset_id, [{"producer_id": "p0", "records": 100, "start_s": 0, "duration_s": 5}])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(e["detail-type"] == READY and e["detail"]["dataset_id"] in dataset_ids
                                              for e in sb.events) < len(dataset_ids):
        time.sleep(0.2)
    time.sleep(1)
    bodies = [b for b in drain(url) if json.loads(b)["detail-type"] == READY]
    assert sorted(json.loads(b)["detail"]["dataset_id"] for b in bodies) == sorted(dataset_ids)
    return bodies


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(Settings(buffer_interval_s=60, alarms=False), speed=60, log=lambda s: None) as sb:
        yield sb


async def collect(trigger: StreamwatchEventTrigger, idle_s: float) -> list:
    """Run the trigger as the triggerer does, until the queue has been quiet for `idle_s`."""
    events, last = [], time.monotonic()
    runner = trigger.run().__aiter__()
    while time.monotonic() - last < idle_s:
        try:
            event = await asyncio.wait_for(runner.__anext__(), idle_s)
        except TimeoutError:
            break
        events.append(event.payload)
        last = time.monotonic()
    await runner.aclose()
    return events


def test_one_asset_event_per_ready_none_for_repeats_and_bad_messages_skipped(sandbox, caplog, capfd):
    # Given two Readys on the watcher's queue, each message sent twice, and beside them a malformed body, an event
    # that is not streamwatch's, a detail that breaks the schema and another detail type
    url = watched_queue(sandbox, "airflow-ready")
    bodies = ready_bodies(sandbox, url, "alpha", "beta")
    first = json.loads(bodies[0])
    amended = {**first, "detail-type": "Dataset Amended",
               "detail": {**first["detail"], "event_id": f"{first['detail']['dataset_id']}:amended:9"}}
    sqs = boto3.client("sqs")
    for body in [*bodies, *bodies, "{not json", json.dumps({"source": "aws.s3", "detail": {}}),
                 json.dumps({"source": SOURCE, "detail-type": READY, "detail": {"event_id": 1}}),
                 json.dumps(amended)]:
        sqs.send_message(QueueUrl=url, MessageBody=body)
    trigger = StreamwatchEventTrigger(queue_url=url, aws_conn_id=None, wait_time_seconds=1)
    classpath, kwargs = trigger.serialize()
    trigger = import_string(classpath)(**kwargs)
    # When it runs, re-created from its serialized form as the triggerer does
    events = asyncio.run(collect(trigger, idle_s=3))
    # Then one asset event per Ready, its payload the event's detail as it came; the rest skipped by reason
    assert sorted(e["event_id"] for e in events) == ["alpha:ready", "beta:ready"]
    by_id = {json.loads(b)["detail"]["event_id"]: json.loads(b)["detail"] for b in bodies}
    assert all(e == by_id[e["event_id"]] for e in events)
    assert trigger.skipped == {"malformed": 2, "foreign": 1, "filtered": 1}
    logged = caplog.text + "".join(capfd.readouterr())  # Airflow's trigger logger may be structlog's, on stdout
    assert logged.count("streamwatch: skipped a malformed message") == 2
    # And the queue is empty: every message was deleted once handled
    time.sleep(0.5)
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]) == ("0", "0")


def test_a_message_is_deleted_only_after_its_event_was_handed_over(sandbox):
    # Given one Ready on the watcher's queue, whose visibility timeout is 1 s
    url = watched_queue(sandbox, "airflow-handoff", VisibilityTimeout="1")
    body = ready_bodies(sandbox, url, "gamma")[0]
    boto3.client("sqs").send_message(QueueUrl=url, MessageBody=body)
    trigger = StreamwatchEventTrigger(queue_url=url, aws_conn_id=None, wait_time_seconds=1)

    async def handed_over_then_dead():
        runner = trigger.run().__aiter__()
        event = await runner.__anext__()  # handed to Airflow; the triggerer dies before resuming the trigger
        return event.payload
    # When the trigger yields the event and is never resumed (a triggerer that died)
    assert asyncio.run(handed_over_then_dead())["event_id"] == "gamma:ready"
    # Then the message is still on the queue, and is delivered again after its visibility timeout
    time.sleep(1.5)
    assert [json.loads(b)["detail"]["event_id"] for b in drain(url)] == ["gamma:ready"]


def test_the_trigger_serves_an_asset_watcher_and_rejects_an_unknown_detail_type():
    # Given the watcher trigger with filters
    trigger = StreamwatchEventTrigger(queue_url="https://sqs.us-east-1.amazonaws.com/0/q", rules=["hourly"],
                                      dataset_pattern="hourly~2026-*", detail_types=[READY, "Dataset Amended"])
    # When an asset is defined with it
    asset = Asset("hourly_ready", uri="streamwatch://hourly", watchers=[AssetWatcher(name="w", trigger=trigger)])
    # Then Airflow accepts it as an event trigger, and its serialized form keeps every filter
    assert asset.watchers[0].trigger is trigger
    kwargs = trigger.serialize()[1]
    assert kwargs["rules"] == ["hourly"] and kwargs["dataset_pattern"] == "hourly~2026-*"
    # And an unknown detail type is refused when the DAG is parsed
    with pytest.raises(ValueError, match="unknown detail type 'Dataset Done'"):
        StreamwatchEventTrigger(queue_url="q", detail_types=["Dataset Done"])
