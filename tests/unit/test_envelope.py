"""The producer envelope: written by the client, found again by one scan per object; intervals count each
record once however often it lands."""

import gzip
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamwatch.core import envelope
from streamwatch.core.envelope import RecordError, scan, wrap


def test_wrap_puts_the_envelope_first_then_the_rule_fields_then_the_record():
    # Given a record, a producer's id and sequence number, and the rule's fields
    # When the record is wrapped
    data = wrap({"order_id": 1, "amount": 9.5}, "a", 17, {"dataset_id": "orders-1"})
    # Then the envelope comes first, the rule's fields next, then the record's own
    assert data == b'{"_sw":"a:17","dataset_id":"orders-1","order_id":1,"amount":9.5}'
    assert json.loads(data)["order_id"] == 1
    # And raw bytes keep their own spelling, and a field the record already has is not repeated
    assert wrap(b'{"x": 1}', "a", 0, {}) == b'{"_sw":"a:0","x": 1}'
    assert wrap(b"{}", "a", 0, {"k": "v"}) == b'{"_sw":"a:0","k":"v"}'
    assert wrap({"dataset_id": "orders-1", "x": 1}, "a", 0, {"dataset_id": "orders-1"}).count(b"dataset_id") == 1


@pytest.mark.parametrize("record, message", [
    ({"when": object()}, "not JSON-serializable"),
    ({"x": float("nan")}, "not JSON-serializable"),
    ({"_sw": "mine"}, "reserved"),
    ({"dataset_id": "other"}, "contradicts its dataset"),
    (b"[1, 2]", "one JSON object"),
    (b'{"a": 1}\n{"b": 2}', "one line"),
])
def test_records_that_cannot_be_sent_are_refused_with_a_reason(record, message):
    # Given a record that cannot be sent (the parameter)
    # When it is wrapped for dataset orders-1
    # Then RecordError says why
    with pytest.raises(RecordError, match=message):
        wrap(record, "a", 0, {"dataset_id": "orders-1"})


def objects_of(records: list[bytes]) -> bytes:
    return b"".join(r + b"\n" for r in records)


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_a_scan_finds_every_record_whatever_the_chunking(chunk):
    # Given 300 records of 3 producers and one foreign line, in one object
    records = [wrap({"i": i}, f"p{i % 3}", i // 3, {"d": "x"}) for i in range(300)] + [b'{"foreign": true}']
    data = objects_of(records)
    # When it is scanned in chunks of the parameter's size
    result = scan(data[i:i + chunk] for i in range(0, len(data), chunk))
    # Then every line is seen, the foreign one apart, and each producer's seqs are one interval
    assert result.lines == 301 and result.foreign == 1
    assert result.seqs == {"p0": [(0, 99)], "p1": [(0, 99)], "p2": [(0, 99)]}


def test_gzip_objects_and_a_last_line_without_newline():
    # Given 6 records whose last line has no newline
    data = objects_of([wrap({"i": i}, "p", i, {}) for i in range(5)]) + wrap({"i": 5}, "p", 5, {})
    # When the object is scanned gzipped
    # Then all 6 are found
    assert scan([gzip.compress(data)]).seqs == {"p": [(0, 5)]}
    # And scanned plain, its 6 lines are counted
    assert scan([data]).lines == 6


def test_an_envelope_inside_a_string_or_a_nested_object_is_not_an_envelope():
    # Given lines whose _sw sits inside a string or a nested object
    lines = [b'{"note":"{\\"_sw\\":\\"p:1\\"}"}', b'{"nested":{"_sw":"p:2"}}']
    # When they are scanned
    # Then both are foreign
    assert scan([objects_of(lines)]).foreign == 2


@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 30)), max_size=40))
def test_intervals_merge_to_exactly_the_numbers_seen(pairs):
    # Given any intervals of sequence numbers (hypothesis), and the numbers they hold
    seen = sorted({a + k for a, n in pairs for k in range(n + 1)})
    # When they are merged
    merged = envelope.merge([(a, a + n) for a, n in pairs])
    # Then the merged intervals hold exactly those numbers
    assert [x for a, b in merged for x in range(a, b + 1)] == seen
    # And they survive encoding, equal what from_seqs builds, and cover a count only when seen is 0 to n-1
    assert envelope.decode(envelope.encode(merged)) == merged
    assert envelope.from_seqs(seen) == merged
    assert envelope.covers(merged, len(seen)) == (seen == list(range(len(seen))))
