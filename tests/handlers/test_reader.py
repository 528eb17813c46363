"""Reader: transient errors retried, permanent ones reported, no partial files, concurrency bounded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from streamwatch.local.s3_endpoint import S3Endpoint
from streamwatch.reader import DatasetReader

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "data/dataset=d1/"


@pytest.fixture
def endpoint():
    with S3Endpoint() as ep:
        for i in range(20):
            ep.put("bkt", f"{PREFIX}part-{i:02d}", (b'{"n":%d}\n' % i) * (1000 + i))
        yield ep


def files_in(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_transient_errors_and_broken_streams_are_retried_until_they_succeed(endpoint, tmp_path):
    # Given throttling, a 500, and bodies that break mid-stream, on several objects
    endpoint.fail(f"{PREFIX}part-01", "503", "503")
    endpoint.fail(f"{PREFIX}part-02", "500")
    endpoint.fail(f"{PREFIX}part-03", "broken", "broken")
    endpoint.fail(f"{PREFIX}part-04", "503", "broken", "500")
    # When the dataset is fetched
    report = DatasetReader(concurrency=4, endpoint_url=endpoint.url, processes=1).fetch("bkt", PREFIX,
                                                                                          to_dir=tmp_path)
    # Then every object arrives intact, and the report counts the attempts
    assert report.complete and len(report.ok) == 20
    attempts = {r.key.rsplit("/", 1)[1]: r.attempts for r in report.results}
    assert attempts["part-01"] == 3 and attempts["part-02"] == 2 and attempts["part-03"] == 3
    assert attempts["part-04"] == 4 and attempts["part-00"] == 1
    assert files_in(tmp_path) == {f"part-{i:02d}": endpoint.objects["bkt"][f"{PREFIX}part-{i:02d}"]
                                  for i in range(20)}


def test_permanent_errors_are_reported_and_the_rest_still_downloaded(endpoint, tmp_path):
    endpoint.fail(f"{PREFIX}part-05", "404")
    endpoint.fail(f"{PREFIX}part-06", "403")
    endpoint.fail(f"{PREFIX}part-07", *["broken"] * 10)  # never gets through
    report = DatasetReader(concurrency=8, endpoint_url=endpoint.url, max_attempts=3, processes=1).fetch(
        "bkt", PREFIX, to_dir=tmp_path)
    failed = {r.key.rsplit("/", 1)[1]: r for r in report.failed}
    assert set(failed) == {"part-05", "part-06", "part-07"}
    assert failed["part-05"].error.startswith("NoSuchKey") and failed["part-05"].attempts == 1
    assert failed["part-06"].error.startswith("AccessDenied")
    assert "IncompleteRead" in failed["part-07"].error or "ResponseStreaming" in failed["part-07"].error
    assert failed["part-07"].attempts == 3
    # no partial or temp file for what failed; everything else is there
    assert set(files_in(tmp_path)) == {f"part-{i:02d}" for i in range(20)} - set(failed)
    assert not report.complete and len(report.ok) == 17


@pytest.mark.parametrize("processes", [1, 2])
def test_concurrency_bound_is_respected(tmp_path, processes):
    with S3Endpoint(latency_s=0.05) as ep:
        for i in range(48):
            ep.put("bkt", f"{PREFIX}o{i}", b"x" * 1000)
        report = DatasetReader(concurrency=6, processes=processes, endpoint_url=ep.url).fetch("bkt", PREFIX,
                                                                                              to_dir=tmp_path)
        assert report.complete
        assert 3 <= ep.max_in_flight <= 6


def test_listing_is_paginated(tmp_path):
    with S3Endpoint() as ep:
        for i in range(1205):
            ep.put("bkt", f"{PREFIX}k{i:05d}", b"z")
        reader = DatasetReader(concurrency=16, endpoint_url=ep.url, processes=1)
        assert len(reader.list("bkt", PREFIX)) == 1205


def test_fetch_cli_reports_failures_and_exits_non_zero(endpoint, tmp_path):
    endpoint.fail(f"{PREFIX}part-09", "404")
    out = subprocess.run([sys.executable, "-m", "streamwatch", "fetch", "d1", "--bucket", "bkt", "--to",
                          str(tmp_path), "--endpoint-url", endpoint.url, "--json"], capture_output=True, text=True,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT / "lambdas"), "PATH": "/usr/bin:/bin",
                                        "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
                                        "AWS_DEFAULT_REGION": "us-east-1"}, timeout=120)
    assert out.returncode == 1
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["ok"] == 19 and [f["key"] for f in summary["failed"]] == [f"{PREFIX}part-09"]
    assert "FAILED data/dataset=d1/part-09: NoSuchKey" in out.stdout
    assert "19/20" in out.stdout and "[" in out.stderr  # the progress bar
