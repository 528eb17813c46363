"""Who may write what, as the template says it: only the stream's role writes the watched prefix and the error
output, only the observer puts streamwatch's events on a bus of ours, Firehose gets what AWS documents on the
prefixes it writes, S3 may notify the queue only from this bucket and account, and bursts are capped."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest

from stacks.observer_stack import ObserverStack
from streamwatch.core.settings import Settings
from tests.infra.aws_rules import actions, props, ref, resources, role_statements


@pytest.fixture(scope="module")
def template() -> dict:
    from aws_cdk.assertions import Template
    return Template.from_stack(ObserverStack(cdk.App(), "Sec", settings=Settings())).to_json()


def role_of(template: dict, function: str) -> str:
    """The role of one of limits.FUNCTIONS (Monitor, Observer, Producer, ...), by its logical id."""
    (fn,) = [f for k, f in resources(template, "AWS::Lambda::Function").items() if k.startswith(f"Watch{function}")]
    return ref(props(fn)["Role"])


def test_only_the_streams_role_and_the_consumer_write_the_watched_prefix_and_the_error_output(template):
    # Given the stack's bucket policy
    (policy,) = resources(template, "AWS::S3::BucketPolicy").values()
    # When its Deny of s3:PutObject is found
    (deny,) = [s for s in props(policy)["PolicyDocument"]["Statement"]
               if s["Effect"] == "Deny" and s["Action"] == "s3:PutObject"]
    # Then it denies everyone writing under data/dataset= and errors/
    assert deny["Effect"] == "Deny" and deny["Principal"] == {"AWS": "*"} and deny["Action"] == "s3:PutObject"
    text = json.dumps(deny["Resource"])
    assert "/data/dataset=*" in text and "/errors/*" in text
    # And only the stream's role and the consumer are exempt, not the producer or the monitor
    writers = json.dumps(deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"])
    assert "WatchStreamRole" in writers and role_of(template, "Consumer") in writers
    assert role_of(template, "Producer") not in writers and role_of(template, "Monitor") not in writers


def test_only_the_observer_puts_streamwatch_events_on_the_bus(template):
    # Given the stack's event bus policies
    statements = [json.loads(props(p)["Statement"]) if isinstance(props(p).get("Statement"), str)
                  else props(p)["Statement"] for p in resources(template, "AWS::Events::EventBusPolicy").values()]
    # When the statement that keeps streamwatch's events to the observer is found
    (deny,) = [s for s in statements if s.get("Sid", "").endswith("OnlyTheObserverPutsStreamwatchEvents")]
    # Then it denies PutEvents of source streamwatch to every role but the observer's
    assert deny["Effect"] == "Deny" and deny["Action"] == "events:PutEvents"
    assert deny["Condition"]["ForAnyValue:StringEquals"] == {"events:source": ["streamwatch"]}
    assert role_of(template, "Observer") in json.dumps(deny["Condition"]["ArnNotEquals"])


def test_firehose_gets_what_aws_documents_for_an_s3_destination_on_the_prefixes_it_writes(template):
    # Given the stream's role
    role = next(k for k in resources(template, "AWS::IAM::Role") if k.startswith("WatchStreamRole"))
    # When its trust policy is read
    assume = props(resources(template)[role])["AssumeRolePolicyDocument"]["Statement"][0]
    # Then only Firehose may assume it, for this account (sts:ExternalId)
    assert assume["Principal"] == {"Service": "firehose.amazonaws.com"}
    assert assume["Condition"] == {"StringEquals": {"sts:ExternalId": {"Ref": "AWS::AccountId"}}}
    # the stream is created after the role's policy (Firehose checks its access at creation)
    (stream,) = resources(template, "AWS::KinesisFirehose::DeliveryStream").values()
    policy = next(k for k, p in resources(template, "AWS::IAM::Policy").items() if {"Ref": role} in props(p)["Roles"])
    assert policy in stream.get("DependsOn", [])
    # And it gets the S3 actions AWS documents, PutObject only under data/dataset= and errors/
    statements = role_statements(template, role)
    s3 = actions(statements, "s3:")
    assert s3 == {"s3:AbortMultipartUpload", "s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket",
                  "s3:ListBucketMultipartUploads", "s3:PutObject"}
    objects = json.dumps([s["Resource"] for s in statements if "s3:PutObject" in s["Action"]])
    assert "/data/dataset=*" in objects and "/errors/*" in objects and '"/*"' not in objects


def test_s3_may_notify_the_queue_only_from_this_bucket_and_account(template):
    # Given the stack's queue policies
    # When their statements for s3.amazonaws.com are read
    statements = [s for p in resources(template, "AWS::SQS::QueuePolicy").values()
                  for s in props(p)["PolicyDocument"]["Statement"]
                  if s.get("Principal") == {"Service": "s3.amazonaws.com"}]
    # Then each is conditioned on the bucket (aws:SourceArn) and the account (aws:SourceAccount)
    assert statements and all("aws:SourceArn" in json.dumps(s["Condition"]) and
                              "aws:SourceAccount" in json.dumps(s["Condition"]) for s in statements)


def test_bursts_are_capped(template):
    # Given the stack's SQS event source mappings and its starter function
    # When their concurrency settings are read
    caps = {ref(props(m)["FunctionName"]): props(m).get("ScalingConfig", {}).get("MaximumConcurrency")
            for m in resources(template, "AWS::Lambda::EventSourceMapping").values()}
    # Then both mappings are capped at 20 concurrent invocations
    assert sorted(caps.values()) == [20, 20]
    # And the starter has 5 reserved
    starter = next(f for f in resources(template, "AWS::Lambda::Function").values()
                   if "Starter" in json.dumps(props(f).get("Role")))
    assert props(starter)["ReservedConcurrentExecutions"] == 5


@pytest.mark.parametrize("event, message", [
    ({"producers": 5000}, "allowed 1..100 (setting max_producers_per_run)"),
    ({"producers": 0}, "allowed 1..100"),
    ({"producers": True}, "a count or a list"),
    ({"producers": 2, "records_per_producer": 10**12}, "setting max_records_per_producer"),
    ({"producers": [{"producer_id": "p\n", "records": 1}]}, "producer id 'p\\n' is invalid"),
])
def test_the_starter_refuses_requests_past_its_caps(event, message):
    # Given a start_run request past a cap, or malformed (the parameter)
    from streamwatch.core.errors import InputError
    from streamwatch.handlers.producer import producer_list
    # When the starter reads its producers from it
    # Then it refuses with an InputError saying what is wrong
    with pytest.raises(InputError) as caught:
        producer_list(event, Settings())
    assert message in str(caught.value)


def test_grant_produce_gives_an_outside_producer_the_producers_grants_and_no_more():
    # Given a role of the user's, for a Glue job, outside the construct
    from aws_cdk import aws_iam as iam
    from aws_cdk.assertions import Template

    from streamwatch.cdk import Streamwatch
    from streamwatch.core.limits import TABLE_ACTIONS
    stack = cdk.Stack(cdk.App(), "Outside")
    watch = Streamwatch(stack, "Watch")
    role = iam.Role(stack, "GlueJob", assumed_by=iam.ServicePrincipal("glue.amazonaws.com"))
    # When grant_produce is given it
    watch.grant_produce(role)
    template = Template.from_stack(stack).to_json()
    logical = stack.get_logical_id(role.node.default_child)
    granted = actions(role_statements(template, logical))
    # Then the role may put to the stream, send to the observer's queue and make the producer's table calls
    assert {"firehose:PutRecordBatch", "sqs:SendMessage", *TABLE_ACTIONS["Producer"]} <= granted
    # And it gets nothing on S3 or EventBridge, and may not delete, scan or put table items
    assert not any(a.startswith(("s3:", "events:")) for a in granted)
    assert not {"dynamodb:DeleteItem", "dynamodb:Scan", "dynamodb:PutItem"} & granted


def test_a_pattern_that_starts_with_a_field_warns_that_the_whole_bucket_is_write_denied():
    # Given a first rule whose pattern starts with a field ({dataset_id}/)
    from aws_cdk.assertions import Annotations, Match
    stack = ObserverStack(cdk.App(), "Sec", settings=Settings(datasets=({"pattern": "{dataset_id}/"},)))
    # When the stack's warnings are read
    warnings = Annotations.from_stack(stack).find_warning(
        "*", Match.string_like_regexp(".*starts with a field.*"))
    # Then one says the whole bucket is write-denied, suggesting a literal folder such as data/
    assert len(warnings) == 1 and "data/" in json.dumps(warnings[0].entry.data)
    # And the default pattern gives no such warning
    quiet = ObserverStack(cdk.App(), "Sec", settings=Settings())
    assert Annotations.from_stack(quiet).find_warning("*", Match.string_like_regexp(".*starts with a field.*")) == []


def test_s3_notifications_from_a_bucket_of_another_account_name_the_owner_as_source_account():
    # Given a bucket of another account, 111122223333
    from aws_cdk import aws_s3 as s3
    from aws_cdk.assertions import Template

    from streamwatch.cdk import Streamwatch
    stack = cdk.Stack(cdk.App(), "Shared")
    bucket = s3.Bucket.from_bucket_attributes(stack, "Theirs", bucket_name="theirs", account="111122223333")
    # When Streamwatch watches it through S3 notifications
    Streamwatch(stack, "Watch", bucket=bucket, settings=Settings(notifications="s3"))
    # Then the queue lets S3 notify it only for that account: aws:SourceAccount is the bucket's owner
    (statement,) = [s for p in resources(Template.from_stack(stack).to_json(), "AWS::SQS::QueuePolicy").values()
                    for s in props(p)["PolicyDocument"]["Statement"]
                    if s.get("Principal") == {"Service": "s3.amazonaws.com"}]
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": "111122223333"}
