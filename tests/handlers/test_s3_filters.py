"""The local run's S3 matches notification filters as S3 does, on the URL-encoded key: a filter with a raw special
character (`data/dataset=`) never fires here either, as it never would in AWS (moto alone matches the raw key)."""

from __future__ import annotations

import boto3
import pytest

from streamwatch.core.s3_events import filter_prefix, notification_filters, s3_url_encode
from tests.conftest import object_events


@pytest.mark.parametrize("value, fires", [("data/dataset=", False), ("data/dataset%3D", True), ("data/", True)])
def test_a_filter_fires_only_as_written_for_the_encoded_key(moto_env, value, fires):
    # Given the notifications queue behind a filter written this way
    _, local = moto_env()
    s3 = boto3.client("s3")
    arn = boto3.client("sqs").get_queue_attributes(QueueUrl=local.notification_queue_url,
                                                   AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=local.resources.bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"],
                                 "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": value}]}}}]})
    object_events(local.notification_queue_url)  # S3's test event
    # When an object lands under data/dataset=d1/
    s3.put_object(Bucket=local.resources.bucket, Key="data/dataset=d1/part-0", Body=b"x\n")
    # Then the notification comes only if the filter matches the key as S3 encodes it
    assert len(object_events(local.notification_queue_url)) == (1 if fires else 0)


def test_filters_hold_only_characters_that_read_the_same_encoded():
    # Given a key with characters S3 encodes in notification keys ('=', ' ', parentheses)
    # When it is encoded
    # Then it reads as S3 writes it
    assert s3_url_encode("data/dataset=a b/(1)") == "data/dataset%3Da+b/%281%29"
    # And a filter prefix is cut back to the last '/' before the first such character
    assert filter_prefix("data/dataset=") == "data/" and filter_prefix("logs/") == "logs/"
    assert filter_prefix("my data/x/") == "" and filter_prefix("a/b:c/") == "a/"
    # And the filters for several prefixes are those prefixes cut back, without repeats
    assert notification_filters(["data/dataset=", "errors/", "data/other="]) == ["data/", "errors/"]
    assert notification_filters(["x y/", "errors/"]) == [""]  # the whole bucket, alone (no overlap)
