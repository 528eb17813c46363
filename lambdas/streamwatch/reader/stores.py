"""Where a dataset lives, by URL: `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`, or
`https://host/path/` (a plain HTTP server: Artifactory, Nexus, nginx or Apache's index pages), each through
obstore's store for it, so every store gets the reader's retries, atomic files, report and safe names.

Credentials, as each store's users expect them:
- S3: boto3's chain (objects.make_store);
- GCS and Azure: obstore reads them from the environment (GOOGLE_SERVICE_ACCOUNT, GOOGLE_APPLICATION_CREDENTIALS
  or application default credentials; AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY, a SAS, a service
  principal or a managed identity);
- HTTP: STREAMWATCH_HTTP_TOKEN (a bearer token), or STREAMWATCH_HTTP_USER and STREAMWATCH_HTTP_PASSWORD, or the
  URL's own user:password, or ~/.netrc ($NETRC) for the host, as curl and pip read it. A credential never
  appears in a report: the location's URL is shown without it.

An HTTP server has no listing API: the files are those named by a file list, or found by following the index
pages under the URL (links to deeper folders are followed, never links up or elsewhere)."""

from __future__ import annotations

import base64
import functools
import netrc
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import quote, unquote, urljoin, urlsplit

import obstore

from streamwatch.core import scope
from streamwatch.reader.objects import (
    CLIENT_OPTIONS,
    ObjectInfo,
    ReadError,
    make_store,
    retry_config,
    with_retries,
)

SCHEMES = ("s3", "gs", "az", "http", "https")
MAX_INDEX_PAGES = 10_000  # an index that links on and on ends here, with an error, not an endless crawl
MAX_INDEX_BYTES = 16 << 20  # one index page


class BadLocation(ValueError):
    """A source that is not a URL this reader can read (said before anything reaches the network)."""


@dataclass(frozen=True)
class Location:
    """`root`: the bucket or container, or for HTTP the folder's URL (ending in "/"); keys are relative to it
    for HTTP, full keys under `prefix` otherwise."""

    scheme: str
    root: str
    prefix: str = ""
    user: str | None = field(default=None, repr=False, compare=False)
    password: str | None = field(default=None, repr=False, compare=False)

    @property
    def http(self) -> bool:
        return self.scheme in ("http", "https")

    def __str__(self) -> str:
        return self.root if self.http else f"{self.scheme}://{self.root}/{self.prefix}"

    def url_of(self, key: str) -> str:
        """The object's URL, for a person reading the report."""
        return self.root + quote(key) if self.http else f"{self.scheme}://{self.root}/{key}"


def parse_location(source: str, prefix: str = "") -> Location:
    """A bucket name (with `prefix`, as the reader always took it) or a URL that carries its own prefix."""
    if "://" not in source:
        if not source or "/" in source:
            raise BadLocation(f"{source!r}: give a bucket name, or a URL such as s3://bucket/prefix/")
        return Location("s3", source, prefix)
    if prefix:
        raise BadLocation(f"{source}: the URL carries its prefix; give no prefix beside it")
    try:
        parts = urlsplit(source)
        port = parts.port
    except ValueError as exc:
        raise BadLocation(f"{source}: not a URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise BadLocation(f"{source}: unknown scheme {parts.scheme!r}: give s3://, gs://, az://, http:// or "
                          "https://")
    if parts.query or parts.fragment:
        raise BadLocation(f"{source}: a source URL has no ?query or #fragment")
    if scheme in ("s3", "gs", "az"):
        if not parts.netloc or "@" in parts.netloc or ":" in parts.netloc:
            raise BadLocation(f"{source}: name the {'container' if scheme == 'az' else 'bucket'} right after "
                              f"{scheme}://")
        return Location(scheme, parts.netloc, parts.path.lstrip("/"))
    if not parts.hostname:
        raise BadLocation(f"{source}: no host")
    path = parts.path or "/"
    if not path.endswith("/"):
        raise BadLocation(f"{source}: an HTTP source is a folder: end the URL with '/' (its index page is read, "
                          "or the file list you give)")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = f"{host}:{port}" if port else host
    return Location(scheme, f"{scheme}://{netloc}{path}", "",
                    unquote(parts.username) if parts.username else None,
                    unquote(parts.password) if parts.password else None)


# --- stores -------------------------------------------------------------------------------------------------------
def store_for(location: Location, endpoint_url: str | None = None, retries: int = 0):
    """The obstore store for a location (cached per location, endpoint, credentials and retries: its connections
    are reused). `endpoint_url`: another S3 endpoint, GCS base URL or Azure endpoint (an emulator, a private
    link). `retries`: obstore's own (objects.retry_config), off but for multipart uploads."""
    if location.scheme == "s3":
        return make_store(location.root, endpoint_url, retries)
    if location.http:
        return _http_store(location.root, http_authorization(location))
    return _cloud_store(location.scheme, location.root, endpoint_url, _cloud_environment(location.scheme), retries)


def _cloud_environment(scheme: str) -> tuple:
    """The variables obstore reads a GCS or Azure store's credentials from: part of the cache key, so a changed
    key or account gets a store of its own, as S3's does (objects.make_store)."""
    prefix = "GOOGLE_" if scheme == "gs" else "AZURE_"
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(prefix)))


@functools.lru_cache(maxsize=32)
def _cloud_store(scheme: str, root: str, endpoint_url: str | None, environment: tuple, retries: int = 0):
    from obstore.store import AzureStore, GCSStore
    options: dict = dict(CLIENT_OPTIONS)
    if endpoint_url:
        options["allow_http"] = endpoint_url.startswith("http://")
    if scheme == "gs":
        config = {"base_url": endpoint_url} if endpoint_url else {}
        return GCSStore(root, config=config, client_options=options, retry_config=retry_config(retries))
    config = {"endpoint": endpoint_url} if endpoint_url else {}
    return AzureStore(root, config=config, client_options=options, retry_config=retry_config(retries))


@functools.lru_cache(maxsize=32)
def _http_store(root: str, authorization: str | None):
    from obstore.store import HTTPStore
    options: dict = dict(CLIENT_OPTIONS, allow_http=root.startswith("http://"))
    if authorization:
        options["default_headers"] = {"Authorization": authorization}
    # obstore joins the store's path and a key with "/": a root ending in "/" would ask for "folder//key"
    return HTTPStore(root.rstrip("/"), client_options=options, retry_config=retry_config(0))


def http_authorization(location: Location) -> str | None:
    """The Authorization header for an HTTP location: a bearer token, then a user and password from the
    environment, then the URL's own, then ~/.netrc's entry for the host; None when there is none."""
    environ = scope.environ()
    token = environ.get("STREAMWATCH_HTTP_TOKEN")
    if token:
        return f"Bearer {token}"
    user, password = environ.get("STREAMWATCH_HTTP_USER"), environ.get("STREAMWATCH_HTTP_PASSWORD")
    if not user:
        user, password = location.user, location.password
    if not user:
        user, password = _netrc(urlsplit(location.root).hostname or "", environ.get("NETRC"))
    if not user:
        return None
    return "Basic " + base64.b64encode(f"{user}:{password or ''}".encode()).decode()


def _netrc(host: str, path: str | None) -> tuple[str | None, str | None]:
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return None, None
    return (entry[0], entry[2]) if entry else (None, None)


# --- what an HTTP folder holds --------------------------------------------------------------------------------
def objects_from_lines(location: Location, lines: Iterable[str]) -> list[ObjectInfo]:
    """A file list: one key per line (relative to the location's prefix, or for HTTP to its folder), or the
    object's full URL under the location; blank lines and lines starting with # are skipped."""
    out, seen = [], set()
    base = str(location) if not location.http else location.root
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "://" in line:
            if not line.startswith(base):
                raise BadLocation(f"line {number}: {line} is not under {base}")
            relative = line[len(base):]
            relative = unquote(relative) if location.http else relative
        else:
            relative = line.lstrip("/") if location.http else line
        key = relative if location.http else location.prefix + relative
        if key and key not in seen:
            seen.add(key)
            out.append(ObjectInfo(key))
    return out


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v]


def links_of(page_url: str, html: str, root: str) -> tuple[list[str], list[str]]:
    """(files, folders) an index page links to, as URLs under `page_url`: the parent ("../"), sort links
    ("?C=N;O=D"), fragments and links to other hosts or paths are not the folder's content."""
    files, folders = [], []
    parser = _Links()
    parser.feed(html)
    for href in parser.hrefs:
        url = urljoin(page_url, href)
        parts = urlsplit(url)
        if parts.query or parts.fragment or not url.startswith(page_url) or url == page_url or \
                not url.startswith(root):
            continue
        (folders if url.endswith("/") else files).append(url)
    return files, folders


def list_index(store, location: Location, max_attempts: int = 5,
               sleep: Callable[[float], None] = time.sleep) -> list[ObjectInfo]:
    """Every file the index pages under the location link to, depth first in page order."""
    out: list[ObjectInfo] = []
    seen_pages, seen_files, pending = set(), set(), [location.root]
    while pending:
        page = pending.pop()
        if page in seen_pages:
            continue
        if len(seen_pages) >= MAX_INDEX_PAGES:
            raise ReadError(f"{location}: more than {MAX_INDEX_PAGES} index pages", "TooManyPages")
        seen_pages.add(page)
        html = _index_page(store, location, page, max_attempts, sleep)
        files, folders = links_of(page, html, location.root)
        for url in files:
            key = unquote(url[len(location.root):])
            if key not in seen_files:
                seen_files.add(key)
                out.append(ObjectInfo(key))
        pending += reversed(folders)
    return out


def _index_page(store, location: Location, page: str, max_attempts: int, sleep) -> str:
    def read() -> str:
        got = obstore.get(store, unquote(page[len(location.root):]))
        if got.meta["size"] > MAX_INDEX_BYTES:
            raise ReadError(f"{page}: an index page over {MAX_INDEX_BYTES >> 20} MiB", "IndexTooLarge")
        return got.bytes().to_bytes().decode("utf-8", "replace")

    return with_retries(read, max_attempts, sleep, f"{page}: ")
