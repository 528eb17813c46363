"""The completion policy, pure: the seed's formulas exactly, and the guards as properties."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamwatch.core.policy import Policy, Progress, View, complete_now, decide, effective_mode, seed_delay
from streamwatch.core.simulate import PolicyProbe, Trace, simulate

ROOT = Path(__file__).resolve().parents[2]

policies = st.builds(
    Policy, mode=st.sampled_from(["auto", "stability", "producers", "records"]), max_num_repeat=st.integers(1, 12),
    base_delay_s=st.integers(1, 900), decay=st.sampled_from(["constant", "divide", "exponential"]),
    quiet_s=st.integers(60, 3000), min_objects=st.integers(1, 5), max_observation_s=st.integers(3001, 90_000),
    settle_s=st.integers(0, 2000))


@st.composite
def views(draw):
    started = draw(st.floats(0, 1e6))
    now = started + draw(st.floats(0, 1e5))
    objects = draw(st.integers(0, 50))
    last = draw(st.none() | st.floats(started - 100, now)) if objects else None
    expected = draw(st.none() | st.integers(1, 5))
    done = draw(st.integers(0, 6))
    return View(now=now, objects=objects, started_at=started, last_object_at=last,
                records=draw(st.none() | st.integers(0, 1000)), producers_expected=expected,
                producers_known=expected or 0, producers_done=done, counts_reported=draw(st.booleans()),
                records_sent=draw(st.integers(0, 1000)), records_landed=draw(st.none() | st.booleans()),
                last_done_at=draw(st.floats(started, now)) if done else None,
                backlog_s=draw(st.sampled_from([0.0, 30.0, 10_000.0])))


progresses = st.builds(Progress, repeated=st.integers(0, 20), last_count=st.none() | st.integers(0, 50),
                       reads=st.integers(0, 100))


@pytest.mark.parametrize("r", range(12))
def test_seed_formulas_exactly(r):
    # Given a repeat count (the parameter) and a base delay of 30 s
    # When seed_delay computes the next delay for each decay
    # Then constant is 30, divide 30 / r (30 at first), exponential 30 e^-r rounded up
    assert seed_delay("constant", 30, r) == 30
    assert seed_delay("divide", 30, r) == (30 if r == 0 else int(30 / r))
    assert seed_delay("exponential", 30, r) == math.ceil(30 * math.exp(-r))


@given(st.sampled_from(["constant", "divide", "exponential"]), st.integers(0, 10_000), st.integers(0, 10_000))
def test_seed_delay_stays_within_sqs_limits(decay, base, repeated):
    # Given any decay, base delay and repeat count (hypothesis)
    # When seed_delay computes the delay
    # Then it is within SQS's 0 to 900 s
    assert 0 <= seed_delay(decay, base, repeated) <= 900


@settings(max_examples=400)
@given(policies, progresses, views())
def test_decisions_respect_delays_windows_and_producers(policy, progress, view):
    # Given any policy, progress and view (hypothesis)
    # When the policy decides
    d = decide(policy, progress, view)
    # Then the delay fits SQS's 0 to 900 s, and the mode decided is a concrete one, never auto
    assert 0 <= d.delay_s <= 900
    mode = effective_mode(policy, view)
    assert d.mode == mode and mode != "auto"
    # And a Ready has enough objects, the rule's quiet or every producer done, quiet beyond the backlog, no cap hit
    if d.verdict == "ready":
        assert view.objects >= policy.min_objects or (mode == "records" and view.records_sent == 0)
        if mode == "stability":
            assert view.quiet_for >= policy.quiet_s and d.progress.repeated >= policy.max_num_repeat
        else:  # records and producers never declare before every producer is done
            assert view.all_done
        if d.by_count:  # a count rule never trusts quiet the monitor's backlog could hide
            assert view.now - (view.last_object_at or view.started_at) - view.backlog_s >= min(
                policy.quiet_s, policy.settle_s)
        assert view.now - view.started_at < policy.max_observation_s
    # And past the observation cap it is Stalled, and a nudge to complete now comes only for records all landed
    if view.now - view.started_at >= policy.max_observation_s:
        assert d.verdict == "stalled"
    nudge = complete_now(policy, view)
    if nudge is not None:
        assert mode == "records" and view.all_done and view.records_landed and view.counts_reported


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(0, 5000), min_size=1, max_size=60), st.integers(60, 900),
       st.sampled_from(["constant", "divide", "exponential"]), st.integers(1, 10))
def test_simulated_stability_never_declares_inside_the_quiet_window(times, quiet, decay, n):
    # Given any trace, and any stability policy (hypothesis)
    # (1 to 60 objects, quiet windows of 60 to 900 s, any decay, 1 to 10 repeats)
    policy = Policy(mode="stability", quiet_s=quiet, decay=decay, max_num_repeat=n, max_observation_s=10**6)
    trace = Trace.from_doc(times)
    # When it is replayed through the policy, each object seen 2 s after it lands
    r = simulate(trace, PolicyProbe(policy), event_delay=2.0)
    # Then nothing is declared until the count has been unchanged for the whole quiet window
    last_seen = max(t for t in trace.times if t + 2.0 <= r.declared_at)
    assert r.declared_at - last_seen >= quiet
    # And with few constant repeats, the wait overshoots it by little
    if n <= 3 and decay == "constant":
        assert r.declared_at - last_seen <= quiet + max(30 * n, 0.1 * quiet) + 3


def test_records_mode_declares_right_after_the_last_record_lands():
    # Given a trace of 10 records in two objects, the last at t=400, and producer a done at 100 having sent 10
    trace = Trace.from_doc({"objects": [{"t": 10, "records": 5}, {"t": 400, "records": 5}],
                            "producers": [{"id": "a", "done_at": 100, "records_sent": 10}]})
    # When it is simulated in records mode, counting records
    r = simulate(trace, PolicyProbe(Policy(mode="records")), count_records=True)
    # Then the declaration is right, within 5 s of the last record, after 3 reads or fewer
    assert not r.false_positive and r.latency_s <= 5 and r.reads <= 3


def test_simulate_cli_prints_the_contract_json_last(tmp_path):
    # Given a trace file of objects at 0, 30 and 61.5 s
    trace = tmp_path / "t.json"
    trace.write_text(json.dumps([0, 30, 61.5]))
    # When simulate runs on it with --json (stability, 60 s buffers, 120 s quiet)
    out = subprocess.run([sys.executable, "-m", "streamwatch", "simulate", str(trace), "--mode", "stability",
                          "--buffer-interval", "60", "--min-quiet", "120", "--json"], capture_output=True, text=True,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT / "lambdas"), "PATH": "/usr/bin:/bin"}, check=True)
    # Then its last line is the contract JSON: right, last object at 61.5, declared 120 to 135 s later
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(last) >= {"declared_at", "last_object_at", "latency_s", "false_positive", "ticks", "reads"}
    assert last["false_positive"] is False and last["last_object_at"] == 61.5
    assert 120 <= last["latency_s"] <= 135


def test_simulate_reports_stalled_when_the_cap_is_hit(tmp_path):
    # Given a trace whose producer is done only after a million seconds
    trace = tmp_path / "t.json"
    trace.write_text(json.dumps({"objects": [0], "producers": [{"id": "p", "done_at": 10 ** 6}]}))
    # When simulate runs on it in producers mode with a 3,600 s cap
    out = subprocess.run([sys.executable, "-m", "streamwatch", "simulate", str(trace), "--mode", "producers",
                          "--max-observation", "3600", "--json"], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT / "lambdas"), "PATH": "/usr/bin:/bin"}, check=True)
    # Then its JSON says stalled, never declared
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert last["stalled"] is True and last["declared_at"] is None


@pytest.mark.parametrize("view, mode", [
    (View(now=10, objects=1, started_at=0), "stability"),
    (View(now=10, objects=1, started_at=0, window_start=0, window_end=5), "window"),
    (View(now=10, objects=1, started_at=0, producers_expected=2, producers_known=2), "records"),
    (View(now=10, objects=1, started_at=0, producers_expected=2, producers_known=2, producers_done=1,
          counts_reported=False), "producers"),
])
def test_auto_picks_the_rule_per_dataset_from_what_is_known(view, mode):
    # Given what is known of a dataset (the parameter)
    # When auto mode picks its rule
    # Then it is the parameter's mode
    assert effective_mode(Policy(mode="auto"), view) == mode


def test_a_failure_ends_the_dataset_at_once_in_every_mode():
    # Given a producer's failure, in each mode
    for mode in ("auto", "stability", "producers", "records"):
        view = View(now=10, objects=0, started_at=0, failure="producer a failed: boom")
        # When the policy decides
        # Then the verdict is failed, and complete_now gives the failure as its reason
        assert decide(Policy(mode=mode), Progress(), view).verdict == "failed"
        assert complete_now(Policy(mode=mode), view).reason == "producer a failed: boom"


def test_records_with_duplicates_wait_for_every_range():
    # Given issue 15's trace: p0's records land 1.5 times and p1's last 500 land at t=400
    doc = {"objects": [{"t": 60, "seqs": {"p0": [[0, 499]]}}, {"t": 65, "seqs": {"p1": [[0, 499]]}},
                       {"t": 120, "seqs": {"p0": [[500, 999]]}}, {"t": 125, "seqs": {"p0": [[0, 499]]}},
                       {"t": 400, "seqs": {"p1": [[500, 999]]}}],
           "producers": [{"id": "p0", "done_at": 100, "records_sent": 1000},
                         {"id": "p1", "done_at": 110, "records_sent": 1000}]}
    # When it is simulated in records mode
    r = simulate(Trace.from_doc(doc), PolicyProbe(Policy(mode="records")))
    # Then it is declared no sooner than t=400, within 5 s, and right
    assert not r.false_positive and r.declared_at >= 400 and r.latency_s <= 5


def test_a_backlog_in_the_monitor_holds_a_count_declaration():
    # Given a count unchanged for 900 s, against a 510 s quiet window
    quiet = View(now=1000, objects=3, started_at=0, last_object_at=100)
    # When the stability policy decides, with no backlog
    ready = decide(Policy(mode="stability", quiet_s=510), Progress(repeated=5, last_count=3), quiet)
    # Then it declares by count
    assert ready.verdict == "ready" and ready.by_count
    # And with a monitor backlog of 600 s it waits
    from dataclasses import replace
    held = decide(Policy(mode="stability", quiet_s=510), Progress(repeated=5, last_count=3),
                  replace(quiet, backlog_s=600))
    assert held.verdict == "wait"


def test_window_closes_after_its_grace_with_a_steady_count():
    # Given an hourly window with a 300 s grace, and 4 objects counted
    policy = Policy(mode="window", grace_s=300, base_delay_s=30, max_num_repeat=3)
    view = View(now=3600 + 250, objects=4, started_at=100, last_object_at=3650, window_start=0, window_end=3600)
    # When the policy decides 250 s after the window's end
    # Then it waits
    assert decide(policy, Progress(repeated=5, last_count=4), view).verdict == "wait"  # before end + grace
    # And at its end plus the grace it declares if the count is steady, and waits while it still changes
    done = replace_view(view, now=3600 + 300)
    assert decide(policy, Progress(repeated=2, last_count=4), done).verdict == "ready"
    assert decide(policy, Progress(repeated=0, last_count=3), done).verdict == "wait"  # still changing
    # And an empty window waits, unless empty windows are emitted
    empty = View(now=3600 + 300, objects=0, started_at=3600, window_start=0, window_end=3600)
    assert decide(policy, Progress(repeated=2, last_count=0), empty).verdict == "wait"
    assert decide(Policy(mode="window", grace_s=300, emit_empty=True), Progress(repeated=2, last_count=0),
                  empty).verdict == "ready"


def test_the_chain_wakes_up_for_a_deadline():
    # Given a dataset due at t=160, observed at t=100, with a 300 s base delay
    view = View(now=100, objects=1, started_at=0, last_object_at=50, deadline_at=160)
    # When the policy decides
    # Then the chain wakes up in 60 s, at the deadline
    assert decide(Policy(mode="stability", base_delay_s=300), Progress(), view).delay_s == 60


def replace_view(view: View, **changes) -> View:
    from dataclasses import replace
    return replace(view, **changes)
