"""Alarms and one dashboard for every stage (ingest, count, observe, notify), on by default.

Built with cdk-monitoring-constructs (cdklabs): its SQS/Lambda/DynamoDB/Firehose monitors give the standard
alarms and dashboard rows; what it lacks (Firehose DeliveryToS3.DataFreshness/Success and PartitionCountExceeded,
the heartbeat, the domain's own metrics) is added as custom metrics with alarms through the same facade, so
every alarm has the same naming, action and dashboard. Thresholds derive from the settings (`alarm_thresholds`,
docs/operations.md); actions go to the topic passed as `alarm_topic`, or the one created for `alarm_email`.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from cdk_monitoring_constructs import (
    AlarmFactoryDefaults,
    CustomMetricGroup,
    CustomMetricWithAlarm,
    CustomThreshold,
    DefaultDashboardFactory,
    ErrorCountThreshold,
    MaxMessageAgeThreshold,
    MaxMessageCountThreshold,
    MetricFactoryDefaults,
    MonitoringFacade,
    NoopAlarmActionStrategy,
    RecordsThrottledThreshold,
    SnsAlarmActionStrategy,
    ThrottledEventsThreshold,
)
from constructs import Construct

from streamwatch.core.limits import FUNCTIONS, MAX_RECEIVE_COUNT, OBSERVER_VISIBILITY_S
from streamwatch.core.settings import SQS_MAX_DELAY_S, Settings

GT = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
LT = cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD
PERIOD = Duration.minutes(5)
DOMAIN = {  # the handlers' metrics (Powertools EMF): what each alarm on them means
    "ObserverFailed": "a dataset failed (a producer reported failure, or records went to Firehose's error output)",
    "ObserverStalled": "a dataset hit the hard cap (max_observation_s) without being complete",
    "ObserverOverdue": "a dataset passed its deadline without a Ready",
    "ObserverAmended": "objects landed after a dataset was declared (late data)",
    "EventsNotPublished": "an event could not be published to the bus (retried; then the DLQ)",
    "PublishedAfterLeaseLost": "an event went out after its publish lease was taken over: a copy with the same "
                               "event_id follows (consumers drop it by event_id)",
    "ErrorOutputRecordsUnattributed": "records in Firehose's error output that name no dataset: some dataset may "
                                      "be missing records without failing",
}
CATALOG = {  # the catalog function's: a partition that cannot be registered until someone acts
    "CatalogTableMissing": "a rule's Glue table (or database) does not exist: its Readys are retried, then kept in "
                           "the catalog DLQ; create the table, then redrive (streamwatch dlq)",
    "CatalogTableMismatch": "a rule's Glue table has partition keys that are not the rule's fields",
}
BREACHING, NOT_BREACHING = cloudwatch.TreatMissingData.BREACHING, cloudwatch.TreatMissingData.NOT_BREACHING
# "delivered but not counted": two consecutive windows this long in which Firehose delivered records and the monitor
# counted none. One window could end between an object's delivery and its count; two cannot (the second would
# hold the first's counts), unless counting is broken or the notifications never come.
UNCOUNTED_WINDOW = Duration.minutes(15)
HEARTBEAT_PERIOD = Duration.minutes(15)  # at least two 5-minute heartbeats: a missing datapoint means it died


def alarm_thresholds(settings: Settings) -> dict[str, float]:
    """Every threshold that is not simply "more than zero", from the settings (one place; the tests read it)."""
    return {
        # beyond half the quiet window, count rules hold back (they subtract the backlog from the quiet they see)
        "notification_age_s": max(120, settings.quiet_s // 2),
        "observer_message_age_s": SQS_MAX_DELAY_S + OBSERVER_VISIBILITY_S,
        "data_freshness_s": 2 * settings.buffer_interval_s,
        # every observing chain ticks at least every SQS max delay; a redelivery takes a visibility timeout more
        "chain_silence_s": SQS_MAX_DELAY_S + OBSERVER_VISIBILITY_S + 300,
        "delivery_success_min": 1,
        # a Ready waits for the catalog at most the retries of a failing message (visibility x receive count)
        "catalog_message_age_s": 6 * FUNCTIONS["Catalog"].timeout_s * MAX_RECEIVE_COUNT,
        "waits_message_age_s": 6 * FUNCTIONS["Waits"].timeout_s * MAX_RECEIVE_COUNT,
    }


class Operations(Construct):
    def __init__(self, scope: Construct, id: str, *, watch, settings: Settings) -> None:
        super().__init__(scope, id)
        self.thresholds = t = alarm_thresholds(settings)
        action = (SnsAlarmActionStrategy(on_alarm_topic=watch.alarm_topic) if watch.alarm_topic is not None
                  else NoopAlarmActionStrategy())
        prefix = f"{Stack.of(self).stack_name}-{watch.node.id}"
        self.facade = facade = MonitoringFacade(
            self, "Monitoring",
            alarm_factory_defaults=AlarmFactoryDefaults(actions_enabled=True, alarm_name_prefix=prefix, action=action,
                                                        datapoints_to_alarm=1, evaluation_periods=1),
            metric_factory_defaults=MetricFactoryDefaults(period=PERIOD),
            dashboard_factory=DefaultDashboardFactory(self, "Dashboards", dashboard_name_prefix=prefix,
                                                      create_dashboard=True, create_summary_dashboard=False,
                                                      create_alarm_dashboard=False))
        zero = {"Warning": ErrorCountThreshold(max_error_count=0)}
        throttled = {"Warning": ThrottledEventsThreshold(max_throttled_events_threshold=0)}

        def functions(*named) -> None:
            """Errors and throttles of each function: > 0 alarms."""
            for fn, name in named:
                if fn is not None:
                    facade.monitor_lambda_function(lambda_function=fn, alarm_friendly_name=name,
                                                   human_readable_name=name, add_fault_count_alarm=zero,
                                                   add_throttles_count_alarm=zero)

        def queue_with_dlq(queue, dlq, name: str, human: str, max_age_s: float) -> None:
            """A work queue: anything in its DLQ, and its oldest message's age."""
            facade.monitor_sqs_queue_with_dlq(
                queue=queue, dead_letter_queue=dlq, alarm_friendly_name=name, human_readable_name=human,
                add_dead_letter_queue_max_size_alarm={"Critical": MaxMessageCountThreshold(max_message_count=0)},
                add_queue_max_message_age_alarm={"Warning": MaxMessageAgeThreshold(max_age_in_seconds=max_age_s)})
        service = watch.service_name
        self._functions, self._queue_with_dlq = functions, queue_with_dlq

        def domain(name: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(namespace="streamwatch", metric_name=name, statistic="Sum", period=PERIOD,
                                     dimensions_map={"service": service})

        def custom(title: str, *alarms: tuple, missing: cloudwatch.TreatMissingData = NOT_BREACHING, **threshold_kw):
            """Metrics the library has no monitor for, with alarms made by the same factory. Each alarm:
            (metric, name, threshold, comparison, why)."""
            facade.monitor_custom(alarm_friendly_name=title, human_readable_name=title, metric_groups=[
                CustomMetricGroup(title=title, metrics=[CustomMetricWithAlarm(
                    metric=metric, alarm_friendly_name=name, add_alarm={"Warning": CustomThreshold(
                        threshold=threshold, comparison_operator=op, additional_description=why,
                        treat_missing_data_override=missing, **threshold_kw)})
                    for metric, name, threshold, op, why in alarms])])

        # --- ingest -------------------------------------------------------------------------------------------
        facade.add_large_header("Ingest: producers and Firehose")
        functions((watch.starter, "Starter"), (watch.producer, "Producer"))
        stream = watch.delivery_stream.delivery_stream_name
        facade.monitor_kinesis_firehose(delivery_stream_name=stream, alarm_friendly_name="Stream",
                                        human_readable_name="Firehose stream", add_records_throttled_alarm={
            "Warning": RecordsThrottledThreshold(max_records_throttled_threshold=0)})

        def firehose(name: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(namespace="AWS/Firehose", metric_name=name, statistic=statistic, period=PERIOD,
                                     dimensions_map={"DeliveryStreamName": stream})
        delivery = [
            (firehose("DeliveryToS3.DataFreshness", "Maximum"), "DataFreshness", t["data_freshness_s"], GT,
             "the oldest record not yet in S3 is older than twice the buffer interval: Firehose is falling behind"),
            (firehose("DeliveryToS3.Success", "Average"), "DeliverySuccess", t["delivery_success_min"], LT,
             "some deliveries to S3 failed (Firehose retries; see its error logs)")]
        if watch.dynamic_partitioning:  # the metric exists only for a stream with dynamic partitioning
            delivery.append((firehose("PartitionCountExceeded", "Maximum"), "PartitionCountExceeded", 0, GT,
                             "more datasets open than the stream's active-partition quota: their records go to the "
                             "error output and those datasets fail"))
        custom("FirehoseDelivery", *delivery)
        # Firehose delivered objects and streamwatch counted none: the notifications do not reach the monitor
        # (a filter S3 never matches, EventBridge delivery turned off, the bucket's notification configuration
        # replaced by its owner's IaC)
        uncounted = cloudwatch.MathExpression(
            expression="IF(FILL(delivered, 0) > 0 AND FILL(counted, 0) == 0, 1, 0)", period=UNCOUNTED_WINDOW,
            label="Delivered but not counted", using_metrics={
                # DeliveryToS3.ObjectCount exists only with dynamic partitioning; Records for every S3 destination
                "delivered": cloudwatch.Metric(namespace="AWS/Firehose", metric_name="DeliveryToS3.Records",
                                               statistic="Sum", period=UNCOUNTED_WINDOW,
                                               dimensions_map={"DeliveryStreamName": stream}),
                "counted": cloudwatch.Metric(namespace="streamwatch", metric_name="ObjectsCounted", statistic="Sum",
                                             period=UNCOUNTED_WINDOW, dimensions_map={"service": service})})
        custom("Counting", (uncounted, "DeliveredNotCounted", 0, GT,
                            "Firehose delivered records to S3 and streamwatch counted no object for two windows: "
                            "object notifications are not reaching the monitor (see docs/operations.md)"),
               evaluation_periods=2, datapoints_to_alarm=2)

        # --- count --------------------------------------------------------------------------------------------
        facade.add_large_header("Count: object events and the monitor")
        queue_with_dlq(watch.notification_queue, watch.notification_dlq, "Notifications",
                       "Object events (notifications queue)", t["notification_age_s"])
        functions((watch.monitor, "Monitor"))
        facade.monitor_dynamo_table(
            table=watch.table, alarm_friendly_name="State", human_readable_name="State table",
            add_read_throttled_events_count_alarm=throttled, add_write_throttled_events_count_alarm=throttled)

        # --- observe ------------------------------------------------------------------------------------------
        facade.add_large_header("Observe: the observer chain")
        queue_with_dlq(watch.observer_queue, watch.observer_dlq, "ObserverQueue", "Observer ticks (observer queue)",
                       t["observer_message_age_s"])
        functions((watch.observer, "Observer"), (watch.scheduler, "Scheduler"))
        silence = cloudwatch.Metric(namespace="streamwatch", metric_name="ChainSilenceSeconds", statistic="Maximum",
                                    period=HEARTBEAT_PERIOD, dimensions_map={"service": service})
        observing = cloudwatch.Metric(namespace="streamwatch", metric_name="DatasetsObserving", statistic="Maximum",
                                      period=PERIOD, dimensions_map={"service": service})
        started = cloudwatch.Metric(namespace="streamwatch", metric_name="DatasetsStarted", statistic="Sum",
                                    period=Duration.hours(1), dimensions_map={"service": service})
        custom("OpenDatasets",
               (observing, "Observing", settings.max_open_datasets, GT,
                "more datasets observed at once than max_open_datasets: a writer opening datasets at will? (each "
                "one costs a chain, an event and whatever listens to it; require_registration stops it)"),
               (started, "StartedPerHour", settings.max_open_datasets, GT,
                "more datasets started in an hour than max_open_datasets"))
        custom("Heartbeat", (silence, "ChainSilence", t["chain_silence_s"], GT,
                             "an observed dataset has had no observer tick for longer than a chain ever waits (its "
                             "chain died; `streamwatch status` shows which), or the heartbeat itself stopped"),
               missing=BREACHING)  # a dead man's switch: no heartbeat is an alarm

        # --- notify -------------------------------------------------------------------------------------------
        facade.add_large_header("Notify: events and downstream")
        custom("Datasets", *((domain(name), name, 0, GT, why) for name, why in DOMAIN.items()))
        scheduler_dlq = watch.scheduler_failures.queue if watch.scheduler_failures is not None else None
        for dlq, name in ((watch.consumer_dlq, "ConsumerFailed"), (watch.webhook_dlq, "WebhookFailed"),
                          (scheduler_dlq, "SchedulerFailed"), (watch.producer_failures.queue, "ProducerFailed")):
            if dlq is not None:
                facade.monitor_sqs_queue(queue=dlq, alarm_friendly_name=name, human_readable_name=name,
                                         add_queue_max_size_alarm={
                    "Critical": MaxMessageCountThreshold(max_message_count=0)})
        if watch.catalog is not None:
            queue_with_dlq(watch.catalog_queues.queue, watch.catalog_queues.dlq, "CatalogQueue",
                           "Readys for the Glue catalog (catalog queue)", t["catalog_message_age_s"])
            functions((watch.catalog, "Catalog"))
            custom("Catalog", *((domain(name), name, 0, GT, why) for name, why in CATALOG.items()))
        if watch.consumer is not None:
            facade.monitor_lambda_function(lambda_function=watch.consumer, alarm_friendly_name="Consumer",
                                           human_readable_name="Example consumer", add_fault_count_alarm=zero)

    def waits(self, watch) -> None:
        """The waits function and its queue, once the first wait_for_dataset_task made them."""
        self.facade.add_large_header("Wait: Step Functions tasks waiting for datasets")
        self._queue_with_dlq(watch.waits_queues.queue, watch.waits_queues.dlq, "WaitsQueue",
                             "Registrations and answers (waits queue)", self.thresholds["waits_message_age_s"])
        self._functions((watch.waits, "Waits"))
