"""An embedded moto server on 127.0.0.1 (a free port), and pointing boto3 at it."""

from __future__ import annotations

import os
import threading
import urllib.request
from contextlib import contextmanager

from streamwatch.runtime import aws

ENV = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1",
       "AWS_SESSION_TOKEN": "local"}


@contextmanager
def moto_server():
    """Start ThreadedMotoServer on loopback; every boto3 client made inside talks to it (AWS_ENDPOINT_URL)."""
    import logging

    from moto.server import ThreadedMotoServer

    _match_s3_filters_as_aws()
    _isolate_dynamodb_transactions()
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

    from streamwatch.core.s3_events import s3_url_encode

    if getattr(Notification._key_matches, "as_aws", False):
        return
    raw_matches = Notification._key_matches

    def key_matches(self, key_name: str) -> bool:
        return raw_matches(self, s3_url_encode(key_name))
    key_matches.as_aws = True
    Notification._key_matches = key_matches


_DYNAMODB = threading.RLock()


def _isolate_dynamodb_transactions() -> None:
    """DynamoDB transactions are isolated: one that is cancelled changes nothing, and never touches what other
    requests write meanwhile (DynamoDB Developer Guide, "Amazon DynamoDB Transactions: how it works", isolation
    levels). moto's TransactWriteItems backs up each table it touches and, when cancelled, puts that backup back
    whole, while its threaded server runs other requests at the same time: a write that landed in between (the
    observer recording an event as sent, a declaration) is silently undone. In the local run that was the double
    Ready with one event_id. Serialize moto's DynamoDB requests, so a transaction and its rollback see no one
    else's writes, as in DynamoDB."""
    from moto.dynamodb.responses import DynamoHandler

    if getattr(DynamoHandler.call_action, "isolated", False):
        return
    unlocked = DynamoHandler.call_action

    def call_action(self):
        with _DYNAMODB:
            return unlocked(self)
    call_action.isolated = True
    DynamoHandler.call_action = call_action
