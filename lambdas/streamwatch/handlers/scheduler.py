"""Scheduler Lambda: EventBridge schedules -> close time windows (`{"action": "close_windows"}`) and the heartbeat
(`{"action": "heartbeat"}`), streamwatch.runtime.scheduler."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from streamwatch.handlers.common import environment, share_logging
from streamwatch.runtime.scheduler import Scheduler

logger, tracer, metrics = Logger(), Tracer(), Metrics()
share_logging(logger)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context) -> dict:
    scheduler = Scheduler(*environment(logger))
    action = event.get("action")
    if action == "close_windows":
        opened = scheduler.close_windows()
        metrics.add_metric("WindowsOpened", MetricUnit.Count, len(opened))
        logger.info("windows opened", extra={"windows": opened})
        return {"opened": opened}
    if action == "heartbeat":
        beat = scheduler.heartbeat()
        metrics.add_metric("DatasetsObserving", MetricUnit.Count, beat.observing)
        metrics.add_metric("ChainSilenceSeconds", MetricUnit.Seconds, beat.oldest_silence_s)
        logger.info("heartbeat", extra={"observing": beat.observing, "silence_s": beat.oldest_silence_s,
                                        "stalest": beat.stalest})
        return {"observing": beat.observing, "silence_s": beat.oldest_silence_s, "stalest": beat.stalest}
    raise ValueError(f"unknown action {action!r}: expected 'close_windows' or 'heartbeat'")
