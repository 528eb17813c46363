"""Step Functions tasks waiting for a dataset, against moto and task tokens kept as Step Functions keeps them
(local/stepfunctions.py): one accepted answer per token, whatever is delivered twice, registered late, or
crashes half-way; Failed and Stalled fail the task with the reason; a token that is gone is dropped."""

from __future__ import annotations

import json

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from streamwatch.core.settings import Settings
from streamwatch.local.stepfunctions import TaskTokens
from streamwatch.runtime import aws
from tests.conftest import ready_event, sqs_event
from tests.handlers.conftest import T0, land, published, run_observer


class Crash(RuntimeError):
    """The invocation died: here, right after its SendTaskSuccess, before it recorded the answer."""


@pytest.fixture
def waits(moto_env, context, fake_clock, monkeypatch):
    from streamwatch.handlers import waits as handler
    settings, local = moto_env(Settings(mode="stability"))
    monkeypatch.setenv("STREAMWATCH_LEASE_S", "30")
    tokens = TaskTokens()
    aws.reset()
    boto3.setup_default_session()
    tokens.install(boto3.DEFAULT_SESSION.events)
    crash = {"after_send": 0}

    def crashing(model, params, **_):  # on the wire: the UpdateItem that records the answer never happens
        body = params.get("body") or b""
        text = body.decode() if isinstance(body, bytes) else str(body)
        if "answered = :k" in text and crash["after_send"]:
            crash["after_send"] -= 1
            raise Crash("died after answering, before recording it")
    boto3.DEFAULT_SESSION.events.register("before-call.dynamodb.UpdateItem", crashing)

    def invoke(*bodies: dict | str) -> list[str]:
        event = sqs_event([b if isinstance(b, str) else json.dumps(b) for b in bodies])
        try:
            failed = [f["itemIdentifier"] for f in handler.handler(event, context)["batchItemFailures"]]
        except BatchProcessingError:
            failed = [r["messageId"] for r in event["Records"]]
        handler.metrics.clear_metrics()
        return failed

    def ready_of(dataset_id: str) -> dict:
        land(local, context, dataset_id, ["a", "b"], at=T0)
        run_observer(local, context, fake_clock)
        (ready,) = [e for e in published(local) if e["detail-type"] == "Dataset Ready"]
        return ready
    yield invoke, tokens, ready_of, crash, fake_clock
    boto3.setup_default_session()
    aws.reset()


def register(tokens: TaskTokens, dataset_id: str) -> tuple[str, dict]:
    token = tokens.issue(dataset_id)
    return token, {"dataset_id": dataset_id, "task_token": token}


def answers(tokens: TaskTokens, token: str) -> list[str]:
    return [op for op, t in tokens.calls if t == token]


def test_a_waiting_task_gets_one_success_with_the_detail_however_often_the_ready_comes(waits):
    # Given a task registered for d1 (twice: SQS delivers at least once), before anything landed
    invoke, tokens, ready_of, _, _ = waits
    token, message = register(tokens, "d1")
    assert invoke(message, message) == []
    assert answers(tokens, token) == []
    # When d1 is Ready, and its Ready reaches the waits function three times
    ready = ready_of("d1")
    assert invoke(ready, ready) == [] and invoke(ready) == []
    # Then the task got exactly one SendTaskSuccess, the Ready's detail as its output
    assert answers(tokens, token) == ["SendTaskSuccess"]
    task = tokens.tasks[token]
    assert task.status == "succeeded" and task.output["detail_type"] == "Dataset Ready"
    assert task.output["detail"]["dataset_id"] == "d1" and task.output["detail"]["objects"] == 2


def test_a_task_that_registers_after_the_ready_is_answered_at_once(waits):
    # Given d1 Ready already
    invoke, tokens, ready_of, _, _ = waits
    ready_of("d1")
    # When a task registers for it (and its message comes twice)
    token, message = register(tokens, "d1")
    assert invoke(message) == [] and invoke(message) == []
    # Then it is answered at once, once, with the detail the Ready carried
    assert answers(tokens, token) == ["SendTaskSuccess"]
    assert tokens.tasks[token].output["detail"]["event_id"] == "d1:ready"


def test_a_failed_dataset_fails_its_task_with_the_reason(waits):
    # Given a task waiting for d2
    invoke, tokens, _, _, _ = waits
    token, message = register(tokens, "d2")
    invoke(message)
    failed = ready_event("d2", "b", 1, event_id="d2:failed", failure="producer p1 failed: disk full")
    failed["detail-type"] = "Dataset Failed"
    # When d2's Failed arrives
    assert invoke(failed) == []
    # Then the task failed, with streamwatch's error name and the failure as the cause
    task = tokens.tasks[token]
    assert (task.status, task.error, task.cause) == ("failed", "streamwatch.DatasetFailed",
                                                     "producer p1 failed: disk full")


def test_a_crash_between_answering_and_recording_it_still_gives_one_accepted_answer(waits):
    # Given a task waiting for d1, and an invocation that dies right after its SendTaskSuccess
    invoke, tokens, ready_of, crash, fake_clock = waits
    token, message = register(tokens, "d1")
    invoke(message)
    ready = ready_of("d1")
    crash["after_send"] = 1
    # When the Ready is handled (and dies), then delivered again before and after the answerer's lease ran out
    assert invoke(ready) != []
    assert invoke(ready) == []  # the dead answerer's lease still holds: nobody sends
    fake_clock.wall_t += 31
    assert invoke(ready) == []
    # Then Step Functions accepted one answer: the repeat was refused as TaskTimedOut, and dropped
    assert answers(tokens, token) == ["SendTaskSuccess", "SendTaskSuccess"]
    assert tokens.tasks[token].status == "succeeded" and tokens.tasks[token].refused == 1
    assert invoke(ready) == [] and len(answers(tokens, token)) == 2  # marked: nothing more is sent


def test_a_token_that_timed_out_is_dropped_and_counted(waits, capfd):
    # Given a task whose token Step Functions timed out
    invoke, tokens, ready_of, _, _ = waits
    token, message = register(tokens, "d1")
    invoke(message)
    tokens.time_out(token)
    # When its dataset is Ready, and the Ready comes again
    ready = ready_of("d1")
    assert invoke(ready) == [] and invoke(ready) == []
    # Then the token is dropped: counted as gone (the TaskTokensGone metric), nothing sent again, nothing retried
    assert '"TaskTokensGone":[1.0]' in capfd.readouterr().out
    assert tokens.tasks[token].refused == 1 and len(answers(tokens, token)) == 1


def test_overdue_and_amended_answer_nothing_and_bad_messages_are_skipped_alone(waits):
    # Given a task waiting for d3
    invoke, tokens, _, _, _ = waits
    token, message = register(tokens, "d3")
    invoke(message)
    overdue = ready_event("d3", "b", 0, event_id="d3:overdue")
    overdue["detail-type"] = "Dataset Overdue"
    # When an Overdue, a registration with a bad id, one without a token, and a body that is not JSON arrive
    failed = invoke(overdue, {"dataset_id": "bad id!", "task_token": "t"}, {"dataset_id": "d3"}, "{not json", "[1]")
    # Then nothing failed and nothing was answered
    assert failed == [] and answers(tokens, token) == []
