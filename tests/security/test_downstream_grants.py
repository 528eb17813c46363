"""The downstream functions' permissions are the calls their code makes, no more. The catalog function's Glue calls
while it registers a partition, meets it again and meets a missing table are GLUE_ACTIONS, which the construct grants
on the catalog, the database and the table (tests/infra/test_construct.py). The waits function's table calls while
it registers tasks and answers them are its TABLE_ACTIONS, which the template grants (tests/infra)."""

from __future__ import annotations

import json

import boto3

from streamwatch.core.limits import GLUE_ACTIONS, STATES_ACTIONS, TABLE_ACTIONS
from streamwatch.core.settings import Settings
from streamwatch.runtime import aws
from tests.conftest import ready_event, sqs_event

HOURLY = {"name": "hourly", "pattern": "logs/{yyyy}/{MM}/{dd}/{HH}/",
          "catalog": {"database": "logs", "table": "web", "new_database": True,
                      "columns": [{"name": "n", "type": "int"}]}}
ORDERS = {"name": "orders", "pattern": "data/dataset={dataset_id}/", "catalog": {"database": "logs", "table": "no"}}


def test_the_catalog_function_calls_exactly_what_it_is_granted(moto_env, context):
    # Given a rule with a table and one whose table is missing, and a recorder of every Glue call
    from streamwatch.handlers import catalog
    moto_env(Settings(datasets=(HOURLY, ORDERS), alarms=False))
    called: set[str] = set()
    aws.reset()
    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register("before-parameter-build.glue",
                                          lambda model, **_: called.add(f"glue:{model.name}"))
    hour = ready_event("hourly~2026-11-24T13", "b", 1, rule="hourly", prefix="logs/2026/11/24/13/")
    orders = ready_event("orders~o-1", "b", 1, rule="orders", prefix="data/dataset=o-1/")
    try:
        # When it registers an hour, meets it again, and meets the missing table
        for events in ([hour], [hour, orders]):
            catalog.handler(sqs_event([json.dumps(e) for e in events]), context)
            catalog.metrics.clear_metrics()
    finally:
        boto3.setup_default_session()
        aws.reset()
    # Then its calls are exactly GLUE_ACTIONS
    assert called == set(GLUE_ACTIONS)


def test_the_waits_function_calls_exactly_what_it_is_granted(moto_env, context):
    # Given tasks that register before and after a Ready, a Ready delivered twice, and a recorder of every call
    from streamwatch.handlers import waits
    from streamwatch.local.stepfunctions import TaskTokens
    from tests.security.test_table_grants import recorded
    moto_env(Settings(alarms=False))
    tokens = TaskTokens()
    first, second = tokens.issue("d1"), tokens.issue("d1")
    ready = ready_event("d1", "b", 1)
    with recorded() as table_calls:
        tokens.install(boto3.DEFAULT_SESSION.events)
        # When the waits function registers a task, answers it on the Ready (twice), and registers a late one
        for body in ({"dataset_id": "d1", "task_token": first}, ready, ready,
                     {"dataset_id": "d1", "task_token": second}):
            waits.handler(sqs_event([json.dumps(body)]), context)
            waits.metrics.clear_metrics()
    # Then its table calls are its TABLE_ACTIONS, and Step Functions got STATES_ACTIONS' kind of call
    assert table_calls == set(TABLE_ACTIONS["Waits"])
    assert {f"states:{op}" for op, _ in tokens.calls} <= set(STATES_ACTIONS)
