"""bench/quiet.py: a benchmark sees the machine's other work during a run, so a disturbed run is redone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
quiet = pytest.importorskip("quiet")

pytestmark = pytest.mark.skipif(quiet.machine_busy_s() is None, reason="needs Linux's /proc/stat")


def test_work_the_watch_was_not_told_about_counts_as_foreign():
    # Given a watch, and a process it does not know that burns about 0.5 CPU-seconds
    watch = quiet.Watch()
    burner = subprocess.Popen([sys.executable, "-c", "import time\nt=time.process_time()\n"
                               "while time.process_time() - t < 0.5: pass"])
    _, _, usage = os.wait4(burner.pid, 0)
    burned = usage.ru_utime + usage.ru_stime
    # When the foreign work is read: once not counting that process as the benchmark's, once counting it
    unknown, known = watch.foreign_cores(0.0), watch.foreign_cores(burned)
    span = time.perf_counter() - watch.started
    # Then unknown, its CPU is foreign (other work on the machine only adds to it); known, it is the benchmark's
    assert unknown is not None and unknown * span >= 0.6 * burned
    assert known is not None and known < unknown
    assert quiet.disturbed(unknown + quiet.FOREIGN_LIMIT) and not quiet.disturbed(None)


def test_a_live_process_cpu_is_read_from_proc():
    # Given this process, which has run some Python already
    import resource
    # When its CPU is read from /proc and from getrusage
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # Then the two are close
    assert abs(quiet.process_cpu_s(os.getpid()) - (usage.ru_utime + usage.ru_stime)) < 0.5
    assert quiet.process_cpu_s(2**22 + 1) == 0.0  # a process that does not exist


def test_spawn_reports_the_childs_own_peak_memory_not_the_parents():
    # Given a child that holds 120 MiB for a moment, spawned by this (larger or smaller) process
    code = "x = bytearray(120 << 20); import time; time.sleep(0.2)"
    # When it runs to exit through spawn
    _, _, usage = quiet.spawn([sys.executable, "-c", code], dict(os.environ))
    # Then its peak is its own: the 120 MiB and an interpreter, whatever this process holds
    assert 120 << 10 <= usage.ru_maxrss < 200 << 10
    assert usage.ru_utime >= 0  # the rest of wait4's rusage is still there
