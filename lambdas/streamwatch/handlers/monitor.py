"""Monitor Lambda: SQS batches of object events -> exact per-dataset counts (streamwatch.runtime.monitor)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from streamwatch.handlers.common import environment, metric_name, share_logging
from streamwatch.runtime.monitor import Message, Monitor

logger, tracer, metrics = Logger(), Tracer(), Metrics()
share_logging(logger)


class NotCounted(Exception):
    """This message's objects could not all be counted; SQS redelivers it (the ledger drops repeats)."""


def _sent_ts(record: dict) -> float | None:
    sent = record.get("attributes", {}).get("SentTimestamp")
    return int(sent) / 1000 if sent else None


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context) -> dict:
    monitor = Monitor(*environment(logger))
    records = event.get("Records", [])
    result = monitor.process([Message(r["messageId"], r.get("body", ""), _sent_ts(r)) for r in records],
                             batch_id=getattr(context, "aws_request_id", None))
    metrics.add_metric("ObjectsCounted", MetricUnit.Count, result.counted)
    metrics.add_metric("DuplicateNotifications", MetricUnit.Count, result.duplicates)
    metrics.add_metric("DynamoDBRequests", MetricUnit.Count, result.dynamodb_requests)
    metrics.add_metric("DatasetsStarted", MetricUnit.Count, result.started)
    if result.error_records:
        metrics.add_metric("ErrorOutputRecords", MetricUnit.Count, result.error_records)
    if result.unattributed_error_records:
        metrics.add_metric("ErrorOutputRecordsUnattributed", MetricUnit.Count, result.unattributed_error_records)
    if result.unscanned:
        metrics.add_metric("ObjectsNotScanned", MetricUnit.Count, len(result.unscanned))
    for reason, n in result.skipped.items():
        metrics.add_metric(metric_name("Skipped", reason), MetricUnit.Count, n)

    def record_handler(record: SQSRecord) -> None:
        if record.message_id in result.failed_message_ids:
            raise NotCounted(record.message_id)

    return process_partial_response(event=event, record_handler=record_handler,
                                    processor=BatchProcessor(event_type=EventType.SQS), context=context)
