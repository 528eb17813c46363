"""cdk-nag: the findings this construct accepts, each with its reason, acknowledged on the construct itself, so
an app that turns cdk-nag on (`register_nag(app)`) sees no unacknowledged finding from it.

cdk-nag 3 reports IAM findings per action and resource, and a rule-level acknowledgement does not cover them,
so each finding is acknowledged by its exact id. Resource ids are rendered from the resolved CloudFormation value
the way cdk-nag renders them (`<Logical.Arn>`, `<AWS::Partition>`), so they hold for a bucket of ours or yours.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import Stack
from cdk_nag import AwsSolutionsChecks

from streamwatch.core.rules import MANIFEST, SUCCESS

BASIC_EXECUTION_ROLE = "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
S3_GRANT_ACTIONS = ("s3:GetBucket*", "s3:GetObject*", "s3:List*", "s3:Abort*", "s3:DeleteObject*")


def register_nag(app: cdk.App) -> None:
    """cdk-nag's AwsSolutions checks on every synth (v3 plugin API); unacknowledged findings fail synth."""
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def render(value) -> str:
    """A resolved CloudFormation value as cdk-nag writes it in a finding id."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if "Ref" in value:
            return f"<{value['Ref']}>"
        if "Fn::GetAtt" in value:
            logical, attribute = value["Fn::GetAtt"]
            return f"<{logical}.{attribute}>"
        if "Fn::ImportValue" in value:  # a bucket of another stack, through the construct's own export
            return render(value["Fn::ImportValue"])
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return separator.join(render(p) for p in parts)
    return str(value)


def acknowledge(watch) -> None:
    """The findings this design accepts, each with why."""
    stack = Stack.of(watch)
    bucket = render(stack.resolve(watch.bucket.bucket_arn))
    table = render(stack.resolve(watch.table.table_arn))
    producer = render(stack.resolve(watch.producer.function_arn))
    reasons = {
        f"AwsSolutions-IAM4[{BASIC_EXECUTION_ROLE}]":
            "AWSLambdaBasicExecutionRole is the AWS-managed minimum for writing function logs.",
        "AwsSolutions-IAM5[Resource::*]": "X-Ray PutTraceSegments has no resource scope (Lambda active tracing).",
        **{f"AwsSolutions-IAM5[Action::{action}]": "CDK's S3 grant/Firehose destination action groups, limited "
           "to the watched bucket's prefixes." for action in S3_GRANT_ACTIONS},
        f"AwsSolutions-IAM5[Resource::{bucket}/*]": "Firehose writes the data and error prefixes of the bucket.",
        f"AwsSolutions-IAM5[Resource::{producer}:*]": "The run starter may invoke any version of the producer.",
        f"AwsSolutions-IAM5[Resource::{table}/index/*]": "CDK's table grants cover the table's own index (by_day).",
    }
    for prefix in watch.watched_prefixes:
        reasons[f"AwsSolutions-IAM5[Resource::{bucket}/{prefix}*]"] = \
            "The monitor reads objects (records, error output) under the watched prefixes only."
        for name in (MANIFEST, SUCCESS):
            reasons[f"AwsSolutions-IAM5[Resource::{bucket}/{prefix}*/{name}]"] = \
                f"The example consumer writes only its {name} marker, in any dataset's folder."
    if watch.node.try_find_child("Data") is not None:
        reasons["AwsSolutions-S1"] = ("Access to the data bucket is audited with CloudTrail data events if needed; "
                                      "server access logs would need a second bucket for little value here.")
    if watch.webhook_dlq is not None:
        reasons["AwsSolutions-SMG4"] = "The webhook token is shared with the receiver; rotate both together."
    if watch.node.try_find_child("Alarms") is not None:
        reasons["AwsSolutions-SNS2"] = ("CloudWatch alarms cannot publish to a topic encrypted with the AWS-managed "
                                        "SNS key; the topic carries alarm names only.")
    validations = cdk.Validations.of(watch)
    for finding, reason in reasons.items():
        validations.acknowledge(cdk.Acknowledgment(id=f"AwsSolutions::{finding}", reason=reason))
    # What the construct makes CDK add at the stack's top: acknowledged there, on those nodes only
    # (and at the top of the bucket's own stack, when it is another one)
    for child in {*stack.node.children, *Stack.of(watch._owner_bucket).node.children}:
        if child.node.id.startswith("BucketNotificationsHandler"):  # CDK's own handler for bucket notifications
            cdk.Validations.of(child).acknowledge(cdk.Acknowledgment(
                id=f"AwsSolutions::AwsSolutions-IAM4[{BASIC_EXECUTION_ROLE}]",
                reason="CDK's bucket-notification handler writes its logs with the AWS-managed minimum policy."))
    # the Firehose module adds a stack-level CIDR mapping (late, at synth) for a stream created or imported
    cdk.Validations.of(stack).acknowledge(cdk.Acknowledgment(
        id="CloudFormation-Validate::W7001",
        reason="The Firehose L2 adds a stack-level CIDR mapping used only by other destination types."))
