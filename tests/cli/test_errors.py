"""Every bad input a person can hand the command line: one clear line naming the thing, a documented non-zero
exit code, never a traceback. Each case runs the real `streamwatch` command in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamwatch.cli import explain, main
from streamwatch.core.errors import EXIT_BUG, EXIT_INPUT, EXIT_INTERRUPTED

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], env: dict, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamwatch", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, input=stdin, timeout=120)


@pytest.fixture
def clean_env(tmp_path) -> dict:
    """No AWS credentials anywhere: no variables, an empty home (no ~/.aws), no instance metadata."""
    home = tmp_path / "home"
    home.mkdir()
    return {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "lambdas"), "HOME": str(home),
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1",
            "STREAMWATCH_BUILD_CACHE": str(tmp_path / "cache")}


@pytest.fixture
def files(tmp_path) -> Path:
    (tmp_path / "not-json.json").write_text("objects: 1, 2")
    (tmp_path / "empty.json").write_text("[]")
    (tmp_path / "words.json").write_text(json.dumps({"objects": [1, "x"]}))
    (tmp_path / "bad-t.json").write_text(json.dumps({"objects": [{"t": 1}, {"t": 2}, {"t": 3}, {"t": "soon"}]}))
    (tmp_path / "typo.json").write_text(json.dumps({"objects": [1], "producer": []}))
    (tmp_path / "rows.jsonl").write_text('{"a": 1}\n{"a": 2\n{"a": 3}\n')
    return tmp_path


CASES = [
    # (args, stdin, exit code, what the message must name)
    (["simulate", "missing.json"], None, 2, "trace file 'missing.json' not found"),
    (["simulate", "not-json.json"], None, 2, "not-json.json: not JSON"),
    (["simulate", "empty.json"], None, 2, "objects: the trace has no objects"),
    (["simulate", "words.json"], None, 2, 'objects[1]: expected a number, got "x"'),
    (["simulate", "bad-t.json"], None, 2, 'objects[3].t: expected a number, got "soon"'),
    (["simulate", "typo.json"], None, 2, "producer: unknown field (did you mean producers?)"),
    (["simulate", "empty.json", "--mode", "window"], None, 2, "the trace has no objects"),
    (["demo", "--set", "nosuch=1"], None, 2, "unknown setting 'nosuch'"),
    (["demo", "--set", "max_num_repat=5"], None, 2, "(did you mean max_num_repeat?)"),
    (["settings", "--set", "max_num_repeat"], None, 2, "--set 'max_num_repeat': expected NAME=VALUE"),
    (["settings", "--set", "buffer_interval_s=5"], None, 2, "buffer_interval_s=5 is out of range: allowed 60..900"),
    (["fetch", "d1", "--to", "out", "--bucket", "b"], None, 2, "no AWS credentials found: set AWS_PROFILE or run "
                                                               "`aws configure`"),
    (["run", "start", "d1", "--producers", "a"], None, 2, "no streamwatch deployment given"),
    (["status"], None, 2, "no streamwatch deployment given"),
    (["status", "--local"], None, 2, "no local run is going: start one with `streamwatch demo`"),
    (["put", "d1", "--producer", "a", "missing.jsonl"], None, 2, "file 'missing.jsonl' not found"),
    (["put", "d1", "--producer", "a", "rows.jsonl"], None, 2, "rows.jsonl line 2: not JSON"),
    (["nosuchcommand"], None, 2, "invalid choice: 'nosuchcommand'"),
]


@pytest.mark.parametrize("args, stdin, code, message", CASES, ids=[" ".join(c[0])[:40] for c in CASES])
def test_bad_input_gets_one_clear_line_and_a_documented_exit(args, stdin, code, message, clean_env, files):
    result = run(args, clean_env, files, stdin)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert message in result.stderr


def test_aws_errors_against_a_real_endpoint_name_the_missing_thing(moto_env, files, tmp_path):
    # Given credentials and a moto server, When the bucket or the stack does not exist, Then one line says so
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lambdas"), "STREAMWATCH_BUILD_CACHE": str(tmp_path / "c")}
    for key in [k for k in env if k.startswith("STREAMWATCH_RES_")]:
        env.pop(key)
    result = run(["fetch", "d1", "--to", "out", "--bucket", "nope"], env, files)
    assert result.returncode == 2 and "bucket 'nope' does not exist in us-east-1" in result.stderr
    result = run(["status", "--stack", "Nope"], env, files)
    assert result.returncode == 2 and "stack 'Nope' not found in us-east-1" in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(clean_env, files):
    result = run(["--debug", "simulate", "missing.json"], clean_env, files)
    assert result.returncode == 2 and "Traceback" in result.stderr
    result = run(["simulate", "missing.json", "--debug"], clean_env, files)
    assert "Traceback" in result.stderr


def test_an_unexpected_error_says_it_is_a_bug_and_ctrl_c_exits_130(monkeypatch, capsys):
    message, code = explain(ZeroDivisionError("division by zero"))
    assert code == EXIT_BUG and "this is a bug in streamwatch" in message and "--debug" in message

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr("streamwatch.cli.cmd_settings", interrupted)
    assert main(["settings"]) == EXIT_INTERRUPTED


def test_exit_codes_are_the_documented_ones():
    assert (EXIT_INPUT, EXIT_BUG, EXIT_INTERRUPTED) == (2, 3, 130)
    doc = (ROOT / "docs" / "errors.md").read_text()
    for code in ("`0`", "`1`", "`2`", "`3`", "`130`"):
        assert code in doc
