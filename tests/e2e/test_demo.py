"""The local run end to end: real handlers, moto server on 127.0.0.1, chaos on; exact, one Ready each."""

from __future__ import annotations

import pytest

from streamwatch.local.demo import SMALL_SCENARIO, run_demo
from streamwatch.local.sandbox import Chaos
from streamwatch.settings import Settings

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("mode", ["stability", "records"])
def test_chaos_run_ends_exact_with_one_ready_per_dataset(mode):
    # Given every notification and observer message duplicated often, partial PutRecordBatch failures,
    # throttled DynamoDB calls, invocations that die after their work, and PutEvents lost after declarations
    chaos = Chaos(duplicate_notifications=0.7, duplicate_observer=0.6, put_failures=0.25, throttle=0.03,
                  crash=0.2, publish_failures=0.35)
    settings = Settings(mode=mode, buffer_interval_s=60, monitor_batch_size=20, monitor_batch_window_s=1)
    # When the small scenario runs (two datasets, one with a slow producer)
    summary = run_demo(settings, scenario=SMALL_SCENARIO, speed=60, chaos=chaos, timeout_s=40, log=lambda s: None)
    # Then every count is exact, each dataset has exactly one Ready, nothing ended in a DLQ
    assert summary["ok"], summary
    for d in summary["datasets"]:
        assert d["ready"] == 1 and d["stalled"] == 0 and d["amended"] == 0
        assert d["objects_landed"] == d["objects_counted"] >= 2
        assert d["records_sent"] == d["records_persisted"] > 0
        assert d["latency_s"] >= (0 if mode == "records" else settings.quiet_s)  # never before the last object
        if mode == "records":
            assert d["records_counted"] == d["records_persisted"]
    assert summary["dlq"] == {"notifications": 0, "observer": 0}
    assert summary["put_retries"] > 0
    pollers = summary["pollers"].values()
    assert sum(p["duplicates_sent"] for p in pollers) > 0
    assert sum(p["crashes"] for p in pollers) + summary["mid_batch_crashes"] > 0
