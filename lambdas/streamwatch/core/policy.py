"""When is a dataset complete, and how long until the next look. Pure: no AWS, no clock of its own.

The observer Lambda and `streamwatch simulate` both call `decide` (a scheduled read of the counter) and
`complete_now` (a nudge: the monitor or a producer says completion may just have become true). Times are
seconds on any origin (epoch seconds in the Lambda, trace seconds in the simulator).

Modes (a rule's `mode`; `auto` picks one per dataset from what is known about it, at every read):
- stability: the seed's rule, MAX_NUM_REPEAT consecutive reads with an unchanged count, plus guards the seed
  lacked: a minimum quiet window since the last object landed (the decaying probe delay only shortens the
  probes, never the window), min objects, and a hard cap (-> stalled).
- producers: every producer reported done, then nothing landed for `settle_s` (Firehose may deliver a
  partition's last buffer ~1.5x the buffer interval after the last put).
- records: every producer done and every record it sent persisted (each producer's sequence numbers cover
  `[0, records_sent)`, duplicates counted once) -> complete at once. If the records never add up (data lost),
  fall back to the stability rule over quiet_s + settle_s and say so.
- window: a time window is closed once it ended `grace_s` ago (Firehose stamps prefixes with the arrival time
  of a buffer's oldest record) and its count held for max_num_repeat reads.
- auto: records when the run registered producers that report record counts, producers when they report done
  without counts, stability (window for a time-window rule) when nobody registered the dataset.
A producer's failure ends the dataset at once (`failed`), whatever the mode. Count-based rules never declare
while the monitor's backlog could hide a landing: the quiet time they see is reduced by the backlog's age.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from streamwatch.core.settings import SQS_MAX_DELAY_S

Verdict = Literal["wait", "ready", "stalled", "failed"]
RESOLVED_MODES = ("stability", "producers", "records", "window")


@dataclass(frozen=True)
class Policy:
    mode: str = "auto"
    max_num_repeat: int = 3
    base_delay_s: int = 30
    decay: str = "constant"
    quiet_s: float = 510
    min_objects: int = 1
    max_observation_s: float = 21_600
    settle_s: float = 480
    grace_s: float = 510
    emit_empty: bool = False
    rule: str = "default"

    @classmethod
    def from_settings(cls, settings, rule=None) -> Policy:
        """The policy of one dataset rule: the settings with the rule's overrides."""
        s = settings.for_rule(rule) if rule is not None else settings
        return cls(mode=s.mode, max_num_repeat=s.max_num_repeat, base_delay_s=s.base_delay_s, decay=s.decay,
                   quiet_s=s.quiet_s, min_objects=s.min_objects, max_observation_s=s.max_observation_s,
                   settle_s=s.producers_settle_s, grace_s=s.window_grace_s, emit_empty=s.emit_empty,
                   rule=rule.name if rule is not None else "default")

    def describe(self) -> dict:
        """What goes into the event detail, so a consumer knows which rule declared its dataset."""
        return {"mode": self.mode, "rule": self.rule, "max_num_repeat": self.max_num_repeat,
                "base_delay_s": self.base_delay_s, "decay": self.decay, "quiet_s": self.quiet_s,
                "min_objects": self.min_objects, "max_observation_s": self.max_observation_s,
                "settle_s": self.settle_s, "grace_s": self.grace_s, "emit_empty": self.emit_empty}


@dataclass(frozen=True)
class View:
    """One read of a dataset's state."""

    now: float
    objects: int
    started_at: float  # when observation started (first object counted, or the run registered)
    last_object_at: float | None = None
    records: int | None = None  # records persisted (distinct), None when not counted
    producers_expected: int | None = None  # None: nobody registered the dataset
    producers_known: int = 0  # expected ones, plus unregistered producers that reported
    producers_done: int = 0
    counts_reported: bool = True  # every done-report carried records_sent
    records_sent: int = 0
    records_landed: bool | None = None  # every done producer's records are persisted (None: not counted)
    last_done_at: float | None = None
    failure: str | None = None  # a producer failed, or records went to Firehose's error output
    window_start: float | None = None
    window_end: float | None = None
    deadline_at: float | None = None
    overdue: bool = False  # the Overdue event was already claimed
    backlog_s: float = 0.0  # age of the oldest object event the monitor has not counted yet

    @property
    def registered(self) -> bool:
        return bool(self.producers_expected)

    @property
    def all_done(self) -> bool:
        return self.registered and self.producers_done >= max(self.producers_known, self.producers_expected or 0)

    @property
    def quiet_for(self) -> float:
        """How long nothing landed, as far as we can know: less the monitor's backlog."""
        last = self.last_object_at if self.last_object_at is not None else self.started_at
        return self.now - last - self.backlog_s


@dataclass(frozen=True)
class Progress:
    """What the observer chain carries from one read to the next (stored on the dataset's state item)."""

    repeated: int = 0
    last_count: int | None = None
    reads: int = 0


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    delay_s: int
    progress: Progress
    reason: str
    fallback: bool = False  # records mode declared by the stability rule because records never added up
    mode: str = ""  # the rule that decided (auto resolved)
    by_count: bool = False  # declared by a count rule: the observer confirms the monitor has no backlog first


def seed_delay(decay: str, base_delay_s: int, repeated: int) -> int:
    """The seed's three schedules, exactly, clamped to what SQS DelaySeconds accepts (0..900)."""
    if decay == "constant":
        delay = base_delay_s
    elif decay == "divide":
        delay = base_delay_s if repeated == 0 else int(base_delay_s / repeated)
    elif decay == "exponential":
        delay = math.ceil(base_delay_s * math.exp(-repeated))
    else:
        raise ValueError(f"unknown decay {decay!r}")
    return max(0, min(SQS_MAX_DELAY_S, delay))


def effective_mode(policy: Policy, view: View) -> str:
    if policy.mode != "auto":
        return policy.mode
    if not view.registered:
        return "window" if view.window_end is not None else "stability"
    return "records" if view.counts_reported else "producers"


def records_complete(view: View) -> bool:
    return view.all_done and view.counts_reported and bool(view.records_landed)


def complete_now(policy: Policy, view: View) -> Decision | None:
    """A nudge: a failure, or the records rule holding, declares at once. Leaves the chain's progress alone."""
    mode = effective_mode(policy, view)
    if view.failure:
        return Decision("failed", 0, Progress(), view.failure, mode=mode)
    if mode == "records" and records_complete(view) and (view.objects >= policy.min_objects
                                                         or view.records_sent == 0):
        return Decision("ready", 0, Progress(), "every producer done and all records persisted", mode=mode)
    return None


def decide(policy: Policy, progress: Progress, view: View) -> Decision:
    """A scheduled read: update the stability streak, then declare, stall, fail, or say when to look again."""
    repeated = progress.repeated + 1 if view.objects == progress.last_count else 0
    after = Progress(repeated=repeated, last_count=view.objects, reads=progress.reads + 1)
    mode = effective_mode(policy, view)
    if view.failure:
        return Decision("failed", 0, after, view.failure, mode=mode)
    if view.now - view.started_at >= policy.max_observation_s:
        return Decision("stalled", 0, after, f"hard cap of {policy.max_observation_s:g} s reached", mode=mode)
    decision = _RULES[mode](policy, after, view)
    decision = replace(decision, mode=mode)
    if decision.verdict == "wait" and view.deadline_at is not None and not view.overdue:
        # wake up at the deadline, so its Overdue is not late by a whole probe delay
        decision = replace(decision, delay_s=min(decision.delay_s, _clamp(view.deadline_at - view.now)))
    return decision


def _stability(policy: Policy, p: Progress, view: View) -> Decision:
    enough = view.objects >= policy.min_objects
    if enough and p.repeated >= policy.max_num_repeat and view.quiet_for >= policy.quiet_s:
        return Decision("ready", 0, p, f"count unchanged for {p.repeated} reads and {view.quiet_for:g} s",
                        by_count=True)
    return Decision("wait", _stability_delay(policy, p.repeated, policy.quiet_s - view.quiet_for), p,
                    "count still settling")


def _producers(policy: Policy, p: Progress, view: View) -> Decision:
    if not view.all_done:
        return Decision("wait", seed_delay(policy.decay, policy.base_delay_s, p.repeated), p,
                        "producers still sending")
    since = _since_done_and_landed(view)
    if view.objects >= policy.min_objects and p.repeated >= 1 and since >= policy.settle_s:
        return Decision("ready", 0, p, f"producers done and nothing landed for {since:g} s", by_count=True)
    remaining = policy.settle_s - since
    return Decision("wait", _clamp(remaining if p.repeated >= 1 else min(remaining, policy.base_delay_s)), p,
                    "producers done, settling")


def _records(policy: Policy, p: Progress, view: View) -> Decision:
    if records_complete(view) and (view.objects >= policy.min_objects or view.records_sent == 0):
        return Decision("ready", 0, p, "every producer done and all records persisted")
    if view.all_done:
        # Records short of what was sent: data lost? Only after both windows passed since the later of the
        # last landing and the last done-report (the rest may still sit in Firehose's buffer), fall back to
        # the stability rule and say so.
        window = policy.quiet_s + policy.settle_s
        since = _since_done_and_landed(view)
        if view.objects >= policy.min_objects and p.repeated >= policy.max_num_repeat and since >= window:
            return Decision("ready", 0, p, f"records never added up ({view.records} of {view.records_sent}); "
                            f"nothing landed for {since:g} s", fallback=True, by_count=True)
        return Decision("wait", _stability_delay(policy, p.repeated, window - since), p,
                        "producers done, records still landing")
    # Completion arrives as a nudge from the monitor or the last producer; until then the chain only guards the
    # hard cap (and the deadline), so it looks rarely.
    return Decision("wait", _clamp(max(policy.base_delay_s, policy.quiet_s)), p, "producers still sending")


def _window(policy: Policy, p: Progress, view: View) -> Decision:
    closes = view.window_end + policy.grace_s
    enough = view.objects >= policy.min_objects or (view.objects == 0 and policy.emit_empty)
    # max_num_repeat equal reads, timed so the streak is complete when the window closes
    steady = p.repeated >= policy.max_num_repeat - 1 and view.quiet_for >= policy.base_delay_s
    if view.now >= closes and enough and steady:
        return Decision("ready", 0, p, f"window closed {view.now - view.window_end:g} s after its end, count "
                        f"unchanged for {p.repeated + 1} reads", by_count=True)
    first_read = max(view.window_end, closes - (policy.max_num_repeat - 1) * policy.base_delay_s)
    if view.now < first_read:
        return Decision("wait", _clamp(first_read - view.now), p, "window still open")
    return Decision("wait", _clamp(min(policy.base_delay_s, max(1.0, closes - view.now))
                                   if view.now < closes else policy.base_delay_s), p, "window closing")


_RULES = {"stability": _stability, "producers": _producers, "records": _records, "window": _window}


def _since_done_and_landed(view: View) -> float:
    last = max(view.last_done_at or view.started_at, view.last_object_at or view.started_at)
    return view.now - last - view.backlog_s


def _stability_delay(policy: Policy, repeated: int, quiet_remaining: float) -> int:
    """The seed's delay while the streak builds; once one more stable read would do, wait out the window."""
    delay = seed_delay(policy.decay, policy.base_delay_s, repeated)
    if repeated + 1 >= policy.max_num_repeat:
        delay = max(delay, _clamp(quiet_remaining))
    return delay


def _clamp(seconds: float) -> int:
    if not math.isfinite(seconds):
        return SQS_MAX_DELAY_S if seconds > 0 else 0
    return max(0, min(SQS_MAX_DELAY_S, math.ceil(seconds)))
