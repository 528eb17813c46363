"""StreamwatchDatasetSensor and its trigger against the local run (real handlers on a moto server), in a real
Airflow 3: the deferral and its resumption driven by hand, then whole DAG runs through `dag.test()`, which runs
the trigger in process as the triggerer would."""

from __future__ import annotations

import asyncio
import importlib.util
import time

import pytest
from airflow.sdk.exceptions import TaskDeferred

from streamwatch.airflow._compat import AirflowFailException
from streamwatch.airflow.sensors import StreamwatchDatasetSensor
from streamwatch.airflow.triggers import StreamwatchDatasetTrigger
from streamwatch.core import scope
from streamwatch.core.settings import Settings
from streamwatch.local.sandbox import Sandbox
from tests.airflow.conftest import DAGS, import_string

SETTINGS = Settings(buffer_interval_s=60, alarms=False)


def until(check, timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("timed out")


def bus_event(sb: Sandbox, detail_type: str, dataset_id: str) -> dict:
    return until(lambda: next((e["detail"] for e in sb.events if e["detail-type"] == detail_type
                               and e["detail"]["dataset_id"] == dataset_id), None))


def resume(sensor: StreamwatchDatasetSensor, deferred: TaskDeferred):
    """What the triggerer and the worker do: re-create the trigger from its serialized form, run it to its
    event, and resume the task's `execute_complete` with the event's payload."""
    classpath, kwargs = deferred.trigger.serialize()
    trigger = import_string(classpath)(**kwargs)
    assert trigger.serialize() == (classpath, kwargs)

    async def first():
        async for event in trigger.run():
            return event
    event = asyncio.run(asyncio.wait_for(first(), 60))
    return getattr(sensor, deferred.method_name)({}, event=event.payload), event.payload


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(SETTINGS, speed=60, log=lambda s: None) as sb:
        yield sb


def test_the_sensor_defers_and_resumes_with_the_readys_detail(sandbox):
    # Given a dataset whose producer is still sending
    sandbox.start_dataset("alpha", [{"producer_id": "p0", "records": 300, "start_s": 0, "duration_s": 30}])
    sensor = StreamwatchDatasetSensor(task_id="wait", dataset_id="alpha", aws_conn_id=None, poke_interval=0.5)
    # When the sensor runs: it defers to its trigger, which is serialized and re-created, then resumes
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    assert isinstance(deferred.value.trigger, StreamwatchDatasetTrigger)
    detail, payload = resume(sensor, deferred.value)
    # Then it returns the detail the Dataset Ready on the bus carries, after polling more than once
    ready = bus_event(sandbox, "Dataset Ready", "alpha")
    assert detail["event_id"] == ready["event_id"] == "alpha:ready"
    assert (detail["objects"], detail["records"], detail["prefix"]) == (ready["objects"], 300, ready["prefix"])
    assert payload["polls"] > 1


def test_an_already_ready_dataset_resumes_at_once_without_deferring(sandbox):
    # Given a dataset already declared Ready
    sandbox.start_dataset("early", [{"producer_id": "p0", "records": 50, "start_s": 0, "duration_s": 1}])
    bus_event(sandbox, "Dataset Ready", "early")
    sensor = StreamwatchDatasetSensor(task_id="wait", dataset_id="early", aws_conn_id=None)
    # When the sensor runs
    detail = sensor.execute({})
    # Then it returns the detail at once: no deferral, no trigger
    assert detail["event_id"] == "early:ready" and detail["records"] == 50


def test_a_failing_producer_fails_the_task_with_the_reason(sandbox):
    # Given a dataset whose producer's code raises half-way
    sandbox.start_dataset("beta", [{"producer_id": "p0", "records": 400, "start_s": 0, "duration_s": 10,
                                    "fail_after": 200}])
    sensor = StreamwatchDatasetSensor(task_id="wait", dataset_id="beta", aws_conn_id=None, poke_interval=0.5)
    failed = bus_event(sandbox, "Dataset Failed", "beta")
    # When the sensor runs (the dataset is declared by then: it fails at once)
    with pytest.raises(AirflowFailException) as error:
        sensor.execute({})
    # Then the task fails with the reason the Dataset Failed carries
    assert str(error.value) == f"streamwatch: beta is Failed: {failed['failure']}"


@pytest.mark.parametrize(("arguments", "message"), [
    ({"dataset_id": "bad id/with slash"}, "dataset id 'bad id/with slash' is invalid"),
    ({"rule": "hourly", "window_start": "2026-11-24T23:00:00Z"}, "rule"),
    ({}, "give dataset_id, or rule and window_start"),
])
def test_a_bad_dataset_id_or_window_fails_the_task_clearly(sandbox, arguments, message):
    # Given a sensor with an id no rule admits, a rule the deployment lacks, or no id at all
    sensor = StreamwatchDatasetSensor(task_id="wait", aws_conn_id=None, **arguments)
    # When it runs
    with pytest.raises(AirflowFailException) as error:
        sensor.execute({})
    # Then the task fails at once with a line naming the mistake
    assert str(error.value).startswith("streamwatch: ") and message in str(error.value)


def test_a_window_outside_the_rule_fails_the_task_clearly():
    # Given an hourly rule, and a window that starts at half past
    settings = Settings(datasets=({"name": "hourly", "pattern": "logs/{yyyy}/{MM}/{dd}/{HH}/"},), alarms=False)
    sensor = StreamwatchDatasetSensor(task_id="wait", aws_conn_id=None, table="t", settings=settings.changed(),
                                      dataset_id="hourly~2026-11-24T23:30")
    # When it runs
    with pytest.raises(AirflowFailException) as error:
        sensor.execute({})
    # Then the task fails before any AWS call, naming the id
    assert "2026-11-24T23:30" in str(error.value)


def test_no_deployment_at_all_fails_the_task_saying_what_to_pass(monkeypatch):
    # Given a worker whose environment names no stack and no local run (outside any local run's scope), and a
    # sensor given neither
    for name in ("STREAMWATCH_STACK", "STREAMWATCH_RES_TABLE"):
        monkeypatch.delenv(name, raising=False)
    sensor = StreamwatchDatasetSensor(task_id="wait", dataset_id="alpha", aws_conn_id=None)
    # When it runs
    with scope.entered(None), pytest.raises(AirflowFailException) as error:
        sensor.execute({})
    # Then the task fails at once with the sensor's own words: stack= or table=
    assert str(error.value) == ("streamwatch: no deployment given: pass stack='<name>' (or set STREAMWATCH_STACK on "
                                "the workers), or table='<the state table>'")


def test_a_missing_connection_is_named(sandbox):
    # Given a sensor naming a connection nobody defined
    sensor = StreamwatchDatasetSensor(task_id="wait", dataset_id="alpha", aws_conn_id="no_such_conn")
    # When it runs
    with pytest.raises(AirflowFailException) as error:
        sensor.execute({})
    # Then the task fails naming the connection and how to define it
    assert "connection 'no_such_conn' not found" in str(error.value)
    assert "AIRFLOW_CONN_NO_SUCH_CONN" in str(error.value)


def load_dag(name: str):
    spec = importlib.util.spec_from_file_location(name, DAGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def test_a_dag_run_waits_through_the_triggerer_and_succeeds_with_the_detail(sandbox, airflow_db, connection,
                                                                               monkeypatch, caplog):
    # Given a DAG whose sensor waits for a dataset still being written, through an Airflow AWS connection
    sandbox.start_dataset("gamma", [{"producer_id": "p0", "records": 3000, "start_s": 0, "duration_s": 1800}])
    monkeypatch.setenv("SW_TEST_DATASET", "gamma")
    monkeypatch.setenv("SW_TEST_CONN", connection(sandbox.endpoint))
    dag = load_dag("streamwatch_test_sensor")
    caplog.set_level("INFO", logger="airflow.sdk.definitions.dag")
    # When the DAG runs (dag.test runs the deferred trigger in process, as the triggerer would)
    run = dag.test()
    # Then the task deferred, and succeeded with the Ready's detail as its XCom return value
    ti = run.get_task_instance("wait")
    assert (run.state, ti.state) == ("success", "success")
    assert "[DAG TEST] running trigger in line" in caplog.text
    ready = bus_event(sandbox, "Dataset Ready", "gamma")
    assert ti.xcom_pull(task_ids="wait")["event_id"] == ready["event_id"]


def test_overdue_warns_and_waits_on_or_fails_when_asked(sandbox, caplog, capfd):
    # Given a dataset due 2 pipeline minutes after it starts, whose producer sends for 20
    sandbox.start_dataset("late", [{"producer_id": "p0", "records": 2000, "start_s": 0, "duration_s": 1200}],
                          expected_by=120)
    strict = StreamwatchDatasetSensor(task_id="strict", dataset_id="late", aws_conn_id=None, poke_interval=0.5,
                                      fail_on_overdue=True)
    lenient = StreamwatchDatasetSensor(task_id="lenient", dataset_id="late", aws_conn_id=None, poke_interval=0.5)
    # When both wait (neither finds it declared at first)
    with pytest.raises(TaskDeferred) as strict_deferred:
        strict.execute({})
    with pytest.raises(TaskDeferred) as lenient_deferred:
        lenient.execute({})
    # Then the strict one fails on the Overdue, naming the deadline
    with pytest.raises(AirflowFailException, match="streamwatch: late is Overdue: not Ready by its deadline"):
        resume(strict, strict_deferred.value)
    # And the lenient one logs a warning, defers again past the Overdue, and resumes with the Ready
    with pytest.raises(TaskDeferred) as again:
        resume(lenient, lenient_deferred.value)
    logged = caplog.text + "".join(capfd.readouterr())  # Airflow's task logger is structlog's, on stdout
    assert "late is Overdue" in logged and again.value.trigger.overdue_seen
    detail, _ = resume(lenient, again.value)
    assert detail["event_id"] == "late:ready" and detail["records"] == 2000
