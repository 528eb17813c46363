"""The monitor's logic: object events in, exact per-dataset counts out, the observer chain started once.

A batch is handled as a whole so each dataset's counter is written once per batch (not once per event):
parse every message (every shape a bucket can deliver, `s3_events`), read the objects of datasets whose rule
counts records (through the reader's obstore path; one scan per object for the producer envelope, `envelope`),
write all objects with `Store.count`, read the touched datasets back in one BatchGetItem, then start chains,
nudge, or flag amendments. Objects of Firehose's error output are read too: their records are attributed to
their datasets, which then fail. A message is reported failed only if one of its own objects could not be
counted or followed up; redelivery is safe because the ledger drops what was already counted.
"""

from __future__ import annotations

import base64
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from streamwatch.core import clock, envelope, scope
from streamwatch.core.events import parse_iso
from streamwatch.core.ids import valid_dataset_id, valid_field_value
from streamwatch.core.policy import Policy
from streamwatch.core.s3_events import ObjectCreated, Skip, parse_message
from streamwatch.core.settings import Resources, Settings
from streamwatch.reader.objects import stream_object
from streamwatch.runtime.chain import may_complete_now, policy_of
from streamwatch.runtime.ticks import Tick, send
from streamwatch.state.store import OBSERVING, READY, STALLED, CountedObject, ErrorRecords, State, Store

log = logging.getLogger(__name__)
READ_THREADS = 16
MAX_OBJECT_BYTES = envelope.MAX_INFLATED_BYTES  # no Firehose object is larger: not read, skipped


@dataclass(frozen=True)
class Message:
    message_id: str
    body: str
    sent_ts: float | None = None  # SQS SentTimestamp, wall-clock seconds


@dataclass
class MonitorResult:
    failed_message_ids: set[str] = field(default_factory=set)
    skipped: Counter = field(default_factory=Counter)
    counted: int = 0
    duplicates: int = 0
    error_records: int = 0
    unattributed_error_records: int = 0
    dynamodb_requests: int = 0
    started: int = 0  # datasets whose observation this batch started
    unscanned: list[str] = field(default_factory=list)  # keys counted as objects whose lines are unknown


UNSCANNED = object()  # an object counted whose lines are unknown (see Monitor._unscanned_ok)


def event_ts(event_time: str, sent_ts: float | None = None) -> float:
    """When the object landed, on the handlers' clock, as late as it can have been: S3's eventTime (ISO-8601, 'Z')
    has milliseconds, but EventBridge's `time` has whole seconds, so the object landed within the second after it
    (and before the notification was sent, `sent_ts`, wall). Late, not early: a quiet window measured from it is
    never longer than the truth. Unparsable -> now."""
    try:
        landed = parse_iso(event_time)
    except ValueError:
        return clock.get().now()
    if "." not in event_time:
        landed = max(landed, min(landed + 1.0, sent_ts if sent_ts is not None else landed + 1.0))
    return clock.get().from_wall(landed)


class Monitor:
    def __init__(self, settings: Settings, resources: Resources, store: Store | None = None, *,
                 read: Callable[[str, str], Iterable[bytes]] | None = None) -> None:
        self.settings, self.resources = settings, resources
        self.rules = settings.rules
        self.store = store or Store.from_settings(settings, resources)
        self.read = read or stream_object  # the reader's obstore path: retries, resumes a broken body
        self._policies: dict[str, Policy] = {}
        self._sent_of: dict[tuple[str, str], float | None] = {}

    def policy(self, rule_name: str) -> Policy:
        if rule_name not in self._policies:
            self._policies[rule_name] = policy_of(self.settings, rule_name)
        return self._policies[rule_name]

    def reads_records(self, rule_name: str) -> bool:
        return self.policy(rule_name).mode in ("auto", "records")

    def process(self, messages: list[Message], batch_id: str | None = None) -> MonitorResult:
        """Messages -> which message ids failed, and what happened. `batch_id` (the invocation's request id): the
        batch is recorded while it is being counted, and after if some messages were not counted, for the
        observer's backlog check."""
        sent = [m.sent_ts for m in messages if m.sent_ts is not None]
        if not batch_id or not sent:
            return self._process(messages)
        started, oldest = clock.get().now(), clock.get().from_wall(min(sent))
        self._try(self.store.start_batch, batch_id, started, oldest)
        try:
            result = self._process(messages)
        except BaseException:
            self._try(self.store.fail_batch, batch_id, oldest)
            raise
        failed = [m.sent_ts for m in messages if m.message_id in result.failed_message_ids and m.sent_ts]
        if failed:
            self._try(self.store.fail_batch, batch_id, clock.get().from_wall(min(failed)))
        else:
            self._try(self.store.end_batch, batch_id, started, oldest)
        return result

    def _try(self, write, *args) -> None:
        try:
            write(*args)
        except Exception as exc:  # never fail a batch for the backlog's bookkeeping (the check then waits longer)
            log.warning("could not record the monitor batch: %r", exc)

    def _process(self, messages: list[Message]) -> MonitorResult:
        result = MonitorResult()
        self._rejected = result.skipped  # objects skipped for what they hold, by reason (the Skipped* metrics)
        self._unscanned = result.unscanned
        owners: dict[tuple[str, str], set[str]] = {}  # (dataset or "", key) -> message ids announcing it
        trusted = tuple(self.settings.trusted_writers)
        found: list[ObjectCreated] = []
        for message in messages:
            try:
                objects, skipped = parse_message(message.body, bucket=self.resources.bucket, rules=self.rules,
                                                 error_prefix=self.settings.error_prefix)
            except Skip as skip:
                objects, skipped = [], [skip]
            for skip in skipped:
                log.info("skipped notification record: %s", skip, extra={"message_id": message.message_id})
                result.skipped[skip.reason] += 1
            for obj in objects:
                if trusted and not obj.writer.startswith(trusted):  # another writer's: never counted
                    log.info("skipped object %r written by %r", obj.key, obj.writer[:100])
                    result.skipped["UntrustedWriter"] += 1
                    continue
                owners.setdefault((obj.dataset_id, obj.key), set()).add(message.message_id)
                found.append(obj)
        if not found:
            return result
        sent = {m.message_id: m.sent_ts for m in messages}
        self._sent_of = {where: min((sent[m] for m in ids if sent[m]), default=None)  # its first notification
                         for where, ids in owners.items()}
        now = clock.get().now()
        data = [o for o in found if not o.error_output]
        errors = [o for o in found if o.error_output]
        if self.settings.require_registration and data:
            data = self._registered_only(data, result)
        counted_objects, unreadable = self._read(data)
        for obj in unreadable:
            result.failed_message_ids |= owners[(obj.dataset_id, obj.key)]
        outcome = self.store.count(counted_objects, now)
        result.counted, result.duplicates = len(outcome.counted), len(outcome.duplicates)
        for obj in outcome.failed:
            result.failed_message_ids |= owners[(obj.dataset_id, obj.key)]
        touched = {o.dataset_id for o in counted_objects}
        touched |= self._count_errors(errors, owners, now, result)
        states, calls = self.store.get_states(touched)
        result.dynamodb_requests += outcome.requests + calls
        for dataset_id in sorted(touched):
            try:
                result.started += self._follow_up(states.get(dataset_id)) == "tick"
            except Exception:
                log.exception("follow-up failed for dataset %s", dataset_id)
                result.failed_message_ids |= {m for (d, _k), ids in owners.items() if d == dataset_id for m in ids}
        return result

    def _registered_only(self, data: list[ObjectCreated], result: MonitorResult) -> list[ObjectCreated]:
        """With require_registration: objects of datasets nobody started (`run start`, Run.start) are skipped,
        so a writer cannot open datasets (and their Readys) at will. One consistent read per batch."""
        states, calls = self.store.get_states({o.dataset_id for o in data})
        result.dynamodb_requests += calls
        kept = []
        for obj in data:
            state = states.get(obj.dataset_id)
            if state is None or state.registered_ts is None:
                log.info("skipped object of unregistered dataset %r", obj.dataset_id)
                result.skipped["Unregistered"] += 1
            else:
                kept.append(obj)
        return kept

    def _registered_errors(self, per_dataset: dict[str, ErrorRecords], result: MonitorResult
                           ) -> dict[str, ErrorRecords]:
        """With require_registration, error records naming a dataset nobody started open nothing either (else an
        error record would be a way around the registration a data object needs)."""
        states, calls = self.store.get_states(set(per_dataset))
        result.dynamodb_requests += calls
        kept = {}
        for dataset_id, errors in per_dataset.items():
            state = states.get(dataset_id)
            if state is None or state.registered_ts is None:
                log.info("skipped %d error record(s) of unregistered dataset %r", errors.records, dataset_id)
                result.skipped["UnregisteredErrorRecords"] += errors.records
            else:
                kept[dataset_id] = errors
        return kept

    # --- reading objects ----------------------------------------------------------------------------------
    def _read(self, found: list[ObjectCreated]) -> tuple[list[CountedObject], list[ObjectCreated]]:
        """Objects of datasets whose rule counts records are scanned once each (duplicates in the batch too)."""
        def convert(obj: ObjectCreated, scan: envelope.Scan | None) -> CountedObject:
            return CountedObject(dataset_id=obj.dataset_id, key=obj.key, size=obj.size, etag=obj.etag,
                                 event_ts=event_ts(obj.event_time, self._sent_of.get((obj.dataset_id, obj.key))),
                                 rule=obj.rule, window_start=obj.window_start,
                                 window_end=obj.window_end, scan=scan)
        to_read = list({(o.dataset_id, o.key): o for o in found if self.reads_records(o.rule)}.values())
        scans = dict(self._map(lambda o: ((o.dataset_id, o.key), self._scan(o)), to_read))
        unreadable = [o for o in to_read if scans[(o.dataset_id, o.key)] is None]
        by_key = {(o.dataset_id, o.key): o for o in to_read}
        for where, scanned in scans.items():
            if isinstance(scanned, envelope.Rejected):
                if self._unscanned_ok(by_key[where].rule, scanned):
                    log.info("object %r counted without its records: %s", where[1], scanned)
                    self._unscanned.append(where[1])
                    scans[where] = UNSCANNED
                else:
                    log.warning("skipped object %r: %s", where[1], scanned)
                    self._rejected[scanned.reason] += 1
        counted = []
        for o in found:
            scanned = scans.get((o.dataset_id, o.key))
            if not self.reads_records(o.rule) or scanned is UNSCANNED:
                counted.append(convert(o, None))
            elif isinstance(scanned, envelope.Scan):
                counted.append(convert(o, scanned))
        return counted, unreadable

    def _unscanned_ok(self, rule_name: str, rejected: envelope.Rejected) -> bool:
        """A line without end in `auto` mode is an object of a stream without AppendDelimiter (records back to
        back): it still counts as an object, its lines unknown. Only `records` mode needs the lines to prove
        anything, so there it is skipped."""
        return rejected.reason == "LineTooLong" and self.policy(rule_name).mode == "auto"

    def _scan(self, obj: ObjectCreated) -> envelope.Scan | envelope.Rejected | None:
        """The object's records; Rejected for one no Firehose stream writes (skipped, for itself alone); None if
        it could not be read now (its message is retried, then ends in the DLQ)."""
        if obj.size > MAX_OBJECT_BYTES:
            return envelope.Rejected("ObjectTooLarge", f"{obj.size} bytes")
        try:
            return envelope.scan(self.read(obj.bucket, obj.key))
        except envelope.Rejected as rejected:
            return rejected
        except Exception as exc:
            log.warning("could not read %s: %r", obj.key, exc)
            return None

    def _map(self, fn, items: list) -> list:
        if len(items) <= 1:
            return [fn(i) for i in items]
        with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(items))) as pool:
            return list(pool.map(scope.bound(fn), items))

    # --- Firehose's error output ------------------------------------------------------------------------
    def _count_errors(self, errors: list[ObjectCreated], owners: dict, now: float, result: MonitorResult) -> set[str]:
        """Attribute each error object's records to their datasets (by the stream rule's fields, read from the raw
        record Firehose keeps in `rawData`), count them once per object, and return the datasets touched."""
        touched: set[str] = set()
        for obj in {o.key: o for o in errors}.values():
            per_dataset: dict[str, ErrorRecords] = {}
            try:
                if obj.size > MAX_OBJECT_BYTES:
                    raise envelope.Rejected("ObjectTooLarge", f"{obj.size} bytes")
                for number, line in enumerate(envelope.bounded_lines(self.read(obj.bucket, obj.key))):
                    for dataset, reason, window in self._attribute(line, result, first=number == 0):
                        rule = self.rules.stream_rule
                        prior = per_dataset.get(dataset)
                        per_dataset[dataset] = ErrorRecords(
                            dataset_id=dataset, key=obj.key, records=(prior.records if prior else 0) + 1,
                            reason=reason, rule=rule.name, window_start=window,
                            window_end=window + rule.window_s if window else None)
            except envelope.Rejected as rejected:  # not Firehose's error output: it fails no dataset
                log.warning("skipped error object %r: %s", obj.key, rejected)
                self._rejected[rejected.reason] += 1
                continue
            except Exception as exc:
                log.warning("could not read error object %s: %r", obj.key, exc)
                result.failed_message_ids |= owners[("", obj.key)]
                continue
            if self.settings.require_registration and per_dataset:
                per_dataset = self._registered_errors(per_dataset, result)
            result.error_records += sum(e.records for e in per_dataset.values())
            if per_dataset and self.store.count_errors(list(per_dataset.values()), now):
                result.failed_message_ids |= owners[("", obj.key)]
            touched |= set(per_dataset)
        return touched

    def _attribute(self, line: bytes, result: MonitorResult, *, first: bool = False
                   ) -> list[tuple[str, str, float | None]]:
        """One error-output line -> (dataset, reason, window start) per record it holds (a packed record holds
        several). Firehose's layout (attemptsMade, arrivalTimestamp, errorCode, errorMessage, rawData: the
        troubleshooting pages' records; the field's case varies): an object whose first line does not have it is
        not Firehose's and is Rejected whole."""
        try:
            doc = json.loads(line)
            code = doc.get("errorCode") or doc.get("ErrorCode") or doc.get("lastErrorCode")
            if not (isinstance(doc.get("rawData"), str) and isinstance(code, str)
                    and isinstance(doc.get("arrivalTimestamp"), int | float)):
                raise KeyError("rawData, errorCode and arrivalTimestamp")
            raw = base64.b64decode(doc["rawData"], validate=True)
            reason = code[:200]
            arrival = doc["arrivalTimestamp"]
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            if first:
                raise envelope.Rejected("ForeignErrorObject", f"not Firehose's error layout ({type(exc).__name__})"
                                        ) from None
            result.unattributed_error_records += 1
            return []
        rule = self.rules.stream_rule
        window = None
        if rule.window_s and isinstance(arrival, int | float):
            window = float(int(arrival / 1000) // rule.window_s * rule.window_s)
        try:
            records = [doc for doc in map(json.loads, envelope.json_objects(raw) or []) if isinstance(doc, dict)]
        except (ValueError, RecursionError):  # nested past the parser's depth: no writer of ours makes that
            records = []
        out = []
        if not records:  # not JSON at all (why Firehose could not partition it): nothing names its dataset
            result.unattributed_error_records += 1
        for record in records:
            values = {n: record.get(n) for n in rule.value_fields}
            dataset = rule.dataset_id(values, window) if all(valid_field_value(v) for v in values.values()) else ""
            if valid_dataset_id(dataset):
                out.append((dataset, reason, window))
            else:  # a value no key could hold (`#`, a newline, too long): never a dataset of ours
                result.unattributed_error_records += 1
        return out

    # --- after counting -----------------------------------------------------------------------------------
    def _follow_up(self, state: State | None) -> str | None:
        """Start the chain if nobody has, nudge when the dataset may be complete or failed, flag objects counted
        after the declaration. Decided from the state alone, so a redelivered batch (nothing new to count) redoes
        a follow-up that failed the first time; the observer drops what is redundant."""
        if state is None:
            raise RuntimeError("state item missing right after counting")
        kind = None
        if state.status == OBSERVING:
            if not state.chain_started:
                kind = "tick"
            elif self._may_be_complete(state):
                kind = "nudge"
        elif state.status in (READY, STALLED) and state.published and state.objects > state.announced_objects:
            kind = "amend"
        if kind is None:
            return None
        send(self.resources.observer_queue_url, [(Tick(state.dataset_id, state.tick, kind), 0)])
        if kind == "tick":
            self.store.mark_chain_started(state.dataset_id)
        return kind

    def _may_be_complete(self, state: State) -> bool:
        return may_complete_now(self.policy(state.rule), self.store, state)
