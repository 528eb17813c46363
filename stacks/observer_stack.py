"""The whole pipeline in one stack, composed of one construct per stage."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_events as events
from constructs import Construct

from stacks.counting import Counting
from stacks.downstream import ExampleConsumer
from stacks.ingest import Ingest
from stacks.nag import acknowledge_findings
from stacks.observation import Observation, ObserverQueue, Webhook
from stacks.storage import Storage
from streamwatch.settings import Resources, Settings


class ObserverStack(Stack):
    def __init__(self, scope: Construct, id: str, *, settings: Settings, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        self.settings = settings
        self.storage = Storage(self, "Storage")
        self.ticks = ObserverQueue(self, "ObserverQueue")
        self.bus = events.EventBus(self, "Bus")
        self.ingest = Ingest(self, "Ingest", settings=settings, bucket=self.storage.bucket,
                             table=self.storage.table)
        resources = Resources(table=self.storage.table.table_name, bucket=self.storage.bucket.bucket_name,
                              stream=self.ingest.stream.delivery_stream_name,
                              observer_queue_url=self.ticks.queue.queue_url, event_bus=self.bus.event_bus_name)
        self.ingest.add_producers(settings=settings, resources=resources, table=self.storage.table,
                                  observer_queue=self.ticks.queue)
        self.counting = Counting(self, "Counting", settings=settings, resources=resources,
                                 bucket=self.storage.bucket, table=self.storage.table, observer_queue=self.ticks.queue)
        self.observation = Observation(self, "Observation", settings=settings, resources=resources,
                                       table=self.storage.table, ticks=self.ticks, bus=self.bus)
        self.webhook = (Webhook(self, "Webhook", url=settings.callback_url, bus=self.bus)
                        if settings.callback_url else None)
        self.consumer = (ExampleConsumer(self, "Downstream", settings=settings, resources=resources,
                                         bucket=self.storage.bucket, bus=self.bus)
                         if settings.example_consumer else None)
        outputs = {"Bucket": self.storage.bucket.bucket_name, "Stream": self.ingest.stream.delivery_stream_name,
                   "Table": self.storage.table.table_name,
                   "NotificationQueue": self.counting.notifications.queue.queue_url,
                   "NotificationDlq": self.counting.notifications.dlq.queue_url,
                   "ObserverQueue": self.ticks.queue.queue_url, "ObserverDlq": self.ticks.queues.dlq.queue_url,
                   "EventBus": self.bus.event_bus_name, "StarterFunction": self.ingest.starter.function_name}
        for name, value in outputs.items():
            CfnOutput(self, f"{name}Output", value=value, key=name)
        acknowledge_findings(self)
