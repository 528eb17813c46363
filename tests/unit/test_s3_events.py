"""Every shape a bucket can deliver object events in, each from AWS's documented samples, mapped through the
dataset rules; whatever is not ours is skipped with a named reason."""

import json

import pytest

from streamwatch.core.rules import RuleSet
from streamwatch.core.s3_events import Skip, parse_message

RULES = RuleSet.parse(None)
BUCKET = "amzn-s3-demo-bucket"


def notification(key: str, bucket: str = BUCKET, event: str = "ObjectCreated:Put") -> dict:
    """S3 User Guide, 'Event message structure' sample (key URL-encoded by S3)."""
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-west-2",
        "eventTime": "1970-01-01T00:00:00.000Z", "eventName": event,
        "userIdentity": {"principalId": "AIDAJDPLRKLG7UEXAMPLE"}, "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810",
                             "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "testConfigRule",
               "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                          "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": key, "size": 1024, "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                          "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko", "sequencer": "0055AED6DCD90281E5"}}}]}


def eventbridge(key: str, bucket: str = BUCKET, detail_type: str = "Object Created") -> dict:
    """S3 User Guide, 'EventBridge event message structure' sample (key NOT URL-encoded)."""
    return {"version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": detail_type,
            "source": "aws.s3", "account": "111122223333", "time": "2021-11-12T00:00:00Z", "region": "ca-central-1",
            "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {"version": "0", "bucket": {"name": bucket},
                       "object": {"key": key, "size": 5, "etag": "b1946ac92492d2347c6235b4d2611184",
                                  "version-id": "IYV3p45BhZA1rpvhOHJQ9oHnE.yxLsYb", "sequencer": "00617F08299329D189"},
                       "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012",
                       "source-ip-address": "1.2.3.4", "reason": "PutObject"}}


def sns(message: dict) -> dict:
    """SNS HTTP/SQS delivery envelope (raw message delivery off): the S3 notification is a string in Message."""
    return {"Type": "Notification", "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:us-west-2:123456789012:MyTopic", "Subject": "Amazon S3 Notification",
            "Message": json.dumps(message), "Timestamp": "2012-05-02T00:54:06.655Z", "SignatureVersion": "1",
            "Signature": "EXAMPLEw6JRN...", "SigningCertURL": "https://sns.us-west-2.amazonaws.com/x.pem",
            "UnsubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe"}


def parse(doc) -> tuple[list, list]:
    return parse_message(json.dumps(doc) if not isinstance(doc, str) else doc, bucket=BUCKET, rules=RULES,
                         error_prefix="errors/")


@pytest.mark.parametrize("shape", ["notification", "eventbridge", "sns", "raw-sns"])
def test_every_delivery_shape_names_the_same_object(shape):
    # Given one object, d1's "my file+1.json", delivered in the parameter's shape (its key encoded but on EventBridge)
    key_encoded, key = "data/dataset%3Dd1/my+file%2B1.json", "data/dataset=d1/my file+1.json"
    doc = {"notification": lambda: notification(key_encoded), "eventbridge": lambda: eventbridge(key),
           "sns": lambda: sns(notification(key_encoded)), "raw-sns": lambda: notification(key_encoded)}[shape]()
    # When the message is parsed
    found, skipped = parse(doc)
    # Then it names that object of d1 with its key decoded, and skips nothing
    assert skipped == [] and [(o.dataset_id, o.key) for o in found] == [("d1", key)]


def test_eventbridge_keys_are_not_decoded_a_plus_stays_a_plus():
    # Given a key with '+' and '%20' in an EventBridge event
    # When it is parsed
    found, _ = parse(eventbridge("data/dataset=d1/a+b%20c.json"))
    # Then the key is taken as it is
    assert found[0].key == "data/dataset=d1/a+b%20c.json"
    # And in an S3 notification the same key is URL-decoded: '+' and '%20' are spaces
    found, _ = parse(notification("data/dataset=d1/a+b%20c.json"))
    assert found[0].key == "data/dataset=d1/a b c.json"


def test_error_output_objects_are_recognized():
    # Given a notification for an object of Firehose's error output
    # When it is parsed
    found, _ = parse(notification("errors/processing-failed/2026/11/24/s-1-x"))
    # Then it is recognized as error output, of no dataset
    assert found[0].error_output and found[0].dataset_id == ""


@pytest.mark.parametrize("doc, reason", [
    ({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2014-10-13T15:57:02.089Z", "Bucket": BUCKET,
      "RequestId": "5582815E1AEA5ADF", "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"},
     "TestEvent"),
    (sns({"Service": "Amazon S3", "Event": "s3:TestEvent"}), "TestEvent"),
    ("{not json", "MalformedMessage"),
    (["a", "list"], "MalformedMessage"),
    ({"hello": "world"}, "ForeignMessage"),
    (eventbridge("data/dataset=d1/x", detail_type="Object Deleted"), "UnknownEvent"),
    (eventbridge("data/dataset=d1/x", bucket="someone-else"), "ForeignBucket"),
])
def test_messages_that_are_not_ours_are_skipped_with_a_reason(doc, reason):
    # Given a message that is not ours (the parameter)
    # When it is parsed
    try:
        found, skipped = parse(doc)
    except Skip as skip:
        found, skipped = [], [skip]
    # Then it yields no object, and one skip with the parameter's reason
    assert found == [] and [s.reason for s in skipped] == [reason]


def test_a_message_mixing_ours_and_foreign_records_keeps_ours_and_explains_the_rest():
    # Given one message with a record of ours among foreign, deleted, keyless, outside, marker and junk ones
    body = {"Records": [
        notification("data/dataset%3Dd1/a")["Records"][0],
        notification("data/dataset=d1/b", bucket="other")["Records"][0],
        notification("data/dataset=d1/c", event="ObjectRemoved:Delete")["Records"][0],
        {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": BUCKET}, "object": {"size": 1}}},
        notification("elsewhere/x")["Records"][0],
        notification("data/dataset=d1/_SUCCESS")["Records"][0],
        "junk"]}
    # When it is parsed
    found, skipped = parse(body)
    # Then it keeps ours, with its size, and names a reason for each of the rest
    assert [(o.dataset_id, o.key, o.size) for o in found] == [("d1", "data/dataset=d1/a", 1024)]
    assert [s.reason for s in skipped] == ["ForeignBucket", "UnknownEvent", "MalformedRecord", "NotData", "NotData",
                                           "ForeignMessage"]
