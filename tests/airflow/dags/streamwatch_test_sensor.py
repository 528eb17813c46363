"""A DAG of the Airflow tier: one StreamwatchDatasetSensor, its arguments from the test's environment."""

from __future__ import annotations

import os

from airflow.sdk import DAG

from streamwatch.airflow.sensors import StreamwatchDatasetSensor

with DAG(dag_id="streamwatch_test_sensor", schedule=None, catchup=False) as dag:
    StreamwatchDatasetSensor(
        task_id="wait",
        dataset_id=os.environ.get("SW_TEST_DATASET", "alpha"),
        aws_conn_id=os.environ.get("SW_TEST_CONN") or None,
        poke_interval=float(os.environ.get("SW_TEST_POKE_S", "1")),
        timeout=120,
    )
