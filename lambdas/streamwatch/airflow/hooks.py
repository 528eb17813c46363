"""A streamwatch deployment as Airflow reaches it: through an Airflow AWS connection (the amazon provider's
`AwsBaseHook`: its credentials, region and endpoint), found the way the CLI finds it (a stack's outputs, or the
table and bucket given), read one dataset item at a time.

Synchronous boto3 on purpose: the trigger runs each read in a thread (`asyncio.to_thread`), so the extra needs no
aiobotocore, whose botocore pin would move an existing Airflow's botocore on install."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from streamwatch.airflow._compat import AirflowFailException, not_found_errors
from streamwatch.client.deployment import STACK_ENV, Deployment
from streamwatch.core.errors import InputError, NotFound
from streamwatch.core.events import FAILED, OVERDUE, READY, STALLED
from streamwatch.core.ids import check_dataset_id
from streamwatch.core.rules import RuleError
from streamwatch.core.settings import RESOURCE_ENV_PREFIX, Resources, Settings, SettingsError
from streamwatch.runtime import publishing
from streamwatch.runtime.chain import policy_of
from streamwatch.state.store import FAILED as FAILED_STATUS
from streamwatch.state.store import READY as READY_STATUS
from streamwatch.state.store import STALLED as STALLED_STATUS
from streamwatch.state.store import State, Store

# a state item's status -> the event the sensor resumes with
TERMINAL = {READY_STATUS: READY, FAILED_STATUS: FAILED, STALLED_STATUS: STALLED}


@dataclass(frozen=True)
class Target:
    """What a trigger needs to read one dataset: plain values, so that it serializes (Airflow's deferring rules)."""

    dataset_id: str
    table: str
    bucket: str
    settings: dict  # Settings.changed(): what differs from the defaults, as the stack's Settings output

    def serialize(self) -> dict[str, Any]:
        return asdict(self)


def dataset_id_for(settings: Settings, dataset_id: str | None, rule: str | None, window_start: Any,
                   values: dict | None) -> str:
    """The dataset id a task waits for: given, or a window's id built by its rule (an hourly DAG passes
    `window_start="{{ data_interval_start }}"`). Checked against the rules: a clear failure names what is wrong."""
    try:
        if dataset_id is None:
            if rule is None or window_start is None:
                raise InputError("give dataset_id, or rule and window_start")
            found = settings.rules.find(rule)
            if found.window_s is None:
                raise InputError(f"rule {rule!r} has no time window: give dataset_id")
            dataset_id = found.dataset_id(dict(values or {}), _epoch(window_start))
        check_dataset_id(dataset_id)
        settings.rules.rule_for(dataset_id).parse_id(dataset_id)
    except (InputError, RuleError, KeyError) as exc:
        message = f"missing value {exc} for rule {rule!r}" if isinstance(exc, KeyError) else str(exc)
        raise AirflowFailException(f"streamwatch: {message}") from None
    return dataset_id


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InputError(f"window_start {value!r} is not a time (ISO-8601 or epoch seconds)") from None


class StreamwatchHook:
    """One deployment through one Airflow AWS connection. `aws_conn_id=None` takes boto3's default chain."""

    def __init__(self, aws_conn_id: str | None = "aws_default", region_name: str | None = None) -> None:
        self.aws_conn_id, self.region_name = aws_conn_id, region_name

    def aws(self, **kwargs):
        """The amazon provider's hook for this connection (its credentials, region, endpoint_url)."""
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
        return AwsBaseHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name, **kwargs)

    def check_connection(self) -> None:
        """The amazon provider falls back to the default credentials when a connection is missing, with a warning
        only: a missing connection named by the DAG is its author's mistake, so say so instead."""
        if self.aws_conn_id is None:
            return
        try:
            self.aws(client_type="sts").get_connection(self.aws_conn_id)
        except not_found_errors():
            raise AirflowFailException(
                f"streamwatch: Airflow connection {self.aws_conn_id!r} not found: create it (Admin > Connections, "
                f"or AIRFLOW_CONN_{self.aws_conn_id.upper()}), or pass aws_conn_id=None for the default AWS "
                "credentials") from None

    def deployment(self, *, stack: str | None, table: str | None, bucket: str | None,
                   settings: dict | None) -> Deployment:
        """As the CLI finds it: the table (and bucket, settings) given, a stack's outputs (DescribeStacks through
        the connection; `stack`, or STREAMWATCH_STACK), or the environment of a local run."""
        try:
            if table:
                given = Settings.from_mapping(settings or {})
                return Deployment(given, Resources(table=table, bucket=bucket or "", stream="", observer_queue_url="",
                                                   notification_queue_url="", event_bus=""), "given")
            stack = stack or os.environ.get(STACK_ENV)
            if stack:
                return Deployment.from_stack(stack, cloudformation=self.aws(client_type="cloudformation").conn)
            if os.environ.get(f"{RESOURCE_ENV_PREFIX}TABLE"):  # a worker inside a local run (tests, the demo)
                return Deployment.from_env()
            raise InputError(f"no deployment given: pass stack='<name>' (or set {STACK_ENV} on the workers), or "
                             "table='<the state table>'")
        except (InputError, NotFound, SettingsError) as exc:
            raise AirflowFailException(f"streamwatch: {exc}") from None

    def store(self, table: str) -> Store:
        return Store(table, table=self.aws(resource_type="dynamodb").conn.Table(table))

    def event_for(self, target: Target, *, overdue_seen: bool = False) -> dict | None:
        """One read of the dataset's state item, judged (what the sensor does before deferring, and when it pokes)."""
        return judge(self.store(target.table).get_state(target.dataset_id), target, overdue_seen=overdue_seen)


def judge(state: State | None, target: Target, *, overdue_seen: bool = False) -> dict | None:
    """The event a waiting task resumes with, or None to wait on: the dataset's declaration (Ready, Failed,
    Stalled) with the detail its event carries, or Overdue once. Pure apart from building the detail."""
    if state is None:
        return None
    detail_type = TERMINAL.get(state.status)
    if detail_type is None and state.overdue_ts is not None and not overdue_seen:
        detail_type = OVERDUE
    if detail_type is None:
        return None
    settings = Settings.from_mapping(target.settings)
    body = publishing.detail(state, bucket=target.bucket, rules=settings.rules,
                             policy=policy_of(settings, state.rule), detail_type=detail_type)
    return {"status": publishing.KIND_OF[detail_type], "detail_type": detail_type, "detail": body}
