"""Replay a trace of object landings through the observer's policy on a virtual clock.

Runs the very `policy.decide` / `policy.complete_now` the observer Lambda runs: the chain starts when the
first object is counted (landing + event delay, as in the stack), each tick reads what the monitor has
counted by then and waits the policy's delay (>= 1 s, as the observer sends it); in records mode the monitor's
and producers' nudges are replayed too. Reference probes (the seed's observer, Airflow's
S3KeysUnchangedSensor) plug into the same harness through the `Probe` interface.

Trace (DESIGN.md): {"objects": [{"t": 65.1, "records": 120}, ...] or [65.1, ...],
                    "producers": [{"id": "p1", "done_at": 600.0, "records_sent": 1200}]}
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from streamwatch.policy import Decision, Policy, Progress, View, complete_now, decide

MAX_STEPS = 1_000_000


@dataclass(frozen=True)
class Trace:
    times: list[float]  # landing times, sorted
    records: list[int | None]
    producers: list[dict] = field(default_factory=list)
    buffer_interval_s: int | None = None  # a hint some workloads carry, for the derived windows
    name: str = ""

    @classmethod
    def from_doc(cls, doc: dict | list, name: str = "") -> Trace:
        if isinstance(doc, list):
            doc = {"objects": doc}
        objects = [o if isinstance(o, dict) else {"t": float(o)} for o in doc.get("objects", [])]
        if not objects:
            raise ValueError("trace has no objects")
        objects.sort(key=lambda o: float(o["t"]))
        producers = [{"id": str(p.get("id", i)), "done_at": float(p["done_at"]),
                      "records_sent": int(p.get("records_sent", 0))} for i, p in enumerate(doc.get("producers", []))]
        return cls(times=[float(o["t"]) for o in objects], records=[o.get("records") for o in objects],
                   producers=producers, buffer_interval_s=doc.get("buffer_interval_s"), name=name)

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        return cls.from_doc(json.loads(Path(path).read_text()), name=Path(path).stem)


@dataclass
class SimResult:
    declared_at: float | None
    last_object_at: float
    latency_s: float | None
    false_positive: bool
    ticks: int
    reads: int
    stalled: bool = False
    objects_declared: int = 0
    objects_total: int = 0
    reason: str = ""
    fallback: bool = False

    def to_json(self) -> dict:
        return asdict(self)


class Probe:
    """A completion rule driven by the harness: `tick` is a scheduled read, `nudge` an immediate check."""

    def tick(self, view: View) -> Decision:
        raise NotImplementedError

    def nudge(self, view: View) -> Decision | None:
        return None


class PolicyProbe(Probe):
    """The observer's policy, exactly as the Lambda calls it."""

    def __init__(self, policy: Policy) -> None:
        self.policy, self.progress = policy, Progress()

    def tick(self, view: View) -> Decision:
        decision = decide(self.policy, self.progress, view)
        self.progress = decision.progress
        return decision

    def nudge(self, view: View) -> Decision | None:
        return complete_now(self.policy, view)


class _Visible:
    """What the monitor has counted by a given time."""

    def __init__(self, trace: Trace, event_delay: float, count_records: bool) -> None:
        self.trace, self.delay, self.count_records = trace, event_delay, count_records
        self.cum_records = [0]
        for r in trace.records:
            self.cum_records.append(self.cum_records[-1] + (r or 0))

    def view(self, now: float, started_at: float) -> View:
        n = bisect.bisect_right(self.trace.times, now - self.delay)
        done = [p for p in self.trace.producers if p["done_at"] <= now]
        return View(now=now, objects=n, started_at=started_at,
                    last_object_at=self.trace.times[n - 1] if n else None,
                    records=self.cum_records[n] if self.count_records else None,
                    producers_expected=len(self.trace.producers) or None, producers_done=len(done),
                    records_sent=sum(p["records_sent"] for p in done),
                    last_done_at=max((p["done_at"] for p in done), default=None))


def simulate(trace: Trace, probe: Probe, *, event_delay: float = 2.0, count_records: bool = False,
             nudge_latency: float = 1.0, min_delay: float = 1.0) -> SimResult:
    visible = _Visible(trace, event_delay, count_records)
    start = trace.times[0] + event_delay
    last = trace.times[-1]
    nudges = sorted({t + event_delay for t in trace.times if t + event_delay >= start} |
                    {p["done_at"] for p in trace.producers if p["done_at"] >= start})
    now, ticks, reads, verdict = start, 0, 0, None
    nudge_i = 0
    for _ in range(MAX_STEPS):
        decision = probe.tick(visible.view(now, start))
        ticks += 1
        reads += 1
        if decision.verdict != "wait":
            verdict = (now, decision)
            break
        next_tick = now + max(min_delay, decision.delay_s)
        # nudges between this tick and the next may complete the dataset first
        while nudge_i < len(nudges) and nudges[nudge_i] < next_tick:
            at = nudges[nudge_i]
            nudge_i += 1
            found = probe.nudge(visible.view(at, start))
            if found is not None:
                reads += 1
                verdict = (at + nudge_latency, found)
                break
        if verdict:
            break
        now = next_tick
    else:
        raise RuntimeError("simulation did not end: the policy never declared nor stalled")
    at, decision = verdict
    counted = visible.view(at, start).objects
    if decision.verdict == "stalled":
        return SimResult(None, last, None, False, ticks, reads, stalled=True, objects_declared=counted,
                         objects_total=len(trace.times), reason=decision.reason)
    return SimResult(declared_at=at, last_object_at=last, latency_s=at - last,
                     false_positive=counted < len(trace.times), ticks=ticks, reads=reads,
                     objects_declared=counted, objects_total=len(trace.times), reason=decision.reason,
                     fallback=decision.fallback)


def median(values: list[float]) -> float:
    s = sorted(values)
    if not s:
        return math.nan
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2
