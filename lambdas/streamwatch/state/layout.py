"""The state table's layout: key and attribute names, the index, the statuses, the size limits. No AWS library:
the construct builds the table from these names; the store reads and writes by them (docs/state-table.md lists
every attribute).

One table, one partition per dataset; its items are ITEMS below (docs/state-table.md is rendered from them).

Counting is exact under at-least-once delivery: each transaction puts the ledger items of its objects with
`attribute_not_exists`, ADDs their totals to the dataset once, and replaces the dataset's SEQS item on its
version. A duplicate object cancels the transaction with `ConditionalCheckFailed` at its own position
(`CancellationReasons`); it is dropped and the rest retried. A SEQS version conflict re-reads and retries.
"""

from __future__ import annotations

PK, SK = "pk", "sk"
TTL_ATTRIBUTE = "expires_at"
# the example consumer's idempotency table: Powertools Idempotency's own layout (its defaults), one item per
# event_id it handled, deleted by TTL
IDEMPOTENCY_KEY, IDEMPOTENCY_TTL = "id", "expiration"
LIST_INDEX, LIST_PK, LIST_SK = "by_day", "list_pk", "list_sk"
STATE, SEQS = "STATE", "SEQS"
OBSERVING, READY, STALLED, FAILED = "OBSERVING", "READY", "STALLED", "FAILED"
DECLARED = {READY: "ready", STALLED: "stalled", FAILED: "failed"}  # status -> event kind
EVENT_KINDS = ("ready", "stalled", "failed", "overdue", "amended")
MAX_TRANSACTION_ITEMS = 100
MAX_SEQS_BYTES = 300_000  # a SEQS item stays well inside DynamoDB's 400 KB item limit

# key parts, and the keys built from them (one place: every module of the store uses these)
DATASET, OBJECT, ERROR, PRODUCER, DAY, WAIT = "DATASET#", "OBJECT#", "ERROR#", "PRODUCER#", "DAY#", "WAIT#"
MONITOR, BATCH, LAG, SCHEDULER, SINCE = "MONITOR", "BATCH#", "LAG", "SCHEDULER", "SINCE"


def dataset_pk(dataset_id: str) -> str:
    return f"{DATASET}{dataset_id}"


def dataset_key(dataset_id: str, sk: str = STATE) -> dict:
    return {PK: dataset_pk(dataset_id), SK: sk}


def object_key(dataset_id: str, key: str) -> dict:
    return dataset_key(dataset_id, f"{OBJECT}{key}")


def error_key(dataset_id: str, key: str) -> dict:
    return dataset_key(dataset_id, f"{ERROR}{key}")


def producer_key(dataset_id: str, producer_id: str) -> dict:
    return dataset_key(dataset_id, f"{PRODUCER}{producer_id}")


def wait_key(dataset_id: str, token_id: str) -> dict:
    return dataset_key(dataset_id, f"{WAIT}{token_id}")


def batch_key(batch_id: str) -> dict:
    return {PK: MONITOR, SK: f"{BATCH}{batch_id}"}


LAG_KEY, SINCE_KEY = {PK: MONITOR, SK: LAG}, {PK: SCHEDULER, SK: SINCE}
PARTITION = f"{PK} = :pk"  # a key condition on one partition


# Every kind of item: (pk, sk, what it holds). docs/state-table.md's table is `markdown()` of it (a test checks).
ITEMS = (
    ('`DATASET#<id>`', '`STATE`',
     'counters (`objects`, `bytes`, `line_count`, `distinct_records`, `foreign_lines`, `error_records`), '
     'the rule and window, the observer chain (`status` OBSERVING/READY/STALLED/FAILED, `tick`, streak, '
     '`read_count`, `observed_ts`), producer totals (`producers_expected`, `producers_known`, '
     '`producers_done`, `producers_failed`, `records_sent`, `uncounted_reports`), '
     '`deadline_ts`/`overdue_ts`, the declaration (`declared_objects`: what a takeover may assume went '
     'out), the event outbox (`pending_<kind>` publish leases, '
     '`sent_events`), and the `by_day` index keys (`list_pk` = `DAY#<UTC day it started>`, `list_sk` = '
     '`<start>#<id>`). Expires `dedupe_ttl_days` after the declaration.'),
    ('`DATASET#<id>`', '`OBJECT#<key>`',
     'the dedupe ledger: one item per counted object (size, ETag, lines), TTL'),
    ('`DATASET#<id>`', '`ERROR#<key>`',
     "an object of Firehose's error output counted for this dataset, TTL"),
    ('`DATASET#<id>`', '`PRODUCER#<producer>`',
     "a producer's report: expected (registered), started, done (`records_sent`, `enveloped`), failed "
     '(`error_text`)'),
    ('`DATASET#<id>`', '`SEQS`',
     'every producer\'s persisted sequence numbers as merged intervals (`"0-499,600-1099"`), with a '
     '`version`'),
    ('`DATASET#<id>`', '`WAIT#<token id>`',
     'a Step Functions task waiting for the dataset (runtime/waits.py): its `task_token`, `registered_ts`, the '
     "answerer's lease `answering_until`, and `answered` (the kind sent, or `gone` when Step Functions said the "
     'token is no more). Expires `dedupe_ttl_days` after it registered'),
    ('`MONITOR`', '`LAG`',
     "when the monitor last took a batch and how old its oldest message was (the observer's backlog check)"),
    ('`MONITOR`', '`BATCH#<request id>`',
     'a batch being counted (or whose invocation died), or one that ended with messages not counted '
     '(`failed`): its oldest such message, which the backlog check counts until SQS hands it out again'),
    ('`SCHEDULER`', '`SINCE`',
     'when the scheduler first ran (windows that ended before are not opened)'),
)


def markdown() -> str:
    """The table of ITEMS, as docs/state-table.md shows it."""
    rows = ["| pk | sk | what |", "|---|---|---|"] + [f"| {pk} | {sk} | {what} |" for pk, sk, what in ITEMS]
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown())
