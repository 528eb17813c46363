"""What every part of the store shares: the table, its client, one conditional update, one paginated query, the
retry of a cancelled transaction."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from streamwatch.core import scope
from streamwatch.core.backoff import RETRIES, TRANSACTION
from streamwatch.state.layout import dataset_key

# Whole-call errors botocore's standard mode retries itself (throttling and 5xx): once one reaches us its retries
# are spent, and retrying again would only hold the invocation; what it was writing is left to SQS's redelivery.
BOTOCORE_RETRIED = {"ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
                    "InternalServerError", "TransactionInProgressException", "ServiceUnavailable"}
log = logging.getLogger(__name__)


def dynamodb_table(name: str):
    """The table's boto3 resource, one per process and scope (runtime/aws.reset forgets it with the clients)."""
    return _table(scope.session(), scope.endpoint_url(), name)


@functools.cache
def _table(session, endpoint: str | None, name: str):
    return (session or boto3).resource("dynamodb", config=Config(retries=RETRIES), endpoint_url=endpoint).Table(name)


def forget_tables() -> None:
    _table.cache_clear()


def cancellation_codes(exc: ClientError) -> list[str]:
    """The code of each action of a cancelled TransactWriteItems, in order ("None" where an action did not fail),
    [] for any other error: the one place that reads CancellationReasons."""
    if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return []
    return [reason.get("Code", "None") for reason in exc.response.get("CancellationReasons") or []]


class TableAccess:
    """The table and its client; the parts of the store (ledger, reports, outbox, lag) extend it."""

    def __init__(self, table_name: str, *, ttl_days: int = 7, max_attempts: int = 6, table=None) -> None:
        self.table = table if table is not None else dynamodb_table(table_name)
        self.client = self.table.meta.client  # high-level types, same connection pool
        self.name = table_name
        self.ttl_s = ttl_days * 86_400
        self.max_attempts = max_attempts


    def batch_get(self, keys: list[dict]) -> tuple[list[dict], int]:
        """Consistent reads of many items, 100 keys a call, unprocessed keys resent with backoff (the one
        BatchGetItem loop). Returns the items found and the calls made."""
        found, calls = [], 0
        for start in range(0, len(keys), 100):
            request = {self.name: {"Keys": keys[start:start + 100], "ConsistentRead": True}}
            attempt = 0
            while request:
                calls += 1
                response = self.client.batch_get_item(RequestItems=request)
                found += response["Responses"].get(self.name, [])
                request = response.get("UnprocessedKeys") or None
                if request:
                    _backoff(attempt)
                    attempt += 1
        return found, calls

    def _conditional_update(self, dataset_id: str, update: str, condition: str, values: dict) -> bool:
        names = {"#status": "status"} if "#status" in update or "#status" in condition else None
        kwargs = {"ExpressionAttributeNames": names} if names else {}
        try:
            self.table.update_item(Key=dataset_key(dataset_id), UpdateExpression=update,
                                   ConditionExpression=condition, ExpressionAttributeValues=values, **kwargs)
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise


def _query_all(table, **kwargs) -> Iterable[dict]:
    while True:
        response = table.query(**kwargs)
        yield from response.get("Items", [])
        if "LastEvaluatedKey" not in response:
            return
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _backoff(attempt: int) -> None:
    time.sleep(TRANSACTION.delay(attempt))
