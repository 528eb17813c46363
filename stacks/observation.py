"""The observer loop (SQS self-requeue with delays) and the bus that carries Dataset Ready/Amended/Stalled."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.common import QueueWithDlq, StreamwatchFunction
from streamwatch.events import DETAIL_TYPES, SOURCE
from streamwatch.observing import OBSERVER_TIMEOUT_S
from streamwatch.settings import Resources, Settings


def event_pattern(*detail_types: str) -> events.EventPattern:
    return events.EventPattern(source=[SOURCE], detail_type=list(detail_types or DETAIL_TYPES))


class ObserverQueue(Construct):
    """Created first: the monitor and the producers nudge the observer through it."""

    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        self.queues = QueueWithDlq(self, "Ticks", visibility_timeout=Duration.seconds(6 * OBSERVER_TIMEOUT_S))
        self.queue: sqs.Queue = self.queues.queue


class Observation(Construct):
    def __init__(self, scope: Construct, id: str, *, settings: Settings, resources: Resources,
                 table: dynamodb.ITable, ticks: ObserverQueue, bus: events.EventBus) -> None:
        super().__init__(scope, id)
        # AWS stops a Lambda -> SQS -> same Lambda chain after ~16 hops unless allowed; our own guard is the
        # hard cap (max_observation_s -> Dataset Stalled), enforced by the policy.
        self.observer = StreamwatchFunction(self, "Observer", handler="observer", settings=settings,
                                            resources=resources, timeout_s=OBSERVER_TIMEOUT_S,
                                            recursive_loop=lambda_.RecursiveLoop.ALLOW).function
        self.observer.add_event_source(sources.SqsEventSource(ticks.queue, batch_size=10,
                                                              report_batch_item_failures=True))
        table.grant_read_write_data(self.observer)
        ticks.queue.grant_send_messages(self.observer)
        bus.grant_put_events_to(self.observer)


class Webhook(Construct):
    """Every streamwatch event POSTed to the callback URL by an EventBridge API destination: retries and a
    DLQ from the service, no HTTP code of ours. The receiver checks the `x-streamwatch-token` header against
    the generated secret."""

    def __init__(self, scope: Construct, id: str, *, url: str, bus: events.EventBus) -> None:
        super().__init__(scope, id)
        self.secret = secretsmanager.Secret(self, "Token", generate_secret_string=secretsmanager.SecretStringGenerator(
            exclude_punctuation=True, password_length=40))
        connection = events.Connection(self, "Connection", authorization=events.Authorization.api_key(
            "x-streamwatch-token", self.secret.secret_value))
        destination = events.ApiDestination(self, "Destination", connection=connection, endpoint=url,
                                            http_method=events.HttpMethod.POST, rate_limit_per_second=10)
        self.dlq = QueueWithDlq(self, "Failed", visibility_timeout=Duration.seconds(30)).queue
        self.rule = events.Rule(self, "Rule", event_bus=bus, event_pattern=event_pattern(), targets=[
            targets.ApiDestination(destination, dead_letter_queue=self.dlq, retry_attempts=185,
                                   max_event_age=Duration.hours(24))])
