"""Each handler imported the way Lambda loads it, before the local run calls it in-process.

In Lambda a function sees its own code asset, its own layers and the runtime's boto3, nothing else; this process
has every package of the venv. So each function (`limits.FUNCTIONS`) is imported once in a fresh interpreter that
refuses the packages its layers do not bring and those the asset leaves out: a handler that would fail to import
in Lambda (the observer reaching obstore, say) fails the demo and the tests too, naming the chain.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from streamwatch.core.limits import FUNCTIONS, LAYER_PACKAGES

PACKAGE_PARENT = Path(__file__).resolve().parents[2]
# never in the runtime asset (the handlers' import closure, cdk/bundling.py) or never on a Lambda's path
NOT_IN_LAMBDA = ("aws_cdk", "cdk_nag", "cdk_monitoring_constructs", "constructs", "jsii", "rich", "moto",
                 "streamwatch.cdk", "streamwatch.local", "streamwatch.cli", "streamwatch.core.simulate",
                 "streamwatch.settings", "streamwatch.__main__", "streamwatch.airflow", "airflow")
_REFUSER = """
import importlib.abc, sys
REFUSED = {refused!r}
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == r or name.startswith(r + ".") for r in REFUSED):
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in this function's asset or layers)")
        return None
sys.meta_path.insert(0, Refuse())
sys.path.insert(0, {parent!r})
import streamwatch.handlers.{handler}
"""


class HandlerImportError(RuntimeError):
    """A function's handler cannot import with only what Lambda gives it."""


def refused_for(layers: tuple[str, ...]) -> tuple[str, ...]:
    other_layers = tuple(p for name, packages in LAYER_PACKAGES.items() if name not in layers for p in packages)
    return NOT_IN_LAMBDA + other_layers


def _import(name: str) -> str | None:
    spec = FUNCTIONS[name]
    code = _REFUSER.format(refused=refused_for(spec.layers), parent=str(PACKAGE_PARENT), handler=spec.handler)
    result = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=120,
                            env={"AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"})
    if result.returncode == 0:
        return None
    chain = [line.strip() for line in result.stderr.splitlines() if line.strip().startswith("File ")
             and "streamwatch" in line]
    modules = " -> ".join(line.split("streamwatch/", 1)[-1].split('"', 1)[0] for line in chain)
    last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit {result.returncode}"
    return f"the {name} function cannot import its handler in Lambda ({modules}): {last}"


@functools.cache
def check_handlers() -> None:
    """Once per process: every function's handler imports with only its own layers."""
    distinct = {(spec.handler, spec.layers): name for name, spec in FUNCTIONS.items()}.values()
    with ThreadPoolExecutor(max_workers=len(distinct)) as pool:
        problems = [p for p in pool.map(_import, distinct) if p]
    if problems:
        raise HandlerImportError("; ".join(problems))
