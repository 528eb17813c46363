#!/usr/bin/env python3
"""A data team's own CDK app: their bucket and Firehose stream already exist; streamwatch is added next to them.

    pip install "streamwatch[cdk]"      # or, from this repository: pip install ".[cdk]"
    npx cdk synth                       # in this directory (cdk.json runs this file)

Nothing here creates a bucket or a stream: streamwatch watches `orders/` (the stream's layout, written by
producers through the client, so records mode applies) and `clicks/` (another team's writer: judged by
stability), notifies through the bucket's EventBridge events, and sends each Dataset Ready to the queue the
team's Airflow DAG listens on.
"""

import aws_cdk as cdk
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs

from streamwatch.cdk import Streamwatch, register_nag
from streamwatch.core.settings import Settings

app = cdk.App()
register_nag(app)  # cdk-nag's AwsSolutions checks: the construct brings its own acknowledgements
stack = cdk.Stack(app, app.node.try_get_context("stack_name") or "OrdersPipeline")

bucket = s3.Bucket.from_bucket_name(stack, "Raw", app.node.try_get_context("bucket") or "acme-raw-events")
stream = firehose.DeliveryStream.from_delivery_stream_name(
    stack, "Orders", app.node.try_get_context("stream") or "orders-to-s3")

watch = Streamwatch(stack, "Streamwatch", bucket=bucket, delivery_stream=stream, settings=Settings(
    datasets=(
        {"name": "orders", "pattern": "orders/dt={dataset_id}/", "mode": "auto"},
        {"name": "clicks", "pattern": "clicks/{source}/{dataset_id}/", "mode": "stability", "min_quiet_s": 900},
    ),
    buffer_interval_s=120,          # as the existing stream buffers
    error_prefix="errors/",         # the stream's error output prefix
    pack_records=False,             # this stream does not de-aggregate
    deadline_s=3 * 3600,            # Overdue when a dataset is not Ready 3 h after it started
    example_consumer=False,
    alarm_email="data-oncall@example.com",
))

# The downstream: an SQS queue an Airflow DAG (SqsSensor) waits on
dead = sqs.Queue(stack, "AirflowTriggerDlq", enforce_ssl=True)
airflow = sqs.Queue(stack, "AirflowTrigger", enforce_ssl=True,
                    dead_letter_queue=sqs.DeadLetterQueue(queue=dead, max_receive_count=5))
watch.on_event(targets.SqsQueue(airflow))  # Dataset Ready by default
cdk.CfnOutput(stack, "AirflowQueue", value=airflow.queue_url)

app.synth()
