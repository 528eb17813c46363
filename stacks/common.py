"""Building blocks every stage uses: the one Lambda asset with the Powertools layer, and a queue with a DLQ."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from streamwatch.settings import Resources, Settings

LAMBDA_DIR = Path(__file__).resolve().parent.parent / "lambdas"
RUNTIME = lambda_.Runtime.PYTHON_3_14  # the newest runtime the managed Powertools layer is published for
# AWS-managed Powertools layer, version 27 == aws-lambda-powertools 3.23.0 (pinned in requirements-dev.txt so
# tests run the library the Lambdas run). No Docker bundling: boto3 comes with the runtime.
POWERTOOLS_LAYER = "arn:aws:lambda:{region}:017000801446:layer:AWSLambdaPowertoolsPythonV3-python314-x86_64:27"
RETENTION = {1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS", 30: "ONE_MONTH",
             60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS", 150: "FIVE_MONTHS", 180: "SIX_MONTHS",
             365: "ONE_YEAR", 400: "THIRTEEN_MONTHS", 545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS",
             1827: "FIVE_YEARS", 3653: "TEN_YEARS"}
_ASSET_EXCLUDE = ["**/__pycache__", "*.pyc", "*.egg-info", "streamwatch/local"]


class StreamwatchFunction(Construct):
    """One handler of the `streamwatch` package: same asset, layer, tracing, JSON logs and settings env."""

    def __init__(self, scope: Construct, id: str, *, handler: str, settings: Settings, resources: Resources,
                 timeout_s: int, memory_mb: int = 512, **kwargs) -> None:
        super().__init__(scope, id)
        self.log_group = logs.LogGroup(self, "Logs", retention=getattr(logs.RetentionDays,
                                                                       RETENTION[settings.log_retention_days]),
                                       removal_policy=RemovalPolicy.DESTROY)
        layer = lambda_.LayerVersion.from_layer_version_arn(
            self, "Powertools", POWERTOOLS_LAYER.format(region=Aws.REGION))
        env = {**settings.to_env(), **resources.to_env(),
               "POWERTOOLS_SERVICE_NAME": "streamwatch", "POWERTOOLS_METRICS_NAMESPACE": "streamwatch",
               "POWERTOOLS_LOG_LEVEL": "INFO"}
        self.function = lambda_.Function(
            self, "Function", runtime=RUNTIME, architecture=lambda_.Architecture.X86_64,
            handler=f"streamwatch.handlers.{handler}.handler",
            code=lambda_.Code.from_asset(str(LAMBDA_DIR), exclude=_ASSET_EXCLUDE),
            layers=[layer], timeout=Duration.seconds(timeout_s), memory_size=memory_mb,
            tracing=lambda_.Tracing.ACTIVE, logging_format=lambda_.LoggingFormat.JSON,
            log_group=self.log_group, environment=env, **kwargs)


class QueueWithDlq(Construct):
    """An encrypted, TLS-only queue whose poison messages end in a DLQ after `max_receive_count` tries."""

    def __init__(self, scope: Construct, id: str, *, visibility_timeout: Duration, max_receive_count: int = 5,
                 message_size_bytes: int = 262_144) -> None:
        super().__init__(scope, id)
        self.dlq = sqs.Queue(self, "Dlq", retention_period=Duration.days(14), enforce_ssl=True,
                             encryption=sqs.QueueEncryption.SQS_MANAGED)
        self.queue = sqs.Queue(
            self, "Queue", visibility_timeout=visibility_timeout, enforce_ssl=True,
            encryption=sqs.QueueEncryption.SQS_MANAGED, max_message_size_bytes=message_size_bytes,
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dlq, max_receive_count=max_receive_count))
