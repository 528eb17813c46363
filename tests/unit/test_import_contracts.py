"""The rooms' walls hold (pyproject.toml [tool.importlinter]), and each wall would stop the import it names:
checked on a copy of the package with one forbidden import planted at a time."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).parent / "lint-imports"
PLANTED = [  # (module, import it may not make, the contract that must break)
    ("core/ids.py", "import boto3", "core is pure"),
    ("core/policy.py", "import streamwatch.state.store", "core is pure"),
    ("cdk/nag.py", "import streamwatch.runtime.aws", "synth does not load the runtime"),
    ("cdk/parts.py", "import obstore", "synth does not load the runtime"),
    ("runtime/ticks.py", "import rich", "imports no tooling"),
    ("client/run.py", "import streamwatch.local.demo", "imports no tooling"),
    ("runtime/observer.py", "import streamwatch.reader", "obstore layer"),
    ("state/store.py", "import streamwatch.runtime.aws", "layers"),
    ("runtime/chain.py", "import streamwatch.airflow.hooks", "imports no tooling"),
    ("airflow/hooks.py", "import streamwatch.local.sandbox", "Airflow is a downstream room"),
]


def lint(package_parent: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run([str(LINT), str(ROOT / "pyproject.toml")], capture_output=True, text=True, env=env,
                          cwd=package_parent, timeout=120)


def test_the_code_keeps_every_contract():
    # Given the package as it is
    # When import-linter checks the contracts
    result = lint(ROOT / "lambdas")
    # Then every one holds
    assert result.returncode == 0, result.stdout[-2000:]


@pytest.mark.parametrize(("module", "line", "contract"), PLANTED)
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, line, contract):
    # Given a copy of the package with one import a wall forbids
    shutil.copytree(ROOT / "lambdas" / "streamwatch", tmp_path / "streamwatch",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    with open(tmp_path / "streamwatch" / module, "a") as f:
        f.write(f"\n{line}  # planted\n")
    # When the contracts are checked
    result = lint(tmp_path)
    # Then they fail, naming the broken one
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken.replace("\n", " ")
