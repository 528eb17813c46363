"""The example downstream: a rule on `Dataset Ready` -> consumer Lambda (manifest + _SUCCESS), with retries
and a DLQ for events it could not handle."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.common import QueueWithDlq, StreamwatchFunction
from stacks.observation import event_pattern
from streamwatch.events import READY
from streamwatch.manifest import MANIFEST, SUCCESS
from streamwatch.settings import Resources, Settings


class ExampleConsumer(Construct):
    def __init__(self, scope: Construct, id: str, *, settings: Settings, resources: Resources, bucket: s3.IBucket,
                 bus: events.IEventBus) -> None:
        super().__init__(scope, id)
        self.function = StreamwatchFunction(self, "Consumer", handler="consumer", settings=settings,
                                            resources=resources, timeout_s=900, memory_mb=1769).function
        bucket.grant_read(self.function, f"{settings.data_prefix}*")
        for name in (MANIFEST, SUCCESS):  # it writes only its two marker files, never data
            bucket.grant_put(self.function, f"{settings.data_prefix}*/{name}")
        self.dlq = QueueWithDlq(self, "Failed", visibility_timeout=Duration.seconds(30)).queue
        self.rule = events.Rule(self, "OnReady", event_bus=bus, event_pattern=event_pattern(READY), targets=[
            targets.LambdaFunction(self.function, dead_letter_queue=self.dlq, retry_attempts=4,
                                   max_event_age=Duration.hours(6))])
