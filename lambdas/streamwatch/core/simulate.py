"""Replay a trace of object landings through the observer's policy on a virtual clock.

Runs the very `policy.decide` / `policy.complete_now` the observer Lambda runs: the chain starts when the
first object is counted (landing + event delay, as in the stack), each tick reads what the monitor has
counted by then and waits the policy's delay (>= 1 s, as the observer sends it); in records mode the monitor's
and producers' nudges are replayed too. Reference probes (the seed's observer, Airflow's
S3KeysUnchangedSensor) plug into the same harness through the `Probe` interface.

Trace (docs/trace-format.md): {"objects": [{"t": 65.1, "records": 120}, ...] or [65.1, ...],
                              "producers": [{"id": "p1", "done_at": 600.0, "records_sent": 1200}]}
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from streamwatch.core import envelope
from streamwatch.core.errors import InputError, did_you_mean
from streamwatch.core.policy import Decision, Policy, Progress, View, complete_now, decide

MAX_STEPS = 1_000_000


class TraceError(InputError):
    """A trace that does not follow the format; the message names the file, the field and the index."""


TRACE_KEYS = ("objects", "producers", "buffer_interval_s", "window_s", "windows", "description")
OBJECT_KEYS = ("t", "records", "seqs", "window")
PRODUCER_KEYS = ("id", "done_at", "records_sent", "failed_at")


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TraceError(f"{where}: expected a number, got {json.dumps(value)[:40]}")
    return float(value)


def _count(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TraceError(f"{where}: expected a whole number >= 0, got {json.dumps(value)[:40]}")
    return value


def _keys(doc: dict, allowed: tuple[str, ...], where: str) -> None:
    for key in doc:
        if key not in allowed:
            raise TraceError(f"{where}{key}: unknown field{did_you_mean(key, allowed)}; allowed: {', '.join(allowed)}")


def _seqs(value: object, where: str) -> dict[str, list[tuple[int, int]]]:
    if not isinstance(value, dict):
        raise TraceError(f"{where}: expected {{producer: [[first, last], ...]}}")
    out = {}
    for producer, ranges in value.items():
        if not isinstance(ranges, list):
            raise TraceError(f"{where}.{producer}: expected a list of [first, last] ranges")
        out[producer] = []
        for i, r in enumerate(ranges):
            if not (isinstance(r, list) and len(r) == 2):
                raise TraceError(f"{where}.{producer}[{i}]: expected [first, last]")
            first, last = _count(r[0], f"{where}.{producer}[{i}][0]"), _count(r[1], f"{where}.{producer}[{i}][1]")
            if last < first:
                raise TraceError(f"{where}.{producer}[{i}]: last {last} is before first {first}")
            out[producer].append((first, last))
    return out


@dataclass(frozen=True)
class Trace:
    times: list[float]  # landing times, sorted
    records: list[int | None]
    producers: list[dict] = field(default_factory=list)
    buffer_interval_s: int | None = None  # a hint some workloads carry, for the derived windows
    name: str = ""
    seqs: list[dict | None] = field(default_factory=list)  # per object: producer -> [(first, last)], or None
    windows: list[float | None] = field(default_factory=list)  # per object: the window it belongs to
    window_s: float | None = None
    all_windows: list[float] = field(default_factory=list)  # every window to judge, empty ones included

    @classmethod
    def from_doc(cls, doc: object, name: str = "") -> Trace:
        """Validate and normalize a trace document (the format is in docs/trace-format.md)."""
        if isinstance(doc, list):
            doc = {"objects": doc}
        if not isinstance(doc, dict):
            raise TraceError("expected a JSON object {\"objects\": [...]} or a list of landing times")
        _keys(doc, TRACE_KEYS, "")
        raw = doc.get("objects")
        if not isinstance(raw, list):
            raise TraceError("objects: expected a list of landing times or {\"t\": ...} objects")
        objects = []
        for i, o in enumerate(raw):
            where = f"objects[{i}]"
            if isinstance(o, dict):
                _keys(o, OBJECT_KEYS, f"{where}.")
                if "t" not in o:
                    raise TraceError(f"{where}.t: missing (the landing time, seconds)")
                objects.append({"t": _number(o["t"], f"{where}.t"),
                                "records": None if o.get("records") is None else _count(o["records"],
                                                                                        f"{where}.records"),
                                "seqs": _seqs(o["seqs"], f"{where}.seqs") if "seqs" in o else None,
                                "window": _number(o["window"], f"{where}.window") if "window" in o else None})
            else:
                objects.append({"t": _number(o, where), "records": None, "seqs": None,
                                "window": None})
        window_s = _number(doc["window_s"], "window_s") if "window_s" in doc else None
        windows = doc.get("windows", [])
        if not isinstance(windows, list):
            raise TraceError("windows: expected a list of window starts")
        all_windows = [_number(w, f"windows[{i}]") for i, w in enumerate(windows)]
        if window_s is not None:
            if window_s <= 0:
                raise TraceError("window_s: expected a window length > 0")
            for i, o in enumerate(objects):
                if o["window"] is None:
                    raise TraceError(f"objects[{i}].window: missing (a window trace gives each object its window)")
            if not all_windows:
                all_windows = sorted({o["window"] for o in objects})
        elif not objects:
            raise TraceError("objects: the trace has no objects (observation starts when the first one lands)")
        producers = []
        raw_producers = doc.get("producers", [])
        if not isinstance(raw_producers, list):
            raise TraceError("producers: expected a list of {\"id\", \"done_at\", \"records_sent\"}")
        for i, p in enumerate(raw_producers):
            where = f"producers[{i}]"
            if not isinstance(p, dict):
                raise TraceError(f"{where}: expected an object {{\"id\", \"done_at\", \"records_sent\"}}")
            _keys(p, PRODUCER_KEYS, f"{where}.")
            if "done_at" not in p and "failed_at" not in p:
                raise TraceError(f"{where}.done_at: missing (when the producer reported done, seconds)")
            producers.append({"id": str(p.get("id", f"p{i}")),
                              "done_at": _number(p["done_at"], f"{where}.done_at") if "done_at" in p else math.inf,
                              "records_sent": (None if p.get("records_sent") is None
                                               else _count(p["records_sent"], f"{where}.records_sent")),
                              "failed_at": _number(p["failed_at"], f"{where}.failed_at") if "failed_at" in p else None})
        hint = doc.get("buffer_interval_s")
        if hint is not None:
            hint = int(_number(hint, "buffer_interval_s"))
        objects.sort(key=lambda o: o["t"])
        return cls(times=[o["t"] for o in objects], records=[o["records"] for o in objects], producers=producers,
                   buffer_interval_s=hint, name=name, seqs=[o["seqs"] for o in objects],
                   windows=[o["window"] for o in objects], window_s=window_s, all_windows=all_windows)

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise TraceError(f"trace file {str(path)!r} not found") from None
        except IsADirectoryError:
            raise TraceError(f"trace file {str(path)!r} is a directory, not a JSON file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise TraceError(f"trace file {str(path)!r} cannot be read: {exc}") from None
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise TraceError(f"{path}: not JSON ({exc})") from None
        try:
            return cls.from_doc(doc, name=path.stem)
        except TraceError as exc:
            raise TraceError(f"{path}: {exc}") from None


@dataclass
class SimResult:
    declared_at: float | None
    last_object_at: float | None
    latency_s: float | None
    false_positive: bool
    ticks: int
    reads: int
    stalled: bool = False
    failed: bool = False
    objects_declared: int = 0
    objects_total: int = 0
    reason: str = ""
    fallback: bool = False
    mode: str = ""
    complete_at: float | None = None  # when the data was complete (the last object, or the last needed record)

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
    """What the monitor and the producers' reports show at a given time: the observer's View of the trace."""

    def __init__(self, trace: Trace, event_delay: float, count_records: bool,
                 window: tuple[float, float] | None = None) -> None:
        self.trace, self.delay, self.count_records, self.window = trace, event_delay, count_records, window
        self.enveloped = any(s is not None for s in trace.seqs)
        self.cum_records = [0]
        for r, seqs in zip(trace.records, trace.seqs or [None] * len(trace.times), strict=True):
            n = r if r is not None else (sum(b - a + 1 for ranges in seqs.values() for a, b in ranges) if seqs else 0)
            self.cum_records.append(self.cum_records[-1] + n)

    def _landed(self, n: int) -> dict[str, list]:
        found: dict[str, list] = {}
        for seqs in self.trace.seqs[:n]:
            for producer, ranges in (seqs or {}).items():
                found[producer] = envelope.merge(found.get(producer, []) + list(ranges))
        return found

    def view(self, now: float, started_at: float) -> View:
        n = bisect.bisect_right(self.trace.times, now - self.delay)
        producers = self.trace.producers
        done = [p for p in producers if p["done_at"] <= now]
        failed = [p for p in producers if p["failed_at"] is not None and p["failed_at"] <= now]
        records, landed = None, None
        if self.count_records:
            if self.enveloped:
                intervals = self._landed(n)
                records = sum(envelope.size(v) for v in intervals.values())
                landed = all(envelope.covers(intervals.get(p["id"], []), p["records_sent"])
                             for p in done if p["records_sent"] is not None)
            else:
                records = self.cum_records[n]
                landed = records >= sum(p["records_sent"] or 0 for p in done)
        return View(now=now, objects=n, started_at=started_at,
                    last_object_at=self.trace.times[n - 1] if n else None, records=records,
                    producers_expected=len(producers) or None, producers_known=len(producers),
                    producers_done=len(done), counts_reported=all(p["records_sent"] is not None for p in done),
                    records_sent=sum(p["records_sent"] or 0 for p in done), records_landed=landed,
                    last_done_at=max((p["done_at"] for p in done), default=None),
                    failure=f"producer {failed[0]['id']} failed" if failed else None,
                    window_start=self.window[0] if self.window else None,
                    window_end=self.window[1] if self.window else None)

    def complete_at(self) -> float | None:
        """When the data was complete: with sequence numbers, the landing that covered every producer's range;
        otherwise the last landing."""
        if not self.enveloped or not self.trace.producers:
            return self.trace.times[-1] if self.trace.times else None
        for n in range(1, len(self.trace.times) + 1):
            intervals = self._landed(n)
            if all(p["records_sent"] is None or envelope.covers(intervals.get(p["id"], []), p["records_sent"])
                   for p in self.trace.producers):
                return self.trace.times[n - 1]
        return None


def simulate(trace: Trace, probe: Probe, *, event_delay: float = 2.0, count_records: bool = True,
             nudge_latency: float = 1.0, min_delay: float = 1.0, window: tuple[float, float] | None = None,
             start_at: float | None = None) -> SimResult:
    """One dataset: the chain starts when its first object is counted (or at `start_at`, e.g. a window's end for
    an empty window's schedule, or a run's registration), whichever is first."""
    visible = _Visible(trace, event_delay, count_records, window)
    candidates = [t for t in ([trace.times[0] + event_delay] if trace.times else []) + [start_at] if t is not None]
    if not candidates:
        raise TraceError("nothing starts the observation: no object, no schedule")
    start = min(candidates)
    last = trace.times[-1] if trace.times else None
    nudges = sorted({t + event_delay for t in trace.times if t + event_delay >= start} |
                    {p["done_at"] for p in trace.producers if start <= p["done_at"] < math.inf} |
                    {p["failed_at"] for p in trace.producers if p["failed_at"] is not None and p["failed_at"] >= start})
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
    complete_at = visible.complete_at()
    common = dict(ticks=ticks, reads=reads, objects_declared=counted, objects_total=len(trace.times),
                  reason=decision.reason, mode=decision.mode, complete_at=complete_at)
    if decision.verdict in ("stalled", "failed"):
        return SimResult(None, last, None, False, stalled=decision.verdict == "stalled",
                         failed=decision.verdict == "failed", **common)
    if visible.enveloped and trace.producers:
        false_positive = complete_at is None or at < complete_at
    else:
        false_positive = counted < len(trace.times)
    return SimResult(declared_at=at, last_object_at=last, latency_s=None if last is None else at - last,
                     false_positive=false_positive, fallback=decision.fallback, **common)


@dataclass
class WindowResult:
    window: float
    objects: int
    declared_at: float | None
    last_object_at: float | None
    latency_s: float | None  # after the window's last object (after its end, for an empty window)
    after_end_s: float | None  # after the window's end: the earliest anyone can know
    false_positive: bool
    ticks: int = 0
    reason: str = ""

    def to_json(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def simulate_windows(trace: Trace, make_probe, *, event_delay: float = 2.0) -> list[WindowResult]:
    """A window trace: each window is a dataset. Its chain starts at its first object or at its end (the
    schedule that opens empty windows), whichever comes first; it is judged against its own objects."""
    if trace.window_s is None:
        raise TraceError("not a window trace: give window_s and each object's window")
    out = []
    for w in trace.all_windows:
        mine = [i for i, win in enumerate(trace.windows) if win == w]
        sub = Trace(times=[trace.times[i] for i in mine], records=[trace.records[i] for i in mine],
                    producers=[], buffer_interval_s=trace.buffer_interval_s, name=f"{trace.name}@{w:g}",
                    seqs=[trace.seqs[i] for i in mine])
        end = w + trace.window_s
        result = simulate(sub, make_probe(), event_delay=event_delay, window=(w, end), start_at=end,
                          count_records=False)
        last = sub.times[-1] if sub.times else None
        declared = result.declared_at
        out.append(WindowResult(
            window=w, objects=len(sub.times), declared_at=declared, last_object_at=last,
            latency_s=None if declared is None else declared - (last if last is not None else end),
            after_end_s=None if declared is None else declared - end,
            false_positive=declared is not None and last is not None and declared < last,
            ticks=result.ticks, reason=result.reason))
    return out


def median(values: list[float]) -> float:
    s = sorted(values)
    if not s:
        return math.nan
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2
