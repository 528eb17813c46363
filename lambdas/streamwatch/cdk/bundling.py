"""Lambda code and layers built on this machine, no Docker: CDK local bundling (`ILocalBundling`).

- The runtime asset: an allow-list, the modules the handlers import (their import closure inside `streamwatch`,
  read from the source, nothing imported), so the asset holds runtime code only.
- The dependency layer: third-party wheels (obstore) installed with pip for the Lambda platform
  (`--platform manylinux2014_x86_64 --only-binary=:all: --python-version 3.14`), cached per requirement set under
  ~/.cache/streamwatch so a synth after the first costs a copy, not a download.
- A producer asset: the runtime plus the user's `producer_code_dir` (and its requirements.txt), so the producer
  Lambda can import the record source.
"""

from __future__ import annotations

import ast
import functools
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
CACHE = Path(os.environ.get("STREAMWATCH_BUILD_CACHE", Path.home() / ".cache" / "streamwatch"))


class BundlingError(RuntimeError):
    """pip could not install the Lambda's dependencies for its platform."""


def _ignore(patterns: list[str]):
    return shutil.ignore_patterns(*patterns)


def _module_file(name: str) -> Path | None:
    base = PACKAGE_ROOT.parent.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@functools.cache
def runtime_files() -> tuple[str, ...]:
    """The Lambda asset's allow-list: every `streamwatch` module the handlers import, directly or not (lazy imports
    inside functions too), with the packages' __init__ files, as paths relative to the package's parent."""
    todo = [f"streamwatch.handlers.{p.stem}" for p in (PACKAGE_ROOT / "handlers").glob("*.py") if p.stem != "__init__"]
    seen: dict[str, Path] = {}
    while todo:
        name = todo.pop()
        path = None if name in seen else _module_file(name)
        if path is None:
            continue
        seen[name] = path
        todo += [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]  # its packages run first
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.split(".")[0] == "streamwatch"]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == \
                    "streamwatch":
                todo += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]  # `from pkg import module`
    return tuple(sorted({str(p.relative_to(PACKAGE_ROOT.parent)) for p in seen.values()}))


def _copy_runtime(out: Path) -> None:
    for relative in runtime_files():
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PACKAGE_ROOT.parent / relative, out / relative)


def _runtime_fingerprint() -> str:
    h = hashlib.sha256()
    for relative in runtime_files():
        h.update(relative.encode() + b"\0" + hashlib.sha256((PACKAGE_ROOT.parent / relative).read_bytes()).digest())
    return h.hexdigest()


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

    def __init__(self, *, runtime: bool = False, copies: list[tuple[Path, str]] = (), requirements: list[str] = (),
                 requirements_into: str = ".") -> None:
        self.runtime, self.copies = runtime, list(copies)
        self.requirements, self.requirements_into = list(requirements), requirements_into

    def try_bundle(self, output_dir: str, *, image, **_options) -> bool:
        out = Path(output_dir)
        if self.runtime:
            _copy_runtime(out)
        for source, dest in self.copies:
            shutil.copytree(source, out / dest, dirs_exist_ok=True,
                            ignore=_ignore(["__pycache__", "*.pyc", ".git", "requirements.txt"]))
        if self.requirements:
            shutil.copytree(pip_target(self.requirements), out / self.requirements_into, dirs_exist_ok=True)
        return True


def _bundled(source: Path, bundle: LocalBundle, exclude: list[str] | None = None,
             asset_hash: str | None = None) -> cdk.aws_lambda.Code:
    hashing = {"asset_hash_type": cdk.AssetHashType.CUSTOM, "asset_hash": asset_hash} if asset_hash else {
        "asset_hash_type": cdk.AssetHashType.SOURCE}
    return cdk.aws_lambda.Code.from_asset(
        str(source), exclude=exclude, **hashing,
        bundling=cdk.BundlingOptions(image=cdk.DockerImage.from_registry("local-bundling-only"), local=bundle))


def runtime_code() -> cdk.aws_lambda.Code:
    """The streamwatch modules the handlers import (`runtime_files`), nothing else."""
    return _bundled(PACKAGE_ROOT, LocalBundle(runtime=True), asset_hash=_runtime_fingerprint())


def producer_code(code_dir: str) -> cdk.aws_lambda.Code:
    """The runtime plus the user's record-source code (at the root, so `package.module` imports) and what its
    requirements.txt names."""
    path = Path(code_dir).resolve()
    if not path.is_dir():
        from streamwatch.core.settings import SettingsError
        raise SettingsError(f"setting producer_code_dir={code_dir!r} is invalid: no such directory")
    reqs = requirements_in(path / "requirements.txt") if (path / "requirements.txt").exists() else []
    bundle = LocalBundle(runtime=True, copies=[(path, ".")], requirements=reqs)
    # the asset changes when either the runtime or the user's code does
    fingerprint = hashlib.sha256((_runtime_fingerprint() +
                                  cdk.FileSystem.fingerprint(str(path), exclude=["__pycache__", "*.pyc", ".git"]))
                                 .encode()).hexdigest()
    return cdk.aws_lambda.Code.from_asset(
        str(path), asset_hash_type=cdk.AssetHashType.CUSTOM, asset_hash=fingerprint,
        bundling=cdk.BundlingOptions(image=cdk.DockerImage.from_registry("local-bundling-only"), local=bundle))


def dependency_layer_code() -> cdk.aws_lambda.Code:
    """Third-party wheels for the Lambda platform under python/ (where Lambda puts layers on sys.path)."""
    bundle = LocalBundle(requirements=[f"-r {LAMBDA_REQUIREMENTS}"], requirements_into="python")
    return _bundled(LAMBDA_REQUIREMENTS.parent, bundle, exclude=["*", f"!{LAMBDA_REQUIREMENTS.name}"])
