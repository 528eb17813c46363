"""examples/airflow/dags as a user copies them: they parse, and the hourly one runs against a local run whose
hourly rule is written by another team's stream."""

from __future__ import annotations

import importlib.util
import json
import threading

from streamwatch.core.rules import window_token
from streamwatch.core.settings import Settings
from streamwatch.local.sandbox import Sandbox
from tests.airflow.conftest import DAGS

HOURLY = {"name": "hourly", "pattern": "logs/{yyyy}/{MM}/{dd}/{HH}/"}


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, DAGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def test_the_example_dags_parse_without_errors(airflow_db):
    # Given the examples in the dags folder
    from airflow.dag_processing.dagbag import DagBag
    # When Airflow parses the folder, as its DAG processor does
    bag = DagBag(dag_folder=str(DAGS))
    # Then both examples load, with no import error
    assert not bag.import_errors, bag.import_errors
    assert {"streamwatch_hourly", "streamwatch_on_ready"} <= set(bag.dag_ids)


def test_the_hourly_example_waits_for_its_hour_and_reads_exactly_it(airflow_db, tmp_path, monkeypatch):
    import time
    from datetime import UTC, datetime
    start = (time.time() // 3600 + 1) * 3600 - 600  # 10 pipeline minutes before an hour
    hour = (start // 3600) * 3600
    settings = Settings(datasets=(HOURLY,), buffer_interval_s=60, alarms=False)
    with Sandbox(settings, speed=240, log=lambda s: None, start=start) as sb:
        # Given another team's stream writing hour H for its last 10 pipeline minutes, then nothing
        stream = sb.add_stream("hourly")

        def write() -> None:
            t = start
            while t < hour + 3600 and not sb.stopping.is_set():
                sb.sleep_until(t)
                stream.put_record_batch(stream.stream, [{"Data": json.dumps({"n": i}).encode()} for i in range(20)])
                t += 30
        threading.Thread(target=write, daemon=True).start()
        monkeypatch.setenv("STREAMWATCH_READ_DIR", str(tmp_path))
        sb.session.client("s3").create_bucket(Bucket="stage")  # where the example writes its results
        monkeypatch.setenv("STREAMWATCH_STAGE_URL", "s3://stage/hourly/")
        dag = load("streamwatch_hourly")
        for task in dag.tasks:  # the example's connection is the user's: here, the local run's default chain
            if task.task_id == "hour_ready":
                task.aws_conn_id, task.poke_interval = None, 0.5
        # When the run for hour H starts (its data interval is [H, H+1h)) while H is still being written
        run = dag.test(logical_date=datetime.fromtimestamp(hour + 3600, UTC))
        # Then the sensor resumed with H's Ready, and the reader read exactly the objects it declared
        states = {ti.task_id: ti.state for ti in run.get_task_instances()}
        assert run.state == "success", states
        ready = next(e["detail"] for e in sb.events
                     if e["detail-type"] == "Dataset Ready" and e["detail"]["dataset_id"].endswith(
                         window_token(hour, 3600)))
        files = [p for p in (tmp_path / ready["dataset_id"]).rglob("*") if p.is_file()]
        assert len(files) == ready["objects"] > 0
        # And the last task wrote each file, transformed, to the stage bucket under the dataset's id
        staged = sb.session.client("s3").list_objects_v2(Bucket="stage", Prefix=f"hourly/{ready['dataset_id']}/")
        assert sorted(o["Key"].rpartition("/")[2] for o in staged.get("Contents", [])) == sorted(p.name for p in files)
