"""`Streamwatch`: the whole pipeline as one construct for your CDK app, on your resources or new ones.

As AWS Solutions Constructs do it: each resource you pass (`bucket`, `delivery_stream`, `event_bus`) is used, each
you do not is created; an existing resource or props for a new one, never both; every child is an attribute you
can grant, subscribe and alarm on. docs/construct.md lists the props and their defaults.

Why one long module: it is the stack read top to bottom (storage, stream, notifications, functions, schedules,
grants), each resource next to the ones it references, in the order CloudFormation needs them; split by
resource, one change (a new function, say) would touch four files. What stands alone is elsewhere: parts.py
(a function, a queue with its DLQ), operations.py (alarms and the dashboard), bundling.py, nag.py.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import aws_cdk as cdk
import jsii
from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from streamwatch.cdk.bundling import dependency_layer_code, producer_code
from streamwatch.cdk.nag import acknowledge
from streamwatch.cdk.operations import Operations
from streamwatch.cdk.parts import ARCHITECTURE, RUNTIME, QueueWithDlq, StreamwatchFunction
from streamwatch.core.catalog import location_of, ready_pattern, table_input
from streamwatch.core.events import DETAIL_TYPES, READY, SOURCE, waits_pattern
from streamwatch.core.limits import (
    DEPENDENCY_LAYER,
    FUNCTIONS,
    GLUE_ACTIONS,
    IDEMPOTENCY_ACTIONS,
    OBSERVER_VISIBILITY_S,
    STATES_ACTIONS,
    TABLE_ACTIONS,
    notification_visibility_s,
)
from streamwatch.core.rules import MANIFEST, SUCCESS
from streamwatch.core.s3_events import notification_filters, object_created_pattern, watched_prefixes
from streamwatch.core.settings import Resources, Settings, SettingsError
from streamwatch.state.layout import (
    IDEMPOTENCY_KEY,
    IDEMPOTENCY_TTL,
    LIST_INDEX,
    LIST_PK,
    LIST_SK,
    PK,
    SK,
    TTL_ATTRIBUTE,
)

ERROR_OUTPUT = "!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/"
STARTER_CONCURRENCY = 5
MAX_OUTPUT_CHARS = 4000  # a CloudFormation output value holds at most 4 KB


class StreamwatchPropsError(ValueError):
    """Props that contradict each other (an existing resource and props for a new one, ...)."""


@jsii.implements(s3.IBucketNotificationDestination)
class _QueueDestination:
    """S3 -> SQS, with the queue policy AWS recommends for S3: both aws:SourceArn (the bucket) and
    aws:SourceAccount (S3 User Guide, "Granting permissions to publish event notification messages to a
    destination"); CDK's SqsDestination checks the ARN only."""

    def __init__(self, queue) -> None:
        self.queue = queue

    def bind(self, scope, bucket) -> s3.BucketNotificationDestinationConfig:
        self.queue.add_to_resource_policy(iam.PolicyStatement(
            principals=[iam.ServicePrincipal("s3.amazonaws.com")],
            actions=["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"], resources=[self.queue.queue_arn],
            conditions={"ArnLike": {"aws:SourceArn": bucket.bucket_arn},
                        "StringEquals": {"aws:SourceAccount": bucket.env.account}}))  # the bucket owner's
        return s3.BucketNotificationDestinationConfig(arn=self.queue.queue_arn,
                                                      type=s3.BucketNotificationDestinationType.QUEUE,
                                                      dependencies=[self.queue])


def _other_stack(resource, scope) -> bool:
    """A resource of another stack of the same app (not an import into this one)."""
    return Stack.of(resource) is not Stack.of(scope)


def event_pattern(*detail_types: str) -> events.EventPattern:
    return events.EventPattern(source=[SOURCE], detail_type=list(detail_types or DETAIL_TYPES))


class Streamwatch(Construct):
    """Watch datasets that Firehose writes to S3 and put one Dataset Ready (or Failed, Stalled, Overdue, Amended)
    on EventBridge per dataset.

    `settings`: `streamwatch.core.settings.Settings` (policy, dataset rules, buffering, alarms, ...).
    `bucket` / `bucket_props`: an existing bucket (IBucket), or props for the one the construct creates.
    `delivery_stream`: an existing Firehose stream (IDeliveryStream) writing the first dataset rule's layout;
    otherwise one is created with dynamic partitioning from that rule.
    `event_bus`: where events go (IEventBus); otherwise a new bus.
    `alarm_topic`: where alarms go (ITopic); otherwise a topic is created when `settings.alarm_email` is set.
    `bucket_key`: the KMS key of a bucket encrypted with SSE-KMS (default: the passed bucket's own
    `encryption_key`, if it has one): the readers get kms:Decrypt, the writers kms:GenerateDataKey.
    `outputs`: CloudFormation outputs the client and CLI read (`--stack NAME`); one construct per stack then.
    """

    def __init__(self, scope: Construct, id: str, *, settings: Settings | None = None,
                 bucket: s3.IBucket | None = None, bucket_props: dict | None = None,
                 delivery_stream: firehose.IDeliveryStream | None = None, event_bus: events.IEventBus | None = None,
                 alarm_topic: sns.ITopic | None = None, bucket_key: kms.IKey | None = None,
                 outputs: bool = True) -> None:
        super().__init__(scope, id)
        settings = settings or Settings()
        if bucket is not None and bucket_props is not None:
            raise StreamwatchPropsError("give bucket= (an existing bucket) or bucket_props= (for a new one), not both")
        if delivery_stream is not None and bucket is None:
            raise StreamwatchPropsError("delivery_stream= writes to a bucket of yours: pass that bucket as bucket=")
        # resolve what depends on which resources were passed, once: Lambdas, outputs and alarms see the same
        created_stream = delivery_stream is None
        notifications = settings.notifications
        if notifications == "auto":
            notifications = "eventbridge" if bucket is not None else "s3"
        if bucket is not None and notifications == "s3" and _other_stack(bucket, self):
            raise StreamwatchPropsError(
                f"notifications='s3' on a bucket of stack {Stack.of(bucket).stack_name!r} makes a dependency cycle "
                "(its notification configuration would name this stack's queue, which this stack's functions "
                "read the bucket through): use notifications='eventbridge' (the default for a bucket you pass), "
                "or create Streamwatch in the bucket's stack")
        # Firehose de-aggregates records only with dynamic partitioning, which needs a field in the stream's prefix
        partitions = bool(settings.rules.stream_rule.value_fields)
        pack = (created_stream and partitions) if settings.pack_records is None else settings.pack_records
        if pack and created_stream and not partitions:
            raise SettingsError(
                f"setting pack_records=True needs a stream that de-aggregates records, and Firehose de-aggregates "
                f"only with dynamic partitioning, which needs a field in the first dataset rule's pattern "
                f"({settings.rules.stream_rule.pattern!r} has only time fields): set pack_records=False, or put a "
                "rule with a field first (e.g. 'logs/{source}/{yyyy}/{MM}/{dd}/{HH}/')")
        self.settings = settings = replace(settings, pack_records=pack, notifications=notifications)
        self._rule_ids = itertools.count(1)
        self.service_name = self.node.path  # Powertools' `service` metric dimension: one per deployment

        # --- storage --------------------------------------------------------------------------------------
        self.bucket = bucket or s3.Bucket(self, "Data", **{
            "block_public_access": s3.BlockPublicAccess.BLOCK_ALL, "enforce_ssl": True,
            "encryption": s3.BucketEncryption.S3_MANAGED, "versioned": False,
            "object_ownership": s3.ObjectOwnership.BUCKET_OWNER_ENFORCED, "removal_policy": RemovalPolicy.RETAIN,
            **(bucket_props or {})})
        self.bucket_key = bucket_key or self.bucket.encryption_key
        # A bucket of another stack: its own handle turns its EventBridge delivery on (in its stack); every grant and
        # name here goes through exports named by this construct, so the references are known at construct time
        self._owner_bucket = self.bucket
        if bucket is not None and _other_stack(bucket, self):
            self.bucket = self._shared_bucket(bucket)
        self.table = dynamodb.Table(
            self, "State", partition_key=dynamodb.Attribute(name=PK, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=SK, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST, encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            time_to_live_attribute=TTL_ATTRIBUTE, removal_policy=RemovalPolicy.RETAIN)
        self.table.add_global_secondary_index(  # datasets by the day they started: status, heartbeat
            index_name=LIST_INDEX, partition_key=dynamodb.Attribute(name=LIST_PK, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=LIST_SK, type=dynamodb.AttributeType.STRING))
        self.event_bus = event_bus or events.EventBus(self, "Bus")

        # --- queues ---------------------------------------------------------------------------------------
        self.notifications = QueueWithDlq(self, "Notifications", visibility_timeout=Duration.seconds(
            notification_visibility_s(settings)))
        self.observer_queues = QueueWithDlq(self, "ObserverQueue",
                                            visibility_timeout=Duration.seconds(OBSERVER_VISIBILITY_S))
        self.notification_queue, self.notification_dlq = self.notifications.queue, self.notifications.dlq
        self.observer_queue, self.observer_dlq = self.observer_queues.queue, self.observer_queues.dlq

        # --- ingest ---------------------------------------------------------------------------------------
        self.dynamic_partitioning = False  # only a stream of ours is known to partition (and so to hit its quota)
        self.delivery_stream = delivery_stream or self._stream(settings)
        # the example consumer's Powertools Idempotency records, apart from the state table (it may not write that)
        self.idempotency_table = dynamodb.Table(
            self, "ConsumerIdempotency", partition_key=dynamodb.Attribute(
                name=IDEMPOTENCY_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST, encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            time_to_live_attribute=IDEMPOTENCY_TTL, removal_policy=RemovalPolicy.DESTROY,
        ) if settings.example_consumer else None
        resources = Resources(table=self.table.table_name, bucket=self.bucket.bucket_name,
                              stream=self.delivery_stream.delivery_stream_name,
                              observer_queue_url=self.observer_queue.queue_url,
                              notification_queue_url=self.notification_queue.queue_url,
                              event_bus=self.event_bus.event_bus_name)
        self.resources = resources
        self.dependencies = lambda_.LayerVersion(
            self, "Dependencies", code=dependency_layer_code(), compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="streamwatch's third-party wheels (obstore) for the Lambda platform")
        self._layers = {DEPENDENCY_LAYER: self.dependencies}
        self._producers(settings, resources)

        # --- counting -------------------------------------------------------------------------------------
        self.watched_prefixes = watched_prefixes(settings.rules, settings.error_prefix)
        self._object_events(notifications)
        self.monitor = self._function("Monitor", settings=settings, resources=resources).function
        self.monitor.add_event_source(sources.SqsEventSource(
            self.notification_queue, batch_size=settings.monitor_batch_size,
            max_batching_window=(Duration.seconds(settings.monitor_batch_window_s)
                                 if settings.monitor_batch_window_s else None),
            report_batch_item_failures=True, max_concurrency=settings.monitor_max_concurrency))
        self.table.grant(self.monitor, *TABLE_ACTIONS["Monitor"])
        for prefix in self.watched_prefixes:  # reads objects to find records, and the error output
            self.bucket.grant_read(self.monitor, f"{prefix}*")
        if self.bucket_key is not None:
            self.bucket_key.grant_decrypt(self.monitor)
        self.observer_queue.grant_send_messages(self.monitor)  # first object starts the chain; nudges
        self.notification_queue.grant_consume_messages(self.monitor)

        # --- observing ------------------------------------------------------------------------------------
        # AWS stops a Lambda -> SQS -> same Lambda chain after ~16 hops unless allowed; our own guard is the
        # hard cap (max_observation_s -> Dataset Stalled), enforced by the policy.
        self.observer = self._function("Observer", settings=settings, resources=resources,
                                       recursive_loop=lambda_.RecursiveLoop.ALLOW).function
        self.observer.add_event_source(sources.SqsEventSource(self.observer_queue, batch_size=10,
                                                              report_batch_item_failures=True,
                                                              max_concurrency=settings.observer_max_concurrency))
        self.table.grant(self.observer, *TABLE_ACTIONS["Observer"])
        self.observer_queue.grant_send_messages(self.observer)
        self.event_bus.grant_put_events_to(self.observer)
        if event_bus is None:  # only the observer may put streamwatch's events on a bus of ours
            self.event_bus.add_to_resource_policy(iam.PolicyStatement(
                sid="OnlyTheObserverPutsStreamwatchEvents", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
                actions=["events:PutEvents"], resources=[self.event_bus.event_bus_arn],
                conditions={"ForAnyValue:StringEquals": {"events:source": [SOURCE]},
                            "ArnNotEquals": {"aws:PrincipalArn": self.observer.role.role_arn}}))
        cdk.aws_iam.Grant.add_to_principal(  # the backlog check reads the notifications queue's depth
            grantee=self.observer, actions=["sqs:GetQueueAttributes"],
            resource_arns=[self.notification_queue.queue_arn])
        self.scheduler = self._scheduler(settings, resources)

        # --- downstream -----------------------------------------------------------------------------------
        self.webhook_dlq = self._webhook(settings.callback_url) if settings.callback_url else None
        self.consumer, self.consumer_dlq = (self._example_consumer(settings, resources)
                                            if settings.example_consumer else (None, None))
        self.catalog, self.catalog_queues = self._catalog(settings, resources)
        self.waits, self.waits_queues = None, None  # made by the first wait_for_dataset_task

        self._writers_only(settings)

        # --- operations -----------------------------------------------------------------------------------
        self.alarm_topic = alarm_topic
        if settings.alarms and alarm_topic is None and settings.alarm_email:
            self.alarm_topic = sns.Topic(self, "Alarms", enforce_ssl=True)
            self.alarm_topic.add_subscription(cdk.aws_sns_subscriptions.EmailSubscription(settings.alarm_email))
        if settings.alarms:
            self._alarm_destination()
        self.operations = Operations(self, "Operations", watch=self, settings=settings) if settings.alarms else None
        if outputs:
            self._outputs()
        acknowledge(self)

    def _function(self, id: str, **kwargs) -> StreamwatchFunction:
        """One of `limits.FUNCTIONS`: its handler, timeout, memory and layers come from there."""
        spec = FUNCTIONS[id]
        return StreamwatchFunction(self, id, service=self.service_name, handler=spec.handler,
                                   timeout_s=spec.timeout_s, memory_mb=spec.memory_mb,
                                   layers=[self._layers[name] for name in spec.layers], **kwargs)

    def _writers_only(self, settings: Settings) -> None:
        """A bucket the construct creates: under the stream's prefix and the error output, only the stream's role
        (and the example consumer, for its markers) may write. Anyone else who can write to the bucket cannot
        forge records, fail a dataset or get it declared early. For a bucket you pass, docs/security.md has the
        same statement to add to its policy."""
        if self.node.try_find_child("Data") is None or getattr(self, "stream_role", None) is None:
            return
        writers = [self.stream_role.role_arn] + ([self.consumer.role.role_arn] if self.consumer is not None else [])
        prefixes = sorted({settings.rules.stream_rule.literal_prefix, settings.error_prefix or "errors/"})
        if "" in prefixes:
            cdk.Annotations.of(self).add_warning_v2(
                "streamwatch:whole-bucket-write-deny",
                f"the first rule's pattern {settings.rules.stream_rule.pattern!r} starts with a field, so the stream "
                "writes anywhere in the bucket and only its role (and the consumer) may put objects into it: start "
                "the pattern with a literal folder (e.g. data/) to leave the rest of the bucket to other writers")
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="OnlyTheStreamWritesWatchedPrefixes", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
            actions=["s3:PutObject"], resources=[self.bucket.arn_for_objects(f"{p}*") for p in prefixes],
            conditions={"ArnNotEquals": {"aws:PrincipalArn": writers}}))

    def _shared_bucket(self, bucket: s3.IBucket) -> s3.IBucket:
        owner, prefix = Stack.of(bucket), f"{Stack.of(self).stack_name}-{self.node.addr[:10]}"
        # export_value(name=) adds no dependency between the stacks: without one, `cdk deploy --all` may deploy
        # this stack first, and its Fn::ImportValue fails on an export that does not exist yet
        Stack.of(self).add_stack_dependency(owner, "streamwatch imports the bucket's name and ARN")
        return s3.Bucket.from_bucket_attributes(
            self, "SharedBucket", bucket_arn=owner.export_value(bucket.bucket_arn, name=f"{prefix}-BucketArn"),
            bucket_name=owner.export_value(bucket.bucket_name, name=f"{prefix}-BucketName"))

    def _failures(self, id: str) -> QueueWithDlq:
        """Where a function invoked asynchronously (by an EventBridge rule) puts an event it failed on: Lambda
        retries twice and then drops it unless the function has an on-failure destination."""
        return QueueWithDlq(self, id, visibility_timeout=Duration.seconds(30))

    def _alarm_destination(self) -> None:
        """A topic policy replaces SNS's default one, so CloudWatch must be allowed to publish, for this account's
        alarms only (CloudWatch User Guide: alarms and SNS topic access policies, confused deputy)."""
        if self.alarm_topic is None:
            cdk.Annotations.of(self).add_warning_v2(
                "streamwatch:no-alarm-destination",
                "streamwatch's alarms notify no one: set the setting alarm_email (a topic is created and the address "
                "subscribed) or pass alarm_topic= (a topic of yours)")
            return
        stack = Stack.of(self)
        added = self.alarm_topic.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudWatchAlarmsPublish", principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["sns:Publish"], resources=[self.alarm_topic.topic_arn],
            conditions={"ArnLike": {"aws:SourceArn": f"arn:{stack.partition}:cloudwatch:{stack.region}:"
                                                      f"{stack.account}:alarm:*"},
                        "StringEquals": {"aws:SourceAccount": stack.account}}))
        if not added.statement_added:
            cdk.Annotations.of(self).add_warning_v2(
                "streamwatch:alarm-topic-policy",
                "alarm_topic is imported: its topic policy must let cloudwatch.amazonaws.com sns:Publish "
                "(docs/operations.md has the statement)")

    # --- ingest --------------------------------------------------------------------------------------------
    def _stream(self, settings: Settings) -> firehose.DeliveryStream:
        """A stream writing the first rule's layout: dynamic partitioning by its fields (JQ), time fields from
        the arrival time, JSON de-aggregation when producers pack records, a newline after each record."""
        rule = settings.rules.stream_rule
        processors = []
        if settings.pack_records:
            processors.append(firehose.RecordDeAggregationProcessor.json())
        partitioned = bool(rule.value_fields)
        if partitioned:
            processors.append(firehose.MetadataExtractionProcessor.jq16(rule.jq_query()))
        processors.append(firehose.AppendDelimiterToRecordProcessor())
        error_prefix = (settings.error_prefix or "errors/") + ERROR_OUTPUT
        self.stream_role = self._stream_role(rule.literal_prefix, settings.error_prefix or "errors/")
        logs = cdk.aws_logs.LogGroup(self, "StreamLogs", removal_policy=RemovalPolicy.DESTROY,
                                     retention=cdk.aws_logs.RetentionDays.ONE_MONTH)
        logs.grant_write(self.stream_role)
        destination = firehose.S3Bucket(
            self.bucket, data_output_prefix=rule.firehose_prefix(), error_output_prefix=error_prefix,
            buffering_interval=Duration.seconds(settings.buffer_interval_s),
            buffering_size=cdk.Size.mebibytes(settings.buffer_size_mib),
            dynamic_partitioning=firehose.DynamicPartitioningProps(enabled=True) if partitioned else None,
            processors=processors, encryption_key=self.bucket_key, logging_config=firehose.EnableLogging(logs),
            role=self.stream_role.without_policy_updates())  # CDK's grants (Delete*, List*) never reach it
        if self.bucket_key is not None:  # with a KMS key, Firehose's role encrypts with it (GenerateDataKey)
            self.bucket_key.grant_encrypt_decrypt(self.stream_role)
        self.dynamic_partitioning = partitioned
        stream = firehose.DeliveryStream(self, "Stream", destination=destination,
                                         encryption=firehose.StreamEncryption.aws_owned_key())
        # Firehose checks its role's access when the stream is created; the role goes without CDK's policy
        # updates, so the dependency on its policy CDK adds with them is added here
        stream.node.add_dependency(self.stream_role)
        return stream

    def _stream_role(self, data_prefix: str, error_prefix: str) -> iam.Role:
        """What AWS documents for a Firehose S3 destination ("Grant Firehose access to an Amazon S3 destination"),
        objects limited to the prefixes it writes; assumable by Firehose for this account only."""
        stack = Stack.of(self)
        # the trust policy of the Firehose guides (and the CloudWatch Logs guide's Firehose role): sts:ExternalId
        # is the account id, which Firehose passes when it assumes the role
        role = iam.Role(self, "StreamRole", assumed_by=iam.ServicePrincipal(
            "firehose.amazonaws.com", conditions={"StringEquals": {"sts:ExternalId": stack.account}}),
            description="Firehose delivery into the watched prefixes and the error output")
        role.add_to_policy(iam.PolicyStatement(
            actions=["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
            resources=[self.bucket.bucket_arn]))
        role.add_to_policy(iam.PolicyStatement(
            actions=["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
            resources=[self.bucket.arn_for_objects(f"{p}*") for p in sorted({data_prefix, error_prefix})]))
        return role

    def _producers(self, settings: Settings, resources: Resources) -> None:
        """Producers may only put to the stream, write their report items and nudge the observer. The run
        starter registers a dataset and fans out to producers; it never writes to Firehose itself."""
        code = producer_code(settings.producer_code_dir) if settings.producer_code_dir else None
        # the starter invokes producers asynchronously: a producer that fails has reported failed (its dataset
        # fails); Lambda must not run it again, and the event is kept, with an alarm
        self.producer_failures = self._failures("ProducerFailed")
        self.producer = self._function("Producer", settings=settings, resources=resources, code=code,
                                       retry_attempts=0,
                                       on_failure=destinations.SqsDestination(self.producer_failures.queue)).function
        self.delivery_stream.grant_put_records(self.producer)
        self.table.grant(self.producer, *TABLE_ACTIONS["Producer"])
        self.observer_queue.grant_send_messages(self.producer)
        self.starter = self._function(  # a few runs start at once; each fans out to at most max_producers_per_run
            "Starter", settings=settings, reserved_concurrent_executions=STARTER_CONCURRENCY,
            resources=replace(resources, producer_function=self.producer.function_name)).function
        self.table.grant(self.starter, *TABLE_ACTIONS["Starter"])
        self.observer_queue.grant_send_messages(self.starter)
        self.producer.grant_invoke(self.starter)

    def _object_events(self, notifications: str) -> None:
        """S3 notifications for a bucket of ours; EventBridge for yours (a bucket has one notification
        configuration, which its owner may already use)."""
        if notifications == "s3":
            for prefix in notification_filters(self.watched_prefixes):  # S3 matches filters on the encoded key
                filters = [s3.NotificationKeyFilter(prefix=prefix)] if prefix else []
                self.bucket.add_event_notification(s3.EventType.OBJECT_CREATED,
                                                   _QueueDestination(self.notification_queue), *filters)
            self.object_events_rule = None
            return
        self._owner_bucket.enable_event_bridge_notification()
        pattern = object_created_pattern(self.bucket.bucket_name, self.watched_prefixes)
        self.object_events_rule = events.Rule(
            self, "ObjectCreated", description="New objects under the watched prefixes -> the monitor",
            event_pattern=events.EventPattern(source=pattern["source"], detail_type=pattern["detail-type"],
                                              detail=pattern["detail"]),
            targets=[targets.SqsQueue(self.notification_queue, dead_letter_queue=self.notification_dlq,
                                      retry_attempts=185, max_event_age=Duration.hours(24))])

    # --- scheduled work ------------------------------------------------------------------------------------
    def _scheduler(self, settings: Settings, resources: Resources) -> lambda_.IFunction | None:
        self.scheduler_failures = None
        windows = sorted({r.window_s for r in settings.rules.rules
                          if r.window_s and settings.for_rule(r).emit_empty})
        if not windows and not settings.alarms:
            return None
        self.scheduler_failures = self._failures("SchedulerFailed")
        fn = self._function("Scheduler", settings=settings, resources=resources, retry_attempts=2,
                            on_failure=destinations.SqsDestination(self.scheduler_failures.queue)).function
        self.table.grant(fn, *TABLE_ACTIONS["Scheduler"])
        self.observer_queue.grant_send_messages(fn)
        for window_s in windows:  # open every window when it ends, empty ones included
            schedule = events.Schedule.cron(minute="0") if window_s == 3600 else events.Schedule.cron(minute="0",
                                                                                                        hour="0")
            events.Rule(self, f"CloseWindows{window_s}", schedule=schedule, targets=[targets.LambdaFunction(
                fn, event=events.RuleTargetInput.from_object({"action": "close_windows"}), retry_attempts=4)])
        if settings.alarms:
            events.Rule(self, "Heartbeat", schedule=events.Schedule.rate(Duration.minutes(5)),
                        targets=[targets.LambdaFunction(
                            fn, event=events.RuleTargetInput.from_object({"action": "heartbeat"}), retry_attempts=2)])
        return fn

    def grant_produce(self, grantee: iam.IGrantable) -> None:
        """What a producer outside the construct needs (a Glue job, an ECS task, a CI role using the client or the
        CLI): put records to the stream, write its report items, nudge the observer. Registering runs (`run
        start`, Run.start) needs `grant_start` too."""
        self.delivery_stream.grant_put_records(grantee)
        self.table.grant(grantee, *TABLE_ACTIONS["Producer"])
        self.observer_queue.grant_send_messages(grantee)

    def grant_start(self, grantee: iam.IGrantable) -> None:
        """What registering a run takes (the starter's table actions), beside grant_produce."""
        self.table.grant(grantee, *TABLE_ACTIONS["Starter"])
        self.observer_queue.grant_send_messages(grantee)

    # --- downstream ----------------------------------------------------------------------------------------
    def on_event(self, target: events.IRuleTarget, *detail_types: str) -> events.Rule:
        """A rule on the bus sending these events (default: Dataset Ready) to any EventBridge target: a Lambda,
        a Step Functions state machine, a Glue workflow, an SQS queue an Airflow DAG listens on, ..."""
        detail_types = detail_types or (READY,)
        unknown = [d for d in detail_types if d not in DETAIL_TYPES]
        if unknown:
            raise StreamwatchPropsError(f"unknown detail-type {unknown[0]!r}: one of {', '.join(DETAIL_TYPES)}")
        return events.Rule(self, f"On{next(self._rule_ids)}", event_bus=self.event_bus,
                           event_pattern=event_pattern(*detail_types), targets=[target])

    def _webhook(self, url: str):
        """Every event POSTed to the callback URL by an EventBridge API destination: retries and a DLQ from the
        service, no HTTP code of ours. The receiver checks the `x-streamwatch-token` header against the secret."""
        self.webhook_secret = secretsmanager.Secret(
            self, "WebhookToken", generate_secret_string=secretsmanager.SecretStringGenerator(
                exclude_punctuation=True, password_length=40))
        connection = events.Connection(self, "WebhookConnection", authorization=events.Authorization.api_key(
            "x-streamwatch-token", self.webhook_secret.secret_value))
        destination = events.ApiDestination(self, "WebhookDestination", connection=connection, endpoint=url,
                                            http_method=events.HttpMethod.POST, rate_limit_per_second=10)
        dlq = QueueWithDlq(self, "WebhookFailed", visibility_timeout=Duration.seconds(30))
        events.Rule(self, "Webhook", event_bus=self.event_bus, event_pattern=event_pattern(), targets=[
            targets.ApiDestination(destination, dead_letter_queue=dlq.queue, retry_attempts=185,
                                   max_event_age=Duration.hours(24))])
        return dlq.queue

    def _example_consumer(self, settings: Settings, resources: Resources):
        """A rule on Dataset Ready -> the consumer Lambda (manifest + _SUCCESS), retries and a DLQ."""
        # One failure queue for both ways a Ready can fail to reach it: EventBridge could not invoke it (the
        # target's DLQ), or it ran and failed three times (Lambda's on-failure destination for async invocations)
        dlq = self._failures("ConsumerFailed")
        fn = self._function("Consumer", settings=settings, retry_attempts=2,
                            resources=replace(resources, idempotency_table=self.idempotency_table.table_name),
                            max_event_age=Duration.hours(6),
                            on_failure=destinations.SqsDestination(dlq.queue)).function
        for prefix in settings.rules.watched_prefixes:
            self.bucket.grant_read(fn, f"{prefix}*")
            for name in (MANIFEST, SUCCESS):  # it writes only its two marker files, never data
                self.bucket.grant_put(fn, f"{prefix}*/{name}")
        if self.bucket_key is not None:
            self.bucket_key.grant_encrypt_decrypt(fn)  # reads the data, writes the markers
        self.idempotency_table.grant(fn, *IDEMPOTENCY_ACTIONS)
        self.on_event(targets.LambdaFunction(fn, dead_letter_queue=dlq.queue, retry_attempts=4,
                                             max_event_age=Duration.hours(6)), READY)
        return fn, dlq.queue

    def _catalog(self, settings: Settings, resources: Resources):
        """Rules with a catalog: a rule on Dataset Ready of those rules -> a queue -> the catalog function, which
        registers the dataset as its partition (runtime/catalog.py). It starts after the Ready is out, so it never
        delays or repeats one; a message that keeps failing ends in the queue's DLQ (alarmed). Tables the rules give
        columns for are created here (with their database when `new_database`)."""
        rules = [r for r in settings.rules.rules if r.catalog is not None]
        if not rules:
            return None, None
        stack = Stack.of(self)
        tables = sorted({(r.catalog.database, r.catalog.table) for r in rules})
        if len(tables) < len(rules):
            raise SettingsError("two dataset rules name the same catalog table: give each rule its own table (a "
                                "partition's keys are its rule's fields)")
        created_databases = {}
        for rule in rules:
            catalog = rule.catalog
            if catalog.new_database and catalog.database not in created_databases:
                created_databases[catalog.database] = glue.CfnDatabase(
                    self, f"CatalogDatabase{len(created_databases) + 1}", catalog_id=stack.account,
                    database_input=glue.CfnDatabase.DatabaseInputProperty(name=catalog.database))
            if catalog.creates_table:
                table = glue.CfnTable(self, f"CatalogTable-{rule.name}", catalog_id=stack.account,
                                      database_name=catalog.database,
                                      table_input=glue.CfnTable.TableInputProperty(name=catalog.table))
                table.add_property_override("TableInput", table_input(
                    catalog, rule.fields, location_of(self.bucket.bucket_name, rule.literal_prefix)))
                if catalog.database in created_databases:
                    table.add_dependency(created_databases[catalog.database])
        fn, queues = self._fed_from_bus("Catalog", ready_pattern([r.name for r in rules]), "CatalogReady",
                                        "Dataset Ready of rules with a Glue table -> the catalog function",
                                        settings=settings, resources=resources)
        glue_arn = f"arn:{stack.partition}:glue:{stack.region}:{stack.account}"
        fn.add_to_role_policy(iam.PolicyStatement(actions=list(GLUE_ACTIONS), resources=[
            f"{glue_arn}:catalog", *sorted({f"{glue_arn}:database/{db}" for db, _ in tables}),
            *(f"{glue_arn}:table/{db}/{name}" for db, name in tables)]))
        return fn, queues

    def _fed_from_bus(self, function: str, pattern: dict, rule_id: str, description: str, *, settings: Settings,
                      resources: Resources):
        """A function that acts on events after they are out (catalog, waits): a rule on the bus -> a queue with a
        DLQ (alarmed) -> the function, which reports its batch's failures item by item. The rule retries a
        delivery to the queue for a day, so a throttled SQS loses nothing."""
        queues = QueueWithDlq(self, f"{function}Queue",
                              visibility_timeout=Duration.seconds(6 * FUNCTIONS[function].timeout_s))
        fn = self._function(function, settings=settings, resources=resources).function
        fn.add_event_source(sources.SqsEventSource(queues.queue, batch_size=10, report_batch_item_failures=True))
        events.Rule(self, rule_id, event_bus=self.event_bus, description=description,
                    event_pattern=events.EventPattern(source=pattern["source"], detail_type=pattern["detail-type"],
                                                      detail=pattern.get("detail")),
                    targets=[targets.SqsQueue(queues.queue, dead_letter_queue=queues.dlq, retry_attempts=185,
                                              max_event_age=Duration.hours(24))])
        return fn, queues

    def wait_for_dataset_task(self, scope: Construct, id: str, *, dataset_id: str,
                              timeout: Duration | None = None, **kwargs) -> tasks.SqsSendMessage:
        """A Step Functions state that waits until the dataset is declared (docs/step-functions.md): a
        `.waitForTaskToken` SendMessage of {dataset_id, task token} to the waits queue. Ready resumes it with
        {"detail_type", "detail"} as its output; Failed or Stalled fail it (`streamwatch.DatasetFailed`,
        `streamwatch.DatasetStalled`, the reason as the cause); a dataset declared already answers at once.
        `dataset_id`: a literal, or `sfn.JsonPath.string_at("$.dataset_id")`. `timeout`: how long the workflow
        waits at most (the task's TimeoutSeconds; Step Functions allows up to a year). Grant the state machine
        with `grant_wait`."""
        self._waits()
        return tasks.SqsSendMessage(
            scope, id, queue=self.waits_queues.queue, integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
            message_body=sfn.TaskInput.from_object({"dataset_id": dataset_id, "task_token": sfn.JsonPath.task_token}),
            task_timeout=sfn.Timeout.duration(timeout) if timeout is not None else None, **kwargs)

    def grant_wait(self, state_machine: sfn.IStateMachine) -> None:
        """What a state machine with wait_for_dataset_task states needs: sending to the waits queue; and the waits
        function may answer its tasks (SendTaskSuccess, SendTaskFailure) on that state machine only."""
        self._waits()
        self.waits_queues.queue.grant_send_messages(state_machine)
        self.waits.add_to_role_policy(iam.PolicyStatement(actions=list(STATES_ACTIONS),
                                                          resources=[state_machine.state_machine_arn]))

    def _waits(self) -> None:
        """The waits queue (registrations, and by a rule on the bus the events that answer them) and its function."""
        if self.waits is not None:
            return
        self.waits, self.waits_queues = self._fed_from_bus(
            "Waits", waits_pattern(), "WaitsEvents", "Dataset Ready, Failed, Stalled -> the tasks waiting for them",
            settings=self.settings, resources=self.resources)
        self.table.grant(self.waits, *TABLE_ACTIONS["Waits"])
        if self.operations is not None:
            self.operations.waits(self)
        if getattr(self, "_outputs_made", None):  # the Queues output, made already, names the waits queue too
            self._queues["waits"] = {"queue": self.waits_queues.queue.queue_url, "dlq": self.waits_queues.dlq.queue_url}
            self._outputs_made["Queues"].value = Stack.of(self).to_json_string(self._queues)

    # --- what clients read ----------------------------------------------------------------------------------
    def _outputs(self) -> None:
        stack = Stack.of(self)
        queues = {"notifications": {"queue": self.notification_queue.queue_url, "dlq": self.notification_dlq.queue_url},
                  "observer": {"queue": self.observer_queue.queue_url, "dlq": self.observer_dlq.queue_url}}
        if self.consumer_dlq is not None:
            queues["consumer"] = {"dlq": self.consumer_dlq.queue_url}
        if self.webhook_dlq is not None:
            queues["webhook"] = {"dlq": self.webhook_dlq.queue_url}
        if self.scheduler is not None:
            queues["scheduler"] = {"dlq": self.scheduler_failures.queue.queue_url}
        if self.catalog_queues is not None:
            queues["catalog"] = {"queue": self.catalog_queues.queue.queue_url, "dlq": self.catalog_queues.dlq.queue_url}
        self._queues = queues  # wait_for_dataset_task adds the waits queue after this (see _waits)
        queues["producer"] = {"dlq": self.producer_failures.queue.queue_url}
        settings_json = stack.to_json_string(self.settings.changed())
        if len(str(self.settings.changed())) > MAX_OUTPUT_CHARS:
            raise SettingsError("the settings are too large for the stack's Settings output (4 KB): fewer or "
                                "shorter dataset rules")
        values = {"Bucket": self.bucket.bucket_name, "Stream": self.delivery_stream.delivery_stream_name,
                  "Table": self.table.table_name, "NotificationQueue": self.notification_queue.queue_url,
                  "NotificationDlq": self.notification_dlq.queue_url, "ObserverQueue": self.observer_queue.queue_url,
                  "ObserverDlq": self.observer_dlq.queue_url, "EventBus": self.event_bus.event_bus_name,
                  "StarterFunction": self.starter.function_name,
                  "Settings": settings_json, "Queues": stack.to_json_string(queues)}
        self._outputs_made = {name: cdk.CfnOutput(self, f"{name}Output", value=value, key=name)
                              for name, value in values.items()}
