"""A streamwatch deployment as Airflow reaches it: through an Airflow AWS connection (the amazon provider's
`AwsBaseHook`: its credentials, region and endpoint), found the way the CLI finds it (a stack's outputs, or the
table and bucket given), read one dataset item at a time.

Synchronous boto3 on purpose: the trigger runs each read in a thread (`asyncio.to_thread`), so the extra needs no
aiobotocore, whose botocore pin would move an existing Airflow's botocore on install."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from streamwatch.airflow._compat import AirflowFailException, not_found_errors
from streamwatch.client.deployment import STACK_ENV, Deployment, DeploymentNotFound
from streamwatch.core.errors import InputError, NotFound
from streamwatch.core.ids import check_dataset_id
from streamwatch.core.rules import RuleError
from streamwatch.core.settings import Resources, Settings, SettingsError
from streamwatch.runtime import publishing
from streamwatch.state.store import State, Store


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
            given = Resources(table=table, bucket=bucket or "", stream="", observer_queue_url="",
                              notification_queue_url="", event_bus="") if table else None
            return Deployment.resolve(stack=stack, resources=given,
                                      settings=Settings.from_mapping(settings or {}) if table else None,
                                      cloudformation=lambda: self.aws(client_type="cloudformation").conn)
        except DeploymentNotFound:
            raise AirflowFailException(f"streamwatch: no deployment given: pass stack='<name>' (or set {STACK_ENV} "
                                       "on the workers), or table='<the state table>'") from None
        except (InputError, NotFound, SettingsError) as exc:
            raise AirflowFailException(f"streamwatch: {exc}") from None

    def store(self, table: str) -> Store:
        return Store(table, table=self.aws(resource_type="dynamodb").conn.Table(table))

    def event_for(self, target: Target, *, overdue_seen: bool = False) -> dict | None:
        """One read of the dataset's state item, judged (what the sensor does before deferring, and when it pokes)."""
        return judge(self.store(target.table).get_state(target.dataset_id), target, overdue_seen=overdue_seen)


def judge(state: State | None, target: Target, *, overdue_seen: bool = False) -> dict | None:
    """The event a waiting task resumes with, or None to wait on: the dataset's declaration (Ready, Failed,
    Stalled) with the detail its event carries, or Overdue once (runtime/publishing.declared_event)."""
    return publishing.declared_event(state, bucket=target.bucket, settings=Settings.from_mapping(target.settings),
                                     overdue_seen=overdue_seen)
