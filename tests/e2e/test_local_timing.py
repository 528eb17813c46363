"""The local run keeps Lambda's timeout: an invocation past it is dead (SQS never hears its result, its later
AWS calls are refused), and the lease and visibility timeouts outlive the timeouts, as the stack's do."""

from __future__ import annotations

import time
from types import SimpleNamespace

import boto3
import pytest

from streamwatch.core.settings import Settings
from streamwatch.local.sandbox import TIMING, InvocationTimedOut, Poller, Sandbox
from streamwatch.runtime import aws

pytestmark = pytest.mark.e2e


def test_the_local_timing_keeps_the_stacks_invariants():
    # Given the local run's Lambda timing
    timing = TIMING
    # When its lease and visibility timeouts are set against the functions' timeouts
    # Then the lease outlives the observer's timeout and each queue's visibility its function's
    assert timing.lease_s > timing.timeouts_s["observer"]
    assert all(timing.visibility_s[f] > timing.timeouts_s[f] for f in ("monitor", "observer"))


def test_a_run_at_real_time_gets_the_stacks_own_timing():
    # Given the settings a scale run uses
    from streamwatch.core.limits import FUNCTIONS, OBSERVER_VISIBILITY_S, PUBLISH_LEASE_S, notification_visibility_s
    from streamwatch.local.sandbox import stack_timing
    settings = Settings(buffer_interval_s=60)
    # When the stack's timing is taken for a run at speed 1
    timing = stack_timing(settings)
    # Then every timeout, visibility and the lease are the stack's, and they keep the local run's invariants
    assert timing.timeouts_s["monitor"] == FUNCTIONS["Monitor"].timeout_s
    assert timing.timeouts_s["observer"] == FUNCTIONS["Observer"].timeout_s
    assert timing.visibility_s["monitor"] == notification_visibility_s(settings)
    assert timing.visibility_s["observer"] == OBSERVER_VISIBILITY_S and timing.lease_s == PUBLISH_LEASE_S


def test_an_invocation_past_its_timeout_is_dead():
    # Given a sandbox queue holding one message, and a handler that sleeps past a 0.2 s timeout then calls AWS
    with Sandbox(Settings(), speed=60, log=lambda s: None) as sb:
        sqs = sb.session.client("sqs")
        url = sqs.create_queue(QueueName="probe", Attributes={"VisibilityTimeout": "2"})["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="{}")
        refused = []

        def slow_handler(event, context):
            time.sleep(0.4)  # past the timeout below
            try:
                aws.client("dynamodb").list_tables()  # the handler's own client: refused now
            except InvocationTimedOut as exc:
                refused.append(str(exc))
            return {"batchItemFailures": []}
        module = SimpleNamespace(handler=slow_handler, metrics=SimpleNamespace(clear_metrics=lambda: None))
        poller = Poller(sb, "probe", url, module, batch_size=1, window_s=0, duplicate=0.0, timeout_s=0.2)
        # When the poller invokes it with that message
        poller._invoke(poller._gather())
        # Then its call after the timeout was refused, and its message was not deleted: it comes back
        assert refused and "ListTables" in refused[0]
        assert poller.stats.timeouts == 1 and list(poller.deliveries.values()) == [["timed-out"]]
        time.sleep(2.2)
        again = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
        assert [m["Attributes"]["ApproximateReceiveCount"] for m in again] == ["2"]


def test_a_cancelled_transaction_never_undoes_another_requests_write():
    # Given a table, one thread whose transactions are all cancelled, another counting with plain updates
    import threading

    from streamwatch.local.server import moto_server
    with moto_server():
        ddb = boto3.client("dynamodb")
        ddb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
        for n in range(200):  # a table worth backing up
            ddb.put_item(TableName="t", Item={"pk": {"S": f"filler-{n}"}, "blob": {"S": "x" * 500}})
        ddb.put_item(TableName="t", Item={"pk": {"S": "taken"}})
        stop = threading.Event()

        def cancelled_transactions():
            client = boto3.session.Session().client("dynamodb")
            while not stop.is_set():
                try:
                    client.transact_write_items(TransactItems=[
                        {"Update": {"TableName": "t", "Key": {"pk": {"S": "other"}},
                                    "UpdateExpression": "SET v = :v", "ExpressionAttributeValues": {":v": {"N": "1"}}}},
                        {"Put": {"TableName": "t", "Item": {"pk": {"S": "taken"}},
                                 "ConditionExpression": "attribute_not_exists(pk)"}}])
                except client.exceptions.TransactionCanceledException:
                    pass
        thread = threading.Thread(target=cancelled_transactions)
        thread.start()
        try:
            # When 150 increments land while those transactions are cancelled and rolled back
            for _ in range(150):
                ddb.update_item(TableName="t", Key={"pk": {"S": "counter"}}, UpdateExpression="ADD n :one",
                                ExpressionAttributeValues={":one": {"N": "1"}})
        finally:
            stop.set()
            thread.join()
        # Then every one of them is there (moto's whole-table rollback used to undo some), and none of the
        # cancelled transactions' own writes is
        item = ddb.get_item(TableName="t", Key={"pk": {"S": "counter"}}, ConsistentRead=True)["Item"]
        assert item["n"]["N"] == "150"
        assert "Item" not in ddb.get_item(TableName="t", Key={"pk": {"S": "other"}})
