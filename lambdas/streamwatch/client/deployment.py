"""Where a streamwatch deployment is: its settings and resource names, for the client and the CLI.

Three sources, tried in this order by `Deployment.resolve`:
- explicit `resources=` (and `settings=`);
- a deployed stack by name (`stack=`, or `STREAMWATCH_STACK`): its CloudFormation outputs;
- the environment: `STREAMWATCH_RES_*` and `STREAMWATCH_*` settings, as inside the stack's Lambdas and inside a
  local run (`streamwatch.local.sandbox.Sandbox` sets them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streamwatch.core import scope
from streamwatch.core.errors import NotFound
from streamwatch.core.settings import RESOURCE_ENV_PREFIX, Resources, Settings

STACK_ENV = "STREAMWATCH_STACK"
# CloudFormation output -> Resources field (the construct's outputs; see streamwatch.cdk)
OUTPUTS = {"Table": "table", "Bucket": "bucket", "Stream": "stream", "ObserverQueue": "observer_queue_url",
           "NotificationQueue": "notification_queue_url", "EventBus": "event_bus"}
REQUIRED_OUTPUTS = ("Table", "ObserverQueue", "Settings")


class DeploymentNotFound(NotFound):
    """No deployment was named, and the environment does not point at one."""


class StackNotFound(NotFound):
    """The named CloudFormation stack does not exist in this account and region."""


class MissingOutput(NotFound):
    """The stack exists but lacks an output streamwatch needs (not a streamwatch stack, or an older one)."""


@dataclass(frozen=True)
class Deployment:
    settings: Settings
    resources: Resources
    source: str = "environment"
    queues: dict = field(default_factory=dict)  # name -> {"queue": url, "dlq": url} (the `dlq` command)
    outputs: dict = field(default_factory=dict)

    @classmethod
    def resolve(cls, *, stack: str | None = None, resources: Resources | None = None,
                settings: Settings | None = None, environ: Mapping[str, str] | None = None,
                cloudformation: Callable[[], Any] | None = None) -> Deployment:
        """In this order: the resources given; a stack's outputs (`stack`, or STREAMWATCH_STACK; through the client
        `cloudformation()` makes, when given: an Airflow connection's); the environment (a Lambda, a local run)."""
        environ = scope.environ() if environ is None else environ
        if resources is not None:
            return cls(settings or _env_settings(environ), resources, "given")
        stack = stack or environ.get(STACK_ENV)
        if stack:
            return cls.from_stack(stack, cloudformation=cloudformation() if cloudformation else None)
        if environ.get(f"{RESOURCE_ENV_PREFIX}TABLE"):
            return cls.from_env(environ)
        raise DeploymentNotFound("no streamwatch deployment given: pass stack='<name>' (CLI: --stack NAME, or set "
                                 f"{STACK_ENV}), or run inside the stack's Lambdas or a local Sandbox")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Deployment:
        environ = scope.environ() if environ is None else environ
        queues = json.loads(environ.get("STREAMWATCH_QUEUES", "{}") or "{}")
        return cls(_env_settings(environ), Resources.from_env(environ), "environment", queues)

    @classmethod
    def from_stack(cls, name: str, *, session=None, cloudformation=None) -> Deployment:
        """The stack's outputs (DescribeStacks, through `cloudformation` when given: an Airflow connection's
        client, say). A missing stack or output is a clear error naming it."""
        import boto3
        from botocore.exceptions import ClientError

        if cloudformation is None:
            cloudformation = (session or scope.session() or boto3.Session()).client(
                "cloudformation", endpoint_url=scope.endpoint_url())
        region = cloudformation.meta.region_name or "the default region"
        try:
            stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ValidationError" and "does not exist" in str(exc):
                raise StackNotFound(f"stack {name!r} not found in {region}: check the name (--stack) and "
                                    "AWS_REGION, or deploy it with `npx cdk deploy`") from None
            raise
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        for key in REQUIRED_OUTPUTS:
            if key not in outputs:
                raise MissingOutput(f"stack {name!r} has no output {key!r}: it is not a streamwatch stack, or was "
                                    "deployed by an older version (redeploy it)")
        try:
            settings = Settings.from_mapping(json.loads(outputs["Settings"]))
        except ValueError as exc:
            raise MissingOutput(f"stack {name!r}: its Settings output cannot be read ({exc}); redeploy it") from None
        resources = Resources(**{field: outputs.get(key, "") for key, field in OUTPUTS.items()})
        queues = json.loads(outputs.get("Queues", "{}"))
        return cls(settings, resources, f"stack {name}", queues, outputs)


def _env_settings(environ: Mapping[str, str]) -> Settings:
    return Settings.from_env(environ)
