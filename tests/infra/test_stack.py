"""The stack, asserted on what matters: loops, retries, DLQs, filters, partitioning and least privilege."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from stacks.nag import register
from stacks.observer_stack import ObserverStack
from streamwatch.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CUSTOM = Settings(buffer_interval_s=120, buffer_size_mib=100, monitor_batch_size=500, monitor_batch_window_s=7,
                  callback_url="https://hooks.example.com/streamwatch", mode="records")


def synth(settings: Settings) -> Template:
    app = cdk.App()
    return Template.from_stack(ObserverStack(app, "Test", settings=settings))


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
    fn = resources[function_logical_id]
    role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = []
    for policy in of_type(resources, "AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def actions_of(statements):
    out = set()
    for s in statements:
        acts = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        out.update(acts)
    return out


def test_observer_may_loop_through_its_own_queue(resources):
    # Given the observer re-queues itself, When deployed, Then AWS's recursion stop is lifted for it only
    (obs_id, observer), = function_named(resources, "observer")
    assert observer["Properties"]["RecursiveLoop"] == "Allow"
    for fid, fn in of_type(resources, "AWS::Lambda::Function").items():
        if fid != obs_id:
            assert fn["Properties"].get("RecursiveLoop", "Terminate") == "Terminate"
    assert "sqs:SendMessage" in actions_of(policy_statements_of(resources, obs_id))


def test_sqs_consumers_report_partial_batch_failures(resources):
    mappings = of_type(resources, "AWS::Lambda::EventSourceMapping")
    assert len(mappings) == 2
    for m in mappings.values():
        assert m["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_monitor_batching_follows_settings(resources):
    (mon_id, _), = function_named(resources, "monitor")
    mapping = next(m for m in of_type(resources, "AWS::Lambda::EventSourceMapping").values()
                   if m["Properties"]["FunctionName"] == {"Ref": mon_id})
    assert mapping["Properties"]["BatchSize"] == 500
    assert mapping["Properties"]["MaximumBatchingWindowInSeconds"] == 7


def test_every_work_queue_has_a_dlq_and_enforces_tls(resources):
    queues = of_type(resources, "AWS::SQS::Queue")
    dlq_ids = {q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
               for q in queues.values() if "RedrivePolicy" in q["Properties"]}
    work = [k for k in queues if k not in dlq_ids]
    assert len(work) >= 3  # notifications, observer ticks, webhook failures
    for k in work:
        assert queues[k]["Properties"]["RedrivePolicy"]["maxReceiveCount"] == 5, k
    for k, q in queues.items():
        assert q["Properties"]["SqsManagedSseEnabled"] is True, k
    tls_denies = [p for p in of_type(resources, "AWS::SQS::QueuePolicy").values()
                  if any(s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
                         for s in p["Properties"]["PolicyDocument"]["Statement"])]
    assert len(tls_denies) >= len(queues)


def test_visibility_covers_six_function_timeouts(resources):
    queues = of_type(resources, "AWS::SQS::Queue")
    for mapping in of_type(resources, "AWS::Lambda::EventSourceMapping").values():
        fn = resources[mapping["Properties"]["FunctionName"]["Ref"]]
        queue = queues[mapping["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]]
        window = mapping["Properties"].get("MaximumBatchingWindowInSeconds", 0)
        assert queue["Properties"]["VisibilityTimeout"] >= 6 * fn["Properties"]["Timeout"] + window


def test_notification_covers_all_object_created_kinds_on_the_data_prefix_only(template):
    template.has_resource_properties("Custom::S3BucketNotifications", {
        "NotificationConfiguration": {"QueueConfigurations": [{
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "data/"}]}},
            "QueueArn": Match.any_value()}]}})


def test_firehose_partitions_by_dataset_and_buffers_per_settings(template):
    template.has_resource_properties("AWS::KinesisFirehose::DeliveryStream", {
        "DeliveryStreamEncryptionConfigurationInput": {"KeyType": "AWS_OWNED_CMK"},
        "ExtendedS3DestinationConfiguration": Match.object_like({
            "Prefix": "data/dataset=!{partitionKeyFromQuery:dataset_id}/",
            "ErrorOutputPrefix": Match.string_like_regexp("errors/"),
            "BufferingHints": {"IntervalInSeconds": 120, "SizeInMBs": 100},
            "DynamicPartitioningConfiguration": Match.object_like({"Enabled": True}),
            "ProcessingConfiguration": {"Enabled": True, "Processors": [
                {"Type": "MetadataExtraction", "Parameters": Match.array_with([
                    {"ParameterName": "MetadataExtractionQuery", "ParameterValue": '{"dataset_id":.dataset_id}'},
                    {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}])},
                {"Type": "AppendDelimiterToRecord", "Parameters": Match.any_value()}]}})})


def test_state_table_is_on_demand_recoverable_and_expires_ledger_items(template):
    template.has_resource_properties("AWS::DynamoDB::Table", {
        "BillingMode": "PAY_PER_REQUEST",
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
        "SSESpecification": {"SSEEnabled": True}})


def test_bucket_blocks_public_access_and_requires_tls(template):
    template.has_resource_properties("AWS::S3::Bucket", {
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                           "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
        "BucketEncryption": Match.any_value()})
    template.has_resource_properties("AWS::S3::BucketPolicy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])}})


def test_functions_use_the_managed_powertools_layer_tracing_and_settings_env(resources):
    ours = [fn for fn in of_type(resources, "AWS::Lambda::Function").values()
            if fn["Properties"].get("Handler", "").startswith("streamwatch.")]
    assert len(ours) == 5  # producer, starter, monitor, observer, example consumer
    for fn in ours:
        p = fn["Properties"]
        assert p["Runtime"] == "python3.14"
        assert p["TracingConfig"] == {"Mode": "Active"}
        assert p["LoggingConfig"]["LogFormat"] == "JSON"
        assert "AWSLambdaPowertoolsPythonV3-python314-x86_64" in json.dumps(p["Layers"])
        env = p["Environment"]["Variables"]
        assert env["STREAMWATCH_BUFFER_INTERVAL_S"] == "120"
        assert env["STREAMWATCH_MODE"] == "records"
        assert Settings.from_env({k: v for k, v in env.items() if isinstance(v, str)}) == CUSTOM


def test_least_privilege(resources):
    (obs_id, _), = function_named(resources, "observer")
    (mon_id, _), = function_named(resources, "monitor")
    producers = [k for k, _ in function_named(resources, "producer")]
    observer = actions_of(policy_statements_of(resources, obs_id))
    assert not any(a.startswith(("s3:", "firehose:")) for a in observer)
    assert "events:PutEvents" in observer
    monitor = actions_of(policy_statements_of(resources, mon_id))
    assert not any(a.startswith("firehose:") for a in monitor)
    assert not any(a.startswith("s3:Put") or a.startswith("s3:Delete") for a in monitor)
    notification_queues = [k for k, q in of_type(resources, "AWS::SQS::Queue").items() if "Notifications" in k]
    for pid in producers:
        statements = policy_statements_of(resources, pid)
        text = json.dumps(statements)
        assert not any(q in text for q in notification_queues), pid
        assert not any(a.startswith("s3:") for a in actions_of(statements))
    producer_actions = actions_of(policy_statements_of(resources, producers[0]) +
                                  policy_statements_of(resources, producers[1]))
    assert "firehose:PutRecordBatch" in producer_actions
    assert "dynamodb:DeleteItem" not in producer_actions and "dynamodb:Scan" not in producer_actions


def test_callback_url_posts_every_event_through_an_api_destination(template):
    template.has_resource_properties("AWS::Events::ApiDestination", {
        "InvocationEndpoint": "https://hooks.example.com/streamwatch", "HttpMethod": "POST"})
    template.has_resource_properties("AWS::Events::Connection", {"AuthorizationType": "API_KEY"})
    template.has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {"source": ["streamwatch"],
                         "detail-type": ["Dataset Ready", "Dataset Amended", "Dataset Stalled"]},
        "Targets": [Match.object_like({
            "DeadLetterConfig": {"Arn": Match.any_value()},
            "RetryPolicy": {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}})]})


def test_example_consumer_gets_ready_events_and_writes_only_its_markers(resources, template):
    (cid, _), = function_named(resources, "consumer")
    template.has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {"source": ["streamwatch"], "detail-type": ["Dataset Ready"]},
        "Targets": [Match.object_like({"Arn": {"Fn::GetAtt": [cid, "Arn"]}, "DeadLetterConfig": Match.any_value(),
                                       "RetryPolicy": Match.object_like({"MaximumRetryAttempts": 4})})]})
    writes = [s for s in policy_statements_of(resources, cid) if any(
        a.startswith("s3:PutObject") for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]]))]
    resources_written = json.dumps([s["Resource"] for s in writes])
    assert "_manifest.json" in resources_written and "_SUCCESS" in resources_written
    assert '/data/*"' not in resources_written


def test_no_webhook_without_callback_url():
    template = synth(Settings())
    template.resource_count_is("AWS::Events::ApiDestination", 0)
    template.has_resource_properties("AWS::KinesisFirehose::DeliveryStream", {
        "ExtendedS3DestinationConfiguration": Match.object_like({
            "BufferingHints": {"IntervalInSeconds": 300, "SizeInMBs": 64}})})


@pytest.mark.parametrize("context, message", [
    ({"max_num_repeat": "0"}, "setting max_num_repeat=0 is out of range: allowed 1..100"),
    ({"buffer_interval_s": "30"}, "setting buffer_interval_s=30 is out of range: allowed 60..900"),
    ({"decay": "linear"}, "setting decay='linear' is invalid: allowed constant, divide, exponential"),
    ({"callback_url": "http://x"}, "setting callback_url='http://x' is invalid"),
])
def test_bad_settings_fail_synth_naming_the_setting_and_range(context, message):
    # Given a bad -c value, When the app runs as `cdk synth` runs it, Then it exits non-zero with the message
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": "/tmp/streamwatch-bad-synth"}
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert message in result.stderr


def test_security_gate_fails_synth_on_an_unacknowledged_finding(tmp_path):
    # Given the gate registered on an app, When a stack has a bucket without TLS enforcement, Then synth fails
    from aws_cdk import aws_s3 as s3
    app = cdk.App(outdir=str(tmp_path))
    register(app)
    stack = cdk.Stack(app, "Bad")
    s3.Bucket(stack, "Open")
    with pytest.raises(RuntimeError, match="AwsSolutions-S10"):
        app.synth()
