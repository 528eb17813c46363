"""Whether a measured run had the machine to itself: the CPU the whole machine was busy during the run (Linux's
/proc/stat, steal time included: another VM's work slows this one too), less the CPU of the benchmark's own
processes, in cores. A run with more than `FOREIGN_LIMIT` cores of foreign work is redone by the benchmark,
and flagged when no clean run could be had.

And one fact of this VM that decides CPU figures: it hands memory freed for more than about 2 s back to its host
(free page reporting), and touching such memory again costs about three times the CPU of reusing memory freed
just before (1 GiB written to /dev/shm: 0.29 s of system time right after another GiB was deleted, 0.9-1.0 s
after a pause). A contender that starts right after the previous one's files were deleted would run on warm
pages, one that imports for a second on cold ones; `warm_pages` gives every run the same start."""

from __future__ import annotations

import os
import resource
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable

FOREIGN_LIMIT = 0.25  # cores of other work during a run, at most
TRIES = 4  # runs of one measurement before it is kept and flagged
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_busy_s() -> float | None:
    """CPU-seconds the machine has been busy since boot (all cores), or None off Linux."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / TICK


def process_cpu_s(pid: int) -> float:
    """A live process's own CPU-seconds (utime + stime, fields 14 and 15 of /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Watch:
    """Started before a run, stopped after it: `foreign_cores(children_cpu_s)` is the other work, in cores.
    `pids` are the benchmark's own long-lived processes (an endpoint server); this process counts as its own; the
    run's children report their CPU themselves (wait4), since they are gone when it is read."""

    def __init__(self, pids: tuple[int, ...] = ()) -> None:
        self.pids = pids
        self.busy, self.own = machine_busy_s(), self._own()
        self.started = time.perf_counter()

    def _own(self) -> float:
        return _self_cpu_s() + sum(process_cpu_s(p) for p in self.pids)

    def foreign_cores(self, children_cpu_s: float) -> float | None:
        elapsed = time.perf_counter() - self.started
        busy = machine_busy_s()
        if busy is None or self.busy is None or elapsed <= 0:
            return None
        foreign = (busy - self.busy) - (self._own() - self.own) - children_cpu_s
        return max(0.0, foreign / elapsed)


def disturbed(foreign: float | None) -> bool:
    return foreign is not None and foreign > FOREIGN_LIMIT


def clean_run(measure: Callable[[], dict], pids: tuple[int, ...] = ()) -> dict:
    """`measure()` (a row with its children's CPU as "process_cpu"), redone while other work on the machine took
    more than FOREIGN_LIMIT cores during it; after TRIES runs the last one is kept and marked disturbed."""
    for attempt in range(1, TRIES + 1):
        watch = Watch(pids)
        row = measure()
        row["foreign_cores"], row["tries"] = watch.foreign_cores(row["process_cpu"]), attempt
        if not disturbed(row["foreign_cores"]):
            return row
    row["disturbed"] = True
    return row


def spawn(cmd: list[str], env: dict) -> tuple[float, str, resource.struct_rusage]:
    """Run to exit; wall time, stdout and the child's own rusage (wait4: its CPU), with `ru_maxrss` replaced by
    its peak RSS in KiB read from /proc (VmHWM, sampled until it exits). wait4's own maxrss counts the memory
    of this process at the fork, so it can never show a contender smaller than the benchmark itself."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err)  # noqa: S603
        peak, done = [0], threading.Event()

        def sample() -> None:
            while not done.wait(0.01):
                peak[0] = max(peak[0], _hwm_kib(proc.pid))
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out = proc.stdout.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t0
        done.set()
        sampler.join()
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        if code:
            err.seek(0)
            raise RuntimeError(f"{cmd[:3]} exited {code}: {err.read().decode()[-2000:]}")
    return elapsed, out, _Usage(usage, peak[0])


class _Usage:
    """A struct_rusage whose ru_maxrss is the sampled peak."""

    def __init__(self, usage: resource.struct_rusage, peak_kib: int) -> None:
        self._usage, self.ru_maxrss = usage, peak_kib

    def __getattr__(self, name: str):
        return getattr(self._usage, name)


def _hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def warm_pages(nbytes: int, scratch: str | None) -> None:
    """Write and delete `nbytes` in the scratch folder: the next run's first `nbytes` of new memory (its files,
    its buffers) are pages freed just now, whoever the contender is (see the module's docstring)."""
    fd, path = tempfile.mkstemp(prefix="warm-", dir=scratch)
    try:
        block = bytes(1 << 20)
        for _ in range(max(1, nbytes >> 20)):
            os.write(fd, block)
    finally:
        os.close(fd)
        os.unlink(path)
