"""The reader and the writer on az:// against Azurite, Azure's own emulator: Shared Key signatures checked, the
real List Blobs, ranged GETs with If-Match on Azure's ETags, block blobs for multipart uploads. The loopback file
server (test_reader_http.py) brings the faults; this brings the service's rules."""

from __future__ import annotations

import base64
import math
import os

import pytest

from streamwatch.reader import DatasetReader, DatasetWriter
from tests.fixtures.azurite import ACCOUNT, KEY, Azurite
from tests.fixtures.files import files_in

MiB = 1 << 20


@pytest.fixture(scope="module")
def azure():
    with Azurite() as running:
        yield running


@pytest.fixture(autouse=True)
def account(monkeypatch):
    """The development account's name and key, as a user's environment gives them to obstore."""
    for name in [k for k in os.environ if k.startswith("AZURE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", ACCOUNT)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", KEY)


def test_blobs_written_by_azures_own_client_are_read_whole_small_and_in_ranges(azure, tmp_path):
    # Given a container Azure's client filled: small blobs, a nested one, and one large enough for byte ranges
    container = azure.container("read")
    blobs = {"data/a.json": b'{"a": 1}\n', "data/sub/b.json": b'{"b": 2}\n' * 100,
             "data/large.bin": os.urandom(10 * MiB + 12345), "other/c.json": b"not under the prefix\n"}
    for name, body in blobs.items():
        container.upload_blob(name, body)
    reader = DatasetReader(endpoint_url=azure.endpoint, part_size=4 * MiB, large_threshold=4 * MiB)
    # When the prefix is fetched by its URL
    report = reader.fetch("az://read/data/", to_dir=tmp_path / "out")
    # Then every blob under it arrived whole, the large one in its 3 ranges, each request signed and accepted
    assert report.complete, report.summary()
    assert files_in(tmp_path / "out") == {"a.json": blobs["data/a.json"], "sub/b.json": blobs["data/sub/b.json"],
                                          "large.bin": blobs["data/large.bin"]}
    assert {r.key: r.attempts for r in report.results} == {"data/a.json": 1, "data/sub/b.json": 1,
                                                           "data/large.bin": 1}
    assert report.url_of("data/a.json") == "az://read/data/a.json"


def test_the_writer_lands_large_bodies_as_block_blobs_that_azure_reads_back(azure, tmp_path):
    # Given a file large enough for a multipart upload, and small bodies
    container = azure.container("write")
    large = os.urandom(21 * MiB)
    (tmp_path / "large.bin").write_bytes(large)
    writer = DatasetWriter("az://write/stage/", endpoint_url=azure.endpoint)
    # When they are written
    report = writer.put_many([("big/large.bin", tmp_path / "large.bin"), ("small.json", b"{}\n")])
    # Then each landed: the large one as a block blob of 8 MiB blocks, committed whole, as Azure reads it
    assert report.complete, report.summary()
    assert container.download_blob("stage/big/large.bin").readall() == large
    assert container.download_blob("stage/small.json").readall() == b"{}\n"
    committed, uncommitted = container.get_blob_client("stage/big/large.bin").get_block_list("all")
    assert [block.size for block in committed] == [8 * MiB, 8 * MiB, 5 * MiB] and not uncommitted
    assert len(committed) == math.ceil(len(large) / writer.part_size)


def test_a_blob_replaced_after_it_was_listed_is_refused_not_spliced(azure, tmp_path):
    # Given a listing, then both blobs replaced by new versions (a small one and one read in ranges)
    container = azure.container("replaced")
    container.upload_blob("data/small.json", b"version 1\n")
    container.upload_blob("data/large.bin", b"1" * (9 * MiB))
    reader = DatasetReader(endpoint_url=azure.endpoint, part_size=4 * MiB, large_threshold=4 * MiB)
    listed = reader.list("az://replaced/data/")
    container.upload_blob("data/small.json", b"version 2\n", overwrite=True)
    container.upload_blob("data/large.bin", b"2" * (9 * MiB), overwrite=True)
    # When the listed objects are fetched
    report = reader.fetch("az://replaced/data/", objects=listed, to_dir=tmp_path / "out")
    # Then Azure refused each GET's If-Match at once (not retried), and no file was left, whole or mixed
    assert not report.ok
    assert {r.key: (r.error.split(":")[0], r.attempts) for r in report.results} == {
        "data/small.json": ("ConditionNotMet", 1), "data/large.bin": ("ConditionNotMet", 1)}
    assert files_in(tmp_path / "out") == {}


def test_a_wrong_account_key_fails_the_listing_with_azures_own_error_in_one_line(azure, tmp_path, monkeypatch):
    # Given a container, and a key that is not the account's
    azure.container("secret").upload_blob("data/a.json", b"{}\n")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", base64.b64encode(b"not the key" * 6).decode())
    # When it is fetched
    report = DatasetReader(endpoint_url=azure.endpoint).fetch("az://secret/data/", to_dir=tmp_path / "out")
    # Then the signature was refused: the listing fails with the service's reason, and nothing was written
    assert not report.complete and report.results == []
    assert report.listing_error.startswith("AuthorizationFailure: Server failed to authenticate the request.")
    assert "\n" not in report.listing_error  # one line: Azure's RequestId and Time lines are left out
    assert not (tmp_path / "out").exists() or files_in(tmp_path / "out") == {}
