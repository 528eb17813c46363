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
    (["push", ".", "s3://b/out/"], None, 2, "no AWS credentials found: set AWS_PROFILE or run `aws configure`"),
    (["fetch", "s3://b/x/", "--to", "out", "--list", "nolist.txt"], None, 2, "--list nolist.txt: cannot read it"),
    (["fetch", "gs://", "--to", "out"], None, 2, "gs://: name the bucket right after gs://"),
    (["fetch", "s3://b/x/", "--to", "out", "--bucket", "c"], None, 2, "a URL names its own bucket and prefix"),
    (["run", "start", "d1", "--producers", "a"], None, 2, "no streamwatch deployment given"),
    (["status"], None, 2, "no streamwatch deployment given"),
    (["status", "--local"], None, 2, "no local run is going: start one with `streamwatch demo`"),
    (["put", "d1", "--producer", "a", "missing.jsonl"], None, 2, "file 'missing.jsonl' not found"),
    (["put", "d1", "--producer", "a", "rows.jsonl"], None, 2, "rows.jsonl line 2: not JSON"),
    (["nosuchcommand"], None, 2, "invalid choice: 'nosuchcommand'"),
]


@pytest.mark.parametrize("args, stdin, code, message", CASES, ids=[" ".join(c[0])[:40] for c in CASES])
def test_bad_input_gets_one_clear_line_and_a_documented_exit(args, stdin, code, message, clean_env, files):
    # Given a bad input from CASES (arguments, maybe stdin) and no AWS credentials anywhere
    # When the real command runs on it
    result = run(args, clean_env, files, stdin)
    # Then it exits with the case's code, and stderr names the thing in one line, no traceback
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert message in result.stderr


@pytest.fixture
def aws_looking_env(clean_env) -> dict:
    """Credentials that look real and an endpoint that answers nothing (a closed port on 127.0.0.1): anything
    that reaches the network fails there, so a clear line about the input proves the input was checked first."""
    return {**clean_env, "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "STREAMWATCH_STACK": "Streamwatch", "AWS_MAX_ATTEMPTS": "1"}


HOLD_OUT = [
    # (args, what the message must name): the command's own input, before anything reaches AWS
    (["run", "start", "bad id/with slash", "--producers", "a"], "dataset id 'bad id/with slash' is invalid"),
    (["run", "start", "bad id!", "--producers", "a"], "dataset id 'bad id!' is invalid"),
    (["run", "start", "d1", "--producers", ""], "--producers is empty"),
    (["run", "start", "d1", "--producers", "a, b c"], "producer id 'b c' is invalid"),
    (["run", "start", "d1", "--producers", "a", "--expected-by", "tomorrowish"], "--expected-by 'tomorrowish'"),
    (["run", "start", "d1", "--producers", "a", "--expected-by", "-5"], "--expected-by '-5'"),
    (["run", "done", "bad/id", "--producer", "a"], "dataset id 'bad/id' is invalid"),
    (["run", "fail", "d1", "--producer", "bad id", "--error", "x"], "producer id 'bad id' is invalid"),
    (["put", "d1", "--producer", "a", "big.jsonl"], "big.jsonl line 1: longer than 1,000 KiB"),
    (["put", "d1", "--producer", "a", "/dev/zero"], "/dev/zero line 1: longer than 1,000 KiB"),
    (["put", "d1", "--producer", "bad id!", "ok.jsonl"], "producer id 'bad id!' is invalid"),
    (["put", "d1", "--producer", "a", "--concurrency", "0", "ok.jsonl"], "--concurrency 0"),
    (["fetch", "d1", "--to", "ok.jsonl", "--bucket", "b"], "ok.jsonl is not a directory"),
    (["demo", "--time-scale", "0"], "--time-scale 0"),
    (["demo", "--time-scale", "-1"], "--time-scale -1"),
]


@pytest.mark.parametrize("args, message", HOLD_OUT, ids=[" ".join(c[0])[:40] for c in HOLD_OUT])
def test_a_bad_input_is_named_before_anything_reaches_aws(args, message, aws_looking_env, files):
    # Given a line over 1,000 KiB, a good file, and credentials whose endpoint answers nothing
    (files / "big.jsonl").write_text(json.dumps({"blob": "x" * (1100 * 1024)}) + "\n")
    (files / "ok.jsonl").write_text('{"a": 1}\n')
    # When the command runs on a bad input from HOLD_OUT
    result = run(args, aws_looking_env, files)
    # Then it exits with EXIT_INPUT naming the input, and never tried to reach AWS
    assert result.returncode == EXIT_INPUT, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "reach" not in result.stderr  # not "cannot reach AWS": the input was checked first


def test_put_reads_a_fifo_once_and_checks_its_first_line_before_aws(aws_looking_env, files):
    # Given a FIFO (a process substitution is one): it can be read only once
    import threading
    fifo = files / "rows.fifo"
    os.mkfifo(fifo)
    threading.Thread(target=lambda: fifo.write_text('{"a": 1}\n{"a": 2}\n'), daemon=True).start()
    # When it is put
    result = run(["put", "d1", "--producer", "a", str(fifo)], aws_looking_env, files)
    # Then it does not hang on a second read, and gets as far as AWS (here: nothing answers)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "line" not in result.stderr.split("streamwatch:", 1)[-1][:40]  # no complaint about its lines
    # And a FIFO whose first line is not JSON is refused before AWS
    bad = files / "bad.fifo"
    os.mkfifo(bad)
    threading.Thread(target=lambda: bad.write_text("not json\n"), daemon=True).start()
    result = run(["put", "d1", "--producer", "a", str(bad)], aws_looking_env, files)
    assert result.returncode == EXIT_INPUT and "bad.fifo line 1: not JSON" in result.stderr


def test_aws_errors_against_a_real_endpoint_name_the_missing_thing(moto_env, files, tmp_path):
    # Given credentials and a moto server
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lambdas"), "STREAMWATCH_BUILD_CACHE": str(tmp_path / "c")}
    for key in [k for k in env if k.startswith("STREAMWATCH_RES_")]:
        env.pop(key)
    # When the bucket or the stack does not exist
    result = run(["fetch", "d1", "--to", "out", "--bucket", "nope"], env, files)
    # Then one line says so
    assert result.returncode == 2 and "bucket 'nope' does not exist in us-east-1" in result.stderr
    result = run(["status", "--stack", "Nope"], env, files)
    assert result.returncode == 2 and "stack 'Nope' not found in us-east-1" in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(clean_env, files):
    # Given a trace file that does not exist
    # When simulate runs on it with --debug before the command
    result = run(["--debug", "simulate", "missing.json"], clean_env, files)
    # Then it exits 2 and shows the traceback
    assert result.returncode == 2 and "Traceback" in result.stderr
    # And --debug after the command shows it too
    result = run(["simulate", "missing.json", "--debug"], clean_env, files)
    assert "Traceback" in result.stderr


def test_an_unexpected_error_says_it_is_a_bug_and_ctrl_c_exits_130(monkeypatch, capsys):
    # Given an error no one expected (a ZeroDivisionError)
    # When it is explained
    message, code = explain(ZeroDivisionError("division by zero"))
    # Then the message says it is a bug in streamwatch and points to --debug, with EXIT_BUG
    assert code == EXIT_BUG and "this is a bug in streamwatch" in message and "--debug" in message

    # And a command interrupted by Ctrl-C exits with EXIT_INTERRUPTED
    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr("streamwatch.cli.cmd_settings", interrupted)
    assert main(["settings"]) == EXIT_INTERRUPTED


def test_exit_codes_are_the_documented_ones():
    # Given the exit codes for bad input, a bug and Ctrl-C
    # When they are read
    # Then they are 2, 3 and 130
    assert (EXIT_INPUT, EXIT_BUG, EXIT_INTERRUPTED) == (2, 3, 130)
    # And docs/errors.md documents every exit code, 0 and 1 included
    doc = (ROOT / "docs" / "errors.md").read_text()
    for code in ("`0`", "`1`", "`2`", "`3`", "`130`"):
        assert code in doc
