"""The monitor's lag bookkeeping (the observer's backlog check) and the scheduler's start."""

from __future__ import annotations

import time

from botocore.exceptions import ClientError

from streamwatch.state.base import TableAccess, _query_all
from streamwatch.state.items import _num
from streamwatch.state.layout import (
    BATCH,
    LAG_KEY,
    MONITOR,
    PARTITION,
    SINCE_KEY,
    SK,
    TTL_ATTRIBUTE,
    batch_key,
)


class MonitorLag(TableAccess):
    def start_batch(self, batch_id: str, now: float, oldest_sent_ts: float) -> None:
        """A monitor batch is being counted: its oldest message is not counted until it ends (or, if the
        invocation dies, until SQS makes its messages visible again)."""
        self.table.put_item(Item={**batch_key(batch_id), "started_ts": _num(now),
                                  "oldest_sent_ts": _num(oldest_sent_ts), TTL_ATTRIBUTE: int(time.time()) + 86_400})

    def end_batch(self, batch_id: str, now: float, oldest_sent_ts: float) -> None:
        """Every message of the batch was counted: it hides nothing any more, and it is the latest lag."""
        self.table.put_item(Item={**LAG_KEY, "batch_ts": _num(now),
                                  "oldest_sent_ts": _num(oldest_sent_ts)})
        self.table.delete_item(Key=batch_key(batch_id))

    def fail_batch(self, batch_id: str, oldest_failed_sent_ts: float) -> None:
        """Some messages were not counted: SQS hands them out again only after their visibility timeout, so the
        batch stays, hiding the oldest of them (it is not the latest lag either: it vouches for nothing)."""
        self.table.update_item(Key=batch_key(batch_id),
                               UpdateExpression="SET oldest_sent_ts = :o, failed = :t",
                               ExpressionAttributeValues={":o": _num(oldest_failed_sent_ts), ":t": True})

    def batches_in_flight(self, started_after: float, failed_after: float) -> list[float]:
        """The oldest message of every monitor batch that may hide messages: started after `started_after` and
        not ended (being counted, or dead), or started after `failed_after` and ended with messages not counted."""
        items = _query_all(self.table, KeyConditionExpression=f"{PARTITION} AND begins_with({SK}, :b)",
                           ExpressionAttributeValues={":pk": MONITOR, ":b": BATCH}, ConsistentRead=True)
        return [float(it["oldest_sent_ts"]) for it in items
                if float(it["started_ts"]) > (failed_after if it.get("failed") else started_after)]

    def get_lag(self) -> tuple[float, float] | None:
        """When the last monitor batch ended, and its oldest message's send time."""
        item = self.table.get_item(Key=LAG_KEY, ConsistentRead=True).get("Item")
        return (float(item["batch_ts"]), float(item["oldest_sent_ts"])) if item else None

    def watching_since(self, now: float) -> float:
        """When the scheduler first ran (recorded by the first run): windows that ended before are not opened."""
        try:
            self.table.put_item(Item={**SINCE_KEY, "since": _num(now)},
                                ConditionExpression="attribute_not_exists(pk)")
            return now
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
        return float(self.table.get_item(Key=SINCE_KEY, ConsistentRead=True)["Item"]["since"])
