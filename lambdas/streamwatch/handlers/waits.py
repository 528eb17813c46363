"""Waits Lambda: Step Functions tasks waiting for a dataset (streamwatch.runtime.waits). Its queue gets the tasks'
registrations ({"dataset_id", "task_token"}) and the bus's Ready, Failed and Stalled events. A message that is
neither is skipped alone, with a log line and a metric; a failure to answer fails its message alone (SQS retries
it, then its DLQ)."""

from __future__ import annotations

import json

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parser import ValidationError, parse

from streamwatch.core.limits import WAIT_LEASE_S
from streamwatch.core.s3_events import Skip
from streamwatch.handlers.common import environment, lease_s, metric_name, share_logging
from streamwatch.runtime.detail import DatasetEvent
from streamwatch.runtime.waits import Waiter, registration

logger, tracer, metrics = Logger(), Tracer(), Metrics()
share_logging(logger)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context) -> dict:
    waiter = Waiter(*environment(logger), lease_s=lease_s(WAIT_LEASE_S))

    def record_handler(record: SQSRecord) -> None:
        try:
            body = json.loads(record.body)
            if not isinstance(body, dict):
                raise Skip("MalformedMessage", "not a JSON object")
            if "detail-type" in body:
                ev = parse(event=body, model=DatasetEvent)
                answered = waiter.answer(ev.detail_type, ev.detail.body())
                dataset_id = ev.detail.dataset_id
            else:
                dataset_id, token = registration(body)
                answered = waiter.register(dataset_id, token)
                metrics.add_metric("WaitsRegistered", MetricUnit.Count, 1)
        except (ValueError, ValidationError) as exc:  # JSON or the event model: never a message of ours
            logger.warning("skipped a message that is no registration and no streamwatch event",
                           extra={"error": str(exc)[:500]})
            metrics.add_metric("SkippedMalformedMessage", MetricUnit.Count, 1)
            return
        except Skip as skip:
            logger.warning("skipped a registration", extra={"reason": skip.reason, "detail": str(skip)})
            metrics.add_metric(metric_name("Skipped", skip.reason), MetricUnit.Count, 1)
            return
        for kind in answered.kinds:
            metrics.add_metric(metric_name("TasksAnswered", kind), MetricUnit.Count, 1)
        if answered.gone:
            metrics.add_metric("TaskTokensGone", MetricUnit.Count, answered.gone)
        if answered.sent or answered.gone:
            logger.info("tasks answered", extra={"dataset_id": dataset_id, "sent": answered.sent,
                                                 "gone": answered.gone, "held": answered.held})

    return process_partial_response(event=event, record_handler=record_handler,
                                    processor=BatchProcessor(event_type=EventType.SQS), context=context)
