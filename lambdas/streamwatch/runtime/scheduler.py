"""What runs on a schedule rather than on an event: closing time windows that may be empty, and the heartbeat.

- Windows: a window with no object at all must still get its Ready (objects 0) when its rule asks for it
  (`emit_empty`), because an hourly job must know that an hour was empty. Nothing lands to start its chain, so a
  schedule per window length (the construct's EventBridge rule; the local run's scheduler thread) opens every
  window that ended recently: it registers the window dataset (idempotent) and starts its chain (a duplicate
  tick 0 is dropped by the observer), so duplicated or missed schedules still end in exactly one Ready.
  Windows that ended before the scheduler first ran (before streamwatch was watching) are never opened.
- Heartbeat: every observing dataset's chain ticks at least every SQS max delay; a chain that died silently
  stops ticking. The heartbeat reports how long the stalest observing dataset went without a tick, and how many
  datasets are observed (metrics the construct alarms on).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from streamwatch.core import clock
from streamwatch.core.rules import window_bounds, windows_between
from streamwatch.core.settings import Resources, Settings
from streamwatch.runtime.chain import start_chain
from streamwatch.state.store import OBSERVING, Store, day_of

log = logging.getLogger(__name__)
LOOKBACK_WINDOWS = 3  # a schedule also reopens the windows a missed or late run would have opened


@dataclass
class Heartbeat:
    observing: int = 0
    oldest_silence_s: float = 0.0  # the longest any observing dataset went without an observer tick
    stalest: str | None = None


class Scheduler:
    def __init__(self, settings: Settings, resources: Resources, store: Store | None = None) -> None:
        self.settings, self.resources = settings, resources
        self.store = store or Store.from_settings(settings, resources)

    def close_windows(self, now: float | None = None) -> list[str]:
        """Open (register and start observing) every window of an `emit_empty` rule that ended in the last few
        window lengths. Returns the window datasets it touched."""
        now = clock.get().now() if now is None else now
        rules = [r for r in self.settings.rules.rules if r.window_s and self.settings.for_rule(r).emit_empty]
        if not rules:
            return []
        since = self.store.watching_since(now)  # never open windows that ended before streamwatch was watching
        opened = []
        for rule in rules:
            for start in windows_between(max(since, now - LOOKBACK_WINDOWS * rule.window_s), now, rule.window_s):
                if rule.value_fields:
                    continue  # windows per field value (e.g. per source) are opened by their first object only
                dataset_id = rule.dataset_id({}, start)
                self.store.register_run(dataset_id, [], window_bounds(start, rule.window_s)[1], rule=rule.name,
                                        window=window_bounds(start, rule.window_s))
                start_chain(self.resources, self.store, dataset_id)
                opened.append(dataset_id)
        return opened

    def heartbeat(self, now: float | None = None) -> Heartbeat:
        now = clock.get().now() if now is None else now
        days = math.ceil(self.settings.max_observation_s / 86_400) + 1
        beat = Heartbeat()
        for back in range(days):
            for state in self.store.list_day(day_of(now - back * 86_400)):
                if state.status != OBSERVING or not state.chain_started:
                    continue
                beat.observing += 1
                last = state.observed_ts or state.started_ts or now
                if now - last > beat.oldest_silence_s:
                    beat.oldest_silence_s, beat.stalest = now - last, state.dataset_id
        return beat
