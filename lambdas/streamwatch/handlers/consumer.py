"""Example consumer Lambda, subscribed to `Dataset Ready`: reads the dataset in parallel and writes a manifest
(keys, sizes, ETags, record counts, totals) and `_SUCCESS` next to it (streamwatch.runtime.manifest).

A Ready can arrive twice with the same `event_id` (EventBridge's at-least-once delivery; an observer that died
between PutEvents and recording it): Powertools Idempotency, keyed on `event_id`, runs the work once and answers
a repeat with the first result. An invocation that fails leaves no record, so its retry runs again. The event is
parsed with the publisher's own model (runtime/detail.py); one that is not a streamwatch event is skipped with a
log line and the MalformedEvents metric."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.parser import ValidationError, parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

from streamwatch.core import scope
from streamwatch.core.settings import Resources
from streamwatch.handlers.common import share_logging
from streamwatch.reader import DatasetReader
from streamwatch.runtime import aws
from streamwatch.runtime.detail import DatasetDetail
from streamwatch.runtime.manifest import write_manifest
from streamwatch.state.layout import IDEMPOTENCY_KEY, IDEMPOTENCY_TTL

logger, tracer, metrics = Logger(), Tracer(), Metrics()
share_logging(logger)
# a day: a repeated Ready comes within minutes; a dataset started anew after its state expired (dedupe_ttl_days,
# at least 1) may declare the same event_id again, and that one must run
IDEMPOTENCY = IdempotencyConfig(event_key_jmespath="event_id", raise_on_no_idempotency_key=True,
                                expires_after_seconds=86_400)


class DatasetEvent(EventBridgeModel):
    """A streamwatch event as EventBridge delivers it, its detail parsed with the publisher's own model."""

    detail: DatasetDetail


def _persistence(table: str) -> DynamoDBPersistenceLayer:
    """On the process's DynamoDB client (aws.client: botocore's standard retries), so it costs nothing to make."""
    return DynamoDBPersistenceLayer(table_name=table, key_attr=IDEMPOTENCY_KEY, expiry_attr=IDEMPOTENCY_TTL,
                                    boto3_client=aws.client("dynamodb"))


def consume(detail: dict) -> dict:
    manifest = write_manifest(detail, DatasetReader(), aws.client("s3"))
    metrics.add_metric("ManifestObjects", MetricUnit.Count, manifest["totals"]["objects"])
    if not manifest["matches_declaration"]:
        logger.warning("dataset changed since it was declared", extra={"declared": manifest["declared"],
                                                                        "totals": manifest["totals"]})
    logger.info("manifest written", extra={"dataset_id": detail["dataset_id"], "totals": manifest["totals"]})
    return manifest["totals"]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context) -> dict:
    IDEMPOTENCY.register_lambda_context(context)
    table = Resources.from_env(scope.environ()).idempotency_table
    try:
        detail = parse(event=event, model=DatasetEvent).detail.body()
    except ValidationError as exc:  # not ours, or not this version's: skipped alone, never retried into a DLQ
        logger.warning("skipped an event that is not a streamwatch dataset event", extra={"error": str(exc)[:500]})
        metrics.add_metric("MalformedEvents", MetricUnit.Count, 1)
        return {"skipped": "malformed event"}
    once = idempotent_function(consume, data_keyword_argument="detail", config=IDEMPOTENCY,
                               persistence_store=_persistence(table))
    return once(detail=detail)
