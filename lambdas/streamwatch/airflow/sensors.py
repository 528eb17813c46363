"""`StreamwatchDatasetSensor`: a task that waits until streamwatch declared one dataset (or one window of a rule).

Deferrable by default: the worker slot is given back while `StreamwatchDatasetTrigger` polls the state table (one
GetItem per `poke_interval`) in the triggerer. Resumes with the event's detail as its XCom return value, at once
when the dataset was already declared. Dataset Failed and Stalled fail the task with the event's reason; Overdue
logs a warning and waits on, or fails the task with `fail_on_overdue=True`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from streamwatch.airflow._compat import AirflowFailException, BaseSensorOperator
from streamwatch.airflow.hooks import StreamwatchHook, Target, dataset_id_for
from streamwatch.airflow.triggers import StreamwatchDatasetTrigger


class StreamwatchDatasetSensor(BaseSensorOperator):
    """Wait for a dataset's Ready.

    :param dataset_id: the dataset id (templated); or give `rule` and `window_start` for a window of a rule,
        e.g. `rule="hourly", window_start="{{ data_interval_start }}"`, and `values` for the rule's other fields.
    :param stack: the streamwatch stack's name (its CloudFormation outputs give the table and the settings); or
        `table` (and `bucket`, `settings`: the rules, as in cdk.json) to name them yourself.
    :param aws_conn_id: the Airflow AWS connection (None: boto3's default credentials).
    :param fail_on_overdue: fail the task when the dataset passes its deadline, instead of a warning.
    :param deferrable: wait in the triggerer (default) or in the worker, poking.
    """

    template_fields: Sequence[str] = ("dataset_id", "rule", "window_start", "values", "stack", "table", "bucket")
    ui_color = "#2b6cb0"

    def __init__(self, *, dataset_id: str | None = None, rule: str | None = None, window_start: Any = None,
                 values: dict | None = None, stack: str | None = None, table: str | None = None,
                 bucket: str | None = None, settings: dict | None = None,
                 aws_conn_id: str | None = "aws_default", region_name: str | None = None,
                 fail_on_overdue: bool = False, deferrable: bool = True, poke_interval: float = 30.0,
                 **kwargs) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.dataset_id, self.rule, self.window_start, self.values = dataset_id, rule, window_start, values
        self.stack, self.table, self.bucket, self.settings = stack, table, bucket, settings
        self.aws_conn_id, self.region_name = aws_conn_id, region_name
        self.fail_on_overdue, self.deferrable = fail_on_overdue, deferrable
        self._target: Target | None = None
        self._overdue_seen = False

    # --- both ways -------------------------------------------------------------------------------------
    def _hook(self) -> StreamwatchHook:
        return StreamwatchHook(self.aws_conn_id, self.region_name)

    def target(self) -> Target:
        """Resolved once per try, before any wait: the connection, the deployment and the id are checked first."""
        if self._target is None:
            hook = self._hook()
            hook.check_connection()
            deployment = hook.deployment(stack=self.stack, table=self.table, bucket=self.bucket,
                                         settings=self.settings)
            dataset_id = dataset_id_for(deployment.settings, self.dataset_id, self.rule, self.window_start,
                                        self.values)
            self._target = Target(dataset_id, deployment.resources.table, deployment.resources.bucket,
                                  deployment.settings.changed())
        return self._target

    def _resumed(self, event: dict) -> dict | None:
        """The task's answer to an event: the detail (Ready), a failure, or None to wait on (Overdue warned)."""
        detail = event["detail"]
        if event["status"] == "ready":
            self.log.info("streamwatch: %s is Ready (%s objects, %s records)", detail["dataset_id"],
                          detail["objects"], detail["records"])
            return detail
        if event["status"] == "overdue":
            self._overdue_seen = True
            message = f"streamwatch: {detail['dataset_id']} is Overdue: {detail['reason']}"
            if self.fail_on_overdue:
                raise AirflowFailException(message)
            self.log.warning(message)
            return None
        reason = detail.get("failure") or detail.get("reason") or "no reason given"
        raise AirflowFailException(f"streamwatch: {detail['dataset_id']} is {event['detail_type'].split()[-1]}: "
                                   f"{reason}")

    # --- deferrable ------------------------------------------------------------------------------------
    def execute(self, context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        target = self.target()
        event = self._hook().event_for(target)
        if event is not None:  # already declared: no deferral, no triggerer round trip
            answer = self._resumed(event)
            if answer is not None:
                return answer
        self._defer(target)

    def _defer(self, target: Target) -> None:
        self.defer(trigger=StreamwatchDatasetTrigger(
            **target.serialize(), aws_conn_id=self.aws_conn_id, region_name=self.region_name,
            poll_interval=self.poke_interval, overdue_seen=self._overdue_seen),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) if self.timeout else None)

    def execute_complete(self, context, event: dict | None = None) -> Any:
        if not event or "detail" not in event:
            raise AirflowFailException(f"streamwatch: the trigger ended without an event ({event!r})")
        answer = self._resumed(event)
        if answer is not None:
            return answer
        self._defer(self.target())  # Overdue, warned: wait on

    # --- poking, in the worker ---------------------------------------------------------------------------
    def poke(self, context) -> Any:
        from airflow.sdk import PokeReturnValue
        target = self.target()
        event = self._hook().event_for(target, overdue_seen=self._overdue_seen)
        if event is None:
            return False
        answer = self._resumed(event)
        return PokeReturnValue(is_done=answer is not None, xcom_value=answer)
