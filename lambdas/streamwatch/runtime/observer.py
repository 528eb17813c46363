"""The observer's logic: one chain of numbered ticks per dataset, one declaration, events never lost.

- A tick is processed only if its number is the dataset's current `tick`; the update that moves the chain
  on is conditional on it, so duplicated or stale messages (at-least-once SQS, a nudge racing a scheduled
  tick) are dropped and never fork a second chain. The next tick is sent before that update: if we crash in
  between, the redelivered message sends it again, and the duplicate is dropped by the same rule.
- Every event goes through an outbox on the dataset's state item. Claiming it is a conditional update
  (OBSERVING -> READY/STALLED/FAILED; the deadline passing -> Overdue; a new total after the declaration ->
  Amended), which also leaves `pending_<kind>` with a publish lease. The claimer publishes and then records the
  event as sent. Any message that finds a pending event whose lease ran out (its publisher died) takes it over
  and publishes it; one that finds a live lease sends itself a check for when the lease ends and is done, so a
  racing message never publishes a second copy, and never burns its own deliveries (its DLQ is for messages
  that cannot be processed, not for ones that had to wait). (A crash after PutEvents but before the sent flag
  can repeat the event: `event_id` lets consumers drop it.)
- Count-based declarations (stability, producers, window, the records fallback) first ask how far behind the
  monitor is: a notification still waiting in the queue could hold the object that breaks the quiet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from streamwatch.core import clock
from streamwatch.core.limits import PUBLISH_BUDGET_S, PUBLISH_LEASE_S, notification_visibility_s
from streamwatch.core.policy import Decision, Policy, complete_now, decide
from streamwatch.core.rules import RuleError
from streamwatch.core.settings import RESOURCE_ENV_PREFIX, Resources, Settings, SettingsError
from streamwatch.runtime import aws
from streamwatch.runtime import publishing as events
from streamwatch.runtime.ticks import Tick, send
from streamwatch.runtime.view import progress_of, view_of
from streamwatch.state.store import DECLARED, FAILED, OBSERVING, State, Store

log = logging.getLogger(__name__)


class MissingState(RuntimeError):
    """A tick for a dataset with no state item: retried, then kept in the DLQ (never silently dropped)."""


class FutureTick(RuntimeError):
    """A tick ahead of the chain (sent just before its predecessor's update committed): retried later."""


class PublishInFlight(RuntimeError):
    """Another invocation claimed an event moments ago and may still be publishing it: check again later."""

    def __init__(self, message: str, lease_until: float) -> None:
        super().__init__(message)
        self.lease_until = lease_until


class Observer:
    def __init__(self, settings: Settings, resources: Resources, store: Store | None = None, *,
                 lease_s: float = PUBLISH_LEASE_S, remaining_s: Callable[[], float] | None = None) -> None:
        """`remaining_s`: the invocation's time left (Lambda's context), so no PutEvents starts that its
        invocation's end could cut between the event going out and its record."""
        self.settings, self.resources, self.lease_s, self.remaining_s = settings, resources, lease_s, remaining_s
        # a lease with less than this left is not published on (scaled with the lease in the local run)
        self.budget_s = lease_s * PUBLISH_BUDGET_S / PUBLISH_LEASE_S
        self.fenced = 0  # events that went out after another publisher took their lease over (a copy follows)
        self.rules = settings.rules
        self.store = store or Store.from_settings(settings, resources)
        self._policies: dict[str, tuple[Policy, Settings]] = {}

    def policy(self, rule_name: str) -> tuple[Policy, Settings]:
        if rule_name not in self._policies:
            try:
                rule = self.rules.find(rule_name)
            except RuleError:  # the rule was removed since: judge by the defaults
                rule = None
            self._policies[rule_name] = (Policy.from_settings(self.settings, rule),
                                         self.settings.for_rule(rule) if rule else self.settings)
        return self._policies[rule_name]

    def handle(self, msg: Tick) -> str:
        """Process one message; returns what happened (for logs and metrics)."""
        try:
            return self._handle(msg)
        except PublishInFlight as busy:  # come back when the lease ends (another publisher's, or too short a one)
            wait = clock.get().wall_delay(busy.lease_until - clock.get().wall() + 1)
            send(self.resources.observer_queue_url, [(Tick(msg.dataset_id, msg.tick, "nudge"), wait)])
            return "publish-in-flight"

    def _lease(self) -> float:
        """A new lease (wall clock). Its value is the fencing token: every write after the claim is conditional
        on it still being the event's."""
        return clock.get().wall() + self.lease_s

    def _handle(self, msg: Tick) -> str:
        state = self.store.get_state(msg.dataset_id)
        if state is None or state.started_ts is None:
            raise MissingState(f"no state for dataset {msg.dataset_id!r} (tick {msg.tick}, {msg.kind})")
        if state.pending:
            self._publish_pending(state)
            state = self.store.get_state(msg.dataset_id)
        if state.status != OBSERVING:
            return self._after_declaration(state)
        policy, rule_settings = self.policy(state.rule)
        now = clock.get().now()
        view = self._view(state, now, rule_settings)
        outcome = ""
        if view.deadline_at is not None and now >= view.deadline_at and not view.overdue:
            lease = self._lease()
            if self.store.claim_overdue(msg.dataset_id, now, view.deadline_at, lease_until=lease):
                self._publish(events.OVERDUE, self.store.get_state(msg.dataset_id), lease,
                              deadline_at=view.deadline_at)
                outcome = "overdue+"
            view = self._view(self.store.get_state(msg.dataset_id), now, rule_settings)
        if msg.kind != "tick":  # nudge (or an amend racing the declaration): a check, not a chain step
            decision, lease = complete_now(policy, view), self._lease()
            if decision is None or not self.store.declare(msg.dataset_id, decision, clock.get().now(),
                                                          lease_until=lease):
                return outcome + "nudge-ignored"
            return outcome + self._publish_declaration(msg.dataset_id, lease, view.deadline_at)
        if msg.tick < state.tick:
            return outcome + "stale"
        if msg.tick > state.tick:
            raise FutureTick(f"tick {msg.tick} ahead of {state.tick} for {msg.dataset_id}")
        decision = decide(policy, progress_of(state), view)
        if decision.verdict == "ready" and decision.by_count:
            decision = self._confirm_no_backlog(policy, state, view)
        if decision.verdict == "wait":
            # >= 1 s: a successor sent with no delay could arrive before this tick's update commits
            delay = clock.get().delay_seconds(max(1, decision.delay_s))
            send(self.resources.observer_queue_url, [(Tick(msg.dataset_id, msg.tick + 1), delay)])
            advanced = self.store.advance(msg.dataset_id, msg.tick, decision, now)
            return outcome + ("advanced" if advanced else "stale")
        # Stamped now, after every read the decision rests on (`now` above is from before the last of them)
        lease = self._lease()
        if not self.store.declare(msg.dataset_id, decision, clock.get().now(), tick=msg.tick, lease_until=lease):
            return outcome + "stale"
        return outcome + self._publish_declaration(msg.dataset_id, lease, view.deadline_at)

    # --- reading ------------------------------------------------------------------------------------------
    def _view(self, state: State, now: float, rule_settings: Settings, backlog_s: float = 0.0):
        return view_of(state, now, store=self.store, backlog_s=backlog_s, deadline_s=rule_settings.deadline_s)

    def _confirm_no_backlog(self, policy: Policy, state: State, view) -> Decision:
        """Decide again with the monitor's backlog: a count rule may only trust the quiet it can vouch for."""
        backlog = self.backlog_s()
        if backlog <= 0:
            return decide(policy, progress_of(state), view)
        decision = decide(policy, progress_of(state), replace(view, backlog_s=backlog))
        if decision.verdict == "wait":
            log.info("monitor backlog of %.0f s: not declaring %s yet", backlog, state.dataset_id)
        return decision

    def backlog_s(self) -> float:
        """Age of the oldest object event the monitor may not have counted yet, on the handlers' clock.

        SQS exposes `ApproximateAgeOfOldestMessage` only as a CloudWatch metric (minutes late), so it is measured
        from what the monitor records: nothing waiting or in flight -> 0; a batch being counted -> the age of its
        oldest message (a batch whose invocation died counts until SQS makes its messages visible again, one
        visibility timeout; a batch that ended with messages not counted, until they are handed out and counted
        again, bounded by a second one plus the batching window); messages waiting -> at least the age the last
        batch's oldest message would have now (waiting messages were sent after it was received, or are as old;
        a stopped monitor makes this grow). The visibility timeout is the queue's own, read in the same call."""
        url = self.resources.notification_queue_url
        if not url:  # never silently off: a count rule would then trust a quiet it cannot vouch for
            raise SettingsError(f"{RESOURCE_ENV_PREFIX}NOTIFICATION_QUEUE_URL is empty: the backlog check needs the "
                                "notifications queue")
        attrs = aws.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "VisibilityTimeout"])["Attributes"]
        waiting = int(attrs.get("ApproximateNumberOfMessages", 0))
        in_flight = int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0))
        if not waiting and not in_flight:
            return 0.0
        now, to_clock = clock.get().now(), clock.get().wall_duration
        visibility = to_clock(float(attrs.get("VisibilityTimeout") or notification_visibility_s(self.settings)))
        window = to_clock(self.settings.monitor_batch_window_s)
        ages = [now - oldest for oldest in self.store.batches_in_flight(
            started_after=now - visibility, failed_after=now - 2 * visibility - window)]
        if waiting or not ages:
            lag = self.store.get_lag()
            if lag is None:
                return float("inf")  # messages, and a monitor that never finished a batch: nothing is vouched for
            ages.append(now - lag[1])
        return max(0.0, *ages)

    # --- publishing -----------------------------------------------------------------------------------------
    def _after_declaration(self, state: State) -> str:
        """Announce objects counted since the declaration (never after Dataset Failed)."""
        if state.status != FAILED and state.published and state.objects > state.announced_objects:
            lease = self._lease()
            if not self.store.claim_amendment(state.dataset_id, state.objects, lease_until=lease):
                return "done"
            self._publish(events.AMENDED, self.store.get_state(state.dataset_id), lease)
            return "amended"
        return "done"

    def _publish_pending(self, state: State) -> None:
        """Publish events whose publisher's lease ran out; a live lease means another invocation is on it."""
        wall = clock.get().wall()
        for kind, lease in sorted(state.pending.items()):
            if wall < lease:
                raise PublishInFlight(f"{state.dataset_id}: another invocation is publishing {kind}", lease)
            mine = self._lease()
            if not self.store.renew_lease(state.dataset_id, kind, lease, mine):
                raise PublishInFlight(f"{state.dataset_id}: another invocation took over {kind}", mine)
            fresh = self.store.get_state(state.dataset_id)
            # the holder before may have published with fewer objects than there are now (its PutEvents went out,
            # its mark_sent did not): announce only what it surely did, so the rest comes as Dataset Amended
            surely = fresh.declared_objects if kind in ("ready", "stalled") else None
            self._publish(events.TYPE_OF[kind], fresh, mine,
                          announced=None if surely is None else min(surely, fresh.objects))

    def _publish_declaration(self, dataset_id: str, lease: float, deadline_at: float | None = None) -> str:
        state = self.store.get_state(dataset_id)
        kind = DECLARED[state.status]
        self._publish(events.TYPE_OF[kind], state, lease, deadline_at=deadline_at)
        # producers that reported without being registered: counted (the metric says how often it happens)
        return kind + ("+unregistered-producers" if state.unregistered_reports else "")

    def _publish(self, detail_type: str, state: State, lease: float, *, deadline_at: float | None = None,
                 announced: int | None = None) -> None:
        """PutEvents, only with enough of the lease left for it (else the next holder publishes, once this lease
        ends), then the sent flag, fenced on the lease."""
        kind = events.KIND_OF[detail_type]
        policy, _ = self.policy(state.rule)
        body = events.detail(state, bucket=self.resources.bucket, rules=self.rules, policy=policy,
                             detail_type=detail_type, deadline_at=deadline_at)
        if lease - clock.get().wall() < self.budget_s:
            raise PublishInFlight(f"{state.dataset_id}: too little of the {kind} lease left to publish", lease)
        if self.remaining_s is not None and self.remaining_s() < self.budget_s:
            raise PublishInFlight(f"{state.dataset_id}: too little of the invocation left to publish {kind}", lease)
        events.publish(self.resources.event_bus, detail_type, body, until=lease, call_s=self.budget_s)
        if not self.store.mark_sent(state.dataset_id, kind, lease=lease, objects=None if kind == "overdue" else (
                state.objects if announced is None else announced)):
            self.fenced += 1
            log.warning("published %s after its lease was taken over: the next holder publishes it again "
                        "(same event_id)", detail_type, extra={"dataset_id": state.dataset_id})
            return
        log.info("published %s", detail_type, extra={"dataset_id": state.dataset_id, "objects": state.objects})
