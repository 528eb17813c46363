"""The observer chain's entry points outside the observer: register a run, start a dataset's chain, nudge it.

The client, the producer Lambda and the scheduler call these; each is idempotent (a duplicate tick 0 or nudge is
dropped by the observer)."""

from __future__ import annotations

from streamwatch.core import clock
from streamwatch.core.ids import check_dataset_id
from streamwatch.core.policy import Policy, complete_now
from streamwatch.core.rules import RuleError
from streamwatch.core.settings import Resources, Settings
from streamwatch.runtime.ticks import Tick, send
from streamwatch.runtime.view import view_of
from streamwatch.state.store import OBSERVING, State, Store


def start_chain(resources: Resources, store: Store, dataset_id: str) -> None:
    """Start the dataset's observer chain unless it runs (a duplicate tick 0 is dropped by the observer)."""
    state = store.get_state(dataset_id)
    if state is not None and state.status == OBSERVING and not state.chain_started:
        send(resources.observer_queue_url, [(Tick(dataset_id, 0, "tick"), 0)])
        store.mark_chain_started(dataset_id)


def policy_of(settings: Settings, rule_name: str) -> Policy:
    """The completion policy of a dataset's rule (the default settings' if the rule was since removed)."""
    try:
        rule = settings.rules.find(rule_name)
    except RuleError:
        rule = None
    return Policy.from_settings(settings, rule)


def may_complete_now(policy: Policy, store: Store, state: State) -> bool:
    """The one "may it be complete (or failed) right now?" check, for the monitor and the producers' reports:
    a failure, or the records rule holding. The producers' reports are read only when the rule could hold."""
    view = view_of(state, clock.get().now(), store=store)
    if view.failure:
        return True
    return view.all_done and view.counts_reported and complete_now(policy, view) is not None


def nudge(settings: Settings, resources: Resources, store: Store, dataset_id: str, *, always: bool = False) -> bool:
    """After a report: make sure the chain runs, and ask the observer to check now if the dataset may have
    become complete (or failed). Returns whether a nudge was sent."""
    state = store.get_state(dataset_id)
    if state is None or state.status != OBSERVING:
        return False
    if not state.chain_started:
        start_chain(resources, store, dataset_id)
        state = store.get_state(dataset_id)
    if not always and not may_complete_now(policy_of(settings, state.rule), store, state):
        return False
    send(resources.observer_queue_url, [(Tick(dataset_id, state.tick, "nudge"), 0)])
    return True


def start_run(settings: Settings, resources: Resources, dataset_id: str, producers: list[str], *,
              store: Store | None = None, deadline_ts: float | None = None) -> None:
    """Register a dataset with its expected producers and start observing it (idempotent)."""
    check_dataset_id(dataset_id)
    store = store or Store.from_settings(settings, resources)
    rule = settings.rules.rule_for(dataset_id)
    _, window_start = rule.parse_id(dataset_id)
    window = (window_start, window_start + rule.window_s) if window_start is not None else None
    store.register_run(dataset_id, producers, clock.get().now(), rule=rule.name, window=window,
                       deadline_ts=deadline_ts)
    start_chain(resources, store, dataset_id)
    nudge(settings, resources, store, dataset_id, always=True)  # registered after objects landed: switch now
