"""Step Functions tasks waiting for datasets in the local run, under chaos: every task gets exactly one answer
(success with the Ready's detail, or failure with the reason), whether it registered before or after the
declaration, with messages delivered twice and invocations crashing."""

from __future__ import annotations

import time

import pytest

from streamwatch.core.events import FAILED, READY
from streamwatch.core.settings import Settings
from streamwatch.local.sandbox import Chaos, Sandbox

pytestmark = pytest.mark.e2e


def until(check, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_every_waiting_task_gets_one_answer_under_chaos():
    # Given a chaotic local run: observer and waits messages delivered twice, invocations crashing, throttles
    chaos = Chaos(duplicate_observer=0.6, duplicate_notifications=0.5, crash=0.1, throttle=0.03)
    with Sandbox(Settings(buffer_interval_s=60, alarms=False), speed=60, chaos=chaos, log=lambda s: None,
                 name="waits") as sb:
        # When tasks register for a dataset before it starts, one for a dataset whose producer fails, and the
        # datasets run
        early = [sb.start_wait("orders-1") for _ in range(3)]
        failing = sb.start_wait("broken-1")
        sb.start_dataset("orders-1", [{"producer_id": "p", "records": 20, "duration_s": 30}])
        sb.start_dataset("broken-1", [{"producer_id": "p", "records": 20, "duration_s": 30, "fail_after": 5}])
        until(lambda: {(e["detail-type"], e["detail"]["dataset_id"]) for e in sb.events}
              >= {(READY, "orders-1"), (FAILED, "broken-1")})
        # And another task registers after orders-1 is Ready
        late = sb.start_wait("orders-1")
        until(lambda: all(sb.tokens.tasks[t].status != "waiting" for t in [*early, failing, late]) and sb.quiet())
        calls = list(sb.tokens.calls)
        dlq = sb.dlq_depths()
        waits = next(p for p in sb.pollers if p.name == "waits")
    # Then each orders-1 task succeeded once, with the Ready's detail (all 20 records)
    for token in [*early, late]:
        task = sb.tokens.tasks[token]
        assert task.status == "succeeded" and task.output["detail"]["records"] == 20
        assert [op for op, t in calls if t == token] == ["SendTaskSuccess"] * (1 + task.refused)
    # And the broken-1 task failed once, with the producer's failure as the cause
    task = sb.tokens.tasks[failing]
    assert task.status == "failed" and task.error == "streamwatch.DatasetFailed" and "p" in task.cause
    assert [op for op, t in calls if t == failing] == ["SendTaskFailure"] * (1 + task.refused)
    # And an answer was sent again (and refused by Step Functions) only by an invocation that died between its
    # send and its record of it (past its timeout); nothing is left in a DLQ
    assert sum(t.refused for t in sb.tokens.tasks.values()) <= waits.stats.timeouts
    assert not any(dlq.values())
