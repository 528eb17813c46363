"""A hostile writer of the bucket (a second team, a misconfigured job, a compromised producer), as the trust
audit tried it: each reproduction is here, and each now hurts only the object it wrote."""

from __future__ import annotations

import base64
import gzip
import json

import boto3
import pytest

from streamwatch.core import envelope
from streamwatch.core.envelope import wrap
from streamwatch.core.settings import Settings
from streamwatch.handlers import monitor as monitor_handler
from streamwatch.runtime.monitor import Message, Monitor
from streamwatch.state.store import Store
from tests.conftest import object_events, sqs_event

ERRORS = "errors/processing-failed/2026/12/01/"


def put(bucket: str, key: str, body: bytes) -> None:
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body)


def good_object(bucket: str, dataset: str = "good") -> None:
    put(bucket, f"data/dataset={dataset}/part-0", b"".join(
        wrap({"i": i}, "p0", i, {"dataset_id": dataset}) + b"\n" for i in range(10)))


def count(local, settings) -> tuple:
    """Every notification waiting, in one monitor batch: (result, the handler's response)."""
    bodies = object_events(local.notification_queue_url)
    result = Monitor(settings, local.resources).process([Message(f"m{i}", b) for i, b in enumerate(bodies)])
    return result, bodies


def firehose_error(raw: bytes, code: str = "DynamicPartitioning.MetadataExtractionFailed") -> bytes:
    return json.dumps({"attemptsMade": 1, "arrivalTimestamp": 1764547200000, "errorCode": code,
                       "errorMessage": "x", "attemptEndingTimestamp": 1764547201000,
                       "rawData": base64.b64encode(raw).decode()}).encode()


POISON = {
    # 40,000 non-adjacent sequence numbers: more ranges than the SEQS item holds
    "seq-ranges": lambda: b"".join(wrap({"i": i}, "p0", 2 * i, {"dataset_id": "victim"}) + b"\n"
                                   for i in range(40_000)),
    "no-newline": lambda: b"x" * (envelope.MAX_LINE_BYTES + 10),
    "gzip-bomb": lambda: gzip.compress(b"\n" * (envelope.MAX_INFLATED_BYTES + 1024 * 1024), compresslevel=1),
}


@pytest.fixture
def small_limits(monkeypatch):
    """The same limits, scaled down so the test builds its bombs in milliseconds."""
    monkeypatch.setattr(envelope, "MAX_INFLATED_BYTES", 8 * 1024 * 1024)
    monkeypatch.setattr(envelope, "MAX_LINE_BYTES", 256 * 1024)


@pytest.mark.parametrize("kind", list(POISON))
def test_a_poison_object_is_skipped_for_itself_alone(moto_env, small_limits, kind):
    # Given a poison object under a dataset's prefix, in the same batch as a good object of another dataset
    settings, local = moto_env(Settings(mode="records"))
    bucket = local.resources.bucket
    put(bucket, "data/dataset=victim/part-0", POISON[kind]())
    good_object(bucket)
    # When the monitor counts the batch
    result, bodies = count(local, settings)
    # Then no message fails, the good object is counted, and the poison one is skipped with a reason
    assert result.failed_message_ids == set()
    store = Store(local.resources.table)
    assert store.get_state("good").objects == 1
    if kind == "seq-ranges":  # counted, but the dataset can no longer be proven by records: it falls back
        victim = store.get_state("victim")
        assert victim.objects == 1 and victim.seqs_overflow and store.records_landed(victim) is False
    else:
        assert store.get_state("victim") is None
        assert result.skipped == ({"LineTooLong": 1} if kind == "no-newline" else {"GzipBomb": 1})


def test_in_auto_mode_an_object_without_newlines_still_counts(moto_env, small_limits):
    # Given a stream without AppendDelimiter (records back to back) and a rule in auto mode
    settings, local = moto_env(Settings(mode="auto"))
    bucket = local.resources.bucket
    put(bucket, "data/dataset=nodelim/part-0", b'{"i": 0}' * (envelope.MAX_LINE_BYTES // 8 + 10))
    # When the monitor counts it
    result, _ = count(local, settings)
    # Then it is one object, its lines unknown, and nothing is skipped
    state = Store(local.resources.table).get_state("nodelim")
    assert state.objects == 1 and state.lines is None
    assert result.unscanned == ["data/dataset=nodelim/part-0"] and not result.skipped
    assert result.failed_message_ids == set()


def test_the_scan_of_a_line_without_end_stops_at_the_cap_not_at_the_end_of_the_object():
    # Given a stream of 256 KiB chunks making one line without end, 2.5 GiB if read to the end
    chunks_read = []

    def chunks():
        for i in range(10_000):  # 2.5 GiB if read to the end
            chunks_read.append(i)
            yield b"y" * 256 * 1024
    # When it is scanned
    # Then it is rejected as LineTooLong
    with pytest.raises(envelope.Rejected, match="LineTooLong"):
        envelope.scan(chunks())
    # And no more chunks were read than the line cap takes, plus two
    assert len(chunks_read) <= envelope.MAX_LINE_BYTES // (256 * 1024) + 2


def test_a_gzip_bomb_never_inflates_more_than_a_piece_at_once():
    # Given a gzip bomb of 64 MiB of empty lines, and a scanner that records each piece it splits into lines
    bomb = gzip.compress(b"\n" * (64 * 1024 * 1024))  # empty lines: only the inflate limit applies
    scanner, biggest = envelope.Scanner(), []
    real = scanner._lines_of
    scanner._lines_of = lambda piece: (biggest.append(len(piece)), real(piece))
    # When the scanner is fed the bomb
    scanner.feed(bomb)
    # Then no piece it inflated is bigger than INFLATE_PIECE
    assert max(biggest) <= envelope.INFLATE_PIECE


def test_a_forged_error_object_fails_no_dataset(moto_env):
    # Given objects under errors/ that are not Firehose's error layout (lines naming a victim's dataset)
    settings, local = moto_env(Settings(mode="records"))
    bucket = local.resources.bucket
    good_object(bucket, "victim")
    put(bucket, ERRORS + "forged-1", b'{"dataset_id": "victim"}\n' * 3)
    put(bucket, ERRORS + "forged-2", b"[" * 100_000 + b"\n")  # nested past the parser's depth
    # When the monitor counts them
    result, _ = count(local, settings)
    # Then the victim has its object and no error record, and each forged object is skipped
    victim = Store(local.resources.table).get_state("victim")
    assert victim.error_records == 0 and not victim.failure
    assert result.failed_message_ids == set() and result.skipped["ForeignErrorObject"] == 2


@pytest.mark.parametrize("planted", ["DATASET#", "a#b", "x\nlevel=ERROR forged log line", "[red]x[/red]",
                                     "y" * 300, "\x1b[2J"])
def test_error_records_whose_fields_name_no_valid_dataset_plant_nothing(moto_env, planted):
    # Given Firehose-shaped error records whose rawData names an id no key could hold
    settings, local = moto_env(Settings(mode="records"))
    nested = b'{"dataset_id":' * 50_000 + b"1" + b"}" * 50_000
    put(local.resources.bucket, ERRORS + "s-1", firehose_error(json.dumps({"dataset_id": planted}).encode()) +
        b"\n" + firehose_error(nested) + b"\n")
    # When the monitor counts them
    result, _ = count(local, settings)
    # Then no state item exists for it, and both records are unattributed (the alarm says so)
    assert Store(local.resources.table).get_state(planted) is None
    assert result.unattributed_error_records == 2 and result.failed_message_ids == set()


def test_ids_are_a_full_match_so_a_trailing_newline_is_not_an_id():
    # Given ids that differ from valid ones by a trailing newline, a '#' or a space
    from streamwatch.core.ids import InvalidId, check_dataset_id, valid_dataset_id, valid_producer_id
    # When dataset and producer ids are checked
    # Then only the plain ones are valid
    assert valid_dataset_id("abc") and not valid_dataset_id("abc\n") and not valid_dataset_id("a#b")
    assert valid_producer_id("p1") and not valid_producer_id("p\n") and not valid_producer_id("p 1")
    # And check_dataset_id refuses a trailing newline, naming the id escaped
    with pytest.raises(InvalidId, match="dataset id 'abc\\\\n' is invalid"):
        check_dataset_id("abc\n")


def test_a_key_whose_derived_id_fails_the_definition_is_foreign(moto_env):
    # Given a key whose dataset id has 300 characters, more than an id may have
    settings, local = moto_env(Settings(mode="stability"))
    put(local.resources.bucket, "data/dataset=" + "z" * 300 + "/part-0", b"x\n")
    # When the monitor counts it
    result, _ = count(local, settings)
    # Then it is skipped as InvalidDatasetId, and nothing is counted
    assert result.skipped == {"InvalidDatasetId": 1} and result.counted == 0


def test_with_require_registration_only_started_datasets_are_observed(moto_env, context):
    # Given registration required, a run started for registered, and an object each for it and two fresh datasets
    from streamwatch.runtime.chain import start_run
    settings, local = moto_env(Settings(mode="records", require_registration=True))
    start_run(settings, local.resources, "registered", ["p0"])
    for name in ("registered", "fresh-1", "fresh-2"):
        good_object(local.resources.bucket, name)
    # When the monitor handles their notifications
    response = monitor_handler.handler(sqs_event(object_events(local.notification_queue_url)), context)
    # Then no message fails, and only registered is counted: the fresh ones get no state
    assert response == {"batchItemFailures": []}
    store = Store(local.resources.table)
    assert store.get_state("registered").objects == 1
    assert store.get_state("fresh-1") is None and store.get_state("fresh-2") is None


def test_with_require_registration_error_records_open_no_dataset_either(moto_env):
    # Given Firehose-shaped error records naming a registered dataset and a fresh one
    from streamwatch.runtime.chain import start_run
    settings, local = moto_env(Settings(mode="records", require_registration=True))
    start_run(settings, local.resources, "registered", ["p0"])
    put(local.resources.bucket, ERRORS + "s-1", b"\n".join(
        firehose_error(json.dumps({"dataset_id": d}).encode()) for d in ("registered", "fresh", "fresh")) + b"\n")
    # When the monitor counts them
    result, _ = count(local, settings)
    # Then only the registered dataset gets its error record; the fresh one is never created
    store = Store(local.resources.table)
    assert store.get_state("registered").error_records == 1 and store.get_state("fresh") is None
    assert result.skipped == {"UnregisteredErrorRecords": 2} and result.failed_message_ids == set()


def test_a_producers_error_text_is_scrubbed_before_it_leaves_the_process(moto_env):
    # Given a run, and an error text holding a password, a token and an access key id, and 2,000 more characters
    from streamwatch.client.run import Run
    settings, local = moto_env(Settings(mode="records"))
    run = Run.start("d1", ["p0"], resources=local.resources, settings=settings)
    secret = "postgres://app:hunter2@db.internal/x?token=abc123 " + "AKIAIOSFODNN7EXAMPLE " + "z" * 2000
    # When its producer reports failed with that text
    run.fail("p0", f"ConnectionError: {secret}")
    # Then the stored error holds none of the secrets, in at most 500 characters
    (report,) = Store(local.resources.table).producers("d1")
    assert "hunter2" not in report["error"] and "abc123" not in report["error"] and "AKIA" not in report["error"]
    assert len(report["error"]) <= 500


def test_status_shows_stored_ids_escaped_never_as_markup_or_terminal_control():
    # Given a stored dataset id with a newline, rich markup and a terminal control sequence
    from rich.console import Console

    from streamwatch.cli.status import Row, plain, rich_table
    row = Row(dataset="x\n[red]FAKE  READY[/red]\x1b[2J", status="OBSERVING", objects=1, bytes=1, records=None,
              producers="-", age_s=1.0, last_object_at=None, declared_at=None, overdue=False)
    # When status prints it as plain text
    text = plain([row], now=0)
    # Then no control character and no line break get through
    assert "\x1b" not in text and "\nFAKE" not in text and len(text.splitlines()) == 2
    # And the rich table shows the markup as text, without the control sequence
    console = Console(record=True, width=200, color_system=None)
    console.print(rich_table([row], now=0))
    shown = console.export_text()
    assert "[red]FAKE" in shown and "\x1b[2J" not in shown


def test_with_trusted_writers_only_their_objects_count(moto_env):
    # Given one trusted writer, and objects written by it, by another team and by no known principal
    from tests.conftest import s3_message, s3_record
    settings, local = moto_env(Settings(mode="stability", trusted_writers=("AWS:AROASTREAMROLE:",)))
    bucket = local.resources.bucket

    def written_by(key: str, principal: str) -> str:
        return s3_message({**s3_record(bucket, key), "userIdentity": {"principalId": principal}})
    bodies = [written_by("data/dataset=d1/a", "AWS:AROASTREAMROLE:1764547200000"),
              written_by("data/dataset=d1/b", "AWS:AROAOTHERTEAM:job"), written_by("data/dataset=d2/c", "")]
    # When the monitor processes their notifications
    result = Monitor(settings, local.resources).process([Message(f"m{i}", b) for i, b in enumerate(bodies)])
    # Then the other two are skipped as UntrustedWriter, and only the trusted one is counted
    assert result.skipped == {"UntrustedWriter": 2} and result.failed_message_ids == set()
    assert Store(local.resources.table).get_state("d1").objects == 1
    assert Store(local.resources.table).get_state("d2") is None


@pytest.mark.parametrize("text, secret", [
    ('{"password": "hunter22", "user": "bob"}', "hunter22"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
    ("Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261201, Signature=5d672d79c15b13162d9279b0855cfba6",
     "5d672d79"),
    ("secret_key: s3cr3tvalue", "s3cr3tvalue"),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
    ("401 from https://api.example.com/v1?api_key=abcd1234efgh", "abcd1234efgh"),
    ("token rejected: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig", "eyJzdWIi"),
])
def test_error_text_scrubbing_catches_secrets_in_the_forms_they_take(text, secret):
    # Given an error text holding a secret in one of its forms (the parameter)
    from streamwatch.core.errors import scrub_error
    # When it is scrubbed
    # Then the secret is gone, masked as ***
    assert secret not in scrub_error(text) and "***" in scrub_error(text)


def test_error_text_scrubbing_reads_a_bounded_window_of_a_hostile_text(monkeypatch):
    # Given a text built to make a regex backtrack ("a-" repeated made the old key pattern quadratic: 29 s)
    from streamwatch.core import errors
    seen = []
    real = errors._CONTROL
    monkeypatch.setattr(errors, "_CONTROL", type("Spy", (), {
        "sub": staticmethod(lambda repl, s: (seen.append(len(s)), real.sub(repl, s))[1])})())
    # When it is scrubbed
    out = errors.scrub_error("a-" * 400_000)
    # Then only a bounded window of it is read (4 x MAX_ERROR_TEXT), and the result is MAX_ERROR_TEXT long
    assert seen == [4 * errors.MAX_ERROR_TEXT] and len(out) == errors.MAX_ERROR_TEXT
    # And a plain error text comes out as it went in
    assert errors.scrub_error("plain error: connection refused to db.internal:5432") == (
        "plain error: connection refused to db.internal:5432")
