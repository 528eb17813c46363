"""The local run end to end: real handlers, moto server on 127.0.0.1, chaos on; exact, one Ready each."""

from __future__ import annotations

import pytest

from streamwatch.core.settings import Settings
from streamwatch.local.demo import SMALL_SCENARIO, run_demo
from streamwatch.local.sandbox import Chaos

pytestmark = pytest.mark.e2e
# The demo's --chaos rates (one definition). Crashes at 5 % per invocation: a message fails its 5 deliveries
# (-> DLQ, as designed) with probability 0.05^5 = 3e-7, so a run that ends with something in a DLQ means a bug,
# not bad luck (summary["dlq_traces"] says what each delivery of such a message ended as).
CHAOS = Chaos.everything()


@pytest.mark.parametrize("mode, notifications", [("auto", "s3"), ("stability", "eventbridge")])
def test_chaos_run_ends_exact_with_one_ready_per_dataset(mode, notifications):
    # Given every notification and observer message duplicated often, partial PutRecordBatch failures, throttled
    # DynamoDB calls, invocations that die, PutEvents lost after declarations, buffers Firehose writes twice, and
    # producers retried after sending a third of their records, and another writer of the bucket dropping forged
    # error output, error records naming ids no key holds and objects whose line never ends
    settings = Settings(mode=mode, buffer_interval_s=60, monitor_batch_size=20, monitor_batch_window_s=1)
    # When the small scenario runs (two datasets, one with a slow producer)
    summary = run_demo(settings, scenario=SMALL_SCENARIO, speed=60, chaos=CHAOS, timeout_s=45, log=lambda s: None,
                       notifications=notifications, live=False)
    # Then every count is exact, each dataset has exactly one Ready, declared only after every record landed
    assert summary["ok"], ([(d["dataset_id"], d["problems"]) for d in summary["datasets"]], summary["dlq"],
                           summary["producer_errors"])
    for d in summary["datasets"]:
        assert d["ready"] == 1 and d["stalled"] == 0 and d["failed"] == 0
        # by records a Firehose copy may land after, as Amended; by stability only after a real quiet gap longer
        # than the rule's window (the summary checks the landings: a slow emulator makes such gaps too)
        assert d["amended"] == 0 or mode == "auto" or d["amended_after_gap"]
        assert d["objects_landed"] == d["objects_counted"] >= 1
        assert d["records_sent"] == d["records_persisted"] > 0
        assert d["latency_s"] >= (0 if mode == "auto" else settings.quiet_s)  # never before the last object
        assert d["record_lines"] > d["records_persisted"]  # records landed twice (retried producers, Firehose)
        if mode == "auto":  # registered runs: declared by records, each record counted once
            assert d["records_counted"] == d["records_persisted"]
    assert summary["dlq"] == {"notifications": 0, "observer": 0}
    assert summary["put_retries"] > 0 and summary["resent_records"] > 0
    assert summary["hostile_objects"] > 0  # and none of them changed a count, failed a dataset or made a Ready
    pollers = summary["pollers"].values()
    assert sum(p["duplicates_sent"] for p in pollers) > 0
    assert sum(p["crashes"] for p in pollers) + summary["mid_batch_crashes"] > 0


def test_a_producer_that_fails_ends_its_dataset_with_one_failed_and_no_ready():
    # Given beta's producer code raising, with observer messages duplicated and PutEvents lost after declarations
    settings = Settings(buffer_interval_s=60, monitor_batch_size=20, monitor_batch_window_s=1)
    # When the small scenario runs
    summary = run_demo(settings, scenario=SMALL_SCENARIO, speed=60, timeout_s=45, log=lambda s: None,
                       fail=("beta",), chaos=Chaos(duplicate_observer=0.6, publish_failures=0.3), live=False)
    # Then beta ends with one Failed and no Ready, and alpha with one Ready
    assert summary["ok"], summary
    by = {d["dataset_id"]: d for d in summary["datasets"]}
    assert (by["beta"]["failed"], by["beta"]["ready"]) == (1, 0)
    assert (by["alpha"]["failed"], by["alpha"]["ready"]) == (0, 1)


def test_windows_scenario_one_ready_per_hour_the_empty_one_included():
    # Given an hourly rule, its third hour left empty, and observer messages duplicated
    # When the windows scenario runs
    summary = run_demo(Settings(buffer_interval_s=300), scenario=SMALL_SCENARIO, windows=True, timeout_s=90,
                       log=lambda s: None, live=False, chaos=Chaos(duplicate_observer=0.5))
    # Then each of the three hours has exactly one Ready, the empty one included, and none is amended
    assert summary["ok"], summary
    hourly = [d for d in summary["datasets"] if d["dataset_id"].startswith("hourly~")]
    assert len(hourly) == 3 and all(d["ready"] == 1 and d["amended"] == 0 for d in hourly)
    assert [d["objects_landed"] for d in hourly][-1] == 0 and all(d["objects_landed"] > 0 for d in hourly[:2])
