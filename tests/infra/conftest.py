"""The synthesized templates every AWS-rule check runs on, made once per test run (shared by xdist workers):

- `app`: the example app as `cdk synth` makes it (cdk.json's context);
- `app-full`: the same app with every optional part on (alarm e-mail, webhook, an hourly window rule with a Glue table);
- `existing`: examples/existing_pipeline, the construct on a bucket and stream that already exist;
- `stepfunctions`: examples/step_functions, a state machine that waits for a dataset.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FULL = {"alarm_email": "ops@example.com", "callback_url": "https://hooks.example.com/streamwatch",
        "datasets": json.dumps([{"pattern": "data/dataset={dataset_id}/", "name": "main"},
                                {"pattern": "hourly/{yyyy}/{MM}/{dd}/{HH}/", "name": "hourly", "emit_empty": True,
                                 "catalog": {"database": "web_logs", "table": "hourly", "new_database": True,
                                             "columns": [{"name": "event", "type": "bigint"}]}}])}
APPS = {  # name -> (directory, stack, extra context)
    "app": (ROOT, "Streamwatch", {}),
    "app-full": (ROOT, "Streamwatch", FULL),
    "existing": (ROOT / "examples" / "existing_pipeline", "OrdersPipeline", {}),
    "stepfunctions": (ROOT / "examples" / "step_functions", "OrdersWorkflow", {}),
}


@dataclass
class Synthesized:
    name: str
    outdir: Path
    stack: str

    @property
    def template(self) -> dict:
        return json.loads((self.outdir / f"{self.stack}.template.json").read_text())

    def asset(self, s3_key: str) -> Path:
        """The directory a function's or layer's code asset was staged in (S3Key `<hash>.zip`)."""
        manifest = json.loads((self.outdir / f"{self.stack}.assets.json").read_text())
        return self.outdir / manifest["files"][s3_key.split(".")[0]]["source"]["path"]


def synth(name: str, outdir: Path) -> Synthesized:
    directory, stack, extra = APPS[name]
    context = json.loads((directory / "cdk.json").read_text()).get("context", {})
    env = {**os.environ, "CDK_OUTDIR": str(outdir), "CDK_CONTEXT_JSON": json.dumps({**context, **extra}),
           "PYTHONPATH": str(ROOT / "lambdas"), "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    result = subprocess.run([sys.executable, "app.py"], cwd=directory, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (outdir / "synth.stderr").write_text(result.stderr)
    return Synthesized(name, outdir, stack)


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory) -> dict[str, Synthesized]:
    """Every app synthesized once: under xdist the workers share the first one's output."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "synthesized"
    with _locked(root.with_suffix(".lock")):
        out = {}
        for name, (_, stack, _) in APPS.items():
            outdir = root / name
            if (outdir / f"{stack}.template.json").exists():
                out[name] = Synthesized(name, outdir, stack)
            else:
                out[name] = synth(name, outdir)
        return out
