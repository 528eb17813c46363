"""An embedded moto server on 127.0.0.1 (a free port), shared by the process, and pointing boto3 at it."""

from __future__ import annotations

import os
import threading
import urllib.request
from contextlib import contextmanager

import boto3

from streamwatch.runtime import aws

ENV = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1",
       "AWS_SESSION_TOKEN": "local"}


_LOCK = threading.Lock()
_SHARED: dict = {"users": 0, "server": None, "endpoint": None}


@contextmanager
def shared_server():
    """One ThreadedMotoServer on loopback (a free port) for the whole process, however many use it at once: moto
    keeps its state per process, so a second server would see (and its reset would wipe) the first one's. The first
    user starts it from a clean account; the last one stops it. Yields the endpoint; the environment is untouched."""
    import logging

    from moto.server import ThreadedMotoServer

    with _LOCK:
        if not _SHARED["users"]:
            _match_s3_filters_as_aws()
            _isolate_dynamodb_transactions()
            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"),
                                   timeout=10).read()
            _SHARED.update(server=server, endpoint=endpoint)
        _SHARED["users"] += 1
        endpoint = _SHARED["endpoint"]
    try:
        yield endpoint
    finally:
        with _LOCK:
            _SHARED["users"] -= 1
            if not _SHARED["users"]:
                _SHARED["server"].stop()
                _SHARED.update(server=None, endpoint=None)


@contextmanager
def moto_server():
    """The shared server, with the process's environment pointed at it: every boto3 client made inside talks to it
    (AWS_ENDPOINT_URL). For tests and benchmarks of one component; a Sandbox leaves os.environ alone."""
    with shared_server() as endpoint:
        saved = {k: os.environ.get(k) for k in [*ENV, "AWS_ENDPOINT_URL"]}
        os.environ.update(ENV)
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        aws.reset()
        try:
            yield endpoint
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            aws.reset()


class RawBody:
    """The raw body botocore reads from a response a hook makes up (an emulated service's answer)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **kwargs):
        yield self.data


class Session(boto3.Session):
    """A boto3 session whose clients and resources talk to one endpoint, with the server's credentials: a local
    run's, made without touching the process's environment."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(aws_access_key_id=ENV["AWS_ACCESS_KEY_ID"], aws_secret_access_key=ENV["AWS_SECRET_ACCESS_KEY"],
                         aws_session_token=ENV["AWS_SESSION_TOKEN"], region_name=ENV["AWS_DEFAULT_REGION"])
        self.endpoint = endpoint

    def client(self, *args, **kwargs):
        kwargs["endpoint_url"] = kwargs.get("endpoint_url") or self.endpoint
        return super().client(*args, **kwargs)

    def resource(self, *args, **kwargs):
        kwargs["endpoint_url"] = kwargs.get("endpoint_url") or self.endpoint
        return super().resource(*args, **kwargs)


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
