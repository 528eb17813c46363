"""The handlers' notion of time. In Lambda it is the wall clock; the local sandbox installs a scaled clock so
a 300 s Firehose buffer takes seconds while every proportion (delays, windows, event times) is kept. Leases are
wall time on every clock (`wall`), and go through it too, so one place says what time it is."""

from __future__ import annotations

import math
import time

from streamwatch.core import scope
from streamwatch.core.settings import SQS_MAX_DELAY_S


class WallClock:
    def now(self) -> float:
        return time.time()

    def from_wall(self, epoch_s: float) -> float:
        """A wall-clock timestamp (e.g. an S3 eventTime) on this clock."""
        return epoch_s

    def delay_seconds(self, seconds: float) -> int:
        """What to pass as SQS DelaySeconds to wait `seconds` of this clock."""
        return max(0, min(SQS_MAX_DELAY_S, math.ceil(seconds)))

    def wall_duration(self, wall_seconds: float) -> float:
        """A duration of the wall clock (an SQS visibility timeout) in this clock's seconds."""
        return wall_seconds

    def wall(self) -> float:
        """Wall-clock epoch seconds, whatever the pipeline's clock: publish leases, which invocations compare with
        one another and with what the table holds (a test's clock moves it without sleeping)."""
        return time.time()

    def wall_delay(self, wall_seconds: float) -> int:
        """SQS DelaySeconds for a wait of the wall clock (until a lease ends): 1..900."""
        return max(1, min(SQS_MAX_DELAY_S, math.ceil(wall_seconds)))


class ScaledClock(WallClock):
    """Virtual seconds run `speed` times faster than wall seconds, from `origin` (wall) on; virtual time starts at
    `start` (default: the wall time at `origin`), e.g. a few minutes before an hour to show hourly windows."""

    def __init__(self, speed: float, origin: float | None = None, start: float | None = None) -> None:
        self.speed, self.origin = speed, time.time() if origin is None else origin
        self.start = self.origin if start is None else start

    def now(self) -> float:
        return self.from_wall(time.time())

    def from_wall(self, epoch_s: float) -> float:
        return self.start + (epoch_s - self.origin) * self.speed

    def delay_seconds(self, seconds: float) -> int:
        return 0 if seconds <= 0 else max(1, min(SQS_MAX_DELAY_S, math.ceil(seconds / self.speed)))

    def wall_duration(self, wall_seconds: float) -> float:
        return wall_seconds * self.speed


_clock: WallClock = WallClock()


def get() -> WallClock:
    """The scope's clock (a local run's), else the process's."""
    current = scope.current()
    return current.clock if current is not None and current.clock is not None else _clock


def install(clock: WallClock) -> None:
    global _clock
    _clock = clock
