"""The construct on resources it creates (the example app's stack), asserted on what matters: loops, retries,
DLQs, filters, partitioning, least privilege, alarms, and settings that fail synth with a clear message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from stacks.observer_stack import ObserverStack
from streamwatch.cdk import register_nag
from streamwatch.cdk.operations import alarm_thresholds
from streamwatch.core.settings import Settings
from tests.infra.aws_rules import actions, role_statements

ROOT = Path(__file__).resolve().parents[2]
CUSTOM = Settings(buffer_interval_s=120, buffer_size_mib=100, monitor_batch_size=500, monitor_batch_window_s=7,
                  callback_url="https://hooks.example.com/streamwatch", mode="records", alarm_email="ops@example.com",
                  datasets=({"pattern": "data/dataset={dataset_id}/", "name": "main"},
                            {"pattern": "hourly/{yyyy}/{MM}/{dd}/{HH}/", "name": "hourly", "emit_empty": True,
                             "catalog": {"database": "web_logs", "table": "hourly"}}))


def synth(settings: Settings) -> Template:
    return Template.from_stack(ObserverStack(cdk.App(), "Test", settings=settings))


@pytest.fixture(scope="module")
def template() -> Template:
    """One template for the module (synth costs seconds): non-default settings so 'follows settings' is real."""
    return synth(CUSTOM)


@pytest.fixture(scope="module")
def resources(template):
    return template.to_json()["Resources"]


def of_type(resources, kind):
    return {k: v for k, v in resources.items() if v["Type"] == kind}


def function_named(resources, handler_module):
    found = [(k, v) for k, v in of_type(resources, "AWS::Lambda::Function").items()
             if v["Properties"].get("Handler") == f"streamwatch.handlers.{handler_module}.handler"]
    assert found, handler_module
    return found


def policy_statements_of(resources, function_logical_id):
    role = resources[function_logical_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    return role_statements({"Resources": resources}, role)


def test_observer_may_loop_through_its_own_queue(resources):
    # Given the stack synthesized with CUSTOM settings
    # When its functions' RecursiveLoop settings are read
    (obs_id, observer), = function_named(resources, "observer")
    # Then only the observer's allows a loop, and the observer may send to its queue
    assert observer["Properties"]["RecursiveLoop"] == "Allow"
    for fid, fn in of_type(resources, "AWS::Lambda::Function").items():
        if fid != obs_id:
            assert fn["Properties"].get("RecursiveLoop", "Terminate") == "Terminate"
    assert "sqs:SendMessage" in actions(policy_statements_of(resources, obs_id))


def test_sqs_consumers_report_partial_batch_failures_and_batch_per_settings(resources):
    # Given the stack synthesized with CUSTOM settings (monitor batches of 500, a 7 s window)
    # When its event source mappings are read
    mappings = of_type(resources, "AWS::Lambda::EventSourceMapping")
    # Then there are three (monitor, observer, catalog), all report partial batch failures, and the monitor's
    # batch is as set
    assert len(mappings) == 3
    for m in mappings.values():
        assert m["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    (mon_id, _), = function_named(resources, "monitor")
    mapping = next(m for m in mappings.values() if m["Properties"]["FunctionName"] == {"Ref": mon_id})
    assert mapping["Properties"]["BatchSize"] == 500
    assert mapping["Properties"]["MaximumBatchingWindowInSeconds"] == 7


def test_every_work_queue_has_a_dlq_and_enforces_tls(resources):
    # Given the stack's queues
    queues = of_type(resources, "AWS::SQS::Queue")
    dlq_ids = {q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
               for q in queues.values() if "RedrivePolicy" in q["Properties"]}
    # When the work queues are told from the DLQs they redrive into
    work = [k for k in queues if k not in dlq_ids]
    # Then every work queue (4 or more) redrives after 5 receives, and every queue is encrypted and denies non-TLS
    assert len(work) >= 4  # notifications, observer ticks, consumer and webhook failures
    for k in work:
        assert queues[k]["Properties"]["RedrivePolicy"]["maxReceiveCount"] == 5, k
    for k, q in queues.items():
        assert q["Properties"]["SqsManagedSseEnabled"] is True, k
    tls_denies = [p for p in of_type(resources, "AWS::SQS::QueuePolicy").values()
                  if any(s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
                         for s in p["Properties"]["PolicyDocument"]["Statement"])]
    assert len(tls_denies) >= len(queues)
    # (visibility >= 6x the function's timeout: tests/infra/aws_rules.py, with AWS's other documented rules)


def test_a_created_bucket_notifies_the_queue_directly_for_each_watched_prefix(template):
    # Given the stack's bucket, watched for CUSTOM's two rules and Firehose's error output
    # When its notification configuration is read
    config = template.find_resources("Custom::S3BucketNotifications")
    (props,) = [v["Properties"]["NotificationConfiguration"] for v in config.values()]
    filters = sorted(q["Filter"]["Key"]["FilterRules"][0]["Value"] for q in props["QueueConfigurations"])
    # Then it sends ObjectCreated straight to the queue for data/, errors/ and hourly/, each filter cut before '='
    assert filters == ["data/", "errors/", "hourly/"]  # cut before "=": S3 matches filters on encoded keys
    assert {e for q in props["QueueConfigurations"] for e in q["Events"]} == {"s3:ObjectCreated:*"}


def test_the_stream_partitions_by_the_first_rule_deaggregates_and_buffers_per_settings(template):
    # Given the stack synthesized with CUSTOM settings (buffers of 120 s and 100 MiB)
    # When its delivery stream is looked for
    # Then it partitions by the first rule's dataset_id, deaggregates JSON, appends a delimiter and buffers as set
    template.has_resource_properties("AWS::KinesisFirehose::DeliveryStream", {
        "DeliveryStreamEncryptionConfigurationInput": {"KeyType": "AWS_OWNED_CMK"},
        "ExtendedS3DestinationConfiguration": Match.object_like({
            "Prefix": "data/dataset=!{partitionKeyFromQuery:dataset_id}/",
            "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/",
            "BufferingHints": {"IntervalInSeconds": 120, "SizeInMBs": 100},
            "DynamicPartitioningConfiguration": Match.object_like({"Enabled": True}),
            "ProcessingConfiguration": {"Enabled": True, "Processors": [
                {"Type": "RecordDeAggregation", "Parameters": Match.array_with([
                    {"ParameterName": "SubRecordType", "ParameterValue": "JSON"}])},
                {"Type": "MetadataExtraction", "Parameters": Match.array_with([
                    {"ParameterName": "MetadataExtractionQuery", "ParameterValue": '{"dataset_id":.dataset_id}'},
                    {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}])},
                {"Type": "AppendDelimiterToRecord", "Parameters": Match.any_value()}]}})})


def test_state_table_is_on_demand_recoverable_expiring_and_listable_by_day(template):
    # Given the stack synthesized
    # When its table is looked for
    # Then it is on demand, point-in-time recoverable, expiring on expires_at, encrypted, with the by_day index
    template.has_resource_properties("AWS::DynamoDB::Table", {
        "BillingMode": "PAY_PER_REQUEST",
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
        "SSESpecification": {"SSEEnabled": True},
        "GlobalSecondaryIndexes": [Match.object_like({"IndexName": "by_day", "KeySchema": [
            {"AttributeName": "list_pk", "KeyType": "HASH"}, {"AttributeName": "list_sk", "KeyType": "RANGE"}]})]})


def test_functions_use_the_runtime_asset_the_layers_tracing_and_the_settings_env(resources):
    # Given the stack synthesized with CUSTOM settings (records mode)
    # When its streamwatch functions are read
    ours = [fn for fn in of_type(resources, "AWS::Lambda::Function").values()
            if fn["Properties"].get("Handler", "").startswith("streamwatch.")]
    # Then there are 7, each on python3.14, traced, logging JSON, with Powertools' layer and the settings
    assert len(ours) == 7  # producer, starter, monitor, observer, scheduler, example consumer, catalog
    for fn in ours:
        p = fn["Properties"]
        assert p["Runtime"] == "python3.14" and p["TracingConfig"] == {"Mode": "Active"}
        assert p["LoggingConfig"]["LogFormat"] == "JSON"
        assert "AWSLambdaPowertoolsPythonV3-python314-x86_64" in json.dumps(p["Layers"])
        env = p["Environment"]["Variables"]
        assert env["STREAMWATCH_MODE"] == "records" and env["STREAMWATCH_PACK_RECORDS"] == "True"
        # every setting the functions read, and never the webhook URL (it may embed a credential)
        assert Settings.from_env({k: v for k, v in env.items() if isinstance(v, str)}) == CUSTOM.with_(
            pack_records=True, notifications="s3", callback_url="")
        assert "hooks.example.com" not in json.dumps(env)
    # And the monitor and the consumer get the dependency layer as well
    for handler in ("monitor", "consumer"):  # they read objects through obstore: the dependency layer
        (_, fn), = function_named(resources, handler)
        assert len(fn["Properties"]["Layers"]) == 2


def test_least_privilege(resources):
    # Given the stack's observer, monitor and producer functions
    (obs_id, _), = function_named(resources, "observer")
    (mon_id, _), = function_named(resources, "monitor")
    producers = [k for k, _ in function_named(resources, "producer")]
    # When the actions their roles allow are read
    observer = actions(policy_statements_of(resources, obs_id))
    # Then the observer has no S3 or Firehose action, and may put events and read queue attributes
    assert not any(a.startswith(("s3:", "firehose:")) for a in observer)
    assert {"events:PutEvents", "sqs:GetQueueAttributes"} <= observer
    # And the monitor has no Firehose action and writes no object
    monitor = actions(policy_statements_of(resources, mon_id))
    assert not any(a.startswith("firehose:") for a in monitor)
    assert not any(a.startswith("s3:Put") or a.startswith("s3:Delete") for a in monitor)
    # And the producers have no S3 action, may put to Firehose, and neither delete from nor scan the table
    for pid in producers:
        assert not any(a.startswith("s3:") for a in actions(policy_statements_of(resources, pid)))
    producer_actions = actions(policy_statements_of(resources, producers[0]) +
                                  policy_statements_of(resources, producers[1]))
    assert "firehose:PutRecordBatch" in producer_actions
    assert "dynamodb:DeleteItem" not in producer_actions and "dynamodb:Scan" not in producer_actions


def test_callback_url_posts_every_event_through_an_api_destination(template):
    # Given the stack synthesized with CUSTOM's callback URL
    # When its EventBridge resources are looked for
    # Then an API destination POSTs to the URL through an API-key connection
    template.has_resource_properties("AWS::Events::ApiDestination", {
        "InvocationEndpoint": "https://hooks.example.com/streamwatch", "HttpMethod": "POST"})
    template.has_resource_properties("AWS::Events::Connection", {"AuthorizationType": "API_KEY"})
    # And a rule sends it every streamwatch event, retried for up to a day, with a DLQ
    template.has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {"source": ["streamwatch"], "detail-type": ["Dataset Ready", "Dataset Amended",
                                                                    "Dataset Stalled", "Dataset Failed",
                                                                    "Dataset Overdue"]},
        "Targets": [Match.object_like({
            "DeadLetterConfig": {"Arn": Match.any_value()},
            "RetryPolicy": {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}})]})


def test_example_consumer_gets_ready_events_and_writes_only_its_markers(resources, template):
    # Given the stack's example consumer
    (cid, _), = function_named(resources, "consumer")
    # When its rule and its role are looked for
    # Then the rule sends it Dataset Ready only, with retries and a DLQ
    template.has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {"source": ["streamwatch"], "detail-type": ["Dataset Ready"]},
        "Targets": [Match.object_like({"Arn": {"Fn::GetAtt": [cid, "Arn"]}, "DeadLetterConfig": Match.any_value(),
                                       "RetryPolicy": Match.object_like({"MaximumRetryAttempts": 4})})]})
    # And its role writes only _manifest.json and _SUCCESS, nothing under data/
    writes = [s for s in policy_statements_of(resources, cid) if any(
        a.startswith("s3:PutObject") for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]]))]
    written = json.dumps([s["Resource"] for s in writes])
    assert "_manifest.json" in written and "_SUCCESS" in written and '/data/*"' not in written


def test_a_rule_with_a_catalog_gets_a_ready_subscription_and_glue_rights_on_its_table_only(resources, template):
    # Given CUSTOM's hourly rule, whose catalog is a table of the user's (web_logs.hourly)
    (fn_id, fn), = function_named(resources, "catalog")
    # When the catalog function, its queue, its subscription and its role are read
    (mapping,) = [m["Properties"] for m in of_type(resources, "AWS::Lambda::EventSourceMapping").values()
                  if m["Properties"]["FunctionName"] == {"Ref": fn_id}]
    queue = mapping["EventSourceArn"]["Fn::GetAtt"][0]
    # Then a rule on the bus sends it the Readys of that rule only, to its queue, retried for a day, with a DLQ
    template.has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {"source": ["streamwatch"], "detail-type": ["Dataset Ready"], "detail": {"rule": ["hourly"]}},
        "Targets": [Match.object_like({"Arn": {"Fn::GetAtt": [queue, "Arn"]}, "DeadLetterConfig": Match.any_value(),
                                       "RetryPolicy": {"MaximumRetryAttempts": 185,
                                                       "MaximumEventAgeInSeconds": 86400}})]})
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # And its role may create partitions and read the table, on the catalog, that database and that table only
    glue = [s for s in policy_statements_of(resources, fn_id) if any(a.startswith("glue:") for a in s["Action"])]
    assert [sorted(s["Action"]) for s in glue] == [["glue:BatchCreatePartition", "glue:GetTable"]]
    named = [json.dumps(r) for r in glue[0]["Resource"]]
    assert [n.rsplit(":", 1)[-1].rstrip('"]}') for n in named] == ["catalog", "database/web_logs",
                                                                   "table/web_logs/hourly"]
    # And no table is created: the user's is used as it is
    assert not of_type(resources, "AWS::Glue::Table")


def test_a_rule_that_gives_columns_gets_its_table_partitioned_by_its_fields():
    # Given an hourly rule whose catalog gives columns and asks for its database
    settings = Settings(datasets=({"pattern": "logs/{source}/{yyyy}/{MM}/{dd}/{HH}/", "name": "web", "catalog": {
        "database": "web_logs", "table": "web", "new_database": True, "columns": [{"name": "n", "type": "int"}]}},))
    # When the stack is synthesized
    template = synth(settings)
    # Then the database and an external JSON table exist, partitioned by the rule's fields, over its prefix
    template.has_resource_properties("AWS::Glue::Database", {"DatabaseInput": {"Name": "web_logs"}})
    template.has_resource_properties("AWS::Glue::Table", {"DatabaseName": "web_logs", "TableInput": Match.object_like({
        "Name": "web", "TableType": "EXTERNAL_TABLE",
        "PartitionKeys": [{"Name": k, "Type": "string"} for k in ("source", "year", "month", "day", "hour")],
        "StorageDescriptor": Match.object_like({"Columns": [{"Name": "n", "Type": "int"}], "SerdeInfo": {
            "SerializationLibrary": "org.openx.data.jsonserde.JsonSerDe",
            "Parameters": {"ignore.malformed.json": "true"}}})})})


def test_two_rules_naming_one_catalog_table_fail_synth_clearly():
    # Given two rules whose catalogs name the same table
    same = {"database": "logs", "table": "web"}
    settings = Settings(datasets=({"pattern": "a/{x}/", "name": "a", "catalog": same},
                                  {"pattern": "b/{x}/", "name": "b", "catalog": same}))
    # When the stack is synthesized
    # Then synth fails, saying why
    with pytest.raises(Exception, match="two dataset rules name the same catalog table"):
        synth(settings)


def test_window_rules_get_a_schedule_and_the_heartbeat_runs(resources):
    # Given the stack synthesized with CUSTOM's hourly window rule
    (sched_id, _), = function_named(resources, "scheduler")
    # When its scheduled rules are read
    rules = [r["Properties"] for r in of_type(resources, "AWS::Events::Rule").values()
             if "ScheduleExpression" in r["Properties"]]
    by_input = {json.loads(r["Targets"][0]["Input"])["action"]: r["ScheduleExpression"] for r in rules}
    # Then an hourly cron closes windows and a heartbeat runs every 5 minutes, both on the scheduler
    assert by_input == {"close_windows": "cron(0 * * * ? *)", "heartbeat": "rate(5 minutes)"}
    assert all(r["Targets"][0]["Arn"] == {"Fn::GetAtt": [sched_id, "Arn"]} for r in rules)


def alarms(resources) -> dict[str, dict]:
    found = of_type(resources, "AWS::CloudWatch::Alarm").values()
    return {a["Properties"]["AlarmName"]: a["Properties"] for a in found}


def metric_of(alarm: dict) -> str:
    if "MetricName" in alarm:
        return alarm["MetricName"]
    return next(m["MetricStat"]["Metric"]["MetricName"] for m in alarm["Metrics"] if "MetricStat" in m)


@pytest.mark.parametrize("name, metric, threshold, operator", [
    ("Notifications-DLQ-Queue-Message-Count-Max-Critical", "ApproximateNumberOfMessagesVisible", 0, "GreaterThan"),
    ("ObserverQueue-DLQ-Queue-Message-Count-Max-Critical", "ApproximateNumberOfMessagesVisible", 0, "GreaterThan"),
    ("ConsumerFailed-Queue-Message-Count-Max-Critical", "ApproximateNumberOfMessagesVisible", 0, "GreaterThan"),
    ("WebhookFailed-Queue-Message-Count-Max-Critical", "ApproximateNumberOfMessagesVisible", 0, "GreaterThan"),
    ("Notifications-Queue-Message-Age-Max-Warning", "ApproximateAgeOfOldestMessage", "notification_age_s",
     "GreaterThan"),
    ("Monitor-Fault-Count-Warning", "Errors", 0, "GreaterThan"),
    ("Observer-Throttled-Count-Warning", "Throttles", 0, "GreaterThan"),
    ("Producer-Fault-Count-Warning", "Errors", 0, "GreaterThan"),
    ("FirehoseDelivery-DataFreshness-Warning", "DeliveryToS3.DataFreshness", "data_freshness_s", "GreaterThan"),
    ("FirehoseDelivery-DeliverySuccess-Warning", "DeliveryToS3.Success", "delivery_success_min", "LessThan"),
    ("FirehoseDelivery-PartitionCountExceeded-Warning", "PartitionCountExceeded", 0, "GreaterThan"),
    ("State-Write-Throttled-Events-Warning", "WriteThrottleEvents", 0, "GreaterThan"),
    ("Heartbeat-ChainSilence-Warning", "ChainSilenceSeconds", "chain_silence_s", "GreaterThan"),
    ("Datasets-ObserverFailed-Warning", "ObserverFailed", 0, "GreaterThan"),
    ("Datasets-ObserverStalled-Warning", "ObserverStalled", 0, "GreaterThan"),
    ("Datasets-ObserverOverdue-Warning", "ObserverOverdue", 0, "GreaterThan"),
    ("Datasets-ObserverAmended-Warning", "ObserverAmended", 0, "GreaterThan"),
    ("Datasets-EventsNotPublished-Warning", "EventsNotPublished", 0, "GreaterThan"),
    ("Datasets-ErrorOutputRecordsUnattributed-Warning", "ErrorOutputRecordsUnattributed", 0, "GreaterThan"),
    ("SchedulerFailed-Queue-Message-Count-Max-Critical", "ApproximateNumberOfMessagesVisible", 0, "GreaterThan"),
])
def test_each_alarm_watches_its_metric_at_the_threshold_from_settings_and_notifies(resources, name, metric,
                                                                                    threshold, operator):
    # Given the alarm the parameter names, in the stack synthesized with CUSTOM settings and an alarm e-mail
    alarm = alarms(resources)[f"Test-Watch-{name}"]
    # When its expected threshold is found: a constant, or derived from CUSTOM by alarm_thresholds
    expected = alarm_thresholds(CUSTOM)[threshold] if isinstance(threshold, str) else threshold
    # Then it watches its metric at that threshold, compares as given, and notifies the topic
    assert metric_of(alarm) == metric and alarm["Threshold"] == expected
    assert alarm["ComparisonOperator"].startswith(operator)
    topic = next(k for k, v in resources.items() if v["Type"] == "AWS::SNS::Topic")
    assert alarm["AlarmActions"] == [{"Ref": topic}]


def test_thresholds_follow_the_settings():
    # Given buffer intervals of 120 s and 600 s
    # When the alarm thresholds are derived from them
    # Then data freshness alarms past twice the interval, the notifications' age past half the quiet window
    assert alarm_thresholds(Settings(buffer_interval_s=120))["data_freshness_s"] == 240
    assert alarm_thresholds(Settings(buffer_interval_s=600))["notification_age_s"] == Settings(
        buffer_interval_s=600).quiet_s // 2


def test_one_dashboard_with_a_row_per_stage(template):
    # Given the stack synthesized with CUSTOM settings
    # When its one dashboard is read
    (dashboard,) = template.find_resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    # Then its body names every stage: Ingest, Count, Observe and Notify
    for stage in ("Ingest", "Count", "Observe", "Notify"):
        assert stage in body


def test_outputs_tell_clients_where_everything_is(template):
    # Given the stack synthesized
    # When its outputs are read
    outputs = template.to_json()["Outputs"]
    # Then they say where the bucket, stream, table, queues, event bus and settings are
    assert {"Bucket", "Stream", "Table", "ObserverQueue", "NotificationQueue", "EventBus", "Settings",
            "Queues"} <= set(outputs)


def test_defaults_no_webhook_no_topic_alarms_still_there():
    # Given default settings: no webhook, no alarm e-mail
    # When the stack is synthesized
    template = synth(Settings())
    # Then it has no API destination and no topic, but over 20 alarms, and the default buffers (300 s, 64 MiB)
    template.resource_count_is("AWS::Events::ApiDestination", 0)
    template.resource_count_is("AWS::SNS::Topic", 0)
    assert len(template.find_resources("AWS::CloudWatch::Alarm")) > 20
    template.has_resource_properties("AWS::KinesisFirehose::DeliveryStream", {
        "ExtendedS3DestinationConfiguration": Match.object_like({
            "BufferingHints": {"IntervalInSeconds": 300, "SizeInMBs": 64}})})


@pytest.mark.parametrize("context, message", [
    ({"max_num_repeat": "0"}, "setting max_num_repeat=0 is out of range: allowed 1..100"),
    ({"buffer_interval_s": "30"}, "setting buffer_interval_s=30 is out of range: allowed 60..900"),
    ({"decay": "linear"}, "setting decay='linear' is invalid: allowed constant, divide, exponential"),
    ({"callback_url": "http://x"}, "setting callback_url='http://x' is invalid"),
    ({"max_num_repat": "5"}, "unknown setting 'max_num_repat' in the CDK context (did you mean max_num_repeat?)"),
    ({"datasets": '["raw/"]'}, "the pattern has no field"),
])
def test_bad_settings_fail_synth_naming_the_setting_and_range(context, message):
    # Given a bad -c value (the parameter)
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": "/tmp/streamwatch-bad-synth"}
    # When the app runs as `cdk synth` runs it
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    # Then it exits non-zero with the message, no traceback
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


def test_security_gate_fails_synth_on_an_unacknowledged_finding(tmp_path):
    # Given an app with the security gate registered, and a bare bucket whose findings no one acknowledged
    from aws_cdk import aws_s3 as s3
    app = cdk.App(outdir=str(tmp_path))
    register_nag(app)
    stack = cdk.Stack(app, "Bad")
    s3.Bucket(stack, "Open")
    # When it is synthesized
    # Then synth fails naming the finding, AwsSolutions-S10
    with pytest.raises(RuntimeError, match="AwsSolutions-S10"):
        app.synth()
