"""What a real deployment needs that moto never checks, finding by finding (the deploy audit): alarms that reach
someone and alarm on silence, the failure paths of asynchronous invocations, the environment limit, the stream
layouts Firehose accepts, a bucket of another stack, SSE-KMS, and no webhook URL where functions can read it."""

from __future__ import annotations

import json
import re

import aws_cdk as cdk
import pytest
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Annotations, Match, Template

from streamwatch.cdk import Streamwatch, StreamwatchPropsError, register_nag
from streamwatch.core.settings import Settings, SettingsError
from tests.infra.aws_rules import RULES, actions, resources, role_statements


def build(settings: Settings | None = None, **kwargs) -> tuple[cdk.Stack, Streamwatch]:
    stack = cdk.Stack(cdk.App(), "Deploy")
    return stack, Streamwatch(stack, "Watch", settings=settings or Settings(), **kwargs)


def alarms(template: Template) -> dict[str, dict]:
    return {a["Properties"]["AlarmName"]: a["Properties"] for a in template.find_resources(
        "AWS::CloudWatch::Alarm").values()}


def test_a_default_deploy_warns_that_its_alarms_notify_no_one():
    # Given no alarm_email and no alarm_topic
    stack, _ = build()
    # When the stack is synthesized
    # Then synth warns, naming both ways to route them
    warnings = Annotations.from_stack(stack).find_warning("*", Match.string_like_regexp(".*notify no one.*"))
    assert len(warnings) == 1
    text = json.dumps(warnings[0].entry.data)
    assert "alarm_email" in text and "alarm_topic" in text


def test_a_passed_topic_gets_the_cloudwatch_statement():
    # Given a topic of the user's, TLS only
    from aws_cdk import aws_sns as sns
    stack = cdk.Stack(cdk.App(), "Deploy")
    topic = sns.Topic(stack, "Ops", enforce_ssl=True)
    # When Streamwatch is given it as alarm_topic and the stack is synthesized
    Streamwatch(stack, "Watch", alarm_topic=topic)
    template = Template.from_stack(stack).to_json()
    # Then the topic's policy lets CloudWatch publish, as the AWS rule requires
    assert RULES["alarm-topic-allows-cloudwatch"].check(template) == []
    assert "cloudwatch.amazonaws.com" in json.dumps(template)


def test_delivered_but_not_counted_alarms_over_two_windows_on_firehose_and_the_monitor():
    # Given a default deploy
    stack, watch = build()
    # When its DeliveredNotCounted alarm is read
    alarm = alarms(Template.from_stack(stack))["Deploy-Watch-Counting-DeliveredNotCounted-Warning"]
    metrics = {m["Id"]: m for m in alarm["Metrics"]}
    # Then it alarms when Firehose delivered records but the monitor counted no object, in 2 periods of 2
    assert metrics["delivered"]["MetricStat"]["Metric"]["MetricName"] == "DeliveryToS3.Records"
    assert metrics["counted"]["MetricStat"]["Metric"]["MetricName"] == "ObjectsCounted"
    assert "FILL(counted, 0) == 0" in next(m["Expression"] for m in alarm["Metrics"] if "Expression" in m)
    assert alarm["EvaluationPeriods"] == 2 and alarm["DatapointsToAlarm"] == 2


def test_the_heartbeat_is_a_dead_mans_switch():
    # Given a default deploy
    stack, _ = build()
    # When its ChainSilence alarm is read
    alarm = alarms(Template.from_stack(stack))["Deploy-Watch-Heartbeat-ChainSilence-Warning"]
    # Then missing data breaches it, over a period of at least two 5-minute heartbeats
    assert alarm["TreatMissingData"] == "breaching" and alarm["Period"] >= 2 * 300  # two 5-minute heartbeats


def test_partition_count_alarm_only_for_a_stream_with_dynamic_partitioning():
    # Given a default deploy (its first rule partitions by dataset_id)
    stack, _ = build()
    # When its alarms are read
    # Then it has the PartitionCountExceeded alarm
    assert "Deploy-Watch-FirehoseDelivery-PartitionCountExceeded-Warning" in alarms(Template.from_stack(stack))
    # And there is none for a time-only first rule, nor for a stream the user passed
    for settings, passed in ((Settings(datasets=("logs/{yyyy}/{MM}/{dd}/{HH}/",)), False),
                             (Settings(datasets=("orders/{dataset_id}/",)), True)):
        stack = cdk.Stack(cdk.App(), "Deploy")
        kwargs = {}
        if passed:
            kwargs = {"bucket": s3.Bucket.from_bucket_name(stack, "B", "theirs"),
                      "delivery_stream": firehose.DeliveryStream.from_delivery_stream_name(stack, "S", "theirs")}
        Streamwatch(stack, "Watch", settings=settings, **kwargs)
        assert not [a for a in alarms(Template.from_stack(stack)) if "PartitionCount" in a]


def test_a_time_only_first_rule_synthesizes_without_packing_and_says_what_to_change_when_asked_to_pack():
    # Given a first rule with only time fields (a layout the docs show)
    # When the construct is built with it
    stack, watch = build(Settings(datasets=("logs/{yyyy}/{MM}/{dd}/{HH}/",)))
    # Then packing is off by default (Firehose de-aggregates only with dynamic partitioning) and synth works
    assert watch.settings.pack_records is False
    Template.from_stack(stack)
    # And asking for packing names the setting and what to change, not CDK's internal error
    with pytest.raises(SettingsError, match=r"pack_records=True .*dynamic partitioning.*set pack_records=False"):
        build(Settings(datasets=("logs/{yyyy}/{MM}/{dd}/{HH}/",), pack_records=True))


def test_too_many_rules_for_lambdas_environment_fail_synth_naming_the_limit_and_the_biggest_settings():
    # Given 40 stability rules, each with settings of its own
    rules = tuple({"name": f"feed{i}", "pattern": f"feeds/source-number-{i}/day={{dataset_id}}/",
                   "mode": "stability", "min_quiet_s": 900 + i, "max_num_repeat": 4} for i in range(40))
    # When the construct is built with them
    # Then synth fails naming Lambda's 4 KB limit and the size of STREAMWATCH_DATASETS
    with pytest.raises(SettingsError, match=r"4 KB .*STREAMWATCH_DATASETS \(\d+ bytes\)"):
        build(Settings(datasets=rules))
    build(Settings(datasets=rules[:12]))  # a dozen such rules fit


def test_the_webhook_url_is_in_no_function_and_no_output():
    # Given a callback URL that embeds a credential
    stack, _ = build(Settings(callback_url="https://user:s3cret@hooks.example.com/x"))
    # When the stack is synthesized
    template = Template.from_stack(stack).to_json()
    # Then the secret is in no function and in no output
    functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    assert "s3cret" not in json.dumps(functions) and "s3cret" not in json.dumps(template["Outputs"])
    # And the API destination, where the URL is used, has the https endpoint
    (destination,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::Events::ApiDestination"]
    assert destination["Properties"]["InvocationEndpoint"].startswith("https://")  # it is where it is used


def test_every_function_invoked_asynchronously_keeps_what_it_fails_on():
    # Given the consumer and scheduler (EventBridge rules) and the producer (the starter invokes it as an Event)
    stack, watch = build(Settings(datasets=({"pattern": "h/{yyyy}/{MM}/{dd}/{HH}/", "emit_empty": True},)))
    # When the stack's asynchronous invocation configs are read
    configs = Template.from_stack(stack).find_resources("AWS::Lambda::EventInvokeConfig")
    # Then each has an on-failure destination; the producer is not run again (it reported failed already)
    retries = {}
    for config in configs.values():
        assert "Destination" in config["Properties"]["DestinationConfig"]["OnFailure"]
        retries[config["Properties"]["FunctionName"]["Ref"].split("Function")[0]] = \
            config["Properties"]["MaximumRetryAttempts"]
    assert retries == {"WatchConsumer": 2, "WatchScheduler": 2, "WatchProducer": 0}


def test_a_bucket_of_another_stack_is_watched_through_eventbridge_and_passes_cdk_nag(tmp_path):
    # Given a bucket in a Storage stack, its one cdk-nag finding acknowledged, and the security gate registered
    app = cdk.App(outdir=str(tmp_path))
    register_nag(app)
    storage = cdk.Stack(app, "Storage")
    bucket = s3.Bucket(storage, "Data", enforce_ssl=True)
    cdk.Validations.of(bucket).acknowledge(cdk.Acknowledgment(id="AwsSolutions::AwsSolutions-S1",
                                                              reason="the user's own bucket, not this test's"))
    # When Streamwatch in another stack watches it and the app is synthesized
    watch = Streamwatch(cdk.Stack(app, "Watcher"), "Watch", bucket=bucket)
    assembly = app.synth()  # cdk-nag findings would fail here
    template = json.loads((tmp_path / "Watcher.template.json").read_text())
    # Then it watches through an EventBridge rule, and synth passed cdk-nag
    assert watch.object_events_rule is not None
    # And every value it imports is exported by the bucket's stack, and that stack deploys first (cdk deploy
    # --all orders stacks by their dependencies; an import of an export not deployed yet fails the deploy)
    storage_template = json.loads((tmp_path / "Storage.template.json").read_text())
    exported = {o["Export"]["Name"] for o in storage_template.get("Outputs", {}).values() if "Export" in o}
    imported = set(re.findall(r'"Fn::ImportValue": "([^"]+)"', json.dumps(template)))
    assert imported and imported <= exported
    assert "Storage" in [d.id for d in assembly.get_stack_by_name("Watcher").dependencies]


def test_s3_notifications_on_a_bucket_of_another_stack_are_refused_with_what_to_do():
    # Given a bucket of another stack
    app = cdk.App()
    bucket = s3.Bucket(cdk.Stack(app, "Storage"), "Data")
    # When Streamwatch watches it with S3 notifications
    # Then it refuses, naming the dependency cycle and notifications='eventbridge'
    with pytest.raises(StreamwatchPropsError, match=r"dependency cycle.*notifications='eventbridge'"):
        Streamwatch(cdk.Stack(app, "Watcher"), "Watch", bucket=bucket, settings=Settings(notifications="s3"))


def test_an_sse_kms_bucket_lets_readers_decrypt_and_writers_generate_data_keys():
    # Given a KMS key of the user's
    stack = cdk.Stack(cdk.App(), "Deploy")
    key = kms.Key(stack, "Key", enable_key_rotation=True)
    # When Streamwatch creates its bucket encrypted with that key
    watch = Streamwatch(stack, "Watch", bucket_props={"encryption": s3.BucketEncryption.KMS, "encryption_key": key})
    # Then the key is the construct's bucket key
    assert watch.bucket_key is key
    template = Template.from_stack(stack).to_json()

    def actions_of(role_fragment: str) -> set[str]:
        roles = [k for k in resources(template, "AWS::IAM::Role") if k.startswith(role_fragment)]
        return {a for role in roles for a in actions(role_statements(template, role))}
    # And the monitor may decrypt, the consumer decrypt and generate data keys, the stream generate data keys
    assert "kms:Decrypt" in actions_of("WatchMonitor")
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= actions_of("WatchConsumer")
    assert any(a.startswith("kms:GenerateDataKey") for a in actions_of("WatchStreamRole"))


def test_an_imported_sse_kms_bucket_takes_its_key_as_a_prop():
    # Given a KMS key imported by its ARN, and a bucket of the user's
    stack = cdk.Stack(cdk.App(), "Deploy")
    key = kms.Key.from_key_arn(stack, "Key", "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef")
    # When Streamwatch watches the bucket with that key as its bucket_key
    Streamwatch(stack, "Watch", bucket=s3.Bucket.from_bucket_name(stack, "B", "theirs"), bucket_key=key)
    # Then its policies allow kms:Decrypt
    assert "kms:Decrypt" in json.dumps(Template.from_stack(stack).find_resources("AWS::IAM::Policy"))
