"""The S3 key layout and S3 notification parsing: one module, so the Firehose prefix in the stack and the
monitor's reading of keys cannot drift apart.

Layout: `<data_prefix>dataset=<id>/<whatever Firehose appends>`. The dataset id is URL-safe by contract
(`DATASET_ID_RE`); keys in notifications arrive URL-encoded (`+` for space, `%2F`), so they are decoded first.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import unquote_plus

PARTITION_FIELD = "dataset_id"  # the JSON field of every record that Firehose partitions by
PARTITION_SEGMENT = "dataset="
DATASET_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ERROR_PREFIX = "errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/"


def firehose_prefix(data_prefix: str) -> str:
    """The Firehose S3 prefix: one folder per dataset, from the record's dataset id (dynamic partitioning)."""
    return f"{data_prefix}{PARTITION_SEGMENT}!{{partitionKeyFromQuery:{PARTITION_FIELD}}}/"


def dataset_prefix(data_prefix: str, dataset_id: str) -> str:
    return f"{data_prefix}{PARTITION_SEGMENT}{dataset_id}/"


def valid_dataset_id(dataset_id: object) -> bool:
    return isinstance(dataset_id, str) and bool(DATASET_ID_RE.match(dataset_id))


def dataset_of_key(key: str, data_prefix: str) -> str | None:
    """The dataset id a (decoded) key belongs to, or None for anything outside the data layout.

    Objects a consumer writes next to the data (manifest, `_SUCCESS`) start with `_` and are not data.
    """
    if not key.startswith(data_prefix):
        return None
    segment, sep, rest = key[len(data_prefix):].partition("/")
    if not sep or not rest or not segment.startswith(PARTITION_SEGMENT):
        return None
    dataset_id = segment[len(PARTITION_SEGMENT):]
    if not valid_dataset_id(dataset_id) or rest.rsplit("/", 1)[-1].startswith("_"):
        return None
    return dataset_id


@dataclass(frozen=True)
class ObjectCreated:
    bucket: str
    key: str
    size: int
    etag: str
    event_time: str  # ISO-8601 UTC, as S3 sends it
    dataset_id: str


class Skip(Exception):
    """A notification that is not ours to count: the reason becomes the log line and the metric name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def parse_message(body: str, *, bucket: str, data_prefix: str) -> tuple[list[ObjectCreated], list[Skip]]:
    """One SQS message body -> the data objects it announces, and what was skipped and why.

    Raises Skip for a message that is entirely not ours (malformed, test event, foreign shape).
    """
    try:
        doc = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise Skip("MalformedMessage", str(exc)[:200]) from None
    if not isinstance(doc, dict):
        raise Skip("MalformedMessage", "not a JSON object")
    if doc.get("Event") == "s3:TestEvent":
        raise Skip("TestEvent")
    records = doc.get("Records")
    if not isinstance(records, list):
        raise Skip("ForeignMessage", "no Records list")
    found: list[ObjectCreated] = []
    skipped: list[Skip] = []
    for record in records:
        try:
            found.append(_parse_record(record, bucket=bucket, data_prefix=data_prefix))
        except Skip as skip:
            skipped.append(skip)
    return found, skipped


def _parse_record(record: object, *, bucket: str, data_prefix: str) -> ObjectCreated:
    if not isinstance(record, dict) or not isinstance(record.get("s3"), dict):
        raise Skip("ForeignMessage", "record without s3")
    name = record.get("eventName", "")
    if not isinstance(name, str) or not name.startswith("ObjectCreated:"):
        raise Skip("UnknownEvent", str(name)[:100])
    s3 = record["s3"]
    try:
        record_bucket = s3["bucket"]["name"]
        obj = s3["object"]
        key = unquote_plus(obj["key"])
        size = int(obj.get("size", 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise Skip("MalformedRecord", repr(exc)[:200]) from None
    if record_bucket != bucket:
        raise Skip("ForeignBucket", record_bucket)
    dataset_id = dataset_of_key(key, data_prefix)
    if dataset_id is None:
        raise Skip("OutsideDataPrefix", key[:200])
    return ObjectCreated(bucket=record_bucket, key=key, size=size, etag=str(obj.get("eTag", "")),
                         event_time=str(record.get("eventTime", "")), dataset_id=dataset_id)
