"""The Airflow tier (`make test-airflow`, in .venv-airflow): a real Airflow 3 with a sqlite metadata database in a
temporary AIRFLOW_HOME, its dags folder holding examples/airflow/dags and this folder's dags, and the local run
(moto on 127.0.0.1, the real handlers) as the deployment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# one home per test session, however often this module is imported (as conftest, and by the tests' own imports)
HOME = Path(os.environ.setdefault("STREAMWATCH_TEST_AIRFLOW_HOME", tempfile.mkdtemp(prefix="streamwatch-airflow-")))
DAGS = HOME / "dags"
# Before anything imports airflow: it reads its configuration once, at import.
os.environ.update({
    "AIRFLOW_HOME": str(HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{HOME / 'airflow.db'}",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
})
CONN_ID = "streamwatch_local"


def import_string(classpath: str):
    """What the triggerer does with a serialized trigger's class path (airflow._shared.module_loading)."""
    import importlib
    module, name = classpath.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


@pytest.fixture(scope="session")
def airflow_db():
    """The metadata database, migrated once (as `airflow db migrate` does on a new install)."""
    DAGS.mkdir(exist_ok=True)
    for dags in (ROOT / "examples" / "airflow" / "dags", Path(__file__).parent / "dags"):
        for dag in dags.glob("*.py"):
            shutil.copy(dag, DAGS / dag.name)
    result = subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], capture_output=True,
                            text=True, timeout=300, env=os.environ)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    yield HOME


@pytest.fixture
def connection(monkeypatch):
    """An Airflow AWS connection to the local run's endpoint, as a user defines one (AIRFLOW_CONN_<ID>)."""
    def define(endpoint: str) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({
            "conn_type": "aws", "login": "testing", "password": "testing",
            "extra": {"region_name": "us-east-1", "endpoint_url": endpoint}}))
        return CONN_ID
    return define
