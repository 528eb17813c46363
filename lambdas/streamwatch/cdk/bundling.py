"""Lambda code and layers built on this machine, no Docker: CDK local bundling (`ILocalBundling`).

- The runtime asset: the `streamwatch` package without what never runs in Lambda (this construct, the local run,
  the CLI), so the asset holds runtime code only.
- The dependency layer: third-party wheels (obstore) installed with pip for the Lambda platform
  (`--platform manylinux2014_x86_64 --only-binary=:all: --python-version 3.14`), cached per requirement set under
  ~/.cache/streamwatch so a synth after the first costs a copy, not a download.
- A producer asset: the runtime plus the user's `producer_code_dir` (and its requirements.txt), so the producer
  Lambda can import the record source.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import aws_cdk as cdk
import jsii

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # .../streamwatch
LAMBDA_REQUIREMENTS = Path(__file__).resolve().parent / "lambda-requirements.txt"
LAMBDA_PLATFORM, LAMBDA_PYTHON = "manylinux2014_x86_64", "3.14"
# never in the Lambda asset: what only synth, the local run and the command line use
NOT_RUNTIME = ["cdk", "local", "cli", "status.py", "simulate.py", "__main__.py", "__pycache__", "*.pyc", "*.egg-info"]
CACHE = Path(os.environ.get("STREAMWATCH_BUILD_CACHE", Path.home() / ".cache" / "streamwatch"))


class BundlingError(RuntimeError):
    """pip could not install the Lambda's dependencies for its platform."""


def _ignore(patterns: list[str]):
    return shutil.ignore_patterns(*patterns)


def pip_target(requirements: list[str]) -> Path:
    """A directory holding `requirements` installed for the Lambda platform, built once per requirement set. A
    requirement `-r FILE` is read with --require-hashes (the dependency layer: every wheel's hash pinned). The
    cache is trusted only while its content is what was built: its digest is recorded next to it and checked on
    every reuse; a changed cache is rebuilt."""
    texts = [Path(r[3:]).read_text() if r.startswith("-r ") else r for r in requirements]
    key = hashlib.sha256("\n".join([LAMBDA_PLATFORM, LAMBDA_PYTHON, *sorted(texts)]).encode()).hexdigest()[:16]
    target = CACHE / "lambda-deps" / key
    digest = target.with_suffix(".sha256")
    if target.exists():
        if digest.exists() and digest.read_text().strip() == tree_digest(target):
            return target
        shutil.rmtree(target, ignore_errors=True)  # not what was built (or built before digests): build again
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{key}-"))
    args = [a for r in requirements for a in (["-r", r[3:], "--require-hashes"] if r.startswith("-r ") else [r])]
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
               "--platform", LAMBDA_PLATFORM, "--only-binary=:all:", "--python-version", LAMBDA_PYTHON,
               "--implementation", "cp", "--target", str(building), *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
        raise BundlingError(f"pip could not install {requirements} for {LAMBDA_PLATFORM} / Python {LAMBDA_PYTHON}: "
                            f"{result.stderr.strip()[-800:]}")
    built = tree_digest(building)
    try:
        building.rename(target)
        digest.write_text(built)
    except OSError:  # another synth built it meanwhile
        shutil.rmtree(building, ignore_errors=True)
    return target


def tree_digest(root: Path) -> str:
    """sha256 over every file's relative path and content, in order."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def requirements_in(path: Path) -> list[str]:
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line]


@jsii.implements(cdk.ILocalBundling)
class LocalBundle:
    """Copies directories and installs requirements into the asset; never falls back to Docker."""

    def __init__(self, *, copies: list[tuple[Path, str]] = (), requirements: list[str] = (),
                 requirements_into: str = ".") -> None:
        self.copies, self.requirements, self.requirements_into = list(copies), list(requirements), requirements_into

    def try_bundle(self, output_dir: str, *, image, **_options) -> bool:
        out = Path(output_dir)
        for source, dest in self.copies:
            shutil.copytree(source, out / dest, dirs_exist_ok=True, ignore=_ignore(
                NOT_RUNTIME if source == PACKAGE_ROOT else ["__pycache__", "*.pyc", ".git", "requirements.txt"]))
        if self.requirements:
            shutil.copytree(pip_target(self.requirements), out / self.requirements_into, dirs_exist_ok=True)
        return True


def _bundled(source: Path, bundle: LocalBundle, exclude: list[str] | None = None) -> cdk.aws_lambda.Code:
    return cdk.aws_lambda.Code.from_asset(
        str(source), exclude=exclude, asset_hash_type=cdk.AssetHashType.SOURCE,
        bundling=cdk.BundlingOptions(image=cdk.DockerImage.from_registry("local-bundling-only"), local=bundle))


def runtime_code() -> cdk.aws_lambda.Code:
    """The streamwatch package as Lambda runs it (handlers, logic, ground floor; nothing else)."""
    return _bundled(PACKAGE_ROOT, LocalBundle(copies=[(PACKAGE_ROOT, "streamwatch")]), exclude=NOT_RUNTIME)


def producer_code(code_dir: str) -> cdk.aws_lambda.Code:
    """The runtime plus the user's record-source code (at the root, so `package.module` imports) and what its
    requirements.txt names."""
    path = Path(code_dir).resolve()
    if not path.is_dir():
        from streamwatch.settings import SettingsError
        raise SettingsError(f"setting producer_code_dir={code_dir!r} is invalid: no such directory")
    reqs = requirements_in(path / "requirements.txt") if (path / "requirements.txt").exists() else []
    bundle = LocalBundle(copies=[(PACKAGE_ROOT, "streamwatch"), (path, ".")], requirements=reqs)
    # the asset changes when either the runtime or the user's code does
    fingerprint = hashlib.sha256((cdk.FileSystem.fingerprint(str(PACKAGE_ROOT), exclude=NOT_RUNTIME) +
                                  cdk.FileSystem.fingerprint(str(path), exclude=["__pycache__", "*.pyc", ".git"]))
                                 .encode()).hexdigest()
    return cdk.aws_lambda.Code.from_asset(
        str(path), asset_hash_type=cdk.AssetHashType.CUSTOM, asset_hash=fingerprint,
        bundling=cdk.BundlingOptions(image=cdk.DockerImage.from_registry("local-bundling-only"), local=bundle))


def dependency_layer_code() -> cdk.aws_lambda.Code:
    """Third-party wheels for the Lambda platform under python/ (where Lambda puts layers on sys.path)."""
    bundle = LocalBundle(requirements=[f"-r {LAMBDA_REQUIREMENTS}"], requirements_into="python")
    return _bundled(LAMBDA_REQUIREMENTS.parent, bundle, exclude=["*", f"!{LAMBDA_REQUIREMENTS.name}"])
