"""Reader: transient errors retried, permanent ones reported, no partial files, concurrency bounded, large objects
in byte ranges; stream_object for one object's raw bytes. All through obstore against the loopback endpoint."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamwatch.local.s3_endpoint import S3Endpoint
from streamwatch.reader import DatasetReader, LineCountSink, ReadError, stream_object
from tests.fixtures.files import files_in

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "data/dataset=d1/"


@pytest.fixture
def endpoint():
    with S3Endpoint() as ep:
        for i in range(20):
            ep.put("bkt", f"{PREFIX}part-{i:02d}", (b'{"n":%d}\n' % i) * (1000 + i))
        yield ep


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
    # Given a 404, a 403, and a body that breaks on every attempt, among the 20 objects
    endpoint.fail(f"{PREFIX}part-05", "404")
    endpoint.fail(f"{PREFIX}part-06", "403")
    endpoint.fail(f"{PREFIX}part-07", *["broken"] * 10)  # never gets through
    # When the dataset is fetched, 3 attempts an object
    report = DatasetReader(concurrency=8, endpoint_url=endpoint.url, max_attempts=3, processes=1).fetch(
        "bkt", PREFIX, to_dir=tmp_path)
    # Then exactly those 3 fail, each with its error, the 404 after one attempt and the broken body after 3
    failed = {r.key.rsplit("/", 1)[1]: r for r in report.failed}
    assert set(failed) == {"part-05", "part-06", "part-07"}
    assert failed["part-05"].error.startswith("NoSuchKey") and failed["part-05"].attempts == 1
    assert failed["part-06"].error.startswith("AccessDenied")
    assert failed["part-07"].error.startswith("IncompleteRead")
    assert failed["part-07"].attempts == 3
    # no partial or temp file for what failed; everything else is there
    assert set(files_in(tmp_path)) == {f"part-{i:02d}" for i in range(20)} - set(failed)
    assert not report.complete and len(report.ok) == 17


def test_concurrency_bound_is_respected(tmp_path):
    # Given 48 objects behind an endpoint that takes 50 ms a request
    with S3Endpoint(latency_s=0.05) as ep:
        for i in range(48):
            ep.put("bkt", f"{PREFIX}o{i}", b"x" * 1000)
        # When they are fetched with concurrency 6
        report = DatasetReader(concurrency=6, endpoint_url=ep.url).fetch("bkt", PREFIX, to_dir=tmp_path)
        # Then all arrive, never more than 6 requests in flight
        assert report.complete
        assert 3 <= ep.max_in_flight <= 6


def test_the_endpoint_caps_each_connections_bandwidth_as_s3_caps_one_stream():
    # Given an endpoint that sends at most 4 MB/s per connection, and a 1 MiB object
    import time
    with S3Endpoint(connection_bytes_per_s=4e6) as ep:
        ep.put("bkt", "one", os.urandom(1 << 20))
        # When it is read in one GET
        started = time.perf_counter()
        body = b"".join(stream_object("bkt", "one", endpoint_url=ep.url))
        # Then it arrives whole, no faster than the cap allows (a lower bound: never flaky)
        assert len(body) == 1 << 20 and time.perf_counter() - started >= 0.9 * (1 << 20) / 4e6


def test_listing_is_paginated(tmp_path):
    # Given 1,205 objects, more than a listing page holds
    with S3Endpoint() as ep:
        for i in range(1205):
            ep.put("bkt", f"{PREFIX}k{i:05d}", b"z")
        # When a reader lists their prefix
        reader = DatasetReader(concurrency=16, endpoint_url=ep.url)
        # Then it finds all 1,205
        assert len(reader.list("bkt", PREFIX)) == 1205


def test_listing_has_s3_prefix_semantics_and_resumes_after_a_failed_page(tmp_path):
    # Given 1,205 objects under d1's prefix, one under d10's and one outside both
    with S3Endpoint() as ep:
        for i in range(1205):
            ep.put("bkt", f"{PREFIX}k{i:05d}", b"z")
        ep.put("bkt", "data/dataset=d10/k", b"z")
        ep.put("bkt", "data/other", b"z")
        # When a reader that does not wait between retries lists them
        reader = DatasetReader(endpoint_url=ep.url)
        reader.sleep = lambda s: None
        # Then its listings are S3's, a failed page retried:
        # a prefix that is not a whole path segment matches as in S3 (obstore itself lists whole segments)
        assert [o.key for o in reader.list("bkt", "data/dataset=d1")][-1] == "data/dataset=d10/k"
        assert [o.key for o in reader.list("bkt", f"{PREFIX}k0000")] == [f"{PREFIX}k{i:05d}" for i in range(10)]
        # the second page fails twice, then the listing resumes where it stopped
        listed = reader.list("bkt", "")
        ep.fail("", "ok", "503", "broken")  # "ok" is no fault: the first page goes through
        assert reader.list("bkt", "") == listed and len(listed) == 1207
        assert all(o.size == 1 and o.etag.startswith('"') for o in listed)
        # And a listing that keeps failing is the fetch's listing error, the fetch not complete
        ep.fail("", *["503"] * 5)
        report = reader.fetch("bkt", PREFIX, to_dir=tmp_path)
        assert report.listing_error.startswith("SlowDown") and not report.complete


def large_reader(ep: S3Endpoint, **kwargs) -> DatasetReader:
    """Ranges of 64 KiB from 128 KiB up, read in 8 KiB pieces: large objects at test sizes."""
    reader = DatasetReader(concurrency=8, endpoint_url=ep.url, part_size=64 * 1024, large_threshold=128 * 1024,
                           chunk_size=8 * 1024, **kwargs)
    reader.sleep = lambda s: None
    return reader


@pytest.fixture
def large():
    with S3Endpoint() as ep:
        for i in range(3):
            ep.put("bkt", f"{PREFIX}big-{i}", os.urandom(1024 * 1024 + 123 * i))
        ep.put("bkt", f"{PREFIX}small", b"s" * 1000)
        yield ep


def test_ranges_in_flight_stay_within_range_concurrency_while_small_objects_use_the_rest(large, tmp_path):
    # Given 3 large objects (50 ranges) and 40 small ones, on an endpoint answering in 20 ms
    large.latency_s = 0.02
    for i in range(40):
        large.put("bkt", f"{PREFIX}s-{i:02d}", b"x" * 100)
    # When a reader of 8 requests in flight, at most 3 of them ranges, fetches them
    report = large_reader(large, range_concurrency=3).fetch("bkt", PREFIX, to_dir=tmp_path)
    # Then all landed, and never were more than 3 ranges in flight, nor more than 8 requests in all
    assert report.complete
    ranged = sum(len(v) for v in large.ranges.values())
    assert ranged == 16 + 17 + 17 and large.max_in_flight <= 8
    assert large.max_ranges_in_flight == 3


def test_large_objects_are_fetched_in_parallel_ranges_into_whole_files(large, tmp_path):
    # Given objects of 1 MiB and more, a small one, and a reader taking 64 KiB ranges from 128 KiB up
    # When the dataset is fetched
    report = large_reader(large).fetch("bkt", PREFIX, to_dir=tmp_path)
    # Then every file is whole
    assert report.complete
    assert files_in(tmp_path) == {k[len(PREFIX):]: v for k, v in large.objects["bkt"].items()}
    # 17 ranges of 64 KiB (the last one short), no whole-object GET; the small object in one plain GET
    assert sorted(large.ranges[f"{PREFIX}big-2"]) == [(i, min(i + 65536, 1024 * 1024 + 246))
                                                      for i in range(0, 1024 * 1024 + 246, 65536)]
    assert [large.requests[f"{PREFIX}big-{i}"] for i in range(3)] == [16, 17, 17]  # exactly 1 MiB: 16 ranges
    assert all(len(large.ranges[f"{PREFIX}big-{i}"]) == large.requests[f"{PREFIX}big-{i}"] for i in range(3))
    assert large.requests[f"{PREFIX}small"] == 1 and not large.ranges[f"{PREFIX}small"]
    assert {r.key: r.attempts for r in report.results}[f"{PREFIX}big-0"] == 1


def test_a_range_whose_body_breaks_is_resumed_where_it_broke(large, tmp_path):
    # Given big-1 whose body breaks twice, with a 503 between
    key = f"{PREFIX}big-1"
    large.fail(key, "broken", "503", "broken")
    # When the dataset is fetched
    report = large_reader(large).fetch("bkt", PREFIX, to_dir=tmp_path)
    # Then big-1 is whole, after 4 attempts
    assert report.complete
    assert (tmp_path / "big-1").read_bytes() == large.objects["bkt"][key]
    result = next(r for r in report.results if r.key == key)
    assert result.attempts == 4 and result.bytes == len(large.objects["bkt"][key])
    # the retries asked for the rest of a range, not for whole parts again: some start inside a part
    assert large.requests[key] == 17 + 3 and len(large.ranges[key]) == 17 + 2  # the 503 is refused before its range
    assert any(start % 65536 for start, _ in large.ranges[key])


@pytest.mark.parametrize("fault", ["403", "broken"])
def test_a_large_object_that_fails_leaves_no_file_and_no_temp_file(large, tmp_path, fault):
    # Given every request for big-0 failing with the fault: a 403, or a body that breaks
    key = f"{PREFIX}big-0"
    large.fail(key, *[fault] * 20)  # every request of this object fails (3 attempts per part at most)
    # When the dataset is fetched, 3 attempts a part
    report = large_reader(large, max_attempts=3).fetch("bkt", PREFIX, to_dir=tmp_path)
    # Then only big-0 fails, with the fault's error, and neither it nor a .part file of it is left
    failed = {r.key: r for r in report.failed}
    assert set(failed) == {key}
    assert failed[key].error.startswith("AccessDenied" if fault == "403" else "IncompleteRead")
    assert set(files_in(tmp_path)) == {"big-1", "big-2", "small"}  # nothing else, no .part file either


def test_an_object_changed_since_the_listing_is_reported_not_retried(large, tmp_path):
    # Given the prefix listed, then big-0 (large) and small replaced
    reader = large_reader(large)
    objects = reader.list("bkt", PREFIX)
    large.put("bkt", f"{PREFIX}big-0", b"new" * 100_000)  # a large one and a small one are replaced
    large.put("bkt", f"{PREFIX}small", b"new")
    # When the listed objects are fetched
    report = reader.fetch("bkt", PREFIX, objects=objects, to_dir=tmp_path)
    # Then both replaced ones fail as PreconditionFailed after one attempt, and only the others are written
    failed = {r.key: r for r in report.failed}
    assert set(failed) == {f"{PREFIX}big-0", f"{PREFIX}small"}
    assert all(r.error.startswith("PreconditionFailed") and r.attempts == 1 for r in failed.values())
    assert set(files_in(tmp_path)) == {"big-1", "big-2"}


def test_custom_sinks_get_large_objects_in_order_in_one_stream(large):
    # Given a large object of 50,000 lines
    large.put("bkt", f"{PREFIX}lines", b"".join(b'{"i":%d}\n' % i for i in range(50_000)))
    # When the dataset is fetched into a line-counting sink per object
    report = large_reader(large).fetch("bkt", PREFIX, sink_factory=lambda key: LineCountSink())
    # Then the sink counts all 50,000 lines, and no range was asked for
    assert report.complete and {r.key: r.records for r in report.results}[f"{PREFIX}lines"] == 50_000
    assert not large.ranges  # a sink that cannot take pieces at offsets gets one GET per object


# --- stream_object: the monitor's path to one object's bytes ---------------------------------------------------------
def test_stream_object_yields_the_stored_bytes_gzip_included(monkeypatch):
    # Given an object of 20,000 lines, a gzip copy stored with Content-Encoding gzip, and an empty object
    lines = b"".join(b'{"n":%d}\n' % i for i in range(20_000))
    with S3Endpoint() as ep:
        ep.put("bkt", "plain", lines)
        ep.put("bkt", "gz", gzip.compress(lines), headers={"Content-Encoding": "gzip"})
        ep.put("bkt", "empty", b"")
        monkeypatch.setenv("AWS_ENDPOINT_URL", ep.url)  # resolved as boto3 resolves it
        # When the plain one is streamed in 64 KiB chunks
        chunks = list(stream_object("bkt", "plain", chunk_size=64 * 1024))
        # Then the chunks are its bytes, each at least 64 KiB but the last
        assert b"".join(chunks) == lines and len(chunks) > 1
        assert all(len(c) >= 64 * 1024 for c in chunks[:-1]) and all(type(c) is bytes for c in chunks)
        # And the gzip one comes as stored, not inflated, and the empty one as nothing
        raw = b"".join(stream_object("bkt", "gz"))  # not inflated on the way: the caller does that
        assert raw == ep.objects["bkt"]["gz"] and raw[:2] == b"\x1f\x8b" and gzip.decompress(raw) == lines
        assert b"".join(stream_object("bkt", "empty")) == b""


def test_stream_object_retries_and_resumes_a_broken_body_then_gives_up_on_permanent_errors():
    # Given an object of 300,000 bytes whose requests fail with a 503, a broken body, a 500 and a broken body
    body = os.urandom(300_000)
    with S3Endpoint() as ep:
        ep.put("bkt", "k", body)
        ep.fail("k", "503", "broken", "500", "broken")
        # When it is streamed
        got = b"".join(stream_object("bkt", "k", chunk_size=16 * 1024, endpoint_url=ep.url, sleep=lambda s: None))
        # Then it arrives whole in 5 requests, resumed where it broke
        assert got == body and ep.requests["k"] == 5
        assert ep.ranges["k"] and all(start > 0 for start, _ in ep.ranges["k"])  # resumed, not restarted
        # And a missing key raises NoSuchKey after one attempt, a throttled one SlowDown after its 3
        with pytest.raises(ReadError) as missing:
            list(stream_object("bkt", "nope", endpoint_url=ep.url))
        assert missing.value.code == "NoSuchKey" and missing.value.attempts == 1 and ep.requests["nope"] == 1
        ep.fail("k", *["503"] * 3)
        with pytest.raises(ReadError) as busy:
            list(stream_object("bkt", "k", endpoint_url=ep.url, max_attempts=3, sleep=lambda s: None))
        assert busy.value.code == "SlowDown" and busy.value.transient and busy.value.attempts == 3
        # replaced while it was being read: the resumed request refuses to splice two versions
        stream = stream_object("bkt", "k", chunk_size=16 * 1024, endpoint_url=ep.url, sleep=lambda s: None)
        ep.fail("k", "broken")  # half the body arrives, then the connection drops
        first = next(stream)
        ep.put("bkt", "k", b"changed")
        with pytest.raises(ReadError) as changed:
            list(stream)
        assert first == body[:len(first)] and changed.value.code == "PreconditionFailed"


def test_fetch_cli_reports_failures_and_exits_non_zero(endpoint, tmp_path):
    # Given part-09 missing (a 404)
    endpoint.fail(f"{PREFIX}part-09", "404")
    # When streamwatch fetch runs against the endpoint with --json
    out = subprocess.run([sys.executable, "-m", "streamwatch", "fetch", "d1", "--bucket", "bkt", "--to",
                          str(tmp_path), "--endpoint-url", endpoint.url, "--json"], capture_output=True, text=True,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT / "lambdas"), "PATH": "/usr/bin:/bin",
                                        "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
                                        "AWS_DEFAULT_REGION": "us-east-1"}, timeout=120)
    # Then it exits 1, its summary has 19 ok and part-09 failed, and stderr shows the progress bar
    assert out.returncode == 1
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["ok"] == 19 and [f["key"] for f in summary["failed"]] == [f"{PREFIX}part-09"]
    assert "FAILED s3://bkt/data/dataset=d1/part-09: NoSuchKey" in out.stdout
    assert "19/20" in out.stdout and "[" in out.stderr  # the progress bar


def test_credentials_come_from_the_environment_else_from_boto3s_chain(tmp_path, monkeypatch):
    # Given the credentials in the environment (conftest's)
    with S3Endpoint() as ep:
        ep.put("bkt", "k", b"x")
        # When an object is streamed
        assert b"".join(stream_object("bkt", "k", endpoint_url=ep.url)) == b"x"
        # Then its request is signed with them
        assert "Credential=testing/" in ep.last_headers["authorization"]  # conftest's AWS_ACCESS_KEY_ID
        # none in the environment: a profile, as boto3 would find it
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        (tmp_path / "credentials").write_text("[reader-test]\naws_access_key_id = AKIDPROFILE\n"
                                              "aws_secret_access_key = secret\n")
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        monkeypatch.setenv("AWS_PROFILE", "reader-test")
        assert b"".join(stream_object("bkt", "k", endpoint_url=ep.url)) == b"x"
        assert "Credential=AKIDPROFILE/" in ep.last_headers["authorization"]
        # and none anywhere: the report says so instead of raising
        monkeypatch.delenv("AWS_PROFILE")
        report = DatasetReader(endpoint_url=ep.url).fetch("bkt", "", to_dir=tmp_path / "out")
        assert report.listing_error.startswith("NoCredentials") and not report.complete
