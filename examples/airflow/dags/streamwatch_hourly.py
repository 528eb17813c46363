"""Wait for hour H of the `hourly` rule, then read it: the sensor defers (one GetItem per poll in the triggerer),
resumes with the Dataset Ready's detail the moment streamwatch declares the hour complete, and the next task reads
exactly the objects under the hour's prefix with streamwatch's parallel reader. With STREAMWATCH_STAGE_URL set
(e.g. s3://my-stage-bucket/hourly/), a last task transforms each file and writes the results there with the
parallel writer: the other half of the usual pipeline, in one call.

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

    @task
    def stage_hour(read: dict) -> dict:
        from streamwatch.reader import DatasetWriter

        stage = os.environ.get("STREAMWATCH_STAGE_URL")
        if not stage:
            return {"staged": 0, "why": "STREAMWATCH_STAGE_URL is not set"}

        def transform(body: bytes) -> bytes:  # yours: parse, enrich, re-encode
            return body

        def results():  # one file at a time: the writer takes them as its workers free up
            for folder, _, names in os.walk(read["to_dir"]):
                for name in names:
                    path = os.path.join(folder, name)
                    with open(path, "rb") as fh:
                        yield os.path.relpath(path, read["to_dir"]), transform(fh.read())

        report = DatasetWriter(f"{stage.rstrip('/')}/{read['dataset_id']}/").put_many(results())
        if not report.complete:
            raise RuntimeError(f"staged {len(report.ok)} of {len(report.results)} objects: {report.summary()}")
        return {"staged": len(report.ok), "bytes": report.bytes, "to": report.destination}

    stage_hour(read_hour(hour_ready.output))
