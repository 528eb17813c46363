"""Producers -> Firehose -> S3: dynamic partitioning by dataset id, newline-delimited, buffered per settings."""

from __future__ import annotations

from dataclasses import replace

from aws_cdk import Duration, Size
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.common import StreamwatchFunction
from streamwatch.s3_events import ERROR_PREFIX, PARTITION_FIELD, firehose_prefix
from streamwatch.settings import Resources, Settings

TABLE_ITEM_WRITE = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem")


class Ingest(Construct):
    def __init__(self, scope: Construct, id: str, *, settings: Settings, bucket: s3.IBucket,
                 table: dynamodb.ITable) -> None:
        super().__init__(scope, id)
        destination = firehose.S3Bucket(
            bucket, data_output_prefix=firehose_prefix(settings.data_prefix), error_output_prefix=ERROR_PREFIX,
            buffering_interval=Duration.seconds(settings.buffer_interval_s),
            buffering_size=Size.mebibytes(settings.buffer_size_mib),
            dynamic_partitioning=firehose.DynamicPartitioningProps(enabled=True),
            processors=[
                firehose.MetadataExtractionProcessor.jq16({PARTITION_FIELD: f".{PARTITION_FIELD}"}),
                firehose.AppendDelimiterToRecordProcessor(),
            ])
        self.stream = firehose.DeliveryStream(self, "Stream", destination=destination,
                                              encryption=firehose.StreamEncryption.aws_owned_key())

    def add_producers(self, *, settings: Settings, resources: Resources, table: dynamodb.ITable,
                      observer_queue: sqs.IQueue) -> None:
        """Producers may only PutRecordBatch to the stream, write their report items and nudge the observer."""
        self.producer = StreamwatchFunction(self, "Producer", handler="producer", settings=settings,
                                            resources=resources, timeout_s=900, memory_mb=1024).function
        self.stream.grant_put_records(self.producer)
        table.grant(self.producer, *TABLE_ITEM_WRITE)
        observer_queue.grant_send_messages(self.producer)
        # The run starter registers a dataset and fans out to producers; it never writes to Firehose itself.
        starter_resources = replace(resources, producer_function=self.producer.function_name)
        self.starter = StreamwatchFunction(self, "Starter", handler="producer", settings=settings,
                                           resources=starter_resources, timeout_s=60).function
        table.grant(self.starter, *TABLE_ITEM_WRITE)
        self.producer.grant_invoke(self.starter)
