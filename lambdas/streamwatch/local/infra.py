"""The stack's resources, created on a local (moto) endpoint from the same Settings and table layout.

Used by the sandbox (`streamwatch demo`) and the tests: bucket + ObjectCreated:* notifications on the data
prefix -> notification queue (with DLQ), state table (keys and TTL from `store`), observer queue (with DLQ),
event bus with a rule that copies every streamwatch event to a queue the local run reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import boto3

from streamwatch.events import DETAIL_TYPES, SOURCE
from streamwatch.settings import Resources, Settings
from streamwatch.store import PK, SK, TTL_ATTRIBUTE

MAX_RECEIVE_COUNT = 5  # as QueueWithDlq in the stack


@dataclass(frozen=True)
class LocalStack:
    resources: Resources
    notification_queue_url: str
    notification_dlq_url: str
    observer_dlq_url: str
    events_queue_url: str  # every event on the bus lands here


def _queue_with_dlq(sqs, name: str, visibility: int) -> tuple[str, str]:
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT})
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": str(visibility),
                                                       "RedrivePolicy": redrive})["QueueUrl"]
    return url, dlq


def create(settings: Settings, name: str = "streamwatch", *, visibility: int = 30,
           session: boto3.Session | None = None) -> LocalStack:
    session = session or boto3.Session()
    s3, sqs, ddb, ev = (session.client(s) for s in ("s3", "sqs", "dynamodb", "events"))
    bucket, table = f"{name}-data", f"{name}-state"
    s3.create_bucket(Bucket=bucket)
    ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": PK, "KeyType": "HASH"}, {"AttributeName": SK, "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": PK, "AttributeType": "S"},
                                           {"AttributeName": SK, "AttributeType": "S"}])
    ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True,
                                                                      "AttributeName": TTL_ATTRIBUTE})
    notifications, notifications_dlq = _queue_with_dlq(sqs, f"{name}-notifications", visibility)
    observer, observer_dlq = _queue_with_dlq(sqs, f"{name}-observer", visibility)
    notifications_arn = sqs.get_queue_attributes(QueueUrl=notifications,
                                                 AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [{
        "QueueArn": notifications_arn, "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": settings.data_prefix}]}}}]})
    bus = f"{name}-bus"
    ev.create_event_bus(Name=bus)
    events_queue = sqs.create_queue(QueueName=f"{name}-events")["QueueUrl"]
    events_arn = sqs.get_queue_attributes(QueueUrl=events_queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    ev.put_rule(Name=f"{name}-all", EventBusName=bus,
                EventPattern=json.dumps({"source": [SOURCE], "detail-type": list(DETAIL_TYPES)}))
    ev.put_targets(Rule=f"{name}-all", EventBusName=bus, Targets=[{"Id": "local", "Arn": events_arn}])
    resources = Resources(table=table, bucket=bucket, stream=f"{name}-stream", observer_queue_url=observer,
                          event_bus=bus, producer_function="local")
    return LocalStack(resources, notifications, notifications_dlq, observer_dlq, events_queue)
