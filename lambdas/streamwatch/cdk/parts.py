"""Building blocks every stage uses: a function of the `streamwatch` package and a queue with a DLQ."""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy, Token
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from streamwatch.cdk.bundling import runtime_code
from streamwatch.core.limits import MAX_RECEIVE_COUNT
from streamwatch.core.settings import Resources, Settings, SettingsError

RUNTIME = lambda_.Runtime.PYTHON_3_14  # the newest runtime the managed Powertools layer is published for
ARCHITECTURE = lambda_.Architecture.X86_64  # the managed layer's and the dependency layer's wheels
# AWS-managed Powertools layer, version 27 == aws-lambda-powertools 3.23.0 (pinned in requirements-dev.txt so
# tests run the library the Lambdas run). boto3 comes with the runtime; other wheels with the dependency layer.
POWERTOOLS_LAYER = "arn:aws:lambda:{region}:017000801446:layer:AWSLambdaPowertoolsPythonV3-python314-x86_64:27"
# Lambda quotas: "4 KB" for all of a function's environment variables (keys and values), checked at deploy by
# CloudFormation; checked here at synth instead, where the message can name the settings that fill it.
ENV_LIMIT_BYTES = 4096
# A resource name is a token at synth: count it at the longest value it can resolve to (queue URL: https://sqs.
# <region>.amazonaws.com/<12-digit account>/<80-char name>; a table name may have 255; a bucket 63; a bus 256)
TOKEN_BYTES = 256


def environment_bytes(env: dict[str, str]) -> int:
    return sum(len(k.encode()) + (TOKEN_BYTES if Token.is_unresolved(v) else len(str(v).encode()))
               for k, v in env.items())


def check_environment(name: str, env: dict[str, str]) -> None:
    size = environment_bytes(env)
    if size > ENV_LIMIT_BYTES:
        biggest = sorted(((len(v), k) for k, v in env.items() if not Token.is_unresolved(v)), reverse=True)[:3]
        named = ", ".join(f"{k} ({n} bytes)" for n, k in biggest)
        raise SettingsError(f"the {name} function's environment would be {size} bytes, over Lambda's 4 KB for all "
                            f"of a function's variables; the biggest: {named}. Use fewer or shorter dataset rules "
                            "(shared policy settings instead of per-rule overrides)")


class StreamwatchFunction(Construct):
    """One handler of the `streamwatch` package: runtime asset, Powertools layer, tracing, JSON logs, and the
    settings and resources as its environment."""

    def __init__(self, scope: Construct, id: str, *, handler: str, settings: Settings, resources: Resources,
                 timeout_s: int, memory_mb: int = 512, code: lambda_.Code | None = None,
                 layers: list[lambda_.ILayerVersion] = (), service: str = "streamwatch", **kwargs) -> None:
        super().__init__(scope, id)
        self.log_group = logs.LogGroup(self, "Logs", removal_policy=RemovalPolicy.DESTROY)
        # the days themselves (Settings validates them against CloudWatch's list): one definition, no enum map
        self.log_group.node.default_child.add_property_override("RetentionInDays", settings.log_retention_days)
        powertools = lambda_.LayerVersion.from_layer_version_arn(
            self, "Powertools", POWERTOOLS_LAYER.format(region=Aws.REGION))
        env = {**settings.to_env(), **resources.to_env(),
               "POWERTOOLS_SERVICE_NAME": service, "POWERTOOLS_METRICS_NAMESPACE": "streamwatch",
               "POWERTOOLS_LOG_LEVEL": "INFO"}
        check_environment(id, env)
        self.function = lambda_.Function(
            self, "Function", runtime=RUNTIME, architecture=ARCHITECTURE,
            handler=f"streamwatch.handlers.{handler}.handler", code=code or runtime_code(),
            layers=[powertools, *layers], timeout=Duration.seconds(timeout_s), memory_size=memory_mb,
            tracing=lambda_.Tracing.ACTIVE, logging_format=lambda_.LoggingFormat.JSON,
            log_group=self.log_group, environment=env, **kwargs)


class QueueWithDlq(Construct):
    """An encrypted, TLS-only queue whose poison messages end in a DLQ after `max_receive_count` tries."""

    def __init__(self, scope: Construct, id: str, *, visibility_timeout: Duration,
                 max_receive_count: int = MAX_RECEIVE_COUNT) -> None:
        super().__init__(scope, id)
        self.dlq = sqs.Queue(self, "Dlq", retention_period=Duration.days(14), enforce_ssl=True,
                             encryption=sqs.QueueEncryption.SQS_MANAGED)
        self.queue = sqs.Queue(
            self, "Queue", visibility_timeout=visibility_timeout, enforce_ssl=True,
            encryption=sqs.QueueEncryption.SQS_MANAGED, retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dlq, max_receive_count=max_receive_count))
