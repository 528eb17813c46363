"""Example consumer Lambda, subscribed to `Dataset Ready`: reads the dataset in parallel and writes a manifest
(keys, sizes, ETags, record counts, totals) and `_SUCCESS` next to it (streamwatch.manifest)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from streamwatch import aws
from streamwatch.manifest import write_manifest
from streamwatch.reader import DatasetReader

logger, tracer, metrics = Logger(), Tracer(), Metrics()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context) -> dict:
    detail = event["detail"]
    manifest = write_manifest(detail, DatasetReader(), aws.client("s3"))
    metrics.add_metric("ManifestObjects", MetricUnit.Count, manifest["totals"]["objects"])
    if not manifest["matches_declaration"]:
        logger.warning("dataset changed since it was declared", extra={"declared": manifest["declared"],
                                                                        "totals": manifest["totals"]})
    logger.info("manifest written", extra={"dataset_id": detail["dataset_id"], "totals": manifest["totals"]})
    return manifest["totals"]
