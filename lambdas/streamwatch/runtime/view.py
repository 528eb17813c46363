"""What the completion policy reads, built from a dataset's state item.

The state room decodes items and knows nothing of the policy; the pure core decides and knows nothing of the
table. This is the one place that translates between them, for the observer and for the monitor's and the
producers' "may it be complete now?" check alike."""

from __future__ import annotations

from dataclasses import replace

from streamwatch.core.policy import Progress, View
from streamwatch.state.store import State, Store


def view_of(state: State, now: float, *, store: Store | None = None, backlog_s: float = 0.0,
            deadline_s: float | None = None) -> View:
    """The dataset as the policy sees it. With `store`, whether every done producer's records landed is read too,
    but only when the records rule could hold (every producer done, every count reported, records read): that
    read costs a query of the producers' reports. `deadline_s`: the rule's default deadline, for datasets no
    run gave one."""
    deadline = state.deadline_ts
    if deadline is None and deadline_s and state.started_ts is not None:
        deadline = state.started_ts + deadline_s
    failure = state.failure
    if failure is None and state.error_records:
        failure = f"{state.error_records} record(s) went to Firehose's error output"
    view = View(now=now, objects=state.objects,
                started_at=state.started_ts if state.started_ts is not None else now,
                last_object_at=state.last_object_ts, records=state.records,
                producers_expected=state.producers_expected, producers_known=state.producers_known,
                producers_done=state.producers_done, counts_reported=state.uncounted_reports == 0,
                records_sent=state.records_sent, records_landed=None, last_done_at=state.last_done_ts,
                failure=failure, window_start=state.window_start, window_end=state.window_end,
                deadline_at=deadline, overdue=state.overdue_ts is not None, backlog_s=backlog_s)
    if store is not None and view.all_done and view.counts_reported and state.lines is not None:
        view = replace(view, records_landed=store.records_landed(state))
    return view


def progress_of(state: State) -> Progress:
    """What the policy remembers between ticks (stability: how often the same count was seen)."""
    return Progress(repeated=state.repeated, last_count=state.last_count, reads=state.reads)
