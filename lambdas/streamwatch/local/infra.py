"""The construct's resources, created on a local (moto) endpoint from the same Settings and table layout.

Used by the sandbox (`streamwatch demo`) and the tests: bucket, notifications queue (with DLQ) fed either by the
bucket's notification configuration (one filter per watched prefix, plus the error output) or, in EventBridge
mode, by a rule on the default bus for `Object Created` events of this bucket and those prefixes; state table
(keys, TTL and the `by_day` index from `store`); observer queue (with DLQ); the event bus with a rule that
copies every streamwatch event to a queue the local run reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import boto3

from streamwatch.core.catalog import location_of, ready_pattern, table_input
from streamwatch.core.events import DETAIL_TYPES, SOURCE, waits_pattern
from streamwatch.core.limits import MAX_RECEIVE_COUNT
from streamwatch.core.s3_events import notification_filters, object_created_pattern, watched_prefixes
from streamwatch.core.settings import Resources, Settings
from streamwatch.state.layout import (
    IDEMPOTENCY_KEY,
    IDEMPOTENCY_TTL,
    LIST_INDEX,
    LIST_PK,
    LIST_SK,
    PK,
    SK,
    TTL_ATTRIBUTE,
)


@dataclass(frozen=True)
class LocalStack:
    resources: Resources
    notification_queue_url: str
    notification_dlq_url: str
    observer_dlq_url: str
    events_queue_url: str  # every event on the bus lands here
    raw_s3_queue_url: str = ""  # EventBridge mode: S3's own notifications, which the sandbox forwards as AWS would
    notifications: str = "s3"
    catalog_queue_url: str = ""  # rules with a catalog: their Readys, for the catalog function
    catalog_dlq_url: str = ""

    @property
    def queues(self) -> dict:
        """name -> {"queue", "dlq"}: what `streamwatch dlq` reads (the stack's `Queues` output)."""
        queues = {"notifications": {"queue": self.notification_queue_url, "dlq": self.notification_dlq_url},
                  "observer": {"queue": self.resources.observer_queue_url, "dlq": self.observer_dlq_url}}
        if self.catalog_queue_url:
            queues["catalog"] = {"queue": self.catalog_queue_url, "dlq": self.catalog_dlq_url}
        return queues


def _queue_with_dlq(sqs, name: str, visibility: int) -> tuple[str, str]:
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = _arn(sqs, dlq)
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT})
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": str(visibility),
                                                       "RedrivePolicy": redrive})["QueueUrl"]
    return url, dlq


def _arn(sqs, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def create(settings: Settings, name: str = "streamwatch", *, visibility: int = 30,
           observer_visibility: int | None = None, session: boto3.Session | None = None,
           notifications: str = "s3") -> LocalStack:
    session = session or boto3.Session()
    s3, sqs, ddb, ev = (session.client(s) for s in ("s3", "sqs", "dynamodb", "events"))
    bucket, table = f"{name}-data", f"{name}-state"
    s3.create_bucket(Bucket=bucket)
    ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": PK, "KeyType": "HASH"}, {"AttributeName": SK, "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"}
                                           for a in (PK, SK, LIST_PK, LIST_SK)],
                     GlobalSecondaryIndexes=[{"IndexName": LIST_INDEX, "Projection": {"ProjectionType": "ALL"},
                                              "KeySchema": [{"AttributeName": LIST_PK, "KeyType": "HASH"},
                                                            {"AttributeName": LIST_SK, "KeyType": "RANGE"}]}])
    ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True,
                                                                      "AttributeName": TTL_ATTRIBUTE})
    idempotency = f"{name}-consumer-idempotency"
    ddb.create_table(TableName=idempotency, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": IDEMPOTENCY_KEY, "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": IDEMPOTENCY_KEY, "AttributeType": "S"}])
    ddb.update_time_to_live(TableName=idempotency, TimeToLiveSpecification={"Enabled": True,
                                                                            "AttributeName": IDEMPOTENCY_TTL})
    notification_queue, notifications_dlq = _queue_with_dlq(sqs, f"{name}-notifications", visibility)
    observer, observer_dlq = _queue_with_dlq(sqs, f"{name}-observer", observer_visibility or visibility)
    prefixes = watched_prefixes(settings.rules, settings.error_prefix)
    raw = ""
    if notifications == "eventbridge":
        # S3 -> the default bus -> a rule for this bucket's new objects under the watched prefixes -> the queue.
        # moto's own S3 -> EventBridge events differ from AWS's (epoch `time`, `reason`), so S3's notifications
        # go to a private queue and the sandbox puts the events AWS documents on the default bus.
        raw = sqs.create_queue(QueueName=f"{name}-s3-raw")["QueueUrl"]
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [
            {"QueueArn": _arn(sqs, raw), "Events": ["s3:ObjectCreated:*"]}]})
        ev.put_rule(Name=f"{name}-objects", EventPattern=json.dumps(object_created_pattern(bucket, prefixes)))
        ev.put_targets(Rule=f"{name}-objects", Targets=[{"Id": "notifications",
                                                          "Arn": _arn(sqs, notification_queue)}])
    else:
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [
            {"QueueArn": _arn(sqs, notification_queue), "Events": ["s3:ObjectCreated:*"],
             **({"Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": p}]}}} if p else {})}
            for p in notification_filters(prefixes)]})
    bus = f"{name}-bus"
    ev.create_event_bus(Name=bus)
    events_queue = sqs.create_queue(QueueName=f"{name}-events")["QueueUrl"]
    ev.put_rule(Name=f"{name}-all", EventBusName=bus,
                EventPattern=json.dumps({"source": [SOURCE], "detail-type": list(DETAIL_TYPES)}))
    ev.put_targets(Rule=f"{name}-all", EventBusName=bus, Targets=[{"Id": "local", "Arn": _arn(sqs, events_queue)}])
    catalog_queue, catalog_dlq = _catalog(settings, bucket, session, sqs, ev, bus, name)
    resources = Resources(table=table, bucket=bucket, stream=f"{name}-stream", observer_queue_url=observer,
                          notification_queue_url=notification_queue, event_bus=bus, producer_function="local",
                          idempotency_table=idempotency)
    return LocalStack(resources, notification_queue, notifications_dlq, observer_dlq, events_queue, raw,
                      notifications, catalog_queue, catalog_dlq)


def _catalog(settings: Settings, bucket: str, session, sqs, ev, bus: str, name: str) -> tuple[str, str]:
    """As the construct: the tables of rules that give their columns, and a rule on the bus sending the Readys of
    rules with a catalog to the catalog function's queue."""
    rules = [r for r in settings.rules.rules if r.catalog is not None]
    if not rules:
        return "", ""
    glue = session.client("glue")
    for rule in rules:
        if rule.catalog.creates_table:
            try:
                glue.create_database(DatabaseInput={"Name": rule.catalog.database})
            except glue.exceptions.AlreadyExistsException:
                pass
            glue.create_table(DatabaseName=rule.catalog.database, TableInput=table_input(
                rule.catalog, rule.fields, location_of(bucket, rule.literal_prefix)))
    return _fed_from_bus(sqs, ev, bus, f"{name}-catalog", ready_pattern([r.name for r in rules]), 4)


def _fed_from_bus(sqs, ev, bus: str, name: str, pattern: dict, visibility: int) -> tuple[str, str]:
    """As the construct's `_fed_from_bus`: a rule on the bus -> a queue with a DLQ."""
    queue, dlq = _queue_with_dlq(sqs, name, visibility)
    ev.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(pattern))
    ev.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "queue", "Arn": _arn(sqs, queue)}])
    return queue, dlq


def to_eventbridge(record: dict) -> dict:
    """An S3 notification record -> the `Object Created` event S3 puts on EventBridge (AWS's documented shape:
    key NOT URL-encoded, `reason` the API that created the object)."""
    from urllib.parse import unquote_plus

    reasons = {"Put": "PutObject", "Post": "PostObject", "Copy": "CopyObject",
               "CompleteMultipartUpload": "CompleteMultipartUpload"}
    s3 = record["s3"]
    return {"version": "0", "id": record.get("responseElements", {}).get("x-amz-request-id", "local"),
            "detail-type": "Object Created", "source": "aws.s3", "account": "123456789012",
            # AWS sends whole seconds, and so does moto's EventBridge when it delivers the event to the queue,
            # whatever is put here (the monitor takes the end of the second: counting.event_ts)
            "time": record["eventTime"], "region": record.get("awsRegion", "us-east-1"),
            "resources": [f"arn:aws:s3:::{s3['bucket']['name']}"],
            "detail": {"version": "0", "bucket": {"name": s3["bucket"]["name"]},
                       "object": {"key": unquote_plus(s3["object"]["key"]), "size": s3["object"].get("size", 0),
                                  "etag": s3["object"].get("eTag", ""),
                                  "sequencer": s3["object"].get("sequencer", "0")},
                       "request-id": "local", "requester": "123456789012",
                       "reason": reasons.get(record["eventName"].split(":", 1)[1], "PutObject")}}


def create_waits(name: str, session, bus: str, visibility: int) -> tuple[str, str]:
    """As the construct's `wait_for_dataset_task` makes it: the waits queue (with a DLQ), fed the tasks'
    registrations and, by a rule on the bus, the events that answer them."""
    return _fed_from_bus(session.client("sqs"), session.client("events"), bus, f"{name}-waits", waits_pattern(),
                         visibility)
