"""Object-created messages, in every shape a bucket can deliver them to the notifications queue, and the key ->
dataset mapping through the dataset rules (`streamwatch.core.rules`).

Shapes (each tested with AWS's documented samples, tests/unit/test_s3_events.py):
- an S3 event notification `{"Records": [...]}`: keys URL-encoded (`+` is a space, `%2B` a plus);
- an EventBridge `Object Created` event (`source: aws.s3`): keys NOT encoded (a `+` is a plus);
- either of those wrapped in an SNS envelope (`Type: Notification`, raw message delivery off), or raw through
  SNS (the body is the S3 notification itself).
`s3:TestEvent`, other buckets, other event kinds, keys no rule owns: skipped with a named reason (the reason
becomes the log line and the `Skipped<Reason>` metric), never failing the batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import unquote_plus

from streamwatch.core.ids import valid_dataset_id
from streamwatch.core.rules import RuleSet

OBJECT_CREATED = "Object Created"
# S3 writes keys URL-encoded in notifications ("red flower.jpg" -> "red+flower.jpg", S3 User Guide "Event message
# structure"), and a notification filter's prefix or suffix must be written the same way: a space as `+`, any other
# special character percent-encoded (S3 User Guide, "Configuring event notifications using object key name
# filtering"). AWS does not list which characters S3 leaves alone, so a filter value holds only those that every
# form encoding leaves alone: with them the encoded and the raw value are one string.
FORM_UNENCODED = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_.*")
FILTER_SAFE = frozenset(FORM_UNENCODED - {"*"} | {"/"})  # "*" is no wildcard in a filter, and S3 refuses it


def s3_url_encode(key: str) -> str:
    """A key as S3 writes it in a notification: form encoding (a space as `+`), `/` kept. The local run matches
    notification filters on this, as S3 does; moto matches the raw key."""
    out = []
    for char in key:
        if char in FORM_UNENCODED or char == "/":
            out.append(char)
        elif char == " ":
            out.append("+")
        else:
            out.extend(f"%{b:02X}" for b in char.encode("utf-8"))
    return "".join(out)


def filter_prefix(prefix: str) -> str:
    """The S3 notification filter for a watched prefix: cut at the last `/` before its first character that S3
    would encode (`data/dataset=` -> `data/`), so the value means the same encoded or not. The monitor skips the
    keys under it that no rule owns."""
    for i, char in enumerate(prefix):
        if char not in FILTER_SAFE:
            return prefix[: prefix.rfind("/", 0, i) + 1]
    return prefix


def notification_filters(prefixes: list[str]) -> list[str]:
    """The fewest filter prefixes covering the watched ones (S3 refuses overlapping filters); `""` alone is the
    whole bucket. EventBridge patterns match the raw key: `object_created_pattern` keeps the prefixes as they are."""
    cut = sorted({filter_prefix(p) for p in prefixes})
    return [p for p in cut if not any(q != p and p.startswith(q) for q in cut)]


@dataclass(frozen=True)
class ObjectCreated:
    bucket: str
    key: str
    size: int
    etag: str
    event_time: str  # ISO-8601 UTC, as S3 / EventBridge send it
    dataset_id: str
    rule: str = "default"
    window_start: float | None = None
    window_s: int | None = None
    error_output: bool = False  # an object of Firehose's error output, not data
    writer: str = ""  # who wrote it, as the notification says: S3's userIdentity.principalId, EventBridge's requester

    @property
    def window_end(self) -> float | None:
        return self.window_start + self.window_s if self.window_start is not None else None


class Skip(Exception):
    """A notification (or a record of one) that is not ours to count."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def parse_message(body: str, *, bucket: str, rules: RuleSet,
                  error_prefix: str = "") -> tuple[list[ObjectCreated], list[Skip]]:
    """One SQS message body -> the data objects it announces, and what was skipped and why.

    Raises Skip for a message that is entirely not ours (malformed, test event, foreign shape).
    """
    doc = _json(body)
    if doc.get("Type") == "Notification" and isinstance(doc.get("Message"), str):  # SNS envelope
        doc = _json(doc["Message"])
    if doc.get("Event") == "s3:TestEvent":
        raise Skip("TestEvent")
    if doc.get("source") == "aws.s3" and "detail-type" in doc:
        return [_from_eventbridge(doc, bucket=bucket, rules=rules, error_prefix=error_prefix)], []
    records = doc.get("Records")
    if not isinstance(records, list):
        raise Skip("ForeignMessage", "neither S3 Records nor an aws.s3 EventBridge event")
    found: list[ObjectCreated] = []
    skipped: list[Skip] = []
    for record in records:
        try:
            found.append(_from_record(record, bucket=bucket, rules=rules, error_prefix=error_prefix))
        except Skip as skip:
            skipped.append(skip)
    return found, skipped


def _json(text: object) -> dict:
    try:
        doc = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise Skip("MalformedMessage", str(exc)[:200]) from None
    if not isinstance(doc, dict):
        raise Skip("MalformedMessage", "not a JSON object")
    return doc


def _from_record(record: object, *, bucket: str, rules: RuleSet, error_prefix: str) -> ObjectCreated:
    if not isinstance(record, dict) or not isinstance(record.get("s3"), dict):
        raise Skip("ForeignMessage", "record without s3")
    name = record.get("eventName", "")
    if not isinstance(name, str) or not name.startswith("ObjectCreated:"):
        raise Skip("UnknownEvent", str(name)[:100])
    s3 = record["s3"]
    try:
        record_bucket = s3["bucket"]["name"]
        obj = s3["object"]
        key = unquote_plus(obj["key"])  # the notification format URL-encodes keys
        size = int(obj.get("size", 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise Skip("MalformedRecord", repr(exc)[:200]) from None
    identity = record.get("userIdentity")
    writer = str(identity.get("principalId", "")) if isinstance(identity, dict) else ""
    return _owned(record_bucket, key, size, str(obj.get("eTag", "")), str(record.get("eventTime", "")),
                  bucket=bucket, rules=rules, error_prefix=error_prefix, writer=writer)


def _from_eventbridge(event: dict, *, bucket: str, rules: RuleSet, error_prefix: str) -> ObjectCreated:
    if event.get("detail-type") != OBJECT_CREATED:
        raise Skip("UnknownEvent", str(event.get("detail-type"))[:100])
    detail = event.get("detail")
    try:
        record_bucket = detail["bucket"]["name"]
        obj = detail["object"]
        key = obj["key"]  # EventBridge keys are not URL-encoded: a '+' is a plus
        size = int(obj.get("size", 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise Skip("MalformedRecord", repr(exc)[:200]) from None
    if not isinstance(key, str):
        raise Skip("MalformedRecord", "object key is not a string")
    return _owned(record_bucket, key, size, str(obj.get("etag", "")), str(event.get("time", "")),
                  bucket=bucket, rules=rules, error_prefix=error_prefix, writer=str(detail.get("requester", "")))


def _owned(record_bucket: str, key: str, size: int, etag: str, event_time: str, *, bucket: str,
           rules: RuleSet, error_prefix: str, writer: str = "") -> ObjectCreated:
    if record_bucket != bucket:
        raise Skip("ForeignBucket", str(record_bucket)[:100])
    if error_prefix and key.startswith(error_prefix):
        return ObjectCreated(bucket=record_bucket, key=key, size=size, etag=etag, event_time=event_time,
                             dataset_id="", error_output=True, writer=writer)
    match = rules.match(key)
    if match is None:
        raise Skip("NotData", repr(key[:200]))
    if not valid_dataset_id(match.dataset_id):  # a key no writer of ours makes (too long an id): foreign
        raise Skip("InvalidDatasetId", repr(match.dataset_id[:200]))
    return ObjectCreated(bucket=record_bucket, key=key, size=size, etag=etag, event_time=event_time,
                         dataset_id=match.dataset_id, rule=match.rule.name, window_start=match.window_start,
                         window_s=match.rule.window_s, writer=writer)


def watched_prefixes(rules: RuleSet, error_prefix: str = "") -> list[str]:
    """What object events are delivered for: every rule's literal prefix, and the error output; the fewest
    prefixes that cover them (S3 rejects overlapping notification filters)."""
    prefixes = sorted({*rules.watched_prefixes, *([error_prefix] if error_prefix else [])})
    return [p for p in prefixes if not any(q != p and p.startswith(q) for q in prefixes)]


def object_created_pattern(bucket: str, prefixes: list[str]) -> dict:
    """The EventBridge pattern for a bucket's new objects under the watched prefixes (construct and local run)."""
    key = [{"prefix": p} for p in prefixes] if all(prefixes) else [{"exists": True}]
    return {"source": ["aws.s3"], "detail-type": [OBJECT_CREATED],
            "detail": {"bucket": {"name": [bucket]}, "object": {"key": key}}}
