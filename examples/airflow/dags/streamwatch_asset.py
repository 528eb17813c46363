"""A DAG scheduled on an asset that streamwatch feeds: every Dataset Ready of the `hourly` rule becomes one asset
event (one per distinct event_id, duplicates dropped), and each asset event starts this DAG with the detail.

Wire the queue in the stack: `watch.on_event(targets.SqsQueue(queue), "Dataset Ready")`, and give its URL as
STREAMWATCH_READY_QUEUE_URL (to the DAG processor and the triggerer)."""

from __future__ import annotations

import os

from airflow.sdk import DAG, Asset, AssetWatcher, task

from streamwatch.airflow.triggers import StreamwatchEventTrigger

ready = Asset(
    "streamwatch_hourly_ready",
    uri="streamwatch://hourly",
    watchers=[AssetWatcher(
        name="streamwatch_hourly_ready",
        trigger=StreamwatchEventTrigger(
            queue_url=os.environ.get("STREAMWATCH_READY_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/0/ready"),
            rules=["hourly"],
        ),
    )],
)

with DAG(dag_id="streamwatch_on_ready", schedule=[ready], catchup=False, tags=["streamwatch"]) as dag:

    @task
    def announce(**context) -> list[dict]:
        """Each triggering event's payload is the event detail (bucket, prefix, window_start, records, ...)."""
        details = [event.extra["payload"] for event in context["triggering_asset_events"][ready]]
        for detail in details:
            print(f"{detail['dataset_id']}: {detail['records']} records in {detail['objects']} objects under "
                  f"s3://{detail['bucket']}/{detail['prefix']} (window from {detail.get('window_start')})")
        return details

    announce()
