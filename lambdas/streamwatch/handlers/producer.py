"""Producer Lambda (and run starter): `{"action": "start_run", ...}` or `{"action": "produce", ...}`.

start_run: {"dataset_id": "d1", "producers": [{"producer_id": "p1", "records": 1000}, ...]}
           (or "producers": 4, "records_per_producer": 1000) -> registers the dataset, invokes producers async.
produce:   {"dataset_id": "d1", "producer_id": "p1", "records": 1000} -> PutRecordBatch, then the done-report.
"""

from __future__ import annotations

import json
import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from streamwatch import aws
from streamwatch.producing import Producer, make_records, start_run
from streamwatch.settings import Resources, Settings

logger, tracer, metrics = Logger(), Tracer(), Metrics()


def producer_list(event: dict) -> list[dict]:
    producers = event.get("producers", Settings.from_env(os.environ).producer_count)
    if isinstance(producers, int):
        per = int(event.get("records_per_producer", 1000))
        return [{"producer_id": f"p{i + 1}", "records": per} for i in range(producers)]
    return [{"producer_id": str(p["producer_id"]), "records": int(p["records"])} for p in producers]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context) -> dict:
    settings, resources = Settings.from_env(os.environ), Resources.from_env(os.environ)
    action = event.get("action")
    if action == "start_run":
        def invoke(request: dict) -> None:
            aws.client("lambda").invoke(FunctionName=resources.producer_function, InvocationType="Event",
                                        Payload=json.dumps(request).encode())
        requests = start_run(settings, resources, event["dataset_id"], producer_list(event), invoke)
        return {"dataset_id": event["dataset_id"], "producers": len(requests)}
    if action == "produce":
        dataset_id, producer_id = event["dataset_id"], str(event["producer_id"])
        report = Producer(settings, resources).run(dataset_id, producer_id,
                                                   make_records(dataset_id, producer_id, int(event["records"])))
        metrics.add_metric("RecordsSent", MetricUnit.Count, report.records_sent)
        metrics.add_metric("RecordsFailed", MetricUnit.Count, len(report.failed))
        metrics.add_metric("PutRetries", MetricUnit.Count, report.retries)
        logger.info("producer finished", extra=report.to_dict() | {"failed": len(report.failed)})
        return report.to_dict()
    raise ValueError(f"unknown action {action!r}: expected 'start_run' or 'produce'")
