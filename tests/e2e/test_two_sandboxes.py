"""Two local runs in one process: chaos reaches each through its own dependencies (its session's hooks, its event
source), never through a patch of the process, so neither sees the other's names, events, clock or chaos."""

from __future__ import annotations

import os
import time

import pytest

from streamwatch.core import clock, scope
from streamwatch.core.clock import ScaledClock
from streamwatch.core.events import READY
from streamwatch.core.settings import Settings
from streamwatch.local.sandbox import Chaos, Sandbox

pytestmark = pytest.mark.e2e
SETTINGS = Settings(buffer_interval_s=60, alarms=False)


def _ready(sb: Sandbox, dataset_id: str, timeout_s: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        readies = [e for e in sb.events if e["detail-type"] == READY and e["detail"]["dataset_id"] == dataset_id]
        if readies and sb.quiet():
            return readies
        time.sleep(0.2)
    raise AssertionError(f"{sb.name}: no Ready for {dataset_id} in {timeout_s} s")


def test_two_sandboxes_in_one_process_each_count_their_own_and_keep_their_chaos():
    # Given a calm sandbox that exports its names to the process, and a second one with heavy chaos that does not
    env_before = dict(os.environ)
    # crash 0.1: a message failing all 5 of its deliveries is then negligible (at 0.3 it happened 0.24 % of the time)
    chaos = Chaos(throttle=0.2, crash=0.1, publish_failures=0.3, duplicate_notifications=0.5)
    with Sandbox(SETTINGS, speed=60, log=lambda s: None, name="calm") as calm, \
            Sandbox(SETTINGS, speed=120, log=lambda s: None, name="wild", chaos=chaos, export_env=False) as wild:
        # When each runs a dataset of the same id, with different records, each from its own threads
        calm.start_dataset("orders-1", [{"producer_id": "p", "records": 7, "duration_s": 30}])
        wild.start_dataset("orders-1", [{"producer_id": "p", "records": 11, "duration_s": 30}])
        calm_ready, wild_ready = _ready(calm, "orders-1"), _ready(wild, "orders-1")
        # Then each declared its own dataset, exactly, in its own bucket
        assert {e["detail"]["records"] for e in calm_ready} == {7}
        assert {e["detail"]["records"] for e in wild_ready} == {11}
        assert calm_ready[0]["detail"]["bucket"] == "calm-data" and wild_ready[0]["detail"]["bucket"] == "wild-data"
        # And the chaos hit the wild run only: its calls throttled, its invocations crashed, the calm one's none
        assert wild.throttled > 0 and sum(p.stats.crashes for p in wild.pollers) + wild.mid_batch_crashes > 0
        assert calm.throttled == 0 and not any(p.stats.crashes or p.stats.failed_records for p in calm.pollers)
        assert calm.dlq_depths() == {"notifications": 0, "observer": 0} == wild.dlq_depths()
        # And each ran on its own clock; the process's environment holds the exporting sandbox's names only
        assert calm.clock is not wild.clock and calm.clock.speed == 60 and wild.clock.speed == 120
        assert os.environ["STREAMWATCH_RES_BUCKET"] == "calm-data"
    # And when both are gone, the process is as it was: its environment and its clock
    assert dict(os.environ) == env_before
    assert scope.current() is None and not isinstance(clock.get(), ScaledClock)


def test_a_second_sandbox_that_would_share_a_name_or_the_environment_is_refused():
    # Given a running sandbox that exports its names
    with Sandbox(SETTINGS, speed=60, log=lambda s: None, name="first") as first:
        # When a second one takes the same name, or would export too
        with pytest.raises(RuntimeError, match="already running in this process"):
            Sandbox(SETTINGS, log=lambda s: None, name="first").__enter__()
        with pytest.raises(RuntimeError, match="export_env=False"):
            Sandbox(SETTINGS, log=lambda s: None, name="second").__enter__()
        # Then the first one runs on, unharmed: its names and Powertools' settings still in the environment, its
        # bucket there
        assert os.environ["STREAMWATCH_RES_BUCKET"] == "first-data"
        assert os.environ["POWERTOOLS_METRICS_DISABLED"] == "true"
        first.s3.head_bucket(Bucket="first-data")
