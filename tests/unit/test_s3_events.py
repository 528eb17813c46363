"""The key layout is shared by the stack (Firehose prefix) and the monitor (parsing): both directions agree."""

import json

import pytest

from streamwatch.s3_events import Skip, dataset_of_key, dataset_prefix, firehose_prefix, parse_message


def test_firehose_prefix_and_dataset_prefix_describe_the_same_layout():
    assert firehose_prefix("data/") == "data/dataset=!{partitionKeyFromQuery:dataset_id}/"
    key = dataset_prefix("data/", "run-42") + "stream-1-2026-11-23-10-00-00-abc"
    assert dataset_of_key(key, "data/") == "run-42"


@pytest.mark.parametrize("key", [
    "data/dataset=d1",                      # no object name
    "data/other=d1/x",                      # not the partition segment
    "elsewhere/dataset=d1/x",               # outside the data prefix
    "data/dataset=/x",                      # empty id
    "data/dataset=../x/y",                  # not a valid id
    "data/dataset=d1/_manifest.json",       # consumer's marker files are not data
    "data/dataset=d1/_SUCCESS",
])
def test_keys_outside_the_layout_are_not_data(key):
    assert dataset_of_key(key, "data/") is None


def test_nested_object_names_belong_to_their_dataset():
    assert dataset_of_key("data/dataset=d1/2026/11/23/part", "data/") == "d1"


def test_a_message_mixing_ours_and_foreign_records_keeps_ours_and_explains_the_rest():
    body = json.dumps({"Records": [
        {"eventName": "ObjectCreated:Put", "eventTime": "t", "s3": {"bucket": {"name": "b"},
                                                                  "object": {"key": "data/dataset%3Dd1/a", "size": 3}}},
        {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "other"}, "object": {"key": "data/dataset=d1/b"}}},
        {"eventName": "ObjectRemoved:Delete", "s3": {"bucket": {"name": "b"}, "object": {"key": "data/dataset=d1/c"}}},
        {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"size": 1}}},
        "junk"]})
    found, skipped = parse_message(body, bucket="b", data_prefix="data/")
    assert [(o.dataset_id, o.key, o.size) for o in found] == [("d1", "data/dataset=d1/a", 3)]
    assert [s.reason for s in skipped] == ["ForeignBucket", "UnknownEvent", "MalformedRecord", "ForeignMessage"]
    with pytest.raises(Skip, match="TestEvent"):
        parse_message(json.dumps({"Event": "s3:TestEvent"}), bucket="b", data_prefix="data/")
