"""Runs and producer reports: who is expected, who started, who is done with how many records, and the chain's
start."""

from __future__ import annotations

import logging

from botocore.exceptions import ClientError

from streamwatch.core.errors import scrub_error
from streamwatch.state.base import TableAccess, cancellation_codes
from streamwatch.state.items import _creates, _num
from streamwatch.state.layout import dataset_key, producer_key

log = logging.getLogger(__name__)

class Reports(TableAccess):
    # --- the chain -------------------------------------------------------------------------------------
    def mark_chain_started(self, dataset_id: str) -> None:
        self.table.update_item(Key=dataset_key(dataset_id), UpdateExpression="SET chain_started = :t",
                               ExpressionAttributeValues={":t": True})

    # --- producers -------------------------------------------------------------------------------------
    def register_run(self, dataset_id: str, producers: list[str], now: float, *, rule: str = "default",
                     window: tuple[float, float] | None = None, deadline_ts: float | None = None) -> None:
        """The dataset's expected producers (idempotent: a retried start registers nothing twice). Observation
        starts now, so a deadline or a failure is seen even if nothing ever lands."""
        existing = {p["producer_id"] for p in self.producers(dataset_id) if p["expected"]}
        new = [p for p in dict.fromkeys(producers) if p not in existing]
        set_list, values = _creates(dataset_id, now, rule=rule, window=window, deadline_ts=deadline_ts)
        sets = ", ".join([*set_list, "registered_ts = if_not_exists(registered_ts, :now)"])
        if not new:  # a retried start (or no producers): make sure the dataset exists, register nothing twice
            self.table.update_item(Key=dataset_key(dataset_id), UpdateExpression=f"SET {sets}",
                                   ExpressionAttributeNames={"#status": "status"}, ExpressionAttributeValues=values)
            return
        for start in range(0, len(new), 50):
            part = new[start:start + 50]
            actions = [{"Put": {"TableName": self.name, "ConditionExpression": "attribute_not_exists(pk)",
                                "Item": {**producer_key(dataset_id, p), "status": "expected",
                                         "expected": True, "registered_ts": _num(now)}}} for p in part]
            actions.append({"Update": {"TableName": self.name, "Key": dataset_key(dataset_id),
                                       "UpdateExpression": f"ADD producers_expected :n, producers_known :n SET {sets}",
                                       "ExpressionAttributeNames": {"#status": "status"},
                                       "ExpressionAttributeValues": {**values, ":n": len(part)}}})
            try:
                self.client.transact_write_items(TransactItems=actions)
            except ClientError as exc:
                if "ConditionalCheckFailed" in cancellation_codes(exc):
                    # a concurrent start registered some of them: register what is still missing
                    return self.register_run(dataset_id, producers, now, rule=rule, window=window,
                                             deadline_ts=deadline_ts)
                raise

    def report_started(self, dataset_id: str, producer_id: str, now: float) -> bool:
        """expected -> started (or a new, unregistered producer: counted, so the dataset waits for its done)."""
        return self._report(dataset_id, producer_id, "started", now)

    def report_done(self, dataset_id: str, producer_id: str, records_sent: int | None, now: float, *,
                    enveloped: bool = True) -> bool:
        """Add a producer's totals to its dataset once, however often the report is retried."""
        return self._report(dataset_id, producer_id, "done", now, records_sent=records_sent, enveloped=enveloped)

    def report_failed(self, dataset_id: str, producer_id: str, error: str, now: float) -> bool:
        """The error text is scrubbed and truncated here, before it leaves the process (errors.scrub_error)."""
        return self._report(dataset_id, producer_id, "failed", now, error=scrub_error(error))

    def _report(self, dataset_id: str, producer_id: str, status: str, now: float, *, records_sent: int | None = None,
                enveloped: bool = True, error: str | None = None) -> bool:
        """One transition of a producer's report, applied to the dataset's totals exactly once. Reads the report
        first and conditions the write on what it read, so a retried or racing report is a no-op."""
        key = producer_key(dataset_id, producer_id)
        for _attempt in range(self.max_attempts):
            item = self.table.get_item(Key=key, ConsistentRead=True).get("Item")
            before = item.get("status") if item else None
            if before in ("done", "failed") or before == status or (status == "started" and before is not None
                                                                    and before != "expected"):
                return False  # already reported (a retry), or a late 'started' after the end
            set_list, values = _creates(dataset_id, now)
            adds = []
            if item is None:  # an unregistered producer joins the producers the dataset waits for
                adds += ["producers_known :one", "unregistered_reports :one"]
                log.warning("producer %s of %s was not registered: counted, and the dataset waits for its report",
                            producer_id, dataset_id)
            report = {"#st": status, f"{status}_ts": _num(now)}
            if status == "done":
                adds.append("producers_done :one")
                set_list.append("last_done_ts = :now")
                if records_sent is None:
                    adds.append("uncounted_reports :one")
                else:
                    adds.append("records_sent :n")
                    values[":n"] = records_sent
                    report["records_sent"] = records_sent
                report["enveloped"] = enveloped
            elif status == "failed":
                adds.append("producers_failed :one")
                values[":failure"] = f"producer {producer_id} failed: {error}"[:1000]
                set_list.append("failure = if_not_exists(failure, :failure)")
                report["error_text"] = (error or "")[:1000]
            if adds:
                values[":one"] = 1
            report_sets = ", ".join(f"{k} = :r{i}" for i, k in enumerate(report))
            report_values = {f":r{i}": v for i, v in enumerate(report.values())}
            condition = "attribute_not_exists(pk)" if item is None else "#st = :before"
            if item is not None:
                report_values[":before"] = before
            dataset_update = (f"ADD {', '.join(adds)} " if adds else "") + "SET " + ", ".join(set_list)
            try:
                self.client.transact_write_items(TransactItems=[
                    {"Update": {"TableName": self.name, "Key": key, "ConditionExpression": condition,
                                "UpdateExpression": f"SET {report_sets}",
                                "ExpressionAttributeNames": {"#st": "status"},
                                "ExpressionAttributeValues": report_values}},
                    {"Update": {"TableName": self.name, "Key": dataset_key(dataset_id),
                                "UpdateExpression": dataset_update,
                                "ExpressionAttributeNames": {"#status": "status"},
                                "ExpressionAttributeValues": values}}])
                return True
            except ClientError as exc:
                if cancellation_codes(exc)[:1] != ["ConditionalCheckFailed"]:
                    raise
                # another report of this producer won the race: read it again and decide
        return False
