"""Catalog Lambda: Dataset Ready (EventBridge -> SQS) -> the dataset's partition in its rule's Glue table
(streamwatch.runtime.catalog). A message that is not a streamwatch event is skipped alone, with a log line and the
SkippedMalformedEvent metric; a Glue failure fails its message alone, and SQS retries it (then its DLQ)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parser import ValidationError, parse

from streamwatch.handlers.common import environment, share_logging
from streamwatch.runtime.catalog import Registrar, TableMismatch, TableMissing
from streamwatch.runtime.detail import DatasetEvent

logger, tracer, metrics = Logger(), Tracer(), Metrics()
share_logging(logger)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context) -> dict:
    settings, _ = environment(logger)
    registrar = Registrar(settings)

    def record_handler(record: SQSRecord) -> None:
        try:
            ev = parse(event=record.body, model=DatasetEvent)
        except (ValidationError, ValueError) as exc:
            logger.warning("skipped a message that is not a streamwatch event", extra={"error": str(exc)[:500]})
            metrics.add_metric("SkippedMalformedEvent", MetricUnit.Count, 1)
            return
        try:
            done = registrar.register(ev.detail_type, ev.detail.body())
        except TableMissing as exc:
            logger.error(str(exc))
            metrics.add_metric("CatalogTableMissing", MetricUnit.Count, 1)
            raise
        except TableMismatch as exc:
            logger.error(str(exc))
            metrics.add_metric("CatalogTableMismatch", MetricUnit.Count, 1)
            raise
        if done is not None:
            metrics.add_metric("PartitionsRegistered" if done.created else "PartitionsAlreadyThere",
                               MetricUnit.Count, 1)
            logger.info("partition registered" if done.created else "partition was there already", extra={
                "dataset_id": ev.detail.dataset_id, "table": f"{done.database}.{done.table}", "values": done.values,
                "location": done.location})

    return process_partial_response(event=event, record_handler=record_handler,
                                    processor=BatchProcessor(event_type=EventType.SQS), context=context)
