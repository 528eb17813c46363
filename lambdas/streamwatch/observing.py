"""The observer's logic: one chain of numbered ticks per dataset, one declaration, events never lost.

- A tick is processed only if its number is the dataset's current `tick`; the update that moves the chain
  on is conditional on it, so duplicated or stale messages (at-least-once SQS, a nudge racing a scheduled
  tick) are dropped and never fork a second chain. The next tick is sent before that update: if we crash in
  between, the redelivered message sends it again, and the duplicate is dropped by the same rule.
- OBSERVING -> READY/STALLED is a conditional update, so it happens once. The event is published after it and
  `published` is set after PutEvents succeeds; any message that finds a declared, unpublished dataset
  publishes it. A crash between the transition and PutEvents therefore re-publishes instead of losing it.
  (A crash after PutEvents but before the flag can repeat the event: `event_id` lets consumers drop it.)
- Objects counted after the declaration -> one Dataset Amended per new total, claimed the same way.
"""

from __future__ import annotations

import logging
import time

from streamwatch import clock, events
from streamwatch.policy import Policy, complete_now, decide
from streamwatch.settings import Resources, Settings
from streamwatch.store import OBSERVING, READY, State, Store
from streamwatch.ticks import Tick, send

log = logging.getLogger(__name__)
OBSERVER_TIMEOUT_S = 30  # the Lambda's timeout: past it, an invocation that declared but did not publish died


class MissingState(RuntimeError):
    """A tick for a dataset with no state item: retried, then kept in the DLQ (never silently dropped)."""


class FutureTick(RuntimeError):
    """A tick ahead of the chain (sent just before its predecessor's update committed): retried later."""


class PublishInFlight(RuntimeError):
    """Another invocation declared or claimed moments ago and may still be publishing: retry later."""


class Observer:
    def __init__(self, settings: Settings, resources: Resources, store: Store | None = None, *,
                 lease_s: float = 2 * OBSERVER_TIMEOUT_S) -> None:
        self.settings, self.resources, self.lease_s = settings, resources, lease_s
        self.policy = Policy.from_settings(settings)
        self.store = store or Store.from_settings(settings, resources)

    def handle(self, msg: Tick) -> str:
        """Process one message; returns what happened (for logs and metrics)."""
        state = self.store.get_state(msg.dataset_id)
        if state is None or state.started_ts is None:
            raise MissingState(f"no state for dataset {msg.dataset_id!r} (tick {msg.tick}, {msg.kind})")
        now = clock.get().now()
        if state.status != OBSERVING:
            return self._after_declaration(state)
        if msg.kind != "tick":  # nudge (or an amend racing the declaration): a check, not a chain step
            decision = complete_now(self.policy, state.view(now))
            if decision is None or not self.store.declare(msg.dataset_id, decision, now,
                                                          lease_until=time.time() + self.lease_s):
                return "nudge-ignored"
            return self._publish_declaration(msg.dataset_id)
        if msg.tick < state.tick:
            return "stale"
        if msg.tick > state.tick:
            raise FutureTick(f"tick {msg.tick} ahead of {state.tick} for {msg.dataset_id}")
        decision = decide(self.policy, state.progress(), state.view(now))
        if decision.verdict == "wait":
            # >= 1 s: a successor sent with no delay could arrive before this tick's update commits
            delay = clock.get().delay_seconds(max(1, decision.delay_s))
            send(self.resources.observer_queue_url, [(Tick(msg.dataset_id, msg.tick + 1), delay)])
            return "advanced" if self.store.advance(msg.dataset_id, msg.tick, decision, now) else "stale"
        if not self.store.declare(msg.dataset_id, decision, now, tick=msg.tick,
                                  lease_until=time.time() + self.lease_s):
            return "stale"
        return self._publish_declaration(msg.dataset_id)

    def _after_declaration(self, state: State) -> str:
        """Finish what a declaration or amendment left unpublished, then announce objects counted since."""
        wall = time.time()
        if not state.published or state.amend_pending > state.announced_objects:
            if wall < state.lease_until:
                raise PublishInFlight(f"{state.dataset_id}: another invocation is publishing")
            if not state.published:
                return self._publish_declaration(state.dataset_id)
            return self._publish_amendment(state.dataset_id)
        if state.objects > state.announced_objects:
            if not self.store.claim_amendment(state.dataset_id, state.objects, lease_until=wall + self.lease_s):
                return "done"
            return self._publish_amendment(state.dataset_id)
        return "done"

    def _publish_declaration(self, dataset_id: str) -> str:
        state = self.store.get_state(dataset_id)
        detail_type = events.READY if state.status == READY else events.STALLED
        self._publish(detail_type, state)
        self.store.mark_published(dataset_id, state.objects)
        return "ready" if state.status == READY else "stalled"

    def _publish_amendment(self, dataset_id: str) -> str:
        state = self.store.get_state(dataset_id)
        self._publish(events.AMENDED, state)
        self.store.mark_amended(dataset_id, state.objects)
        return "amended"

    def _publish(self, detail_type: str, state: State) -> None:
        body = events.detail(state, bucket=self.resources.bucket, data_prefix=self.settings.data_prefix,
                             policy=self.policy, detail_type=detail_type)
        events.publish(self.resources.event_bus, detail_type, body)
        log.info("published %s", detail_type, extra={"dataset_id": state.dataset_id, "objects": state.objects})
