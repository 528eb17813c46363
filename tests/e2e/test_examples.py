"""The examples a user copies from run as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def test_own_producer_runs_against_the_local_run_and_ends_with_its_ready(tmp_path):
    # Given examples/own_producer.py and an environment of only PATH, PYTHONPATH and an empty home
    # When it runs as written
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "own_producer.py")], capture_output=True,
                            text=True, timeout=180, cwd=ROOT, env={"PATH": "/usr/bin:/bin",
                                                                   "PYTHONPATH": str(ROOT / "lambdas"),
                                                                   "HOME": str(tmp_path)})
    # Then it exits 0 and prints its dataset's Ready with all 25,000 records
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert "Dataset Ready: orders-2026-11-24: 25000 records" in result.stdout
