"""`fetch` and DatasetReader write only new files with safe names inside the target, never through a symlink:
keys a writer chose (.git/config, .ssh/authorized_keys, Windows paths) are refused one by one, the rest lands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamwatch.local.s3_endpoint import S3Endpoint
from streamwatch.reader import DatasetReader, unsafe_name

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "data/dataset=d1/"
UNADDRESSABLE = ["x/\x00y", "bell\x07", "a/../../escape", "twice//slash"]  # obstore refuses their listing
HOSTILE = [*UNADDRESSABLE, ".git/config", ".bashrc", "sub/.ssh/authorized_keys", ".aws/config", "a\\b", "C:evil",
           "lead/ space", "f" * 240]
FINE = ["part-0", "2026/12/01/part-1.json.gz", "a b.txt"]


@pytest.fixture
def endpoint():
    with S3Endpoint() as ep:
        for key in HOSTILE + FINE:
            ep.put("bkt", PREFIX + key, b"payload of " + key.encode("utf-8", "replace") + b"\n")
        yield ep


def fetch(endpoint, to: Path, **kwargs):
    return DatasetReader(concurrency=4, endpoint_url=endpoint.url).fetch("bkt", PREFIX, to_dir=to, **kwargs)


def test_hostile_keys_are_refused_one_by_one_and_the_rest_lands(endpoint, tmp_path):
    # Given objects with the HOSTILE keys beside FINE ones
    # When the dataset is fetched
    report = fetch(endpoint, tmp_path)
    # Then only the fine ones are written
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(FINE)
    # And each hostile key is refused without an attempt, and nothing lands as .git or .bashrc
    refused = {r.key[len(PREFIX):]: r.error for r in report.failed}
    assert set(refused) == set(HOSTILE) and report.listing_error is None
    assert all(error.startswith("Refused: ") and r.attempts == 0 for error, r in zip(
        refused.values(), report.failed, strict=True))
    assert not (tmp_path / ".git").exists() and not (tmp_path / ".bashrc").exists()


def test_a_symlinked_directory_inside_the_target_is_never_followed(endpoint, tmp_path):
    # Given a target whose 2026 folder is a symlink to a folder outside it
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    (target / "2026").symlink_to(outside, target_is_directory=True)
    # When the dataset is fetched with overwrite
    report = fetch(endpoint, target, overwrite=True)
    # Then nothing lands outside: the object under 2026/ is reported, the rest written
    assert list(outside.iterdir()) == []
    failed = {r.key[len(PREFIX):]: r.error for r in report.failed}
    assert "2026/12/01/part-1.json.gz" in failed  # ELOOP: reported for that object, the rest written
    assert (target / "part-0").exists()


def test_existing_files_are_never_replaced_without_overwrite(endpoint, tmp_path):
    # Given a file of the user's where part-0 would land
    (tmp_path / "part-0").write_bytes(b"mine")
    # When the dataset is fetched
    report = fetch(endpoint, tmp_path)
    # Then the file is kept, and part-0 reported as FileExists
    assert (tmp_path / "part-0").read_bytes() == b"mine"
    assert any(r.key.endswith("part-0") and "FileExists" in r.error for r in report.failed)
    # And fetched with overwrite, it is replaced
    fetch(endpoint, tmp_path, overwrite=True)
    assert (tmp_path / "part-0").read_bytes().startswith(b"payload")


@pytest.mark.parametrize("name, safe", [("part-0", True), ("dir/file.json", True), (".hidden", False),
                                        ("dir/.git/config", False), ("a\\b", False), ("c:d", False),
                                        ("", False), ("dir/", False), ("a//b", False), ("x" * 217, False)])
def test_safe_names(name, safe):
    # Given a name (the parameter)
    # When unsafe_name checks it
    # Then it is safe as the parameter says: no hidden part, backslash, drive, empty segment or overlong name
    assert (unsafe_name(name) is None) == safe


def test_the_cli_refuses_a_non_empty_target_before_touching_the_network(tmp_path):
    # Given a target folder with a file in it, and an endpoint that answers nothing
    (tmp_path / "something").write_text("x")
    env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "x", "PYTHONPATH": str(ROOT / "lambdas")}
    # When streamwatch fetch runs into it
    result = subprocess.run([sys.executable, "-m", "streamwatch", "fetch", "d1", "--bucket", "b", "--to",
                             str(tmp_path)], capture_output=True, text=True, env=env, timeout=60)
    # Then it exits 2 saying the target is not empty and pointing to --overwrite, with no traceback
    assert result.returncode == 2 and "is not empty" in result.stderr and "--overwrite" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_consumer_writes_its_manifest_with_unaddressable_keys_listed_as_refused(moto_env):
    # Given part-0 beside two keys no one can address (a '..' path and a control character)
    import boto3

    from streamwatch.runtime.manifest import write_manifest
    _, local = moto_env()
    s3 = boto3.client("s3")
    for key in ("part-0", "a/../../escape", "bell\x07"):
        s3.put_object(Bucket=local.resources.bucket, Key=PREFIX + key, Body=b'{"n":1}\n')
    # When the consumer writes d1's manifest
    manifest = write_manifest({"dataset_id": "d1", "bucket": local.resources.bucket, "prefix": PREFIX,
                               "objects": 3}, DatasetReader(), s3)
    # Then only part-0 is listed as an object, the two as refused, and it does not match the declaration
    assert [e["key"] for e in manifest["objects"]] == [PREFIX + "part-0"]
    assert sorted(r["key"] for r in manifest["refused"]) == sorted([PREFIX + "a/../../escape", PREFIX + "bell\x07"])
    assert manifest["matches_declaration"] is False


def test_each_result_names_the_file_it_wrote(endpoint, tmp_path):
    # Given objects with fine and hostile keys
    # When the dataset is fetched
    report = fetch(endpoint, tmp_path)
    # Then each fine object's result names the file it wrote
    written = {r.key[len(PREFIX):]: r.path for r in report.ok}
    assert written == {key: str(tmp_path / key) for key in FINE}


def test_on_a_file_system_without_hard_links_new_files_still_never_replace_existing_ones(endpoint, tmp_path,
                                                                                         monkeypatch):
    # Given a file system that refuses hard links (EPERM), and a file of the user's where part-0 would land
    def no_links(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")  # EPERM: what vfat and some FUSE mounts answer
    monkeypatch.setattr(os, "link", no_links)
    (tmp_path / "part-0").write_bytes(b"mine")
    # When the dataset is fetched
    report = fetch(endpoint, tmp_path)
    # Then the user's file is kept, the other files land, part-0 is reported as FileExists, no temp file is left
    assert (tmp_path / "part-0").read_bytes() == b"mine"
    assert (tmp_path / "a b.txt").read_bytes().startswith(b"payload")
    assert [r.key for r in report.failed if "FileExists" in r.error] == [PREFIX + "part-0"]
    assert not [p for p in tmp_path.rglob(".*.part")]


def test_a_dataset_of_many_folders_needs_no_more_descriptors_than_a_few(tmp_path):
    # Given 600 folders of one object each, and a process allowed 150 open files
    script = f"""
import resource, sys
sys.path.insert(0, {str(ROOT / "lambdas")!r})
from streamwatch.local.s3_endpoint import S3Endpoint
from streamwatch.reader import DatasetReader
with S3Endpoint() as ep:
    for i in range(600):
        ep.put("bkt", f"p/{{i:04d}}/part", b"x\\n")
    resource.setrlimit(resource.RLIMIT_NOFILE, (150, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    report = DatasetReader(concurrency=8, endpoint_url=ep.url).fetch("bkt", "p/", to_dir={str(tmp_path)!r})
    print(len(report.ok), [r.error for r in report.failed][:3])
"""
    # When the script fetches them in its own process
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    # Then every object lands (one descriptor per folder ran out at ~150 before)
    assert result.stdout.split()[0] == "600", result.stdout + result.stderr[-2000:]
