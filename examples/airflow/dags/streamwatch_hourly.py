"""Wait for hour H of the `hourly` rule, then read it: the sensor defers (one GetItem per poll in the triggerer),
resumes with the Dataset Ready's detail the moment streamwatch declares the hour complete, and the next task reads
exactly the objects under the hour's prefix with streamwatch's parallel reader.

Set STREAMWATCH_STACK on the workers and the triggerer (or pass stack=...), and an Airflow AWS connection
`aws_default` that may read the stack's outputs and the state table (docs/airflow.md lists the actions)."""

from __future__ import annotations

import os
import tempfile

from airflow.sdk import DAG, task
from airflow.timetables.interval import CronDataIntervalTimetable

from streamwatch.airflow.sensors import StreamwatchDatasetSensor

with DAG(
    dag_id="streamwatch_hourly",
    # hour H runs at H+1:00 with data_interval_start = H: the window the sensor waits for
    schedule=CronDataIntervalTimetable("@hourly", timezone="UTC"),
    catchup=False,
    tags=["streamwatch"],
) as dag:
    hour_ready = StreamwatchDatasetSensor(
        task_id="hour_ready",
        rule="hourly",
        window_start="{{ data_interval_start }}",
        poke_interval=30,
        timeout=6 * 3600,  # then AirflowSensorTimeout
        fail_on_overdue=False,  # Dataset Overdue: a warning in the log, the wait goes on
    )

    @task
    def read_hour(detail: dict) -> dict:
        from streamwatch.reader import DatasetReader

        to_dir = os.path.join(os.environ.get("STREAMWATCH_READ_DIR", tempfile.gettempdir()), detail["dataset_id"])
        report = DatasetReader().fetch(detail["bucket"], detail["prefix"], to_dir=to_dir)
        if not report.complete:
            raise RuntimeError(f"read {len(report.ok)} of {len(report.results)} objects: {report.summary()}")
        return {"dataset_id": detail["dataset_id"], "objects": len(report.ok), "bytes": report.bytes,
                "records": detail["records"], "to_dir": to_dir}

    read_hour(hour_ready.output)
