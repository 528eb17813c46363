"""Observer Lambda: one tick of a dataset's observation chain per message (streamwatch.runtime.observer)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from streamwatch.core.limits import PUBLISH_LEASE_S
from streamwatch.core.s3_events import Skip
from streamwatch.handlers.common import environment, lease_s, metric_name, share_logging
from streamwatch.runtime.observer import Observer
from streamwatch.runtime.publishing import PublishError
from streamwatch.runtime.ticks import Tick

logger, tracer, metrics = Logger(), Tracer(), Metrics()
share_logging(logger)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context) -> dict:
    observer = Observer(*environment(logger), lease_s=lease_s(PUBLISH_LEASE_S),
                        remaining_s=lambda: context.get_remaining_time_in_millis() / 1000)

    def record_handler(record: SQSRecord) -> None:
        try:
            message = Tick.decode(record.body)
        except Skip as skip:
            logger.warning("skipped observer message", extra={"reason": skip.reason, "detail": str(skip)})
            metrics.add_metric(metric_name("Skipped", skip.reason), MetricUnit.Count, 1)
            return
        try:
            outcome = observer.handle(message)
        except PublishError:  # every PutEvents failure (botocore's errors included); the message is retried
            metrics.add_metric("EventsNotPublished", MetricUnit.Count, 1)
            raise
        logger.info("observed", extra={"dataset_id": message.dataset_id, "tick": message.tick,
                                       "kind": message.kind, "outcome": outcome})
        for part in outcome.split("+"):
            if part:
                metrics.add_metric(metric_name("Observer", part), MetricUnit.Count, 1)

    response = process_partial_response(event=event, record_handler=record_handler,
                                        processor=BatchProcessor(event_type=EventType.SQS), context=context)
    if observer.fenced:
        metrics.add_metric("PublishedAfterLeaseLost", MetricUnit.Count, observer.fenced)
    return response
