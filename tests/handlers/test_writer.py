"""Writer: put_many takes paths, (key, bytes) pairs or a generator, keeps objects in flight bounded, retries a
single PUT, resumes a multipart upload at the part that broke, refuses a bad item for itself alone, and
`streamwatch push` prints what did not land. Through obstore against the loopback S3 endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from streamwatch.local.s3_endpoint import S3Endpoint
from streamwatch.reader.writer import DatasetWriter

ROOT = Path(__file__).resolve().parents[2]
MiB = 1 << 20


@pytest.fixture
def endpoint():
    with S3Endpoint() as ep:
        ep.objects["out"] = {}
        yield ep


def writer(ep: S3Endpoint, **kwargs) -> DatasetWriter:
    w = DatasetWriter("s3://out/stage/", endpoint_url=ep.url, **kwargs)
    w.sleep = lambda s: None
    return w


def test_paths_pairs_and_files_land_whole_under_the_prefix(endpoint, tmp_path):
    # Given files in nested folders, and (key, bytes) and (key, Path) pairs
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.json").write_bytes(b'{"n":1}\n' * 100)
    (tmp_path / "two.bin").write_bytes(os.urandom(3000))
    # When they are written
    w = writer(endpoint)
    by_path = w.put_many([tmp_path / "a" / "one.json", str(tmp_path / "two.bin")], base=tmp_path)
    by_pair = w.put_many([("x/three", b"3" * 10), ("four", tmp_path / "two.bin"), ("five", memoryview(b"55"))])
    # Then each is an object under the prefix, byte for byte, and the report has its size and attempt
    stored = endpoint.objects["out"]
    assert by_path.complete and by_pair.complete, (by_path.summary(), by_pair.summary())
    assert stored["stage/a/one.json"] == (tmp_path / "a" / "one.json").read_bytes()
    assert stored["stage/two.bin"] == stored["stage/four"] == (tmp_path / "two.bin").read_bytes()
    assert stored["stage/x/three"] == b"3" * 10 and stored["stage/five"] == b"55"
    assert [(r.key, r.bytes, r.attempts) for r in by_pair.results] == [
        ("stage/x/three", 10, 1), ("stage/four", 3000, 1), ("stage/five", 2, 1)]


def test_a_generator_is_taken_as_workers_free_up_so_bodies_in_memory_stay_bounded(endpoint):
    # Given a generator of 200 bodies and a writer of 4 in flight, on an endpoint that answers in 5 ms
    endpoint.latency_s = 0.005
    taken, lock, ahead = [0], threading.Lock(), []
    written = lambda: len(endpoint.objects["out"])  # noqa: E731

    def bodies():
        for i in range(200):
            with lock:
                taken[0] += 1
                ahead.append(taken[0] - written())
            yield f"g/{i:03d}", b"%d" % i
    # When it is written
    report = writer(endpoint, concurrency=4).put_many(bodies())
    # Then all 200 landed, and no more than the workers' bodies were ever taken ahead of the writes
    assert report.complete and written() == 200
    assert endpoint.max_in_flight <= 4 and max(ahead) <= 4 + 1


def test_transient_put_errors_are_retried_and_permanent_ones_reported(endpoint):
    # Given throttling and a 500 on one key, a body that breaks half-way on another, and 403 on a third
    endpoint.fail("stage/a", "503", "500")
    endpoint.fail("stage/b", "broken")
    endpoint.fail("stage/c", "403")
    # When they are written
    report = writer(endpoint).put_many([("a", b"A" * 1000), ("b", b"B" * 5000), ("c", b"C"), ("d", b"D")])
    # Then the transient ones landed after their retries, and the refused one failed once, named
    by_key = {r.key: r for r in report.results}
    assert (by_key["stage/a"].ok, by_key["stage/a"].attempts) == (True, 3)
    assert (by_key["stage/b"].ok, by_key["stage/b"].attempts) == (True, 2)
    assert (by_key["stage/c"].ok, by_key["stage/c"].attempts) == (False, 1)
    assert by_key["stage/c"].error.startswith("AccessDenied")
    assert endpoint.objects["out"]["stage/b"] == b"B" * 5000 and "stage/c" not in endpoint.objects["out"]
    assert report.summary()["failed"][0]["key"] == "stage/c"


def test_a_multipart_upload_resumes_at_the_part_that_broke(endpoint, tmp_path):
    # Given a 21 MiB file (three 8 MiB parts) whose second part fails once and whose third breaks mid-body
    body = os.urandom(21 * MiB)
    (tmp_path / "big").write_bytes(body)
    endpoint.fail("stage/big?partNumber=2", "503")
    endpoint.fail("stage/big?partNumber=3", "broken")
    # When it is written
    report = writer(endpoint).put_many([tmp_path / "big"], base=tmp_path)
    # Then it landed whole as one upload: the broken parts were sent again, the others once
    assert report.complete, report.summary()
    assert endpoint.objects["out"]["stage/big"] == body and report.results[0].attempts == 1
    assert [endpoint.requests[f"stage/big?partNumber={n}"] for n in (1, 2, 3)] == [1, 2, 2]
    assert not endpoint.uploads  # completed, nothing left open


def test_a_bad_item_is_refused_for_itself_alone(endpoint, tmp_path):
    # Given a text body, a missing file, a key obstore cannot address, a non-pair, and one good item
    items = [("t", "text"), tmp_path / "missing", ("a/../b", b"x"), 42, ("ok", b"fine")]
    # When they are written
    report = writer(endpoint).put_many(items, base=tmp_path)
    # Then only the good one landed, and each other one says why
    assert [r.ok for r in report.results] == [False, False, False, False, True]
    errors = [r.error for r in report.failed]
    assert all(e.startswith("Refused:") for e in errors), errors
    assert "encode the text first" in errors[0] and "not a file" in errors[1] and "'..'" in errors[2]
    assert endpoint.objects["out"] == {"stage/ok": b"fine"}


def test_a_generator_that_breaks_keeps_what_it_gave_and_says_so(endpoint):
    # Given a generator that yields two bodies and then raises
    def items():
        yield "a", b"1"
        yield "b", b"2"
        raise RuntimeError("source database went away")
    # When it is written
    report = writer(endpoint).put_many(items())
    # Then the two landed, and the report ends with the failure, named, and is not complete
    assert set(endpoint.objects["out"]) == {"stage/a", "stage/b"} and not report.complete
    assert report.failed[0].error == "ItemsFailed: the items raised RuntimeError: source database went away"


def test_push_writes_a_folder_and_says_what_did_not_land(endpoint, tmp_path):
    # Given a folder of three files, one of which the store refuses
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name in ("a.csv", "sub/b.csv", "sub/c.csv"):
        (src / name).write_text(name)
    endpoint.fail("stage/sub/c.csv", "403")
    env = {"PYTHONPATH": str(ROOT / "lambdas"), "PATH": "/usr/bin:/bin", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}
    # When it is pushed (the URL without its trailing slash: still a folder)
    out = subprocess.run([sys.executable, "-m", "streamwatch", "push", str(src), "s3://out/stage", "--endpoint-url",
                          endpoint.url, "--json"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    # Then two landed under stage/, and the refused one is named with its file, URL and error, exit 1
    assert out.returncode == 1, out.stderr
    assert set(endpoint.objects["out"]) == {"stage/a.csv", "stage/sub/b.csv"}
    assert f"FAILED {src}/sub/c.csv -> s3://out/stage/sub/c.csv: AccessDenied" in out.stdout
    assert "did not land: 1 of 3 objects" in out.stdout
    assert json.loads(out.stdout.splitlines()[-1])["ok"] == 2


@pytest.mark.parametrize(("args", "message"), [
    (["push", "/nonexistent-dir", "s3://out/x/"], "/nonexistent-dir: not a directory"),
    (["push", ".", "out/x"], "give the destination as a URL"),
    (["push", ".", "https://host/x/"], "not HTTP"),
    (["push", ".", "s3://out/x/", "--concurrency", "0"], "--concurrency 0: give 1 or more"),
])
def test_push_refuses_bad_input_in_one_line_before_the_network(args, message):
    # Given a mistaken command
    # When it runs
    out = subprocess.run([sys.executable, "-m", "streamwatch", *args], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT / "lambdas"), "PATH": "/usr/bin:/bin"}, timeout=60)
    # Then one line says what to fix, with exit 2
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_s3s_multipart_limits_hold_on_the_endpoint_and_in_the_writer(endpoint):
    # Given S3's documented limits: parts of 5 MiB at least but the last, at most 10,000 of them
    import boto3
    s3 = boto3.client("s3", endpoint_url=endpoint.url)
    upload = s3.create_multipart_upload(Bucket="out", Key="k")["UploadId"]
    small = s3.upload_part(Bucket="out", Key="k", UploadId=upload, PartNumber=1, Body=b"x" * 1024)["ETag"]
    last = s3.upload_part(Bucket="out", Key="k", UploadId=upload, PartNumber=2, Body=b"y")["ETag"]
    # When an upload whose first part is under 5 MiB is completed
    with pytest.raises(s3.exceptions.ClientError, match="EntityTooSmall"):
        s3.complete_multipart_upload(Bucket="out", Key="k", UploadId=upload, MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": small}, {"PartNumber": 2, "ETag": last}]})
    # Then the endpoint refuses it as S3 would, and refuses a part number past 10,000
    with pytest.raises(s3.exceptions.ClientError, match="InvalidArgument"):
        s3.upload_part(Bucket="out", Key="k", UploadId=upload, PartNumber=10_001, Body=b"z")
    # And the writer keeps a 100 GiB body within 10,000 parts, in whole MiB, never under its part size
    w = writer(endpoint)
    assert w.part_size_for(100 << 30) == 11 << 20 and -(-(100 << 30) // w.part_size_for(100 << 30)) <= 10_000
    assert w.part_size_for(64 << 20) == 8 << 20
