"""Each function's shape in one place: handler, timeout, memory and layers, and the queue timings that follow from
the timeouts. Pure (no AWS library): the construct builds the functions from it, the runtime reasons with the same
numbers (the backlog check, the publish lease), and the local run loads each handler with the layers it names, so
a function that cannot import in Lambda cannot import there either.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamwatch.core.settings import SQS_MAX_DELAY_S, Settings

__all__ = ["SQS_MAX_DELAY_S", "FUNCTIONS", "TABLE_ACTIONS", "DEPENDENCY_LAYER", "LAYER_PACKAGES", "Function",
           "GLUE_ACTIONS", "IDEMPOTENCY_ACTIONS", "IDEMPOTENCY_FALLBACK", "MAX_RECEIVE_COUNT", "MONITOR_TIMEOUT_S",
           "OBSERVER_TIMEOUT_S", "OBSERVER_VISIBILITY_S", "PUBLISH_BUDGET_S", "PUBLISH_LEASE_S", "STATES_ACTIONS",
           "WAIT_LEASE_S", "notification_visibility_s"]

MAX_RECEIVE_COUNT = 5  # deliveries of a work-queue message before its DLQ
DEPENDENCY_LAYER = "dependencies"  # the construct's layer of third-party wheels (cdk/lambda-requirements.txt)
LAYER_PACKAGES = {DEPENDENCY_LAYER: ("obstore",)}  # the top-level packages each layer of ours provides


@dataclass(frozen=True)
class Function:
    handler: str  # streamwatch.handlers.<handler>.handler
    timeout_s: int
    memory_mb: int = 512
    layers: tuple[str, ...] = ()  # beyond the Powertools managed layer every function has


FUNCTIONS = {
    "Monitor": Function("monitor", timeout_s=60, layers=(DEPENDENCY_LAYER,)),  # reads objects through obstore
    "Observer": Function("observer", timeout_s=30),
    "Producer": Function("producer", timeout_s=900, memory_mb=1024),
    "Starter": Function("producer", timeout_s=60),
    "Scheduler": Function("scheduler", timeout_s=120),
    "Consumer": Function("consumer", timeout_s=900, memory_mb=1769, layers=(DEPENDENCY_LAYER,)),
    "Catalog": Function("catalog", timeout_s=60, memory_mb=256),  # Ready -> a Glue partition (rules with catalog)
    "Waits": Function("waits", timeout_s=30, memory_mb=256),  # Step Functions tasks waiting for a dataset
}
# The state table's IAM actions each function's code calls (a transaction's Put/Update/ConditionCheck count as
# PutItem/UpdateItem/ConditionCheckItem): the construct grants exactly these, and tests/security records every
# call each handler makes and checks it is this set.
TABLE_ACTIONS = {
    "Monitor": ("dynamodb:BatchGetItem", "dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:Query",
                "dynamodb:UpdateItem"),
    "Observer": ("dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"),
    "Producer": ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"),
    "Starter": ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"),
    "Scheduler": ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"),
    "Consumer": (),
    "Catalog": (),
    "Waits": ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"),
}
# The catalog function's Glue actions (the calls its code makes; tests/security records them), on the catalog, the
# database and the table of each rule with a catalog (Glue Developer Guide, "Specifying AWS Glue resource ARNs": a
# table's actions are authorized on all three). GetTable: the storage descriptor each partition copies. No
# GetPartition: an existing partition is BatchCreatePartition's AlreadyExistsException, which counts as done.
GLUE_ACTIONS = ("glue:BatchCreatePartition", "glue:GetTable")
# The waits function's answers, on the state machines granted with `grant_wait` (CDK's grant_task_response)
STATES_ACTIONS = ("states:SendTaskFailure", "states:SendTaskSuccess")
# The example consumer's calls on its own idempotency table (Powertools Idempotency's DynamoDB layer). GetItem is
# its fallback read of a repeat, for when the conditional PutItem returns no old item (DynamoDB returns it)
IDEMPOTENCY_ACTIONS = ("dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
IDEMPOTENCY_FALLBACK = ("dynamodb:GetItem",)
MONITOR_TIMEOUT_S = FUNCTIONS["Monitor"].timeout_s
OBSERVER_TIMEOUT_S = FUNCTIONS["Observer"].timeout_s  # past it, an invocation that declared but did not publish died
OBSERVER_VISIBILITY_S = 6 * OBSERVER_TIMEOUT_S  # its queue's visibility timeout (AWS: >= 6x the function timeout)


# The publish lease: how long an observer invocation that claimed an event has to publish it before another
# message may take it over. It outlives the invocation (Lambda kills it at its timeout), so a live holder's
# writes always come before a takeover; a holder with less than PUBLISH_BUDGET_S left does not start PutEvents.
PUBLISH_LEASE_S = 2 * OBSERVER_TIMEOUT_S
# A waits answerer's lease on a task (state/waits.py): it outlives the invocation, so a live answerer's send and
# mark come before anyone else may send
WAIT_LEASE_S = 2 * FUNCTIONS["Waits"].timeout_s
PUBLISH_BUDGET_S = 20  # the longest one PutEvents takes: the events client's timeouts and retries (aws.py)
assert PUBLISH_LEASE_S > OBSERVER_TIMEOUT_S >= PUBLISH_BUDGET_S


def notification_visibility_s(settings: Settings) -> int:
    """The notifications queue's visibility timeout. AWS: >= 6x the function timeout plus the batching window, or
    batches get re-run mid-flight. The construct sets it; the backlog check knows how long a dead batch hides."""
    return 6 * MONITOR_TIMEOUT_S + settings.monitor_batch_window_s
