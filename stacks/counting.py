"""S3 ObjectCreated:* on the data prefix -> SQS -> monitor Lambda (batched, partial batch failures)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.common import QueueWithDlq, StreamwatchFunction
from streamwatch.settings import Resources, Settings

MONITOR_TIMEOUT_S = 60


class Counting(Construct):
    def __init__(self, scope: Construct, id: str, *, settings: Settings, resources: Resources,
                 bucket: s3.Bucket, table: dynamodb.ITable, observer_queue: sqs.IQueue) -> None:
        super().__init__(scope, id)
        # AWS: visibility >= 6x the function timeout plus the batching window, or batches get re-run mid-flight.
        visibility = 6 * MONITOR_TIMEOUT_S + settings.monitor_batch_window_s
        self.notifications = QueueWithDlq(self, "Notifications", visibility_timeout=Duration.seconds(visibility))
        bucket.add_event_notification(s3.EventType.OBJECT_CREATED, s3n.SqsDestination(self.notifications.queue),
                                      s3.NotificationKeyFilter(prefix=settings.data_prefix))
        self.monitor = StreamwatchFunction(self, "Monitor", handler="monitor", settings=settings,
                                           resources=resources, timeout_s=MONITOR_TIMEOUT_S).function
        self.monitor.add_event_source(sources.SqsEventSource(
            self.notifications.queue, batch_size=settings.monitor_batch_size,
            max_batching_window=(Duration.seconds(settings.monitor_batch_window_s)
                                 if settings.monitor_batch_window_s else None),
            report_batch_item_failures=True))
        table.grant_read_write_data(self.monitor)
        bucket.grant_read(self.monitor, f"{settings.data_prefix}*")  # records mode reads objects to count lines
        observer_queue.grant_send_messages(self.monitor)  # first object starts the chain; nudges
