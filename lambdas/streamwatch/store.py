"""DynamoDB access: the only module that knows the table layout."""

from __future__ import annotations

PK, SK = "pk", "sk"
TTL_ATTRIBUTE = "expires_at"
