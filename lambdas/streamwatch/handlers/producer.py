"""Producer Lambda (and run starter): `{"action": "start_run", ...}` or `{"action": "produce", ...}`.

start_run: {"dataset_id": "d1", "producers": [{"producer_id": "p1", "records": 1000}, ...]}
           (or "producers": 4, "records_per_producer": 1000; optional "expected_by") -> registers the dataset and
           its producers, invokes one producer per entry asynchronously.
produce:   {"dataset_id": "d1", "producer_id": "p1", ...} -> the record source (setting `record_source`,
           'package.module:function', called with this request; default: sample records) through the producer
           client; the client reports done, or failed if the source raises.
"""

from __future__ import annotations

import json

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from streamwatch.client.deployment import Deployment
from streamwatch.client.producer import load_record_source
from streamwatch.client.run import Run
from streamwatch.core.errors import InputError
from streamwatch.core.ids import check_dataset_id, check_producer_id
from streamwatch.handlers.common import environment, share_logging
from streamwatch.runtime import aws

logger, tracer, metrics = Logger(), Tracer(), Metrics()
share_logging(logger)


def producer_list(event: dict, settings) -> list[dict]:
    """The producers a start_run asks for, within the settings' caps (a request past them fans out nothing)."""
    producers = event.get("producers", settings.producer_count)
    per = event.get("records_per_producer", 1000)
    if isinstance(producers, bool) or not isinstance(producers, int | list):
        raise InputError(f"producers={producers!r}: a count or a list of {{producer_id, records}}")
    count = producers if isinstance(producers, int) else len(producers)
    if not 1 <= count <= settings.max_producers_per_run:
        raise InputError(f"producers={count}: allowed 1..{settings.max_producers_per_run} "
                         "(setting max_producers_per_run)")
    if isinstance(producers, int):
        listed = [{"producer_id": f"p{i + 1}", "records": per} for i in range(producers)]
    else:
        listed = [{**p, "producer_id": check_producer_id(p.get("producer_id")), "records": p.get("records", per)}
                  if isinstance(p, dict) else _not_a_producer(p) for p in producers]
    for p in listed:
        records = p["records"]
        if isinstance(records, bool) or not isinstance(records, int) or not 0 <= records <= \
                settings.max_records_per_producer:
            raise InputError(f"records={records!r} for producer {p['producer_id']}: allowed 0.."
                             f"{settings.max_records_per_producer} (setting max_records_per_producer)")
    return listed


def _not_a_producer(value) -> dict:
    raise InputError(f"producer {value!r}: expected {{producer_id, records}}")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context) -> dict:
    settings, resources = environment(logger)
    deployment = Deployment(settings, resources)
    action = event.get("action")
    if action == "start_run":
        check_dataset_id(event.get("dataset_id"))
        producers = producer_list(event, settings)
        Run.start(event["dataset_id"], [p["producer_id"] for p in producers], resources=resources, settings=settings,
                  expected_by=event.get("expected_by"))
        for p in producers:
            request = {**{k: v for k, v in event.items() if k not in ("action", "producers")}, **p,
                       "action": "produce"}
            aws.client("lambda").invoke(FunctionName=resources.producer_function, InvocationType="Event",
                                        Payload=json.dumps(request).encode())
        return {"dataset_id": event["dataset_id"], "producers": len(producers)}
    if action == "produce":
        run = Run(event["dataset_id"], deployment)
        producer_id = str(event["producer_id"])
        reported = {p["producer_id"]: p["status"] for p in run.store.producers(run.dataset_id)}
        if reported.get(producer_id) in ("done", "failed"):  # a retried invocation after its report: resume = done
            logger.info("producer already reported", extra={"producer_id": producer_id,
                                                            "status": reported[producer_id]})
            return {"dataset_id": run.dataset_id, "producer_id": producer_id, "reported": reported[producer_id]}
        source = load_record_source(settings.record_source)
        with run.producer(producer_id) as producer:
            producer.put_many(source(event))
        report = producer.report
        metrics.add_metric("RecordsSent", MetricUnit.Count, report.records_sent)
        metrics.add_metric("PutRetries", MetricUnit.Count, report.retries)
        logger.info("producer finished", extra=report.to_dict())
        return report.to_dict()
    raise ValueError(f"unknown action {action!r}: expected 'start_run' or 'produce'")
