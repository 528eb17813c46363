"""The monitor's logic: S3 notifications in, exact per-dataset counts out, the observer chain started once.

A batch is handled as a whole so each dataset's counter is written once per batch (not once per event):
parse every message, count lines where records are counted, write all objects with `Store.count`, read the
touched datasets back in one BatchGetItem, then start chains, nudge, or flag amendments. A message is
reported failed only if one of its own objects could not be counted or followed up; redelivery is safe
because the ledger drops what was already counted.
"""

from __future__ import annotations

import logging
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from streamwatch import aws, clock
from streamwatch.events import parse_iso
from streamwatch.policy import Policy, complete_now
from streamwatch.s3_events import ObjectCreated, Skip, parse_message
from streamwatch.settings import Resources, Settings
from streamwatch.store import OBSERVING, CountedObject, State, Store
from streamwatch.ticks import Tick, send

log = logging.getLogger(__name__)
READ_CHUNK = 1 << 20


@dataclass
class MonitorResult:
    failed_message_ids: set[str] = field(default_factory=set)
    skipped: Counter = field(default_factory=Counter)
    counted: int = 0
    duplicates: int = 0
    dynamodb_requests: int = 0


def event_ts(event_time: str) -> float:
    """S3 eventTime (ISO-8601, 'Z') on the handlers' clock; unparsable -> now."""
    try:
        return clock.get().from_wall(parse_iso(event_time))
    except ValueError:
        return clock.get().now()


def count_lines(bucket: str, key: str) -> int:
    """Newline-delimited records in an object, streamed; gzip is detected by its magic bytes."""
    body = aws.client("s3", max_pool_connections=16).get_object(Bucket=bucket, Key=key)["Body"]
    lines, inflate, first = 0, None, True
    for chunk in iter(lambda: body.read(READ_CHUNK), b""):
        if first:
            first = False
            if chunk[:2] == b"\x1f\x8b":
                inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        lines += (inflate.decompress(chunk) if inflate else chunk).count(b"\n")
    return lines


class Monitor:
    def __init__(self, settings: Settings, resources: Resources, store: Store | None = None) -> None:
        self.settings, self.resources = settings, resources
        self.policy = Policy.from_settings(settings)
        self.store = store or Store.from_settings(settings, resources)

    def process(self, messages: list[tuple[str, str]]) -> MonitorResult:
        """(message id, body) pairs -> which message ids failed, and what happened."""
        result = MonitorResult()
        owners: dict[tuple[str, str], set[str]] = {}  # (dataset, key) -> message ids announcing it
        found: list[ObjectCreated] = []
        for message_id, body in messages:
            try:
                objects, skipped = parse_message(body, bucket=self.resources.bucket,
                                                 data_prefix=self.settings.data_prefix)
            except Skip as skip:
                objects, skipped = [], [skip]
            for skip in skipped:
                log.info("skipped notification record: %s", skip, extra={"message_id": message_id})
                result.skipped[skip.reason] += 1
            for obj in objects:
                owners.setdefault((obj.dataset_id, obj.key), set()).add(message_id)
                found.append(obj)
        if not found:
            return result
        counted_objects, unreadable = self._with_records(found)
        for obj in unreadable:
            result.failed_message_ids |= owners[(obj.dataset_id, obj.key)]
        now = clock.get().now()
        outcome = self.store.count(counted_objects, now)
        result.counted, result.duplicates = len(outcome.counted), len(outcome.duplicates)
        for obj in outcome.failed:
            result.failed_message_ids |= owners[(obj.dataset_id, obj.key)]
        touched = {o.dataset_id for o in counted_objects}
        states, calls = self.store.get_states(touched)
        result.dynamodb_requests = outcome.requests + calls
        for dataset_id in sorted(touched):
            try:
                self._follow_up(states.get(dataset_id))
            except Exception:
                log.exception("follow-up failed for dataset %s", dataset_id)
                result.failed_message_ids |= {m for (d, _k), ids in owners.items() if d == dataset_id for m in ids}
        return result

    def _with_records(self, found: list[ObjectCreated]) -> tuple[list[CountedObject], list[ObjectCreated]]:
        def convert(obj: ObjectCreated, records: int | None) -> CountedObject:
            return CountedObject(dataset_id=obj.dataset_id, key=obj.key, size=obj.size, etag=obj.etag,
                                 event_ts=event_ts(obj.event_time), records=records)
        if not self.settings.count_records:
            return [convert(o, None) for o in found], []
        unique = list({(o.dataset_id, o.key): o for o in found}.values())

        def read(obj: ObjectCreated):
            try:
                return obj, count_lines(obj.bucket, obj.key)
            except Exception as exc:  # logged; the message is retried, then ends in the DLQ
                log.warning("could not read %s: %r", obj.key, exc)
                return obj, None
        with ThreadPoolExecutor(max_workers=min(16, len(unique))) as pool:
            results = list(pool.map(read, unique))
        lines = {(o.dataset_id, o.key): n for o, n in results if n is not None}
        readable = [convert(o, lines[(o.dataset_id, o.key)]) for o in found if (o.dataset_id, o.key) in lines]
        return readable, [o for o, n in results if n is None]

    def _follow_up(self, state: State | None) -> None:
        """Start the chain if nobody has, nudge when records may be complete, flag objects counted after the
        declaration. Decided from the state alone, so a redelivered batch (nothing new to count) redoes a
        follow-up that failed the first time; the observer drops what is redundant."""
        if state is None:
            raise RuntimeError("state item missing right after counting")
        kind = None
        if state.status == OBSERVING:
            if not state.chain_started:
                kind = "tick"
            elif complete_now(self.policy, state.view(clock.get().now())):
                kind = "nudge"
        elif state.published and state.objects > state.announced_objects:
            kind = "amend"
        if kind is None:
            return
        send(self.resources.observer_queue_url, [(Tick(state.dataset_id, state.tick, kind), 0)])
        if kind == "tick":
            self.store.mark_chain_started(state.dataset_id)
