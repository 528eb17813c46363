"""The security gate: cdk-nag AwsSolutions on every synth (v3 plugin API); unacknowledged findings fail synth.

cdk-nag 3 reports IAM findings per action/resource, and a rule-level acknowledgement does not cover them, so
each finding is acknowledged by its exact id with a one-line reason. Logical ids in the ids are read from
the constructs, not pasted.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import CfnElement, Stack
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from streamwatch.manifest import MANIFEST, SUCCESS

BASIC_EXECUTION_ROLE = "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
S3_GRANT_ACTIONS = ("s3:GetBucket*", "s3:GetObject*", "s3:List*", "s3:Abort*", "s3:DeleteObject*")


def register(app: cdk.App) -> None:
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge_findings(stack: Stack) -> None:
    """The findings this design accepts, each with why."""

    def ref(construct: IConstruct) -> str:
        child = construct.node.default_child if not isinstance(construct, CfnElement) else construct
        return f"<{stack.get_logical_id(child)}.Arn>"

    bucket, producer = ref(stack.storage.bucket), ref(stack.ingest.producer)
    reasons = {
        f"AwsSolutions-IAM4[{BASIC_EXECUTION_ROLE}]":
            "AWSLambdaBasicExecutionRole is the AWS-managed minimum for writing function logs.",
        "AwsSolutions-IAM5[Resource::*]": "X-Ray PutTraceSegments has no resource scope (Lambda active tracing).",
        **{f"AwsSolutions-IAM5[Action::{action}]": "CDK's S3 grant/Firehose destination action groups, limited "
           "to this stack's data bucket." for action in S3_GRANT_ACTIONS},
        f"AwsSolutions-IAM5[Resource::{bucket}/*]": "Firehose writes the data and error prefixes of our bucket.",
        f"AwsSolutions-IAM5[Resource::{bucket}/{stack.settings.data_prefix}*]":
            "The monitor reads data objects (records mode) under the data prefix only.",
        f"AwsSolutions-IAM5[Resource::{producer}:*]": "The run starter may invoke any version of our producer.",
        **{f"AwsSolutions-IAM5[Resource::{bucket}/{stack.settings.data_prefix}*/{name}]":
           f"The example consumer writes only its {name} marker, in any dataset's folder."
           for name in (MANIFEST, SUCCESS)},
        "AwsSolutions-S1": "Access to the data bucket is audited with CloudTrail data events if needed; server "
                           "access logs would need a second bucket for little value here.",
        "AwsSolutions-SMG4": "The webhook token is shared with the receiver; rotate it together with the receiver.",
    }
    validations = cdk.Validations.of(stack)
    for finding, reason in reasons.items():
        validations.acknowledge(cdk.Acknowledgment(id=f"AwsSolutions::{finding}", reason=reason))
    validations.acknowledge(cdk.Acknowledgment(
        id="CloudFormation-Validate::W7001",
        reason="The Firehose L2 adds a CIDR mapping used only by other destination types."))
