"""An embedded moto server on 127.0.0.1 (a free port), and pointing boto3 at it."""

from __future__ import annotations

import os
import urllib.request
from contextlib import contextmanager

from streamwatch import aws

ENV = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1",
       "AWS_SESSION_TOKEN": "local"}


@contextmanager
def moto_server():
    """Start ThreadedMotoServer on loopback; every boto3 client made inside talks to it (AWS_ENDPOINT_URL)."""
    import logging

    from moto.server import ThreadedMotoServer

    _match_s3_filters_as_aws()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # Servers in one process share moto's state: start from a clean account.
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST"),
                           timeout=10).read()
    saved = {k: os.environ.get(k) for k in [*ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update(ENV)
    os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
    aws.reset()
    try:
        yield os.environ["AWS_ENDPOINT_URL"]
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        aws.reset()


def _match_s3_filters_as_aws() -> None:
    """S3 matches a notification filter's prefix and suffix against the URL-encoded key (filters must be written
    encoded: S3 User Guide, "Configuring event notifications using object key name filtering"); moto matches the
    raw key, so an unencoded `data/dataset=` would work here and never fire in AWS. Make moto strict like S3."""
    from moto.s3.models import Notification

    from streamwatch.s3_events import s3_url_encode

    if getattr(Notification._key_matches, "as_aws", False):
        return
    raw_matches = Notification._key_matches

    def key_matches(self, key_name: str) -> bool:
        return raw_matches(self, s3_url_encode(key_name))
    key_matches.as_aws = True
    Notification._key_matches = key_matches
