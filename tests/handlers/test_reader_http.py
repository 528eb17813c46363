"""Reader on any store: an HTTP artifact folder through obstore's HTTPStore, against a loopback file server with
faults (5xx, resets, truncated and slow bodies, 401, 404), its index pages followed, credentials from the
environment, ~/.netrc or the URL, and per-file errors that name the URL and the status."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamwatch.reader import DatasetReader
from streamwatch.reader.stores import BadLocation, Location, objects_from_lines, parse_location
from tests.fixtures.files import files_in
from tests.fixtures.http_files import HTTPFiles

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cr3t-token"
FILES = {"repo/libs/a-1.0.jar": b"A" * 70_000, "repo/libs/b-1.0.jar": b"B" * 1_000,
         "repo/libs/nested/c 1.txt": b"C\n" * 10, "repo/readme.txt": b"hello\n"}


@pytest.fixture
def server():
    with HTTPFiles(authorization=f"Bearer {TOKEN}") as files:
        for path, body in FILES.items():
            files.put(path, body)
        yield files


def fast(reader: DatasetReader) -> DatasetReader:
    reader.sleep = lambda s: None
    return reader


def test_an_http_folder_is_read_from_its_index_pages_with_a_bearer_token(server, tmp_path, monkeypatch):
    # Given an artifact folder whose index pages link up, to sort orders, and to another host
    server.extra_links["repo/"] += ["http://elsewhere.example/x.jar", "/other/y.jar", "#top"]
    monkeypatch.setenv("STREAMWATCH_HTTP_TOKEN", TOKEN)
    # When the folder's URL is fetched
    report = fast(DatasetReader(concurrency=4)).fetch(server.url + "repo/", to_dir=tmp_path)
    # Then every file under it, and only those, arrived whole under its relative path
    assert report.complete, report.summary()
    assert files_in(tmp_path) == {k[len("repo/"):]: v for k, v in FILES.items()}
    assert report.source == server.url + "repo/"


def test_faults_are_retried_and_each_failure_names_the_url_and_the_status(server, tmp_path, monkeypatch):
    # Given 5xx answers, a reset connection, truncated and slow bodies, and a file the index names that is gone
    monkeypatch.setenv("STREAMWATCH_HTTP_TOKEN", TOKEN)
    server.fail("repo/libs/a-1.0.jar", "503", "truncated", "500")
    server.fail("repo/libs/b-1.0.jar", "reset", "slow")
    server.fail("repo/libs/nested/c 1.txt", "truncated")
    server.fail("repo/readme.txt", "404")
    # When the folder is fetched
    report = fast(DatasetReader(concurrency=4)).fetch(server.url + "repo/", to_dir=tmp_path)
    # Then the transient faults were retried to the whole file, and the missing one failed once, by name
    by_key = {r.key: r for r in report.results}
    assert by_key["libs/a-1.0.jar"].ok and by_key["libs/a-1.0.jar"].attempts == 4
    assert by_key["libs/b-1.0.jar"].ok and by_key["libs/b-1.0.jar"].attempts == 2
    assert by_key["libs/nested/c 1.txt"].ok and by_key["libs/nested/c 1.txt"].attempts == 2
    gone = by_key["readme.txt"]
    assert not gone.ok and gone.attempts == 1 and gone.error.startswith("HTTP 404 Not Found")
    assert report.summary()["failed"][0]["url"] == server.url + "repo/readme.txt"
    assert files_in(tmp_path) == {k[len("repo/"):]: v for k, v in FILES.items() if k != "repo/readme.txt"}


def test_without_credentials_the_listing_fails_with_401_and_basic_auth_comes_from_netrc(server, tmp_path,
                                                                                      monkeypatch):
    # Given a server that wants credentials, and none in the environment
    monkeypatch.delenv("STREAMWATCH_HTTP_TOKEN", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    # When the folder is fetched
    report = fast(DatasetReader()).fetch(server.url + "repo/", to_dir=tmp_path / "out")
    # Then the listing fails and says why
    assert report.results == [] and report.listing_error.startswith(f"{server.url}repo/: HTTP 401 Unauthorized")
    # Given basic credentials in ~/.netrc for the host
    server.authorization = "Basic " + base64.b64encode(b"reader:pa ss").decode()
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login reader password \"pa ss\"\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    # When it is fetched again
    # Then every file arrives
    assert fast(DatasetReader()).fetch(server.url + "repo/", to_dir=tmp_path / "out").complete


def test_hostile_index_links_are_refused_one_by_one(server, tmp_path, monkeypatch):
    # Given an index page that links to names no reader may write (a dot file, an encoded climb out)
    monkeypatch.setenv("STREAMWATCH_HTTP_TOKEN", TOKEN)
    server.put("repo/.git/config", b"[core]\n")
    server.extra_links["repo/"] += ["..%2F..%2Fescape.txt", "libs/%2e%2e/%2e%2e/up.txt"]
    # When the folder is fetched
    report = fast(DatasetReader()).fetch(server.url + "repo/", to_dir=tmp_path / "out")
    # Then those are refused for themselves alone, and nothing is written outside the target
    refused = sorted(r.key for r in report.failed)
    assert refused == ["../../escape.txt", ".git/config", "libs/../../up.txt"], report.summary()
    assert all(r.error.startswith("Refused") for r in report.failed)
    assert len(report.ok) == len(FILES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_file_list_reads_only_the_files_it_names():
    # Given a location and a list of relative paths and full URLs, with comments and a repeat
    location = parse_location("https://repo.example/libs/")
    lines = ["# artifacts", "a-1.0.jar", "", "https://repo.example/libs/nested/c%201.txt", "a-1.0.jar"]
    # When it is read
    # Then each file is named once, by its path under the folder
    assert [o.key for o in objects_from_lines(location, lines)] == ["a-1.0.jar", "nested/c 1.txt"]
    # And a URL outside the folder is refused with its line number
    with pytest.raises(BadLocation, match="line 2: https://other.example/x is not under"):
        objects_from_lines(location, ["a", "https://other.example/x"])


@pytest.mark.parametrize(("source", "message"), [
    ("ftp://host/dir/", "unknown scheme 'ftp'"),
    ("https://host/dir", "end the URL with '/'"),
    ("https://host/dir/?x=1", "no \\?query"),
    ("s3:///prefix/", "name the bucket"),
    ("az://", "name the container"),
    ("https://host:99999/", "not a URL"),
])
def test_a_bad_source_url_is_refused_before_the_network(source, message):
    # Given a source URL a reader cannot read
    # When it is parsed
    # Then it is refused and says why
    with pytest.raises(BadLocation, match=message):
        parse_location(source)


def test_credentials_in_the_url_never_reach_the_report():
    # Given a URL carrying a user and a password
    # When it is parsed
    location = parse_location("https://ci:hunter2@repo.example:8443/libs/")
    # Then the report's URLs do not carry them
    assert location == Location("https", "https://repo.example:8443/libs/")
    assert "hunter2" not in str(location) + location.url_of("a.jar") + repr(location)
    assert (location.user, location.password) == ("ci", "hunter2")


def test_the_cli_fetches_a_url_and_prints_each_failure_with_its_url(server, tmp_path):
    # Given a file list naming one file that exists and one that does not
    listing = tmp_path / "files.txt"
    listing.write_text("libs/b-1.0.jar\nlibs/missing.jar\n")
    env = {**os.environ, "STREAMWATCH_HTTP_TOKEN": TOKEN}
    # When the CLI fetches them
    out = subprocess.run([sys.executable, "-m", "streamwatch", "fetch", server.url + "repo/", "--to",
                          str(tmp_path / "out"), "--list", str(listing), "--json", "--max-attempts", "2"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    # Then it exits non-zero, names the failed file's URL and status, and wrote the other one
    assert out.returncode == 1, out.stderr
    assert f"FAILED {server.url}repo/libs/missing.jar: HTTP 404 Not Found" in out.stdout
    assert json.loads(out.stdout.splitlines()[-1])["ok"] == 1
    assert (tmp_path / "out" / "libs" / "b-1.0.jar").read_bytes() == FILES["repo/libs/b-1.0.jar"]


@pytest.mark.parametrize("scheme", ["gs", "az"])
def test_gcs_and_azure_objects_are_read_through_their_own_stores_with_the_same_retries(scheme, tmp_path,
                                                                                       monkeypatch):
    # Given a loopback server answering GCS's and Azure's listings and GETs, a 503 on the listing and on an object
    monkeypatch.setenv("GOOGLE_SKIP_SIGNATURE", "true")
    monkeypatch.setenv("AZURE_SKIP_SIGNATURE", "true")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "acct")
    with HTTPFiles() as files:
        files.put("bkt/data/a.bin", b"A" * 3000)
        files.put("bkt/data/sub/b.bin", b"B" * 10)
        files.fail("bkt/data/a.bin", "503")
        files.put("bkt/other/c.bin", b"not under the prefix")
        files.fail("bkt", "503")  # the first listing request
        reader = fast(DatasetReader(endpoint_url=files.url.rstrip("/")))
        # When the bucket's prefix is fetched by its URL (listed through the store's own list API)
        listed = reader.fetch(f"{scheme}://bkt/data/", to_dir=tmp_path / "listed")
        # And the objects a file list names, one of them gone, are fetched
        location = parse_location(f"{scheme}://bkt/data/")
        objects = objects_from_lines(location, ["a.bin", "gone.bin"])
        report = reader.fetch(location, objects=objects, to_dir=tmp_path / "named")
        listings = files.requests["bkt"]
    # Then the listing (its 503 retried) found exactly the prefix's objects, each arrived whole (a 503 retried)
    assert listed.complete, listed.summary()
    assert listings == 2
    assert files_in(tmp_path / "listed") == {"a.bin": b"A" * 3000, "sub/b.bin": b"B" * 10}
    assert {r.key: r.attempts for r in listed.results} == {"data/a.bin": 2, "data/sub/b.bin": 1}
    # And the missing one failed by its URL and status
    by_key = {r.key: r for r in report.results}
    assert by_key["data/a.bin"].ok and by_key["data/gone.bin"].error == "HTTP 404 Not Found"
    assert report.url_of("data/gone.bin") == f"{scheme}://bkt/data/gone.bin"


def test_credentials_do_not_follow_a_redirect_to_another_host(server, tmp_path, monkeypatch):
    # Given a file the repository redirects to another server (another origin), which wants no credentials
    monkeypatch.setenv("STREAMWATCH_HTTP_TOKEN", TOKEN)
    with HTTPFiles() as elsewhere:
        elsewhere.put("blob/a.jar", b"moved")
        server.redirects["repo/moved.jar"] = elsewhere.url + "blob/a.jar"
        # When the file is fetched through the repository
        location = parse_location(server.url + "repo/")
        report = fast(DatasetReader()).fetch(location, objects=objects_from_lines(location, ["moved.jar"]),
                                             to_dir=tmp_path)
    # Then the repository got the token, the other host did not, and the file arrived
    assert report.complete, report.summary()
    assert server.seen_authorization["repo/moved.jar"] == f"Bearer {TOKEN}"
    assert elsewhere.seen_authorization["blob/a.jar"] is None
    assert (tmp_path / "moved.jar").read_bytes() == b"moved"
