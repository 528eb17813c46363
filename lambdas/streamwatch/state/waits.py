"""Step Functions tasks waiting for a dataset: one WAIT# item per task token, in the dataset's partition.

A token is answered at most once by streamwatch: the answerer takes a short lease on the item (so two invocations
that hear the same Ready do not both send), sends, then marks the item answered. An answerer that dies after
sending and before marking leaves the lease to run out; the next one sends again and Step Functions refuses the
repeat (TaskTimedOut: the task is no more), which marks the item `gone`. So Step Functions accepts one answer per
token, whatever is delivered twice or crashes.
"""

from __future__ import annotations

import hashlib
import time

from botocore.exceptions import ClientError

from streamwatch.state.base import TableAccess, _query_all
from streamwatch.state.items import _num
from streamwatch.state.layout import PARTITION, PK, SK, TTL_ATTRIBUTE, WAIT, dataset_pk, wait_key


def token_id(task_token: str) -> str:
    """A short, stable key for a task token (tokens run to kilobytes)."""
    return hashlib.sha256(task_token.encode()).hexdigest()[:40]


class Waits(TableAccess):
    def register(self, dataset_id: str, task_token: str, now: float) -> bool:
        """The task's wait (False: it was registered already, a repeated message)."""
        item = {**wait_key(dataset_id, token_id(task_token)), "task_token": task_token, "registered_ts": _num(now),
                TTL_ATTRIBUTE: int(time.time()) + self.ttl_s}
        try:
            self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise

    def waiting(self, dataset_id: str) -> list[dict]:
        """The dataset's tasks not answered yet (consistent: a registration just made is seen)."""
        items = _query_all(self.table, KeyConditionExpression=f"{PARTITION} AND begins_with({SK}, :w)",
                           ExpressionAttributeValues={":pk": dataset_pk(dataset_id), ":w": WAIT},
                           ConsistentRead=True)
        return [i for i in items if "answered" not in i]

    def claim(self, item: dict, now: float, lease_s: float) -> bool:
        """The lease to answer this task; False: answered, or another answerer holds a live lease."""
        try:
            self.table.update_item(
                Key={PK: item[PK], SK: item[SK]}, UpdateExpression="SET answering_until = :until",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(answered) AND "
                                    "(attribute_not_exists(answering_until) OR answering_until < :now)",
                ExpressionAttributeValues={":until": _num(now + lease_s), ":now": _num(now)})
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise

    def mark_answered(self, item: dict, kind: str) -> None:
        self.table.update_item(Key={PK: item[PK], SK: item[SK]}, UpdateExpression="SET answered = :k",
                               ExpressionAttributeValues={":k": kind})
