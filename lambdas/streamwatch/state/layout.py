"""The state table's layout: key and attribute names, the index, the statuses, the size limits. No AWS library:
the construct builds the table from these names, the store reads and writes by them (docs/state-table.md)."""

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
