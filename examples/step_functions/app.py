#!/usr/bin/env python3
"""A state machine that waits for a dataset, then processes it: streamwatch's `wait_for_dataset_task`.

    pip install "streamwatch[cdk]"      # or, from this repository: pip install ".[cdk]"
    npx cdk synth                       # in this directory (cdk.json runs this file)

An execution is started with {"dataset_id": "orders-2026-11-24"} (by a schedule, by `run start`, by you). Its
first state waits, for up to 6 hours, until streamwatch declares the dataset. Ready resumes it with the event's
detail under `$.dataset`; a dataset that Failed or Stalled ends the execution failed, with streamwatch's reason.
A dataset declared before the execution started answers at once.
"""

import aws_cdk as cdk
from aws_cdk import Duration
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn

from streamwatch.cdk import Streamwatch, register_nag
from streamwatch.core.settings import Settings

app = cdk.App()
register_nag(app)  # cdk-nag's AwsSolutions checks: findings fail synth
stack = cdk.Stack(app, app.node.try_get_context("stack_name") or "OrdersWorkflow")
watch = Streamwatch(stack, "Streamwatch", settings=Settings(
    datasets=("data/dataset={dataset_id}/",), mode="records", example_consumer=False,
    alarm_email="data-oncall@example.com"))

wait = watch.wait_for_dataset_task(stack, "WaitForDataset", dataset_id=sfn.JsonPath.string_at("$.dataset_id"),
                                   timeout=Duration.hours(6), result_path="$.dataset")
not_complete = sfn.Fail(stack, "DatasetNotComplete", cause_path="$.error.Cause", error_path="$.error.Error")
wait.add_catch(not_complete, errors=["streamwatch.DatasetFailed", "streamwatch.DatasetStalled", "States.Timeout"],
               result_path="$.error")
process = sfn.Pass(stack, "Process", comment="your work: a Glue job, an EMR step, a Lambda on $.dataset.detail")
machine = sfn.StateMachine(
    stack, "Orders", definition_body=sfn.DefinitionBody.from_chainable(wait.next(process)), tracing_enabled=True,
    logs=sfn.LogOptions(destination=logs.LogGroup(stack, "OrdersLogs", retention=logs.RetentionDays.ONE_MONTH,
                                                  removal_policy=cdk.RemovalPolicy.DESTROY),
                        level=sfn.LogLevel.ALL))
watch.grant_wait(machine)  # the machine may register; the waits function may answer its tasks, and only its
# Step Functions' own role for tracing and logging: X-Ray's PutTraceSegments and CloudWatch Logs' log delivery
# actions take no resource but "*" (what CDK grants for tracing_enabled and logs)
cdk.Validations.of(machine).acknowledge(cdk.Acknowledgment(
    id="AwsSolutions::AwsSolutions-IAM5[Resource::*]",
    reason="X-Ray tracing and CloudWatch Logs delivery of the state machine accept only Resource '*'."))

app.synth()
