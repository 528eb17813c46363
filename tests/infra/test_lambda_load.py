"""Each function of each template imports its handler the way Lambda loads it, in a clean interpreter (`-I -S`,
no site-packages) whose path holds only:
- the function's own code asset (inline code included), from the synthesized cloud assembly;
- its own layers: built ones from the assembly (`python/`), the Powertools managed layer as the pinned
  aws-lambda-powertools with the extras the layer ships;
- the runtime's boto3.
A test that imports handlers with the whole venv on the path cannot see a missing layer; this one can.
"""

from __future__ import annotations

import copy
import importlib.metadata as metadata
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.infra.aws_rules import POWERTOOLS_NAME, props, ref, resources
from tests.infra.conftest import APPS

POWERTOOLS_EXTRAS = ("tracer", "parser", "validation")  # what the managed layer adds to the library
RUNTIME_SDK = ("boto3",)  # every Python runtime has boto3 (and botocore, s3transfer, jmespath, dateutil, urllib3)


def _closure(names, extras=(), skip=()) -> list[metadata.Distribution]:
    """Installed distributions `names` with their requirements (and these extras'), recursively."""
    seen, out, todo = set(skip), [], [(n, tuple(extras)) for n in names]
    while todo:
        name, wanted = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional requirement this venv does not have
        out.append(dist)
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *wanted)):
                todo.append((req.name, ()))
    return out


def _copy(dists, into: Path) -> Path:
    for dist in dists:
        for file in dist.files or []:
            source = Path(dist.locate_file(file))
            if source.is_file() and ".." not in file.parts:
                target = into / file
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
    return into


@pytest.fixture(scope="module")
def lambda_paths(tmp_path_factory) -> dict[str, Path]:
    """The runtime's boto3 and the Powertools managed layer, as directories (copied from the pinned venv)."""
    root = tmp_path_factory.mktemp("lambda")
    sdk = _closure(RUNTIME_SDK)
    return {"runtime": _copy(sdk, root / "runtime"),
            "powertools": _copy(_closure(["aws-lambda-powertools"], POWERTOOLS_EXTRAS,
                                         skip=[d.metadata["Name"].lower() for d in sdk]), root / "powertools")}


def function_path(synthesized, template: dict, fn: dict, lambda_paths, scratch: Path) -> list[Path]:
    """What Lambda puts on sys.path for this function, in order: its code, its layers, the runtime."""
    code = props(fn)["Code"]
    if "ZipFile" in code:  # inline code: CDK's own handlers
        scratch.mkdir(parents=True, exist_ok=True)
        (scratch / "index.py").write_text(code["ZipFile"])
        paths = [scratch]
    else:
        paths = [synthesized.asset(code["S3Key"])]
    layers = resources(template, "AWS::Lambda::LayerVersion")
    for layer in props(fn).get("Layers", []):
        if ref(layer) in layers:
            paths.append(synthesized.asset(props(layers[ref(layer)])["Content"]["S3Key"]) / "python")
        elif POWERTOOLS_NAME.search(json.dumps(layer)):
            paths.append(lambda_paths["powertools"])
        else:
            raise AssertionError(f"a layer this test does not know how to load: {layer}")
    return [*paths, lambda_paths["runtime"]]


def import_as_lambda(handler: str, paths: list[Path]) -> subprocess.CompletedProcess:
    module, function = handler.rsplit(".", 1)
    code = (f"import sys; sys.path[:0] = {[str(p) for p in paths]!r}\n"
            f"import importlib; handler = getattr(importlib.import_module({module!r}), {function!r})\n"
            "assert callable(handler)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'aws_cdk', 'rich', 'moto', 'obstore'}))\n")
    return subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1",
                               "POWERTOOLS_SERVICE_NAME": "test"})


def functions(template: dict) -> dict[str, dict]:
    return {k: v for k, v in resources(template, "AWS::Lambda::Function").items()
            if str(props(v).get("Runtime", "")).startswith("python")}


@pytest.mark.parametrize("app", list(APPS))
def test_every_function_imports_its_handler_with_only_its_own_code_and_layers(synthesized, app, lambda_paths,
                                                                               tmp_path):
    # Given the parameter's template, with 5 or more streamwatch functions among its Python ones
    built = synthesized[app]
    template = built.template
    found = functions(template)
    assert len([f for f in found.values() if props(f)["Handler"].startswith("streamwatch.")]) >= 5
    # When each handler is imported as Lambda loads it: only its code, its layers and the runtime's boto3
    for name, fn in found.items():
        result = import_as_lambda(props(fn)["Handler"],
                                  function_path(built, template, fn, lambda_paths, tmp_path / name))
        # Then it imports, without cdk, rich or moto, and without obstore where the function lacks that layer
        assert result.returncode == 0, f"{name} ({props(fn)['Handler']}): {result.stderr[-1500:]}"
        loaded = json.loads(result.stdout.strip().replace("'", '"'))
        assert "aws_cdk" not in loaded and "rich" not in loaded and "moto" not in loaded, (name, loaded)
        if props(fn)["Handler"] in ("streamwatch.handlers.observer.handler", "streamwatch.handlers.producer.handler",
                                    "streamwatch.handlers.scheduler.handler"):
            assert "obstore" not in loaded, name  # these functions do not have the dependency layer


def test_a_function_missing_its_layer_fails_to_import(synthesized, lambda_paths, tmp_path):
    # Given the monitor without its dependency layer (as the observer was on main: obstore through counting)
    built = synthesized["app"]
    template = copy.deepcopy(built.template)
    (name, monitor), = [(k, f) for k, f in functions(template).items()
                        if props(f)["Handler"] == "streamwatch.handlers.monitor.handler"]
    monitor["Properties"]["Layers"] = [layer for layer in monitor["Properties"]["Layers"] if ref(layer) is None]
    # When it is imported as Lambda would
    result = import_as_lambda(props(monitor)["Handler"], function_path(built, template, monitor, lambda_paths,
                                                                       tmp_path))
    # Then it fails, naming obstore
    assert result.returncode != 0 and "obstore" in result.stderr


def test_the_local_run_refuses_a_handler_that_reaches_a_package_outside_its_layers(monkeypatch):
    # Given the monitor declared without its dependency layer
    from streamwatch.core import limits
    from streamwatch.local import lambda_imports
    monkeypatch.setitem(limits.FUNCTIONS, "Monitor", limits.Function("monitor", timeout_s=60))
    # When the local run checks that handler's imports
    problem = lambda_imports._import("Monitor")
    # Then it names the function, the chain and the package
    assert problem and "Monitor" in problem and "runtime/monitor.py -> reader/" in problem and "obstore" in problem
    # And the observer, which needs no such layer, passes
    assert lambda_imports._import("Observer") is None


def test_the_lambda_asset_is_the_handlers_import_closure(synthesized):
    # Given the import graph as grimp builds it (another reader of the same source than the bundler's)
    import grimp
    graph = grimp.build_graph("streamwatch")
    handlers = {m for m in graph.modules if m.startswith("streamwatch.handlers.")}
    closure = set(handlers).union(*(graph.find_upstream_modules(m) for m in handlers))
    closure |= {".".join(m.split(".")[:i]) for m in closure for i in range(1, m.count(".") + 1)}  # their packages
    # When the app is synthesized
    built = synthesized["app"]
    fn = next(f for f in functions(built.template).values()
              if props(f)["Handler"] == "streamwatch.handlers.observer.handler")
    asset = built.asset(props(fn)["Code"]["S3Key"])
    modules = {".".join(p.relative_to(asset).with_suffix("").parts).removesuffix(".__init__")
               for p in asset.rglob("*.py")}
    # Then the function's asset holds exactly those modules
    assert modules == closure
    assert not [m for m in modules if m.split(".")[:2] in (["streamwatch", "cdk"], ["streamwatch", "local"],
                                                           ["streamwatch", "cli"])]
    assert "streamwatch.core.simulate" not in modules and "streamwatch.__main__" not in modules
