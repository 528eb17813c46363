"""The observer's chain and outbox: advancing a tick, declaring, claiming an event with a lease, renewing it, and
recording it sent, every write after a claim fenced on its lease."""

from __future__ import annotations

import time

from streamwatch.core.policy import Decision
from streamwatch.state.base import TableAccess
from streamwatch.state.items import _num
from streamwatch.state.layout import (
    DECLARED,
    FAILED,
    OBSERVING,
    READY,
    STALLED,
    TTL_ATTRIBUTE,
)


class Outbox(TableAccess):
    # --- observer --------------------------------------------------------------------------------------
    def advance(self, dataset_id: str, tick: int, decision: Decision, now: float) -> bool:
        """Move the chain from `tick` to `tick + 1`; False if another message already did (stale duplicate)."""
        p = decision.progress
        return self._conditional_update(
            dataset_id, "SET tick = :next, repeated = :r, last_count = :c, read_count = :reads, next_delay = :d, "
            "observed_ts = :now", "tick = :tick AND #status = :obs",
            {":next": tick + 1, ":tick": tick, ":r": p.repeated, ":c": p.last_count, ":reads": p.reads,
             ":d": decision.delay_s, ":now": _num(now), ":obs": OBSERVING})

    def declare(self, dataset_id: str, decision: Decision, now: float, *, lease_until: float,
                tick: int | None = None) -> bool:
        """OBSERVING -> READY/STALLED/FAILED, once, with its event in the outbox. `tick` given for a scheduled
        read, None for a nudge. `lease_until` (wall clock) is how long the declaring invocation has to publish
        before any other message may take over the publishing (it then assumes a crash)."""
        status = {"ready": READY, "stalled": STALLED, "failed": FAILED}[decision.verdict]
        p = decision.progress
        condition = "#status = :obs" + (" AND tick = :tick" if tick is not None else "")
        values = {":v": status, ":now": _num(now), ":obs": OBSERVING, ":reason": decision.reason[:1000],
                  ":fb": decision.fallback, ":lease": _num(lease_until), ":mode": decision.mode or "",
                  ":exp": int(time.time()) + self.ttl_s, ":none": 0}
        # declared_objects: the fewest objects its event can announce (what a takeover may assume went out)
        sets = (f"#status = :v, declared_ts = :now, reason = :reason, fallback = :fb, declared_mode = :mode, "
                f"pending_{DECLARED[status]} = :lease, {TTL_ATTRIBUTE} = :exp, "
                "declared_objects = if_not_exists(objects, :none)")
        if tick is not None:
            values.update({":tick": tick, ":next": tick + 1, ":r": p.repeated, ":c": p.last_count,
                           ":reads": p.reads})
            sets += ", tick = :next, repeated = :r, last_count = :c, read_count = :reads"
        else:
            values[":one"] = 1
            sets += " ADD read_count :one"
        return self._conditional_update(dataset_id, f"SET {sets}", condition, values)

    def claim_overdue(self, dataset_id: str, now: float, deadline_ts: float, *, lease_until: float) -> bool:
        """True for exactly one caller once the deadline passed: it publishes Dataset Overdue."""
        return self._conditional_update(
            dataset_id,
            "SET overdue_ts = :now, pending_overdue = :lease, deadline_ts = if_not_exists(deadline_ts, :dl)",
            "attribute_not_exists(overdue_ts) AND #status = :obs",
            {":now": _num(now), ":lease": _num(lease_until), ":obs": OBSERVING, ":dl": _num(deadline_ts)})

    def claim_amendment(self, dataset_id: str, objects: int, *, lease_until: float) -> bool:
        """True for exactly one caller per new total: that caller publishes the Amended event."""
        return self._conditional_update(
            dataset_id, "SET amend_pending = :o, pending_amended = :lease",
            "(attribute_not_exists(amend_pending) OR amend_pending < :o) AND attribute_not_exists(pending_amended)",
            {":o": objects, ":lease": _num(lease_until)})

    def renew_lease(self, dataset_id: str, kind: str, old: float, lease_until: float) -> bool:
        """Take over the publishing of an event whose publisher's lease ran out (it crashed)."""
        return self._conditional_update(dataset_id, f"SET pending_{kind} = :new", f"pending_{kind} = :old",
                                        {":new": _num(lease_until), ":old": _num(old)})

    def mark_sent(self, dataset_id: str, kind: str, *, lease: float, objects: int | None = None) -> bool:
        """After PutEvents succeeded: the event is out (and, for a declaration or amendment, announces `objects`).
        Fenced: only while `lease` (the value this publisher claimed or renewed) is still the event's; False if
        another publisher took it over meanwhile (it publishes again: `event_id` lets consumers drop that)."""
        values = {":k": {kind}, ":lease": _num(lease)}
        update = f"REMOVE pending_{kind} ADD sent_events :k"
        if objects is not None:
            update += " SET announced_objects = :o"
            values[":o"] = objects
        return self._conditional_update(dataset_id, update, f"pending_{kind} = :lease", values)

