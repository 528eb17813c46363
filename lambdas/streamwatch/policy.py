"""When is a dataset complete, and how long until the next look. Pure: no AWS, no clock of its own.

The observer Lambda and `streamwatch simulate` both call `decide` (a scheduled read of the counter) and
`complete_now` (a nudge: the monitor or a producer says completion may just have become true). Times are
seconds on any origin (epoch seconds in the Lambda, trace seconds in the simulator).

Modes:
- stability: the seed's rule, MAX_NUM_REPEAT consecutive reads with an unchanged count, plus guards the seed
  lacked: a minimum quiet window since the last object landed (the decaying probe delay only shortens the
  probes, never the window), min objects, and a hard cap (-> stalled).
- producers: every expected producer reported done, then nothing landed for `settle_s` (Firehose may deliver
  a partition's last buffer ~1.5x the buffer interval after the last put).
- records: every producer done and records persisted >= records sent -> complete at once. If the records
  never add up (data lost), fall back to the stability rule over quiet_s + settle_s and say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

SQS_MAX_DELAY_S = 900
Verdict = Literal["wait", "ready", "stalled"]


@dataclass(frozen=True)
class Policy:
    mode: str = "stability"
    max_num_repeat: int = 3
    base_delay_s: int = 30
    decay: str = "constant"
    quiet_s: float = 510
    min_objects: int = 1
    max_observation_s: float = 21_600
    settle_s: float = 480

    @classmethod
    def from_settings(cls, settings) -> Policy:
        return cls(mode=settings.mode, max_num_repeat=settings.max_num_repeat, base_delay_s=settings.base_delay_s,
                   decay=settings.decay, quiet_s=settings.quiet_s, min_objects=settings.min_objects,
                   max_observation_s=settings.max_observation_s, settle_s=settings.producers_settle_s)

    def describe(self) -> dict:
        """What goes into the event detail, so a consumer knows which rule declared its dataset."""
        return {"mode": self.mode, "max_num_repeat": self.max_num_repeat, "base_delay_s": self.base_delay_s,
                "decay": self.decay, "quiet_s": self.quiet_s, "min_objects": self.min_objects,
                "max_observation_s": self.max_observation_s, "settle_s": self.settle_s}


@dataclass(frozen=True)
class View:
    """One read of a dataset's counter."""

    now: float
    objects: int
    started_at: float  # when observation started (the first object was counted)
    last_object_at: float | None = None
    records: int | None = None
    producers_expected: int | None = None
    producers_done: int = 0
    records_sent: int = 0
    last_done_at: float | None = None

    @property
    def all_done(self) -> bool:
        return self.producers_expected is not None and self.producers_done >= self.producers_expected

    @property
    def quiet_for(self) -> float:
        return self.now - (self.last_object_at if self.last_object_at is not None else self.started_at)


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


def records_complete(view: View) -> bool:
    return view.all_done and view.records is not None and view.records >= view.records_sent


def complete_now(policy: Policy, view: View) -> Decision | None:
    """A nudge: declare at once if the records rule holds. Leaves the chain's progress alone."""
    if policy.mode == "records" and view.objects >= policy.min_objects and records_complete(view):
        return Decision("ready", 0, Progress(), "every producer done and all records persisted")
    return None


def decide(policy: Policy, progress: Progress, view: View) -> Decision:
    """A scheduled read: update the stability streak, then declare, stall, or say when to look again."""
    repeated = progress.repeated + 1 if view.objects == progress.last_count else 0
    after = Progress(repeated=repeated, last_count=view.objects, reads=progress.reads + 1)
    enough = view.objects >= policy.min_objects
    if view.now - view.started_at >= policy.max_observation_s:
        return Decision("stalled", 0, after, f"hard cap of {policy.max_observation_s:g} s reached")

    if policy.mode == "records":
        if enough and records_complete(view):
            return Decision("ready", 0, after, "every producer done and all records persisted")
        if view.all_done:
            # Records short of what was sent: data lost? Only after both windows passed since the later of the
            # last landing and the last done-report (the rest may still sit in Firehose's buffer), fall back to
            # the stability rule and say so.
            window = policy.quiet_s + policy.settle_s
            since = view.now - max(view.last_done_at or view.started_at, view.last_object_at or view.started_at)
            if enough and repeated >= policy.max_num_repeat and since >= window:
                return Decision("ready", 0, after, f"records never added up ({view.records} of "
                                f"{view.records_sent}); nothing landed for {since:g} s", fallback=True)
            return Decision("wait", _stability_delay(policy, repeated, window - since), after,
                            "producers done, records still landing")
        # Completion arrives as a nudge from the monitor or the last producer; until then the chain only
        # guards the hard cap, so it looks rarely.
        return Decision("wait", _clamp(max(policy.base_delay_s, policy.quiet_s)), after, "producers still sending")

    if policy.mode == "producers":
        if not view.all_done:
            return Decision("wait", seed_delay(policy.decay, policy.base_delay_s, repeated), after,
                            "producers still sending")
        since = view.now - max(view.last_done_at or view.started_at, view.last_object_at or view.started_at)
        if enough and repeated >= 1 and since >= policy.settle_s:
            return Decision("ready", 0, after, f"producers done and nothing landed for {since:g} s")
        remaining = policy.settle_s - since
        return Decision("wait", _clamp(remaining if repeated >= 1 else min(remaining, policy.base_delay_s)),
                        after, "producers done, settling")

    if enough and repeated >= policy.max_num_repeat and view.quiet_for >= policy.quiet_s:
        return Decision("ready", 0, after, f"count unchanged for {repeated} reads and {view.quiet_for:g} s")
    return Decision("wait", _stability_delay(policy, repeated, policy.quiet_s - view.quiet_for), after,
                    "count still settling")


def _stability_delay(policy: Policy, repeated: int, quiet_remaining: float) -> int:
    """The seed's delay while the streak builds; once one more stable read would do, wait out the window."""
    delay = seed_delay(policy.decay, policy.base_delay_s, repeated)
    if repeated + 1 >= policy.max_num_repeat:
        delay = max(delay, _clamp(quiet_remaining))
    return delay


def _clamp(seconds: float) -> int:
    return max(0, min(SQS_MAX_DELAY_S, math.ceil(seconds)))
