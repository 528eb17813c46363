"""The extra installs beside an existing Airflow 3 without moving any of its packages."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_extra_adds_only_streamwatch_to_an_installed_airflow(tmp_path):
    # Given this venv: Airflow 3 and the amazon provider as a user has them
    report = tmp_path / "report.json"
    # When pip resolves `streamwatch[airflow]` into it (a dry run: what it would install)
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
                             "--disable-pip-version-check", "--report", str(report), f"{ROOT}[airflow]"],
                            capture_output=True, text=True, timeout=300)
    # Then it would install streamwatch and nothing else: no Airflow package, no boto3, moved
    assert result.returncode == 0, result.stderr[-2000:]
    installs = [(i["metadata"]["name"], i["metadata"]["version"]) for i in json.loads(report.read_text())["install"]]
    assert [name for name, _ in installs] == ["streamwatch"], installs


def test_it_registers_as_an_airflow_provider():
    # Given the installed package's entry points
    (provider,) = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("streamwatch")]
    # When Airflow's provider discovery loads it
    info = provider.load()()
    # Then it names the distribution, and the modules holding the sensor and the triggers
    from airflow.providers_manager import ProvidersManager
    assert info["package-name"] == "streamwatch"
    assert {m for t in info["triggers"] for m in t["python-modules"]} == {"streamwatch.airflow.triggers"}
    assert "streamwatch" in ProvidersManager().providers
