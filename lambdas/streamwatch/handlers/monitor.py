"""Monitor Lambda: SQS batches of S3 notifications -> exact per-dataset counts (streamwatch.counting)."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from streamwatch.counting import Monitor
from streamwatch.settings import Resources, Settings

logger, tracer, metrics = Logger(), Tracer(), Metrics()


class NotCounted(Exception):
    """This message's objects could not all be counted; SQS redelivers it (the ledger drops repeats)."""


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context) -> dict:
    monitor = Monitor(Settings.from_env(os.environ), Resources.from_env(os.environ))
    records = event.get("Records", [])
    result = monitor.process([(r["messageId"], r.get("body", "")) for r in records])
    metrics.add_metric("ObjectsCounted", MetricUnit.Count, result.counted)
    metrics.add_metric("DuplicateNotifications", MetricUnit.Count, result.duplicates)
    metrics.add_metric("DynamoDBRequests", MetricUnit.Count, result.dynamodb_requests)
    for reason, n in result.skipped.items():
        metrics.add_metric(f"Skipped{reason}", MetricUnit.Count, n)

    def record_handler(record: SQSRecord) -> None:
        if record.message_id in result.failed_message_ids:
            raise NotCounted(record.message_id)

    return process_partial_response(event=event, record_handler=record_handler,
                                    processor=BatchProcessor(event_type=EventType.SQS), context=context)
