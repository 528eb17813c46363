"""Retrying, in one place: botocore's retry mode for every AWS client, and the backoff between resends of what a
call refused (a batch's failed entries, a cancelled transaction), which botocore does not retry."""

from __future__ import annotations

import random

RETRIES = {"mode": "standard", "max_attempts": 8}  # botocore's retries of a whole call (throttling, 5xx)


def backoff_s(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter (the AWS Architecture Blog's recommendation): seconds to wait
    before retry `attempt + 1`."""
    return random.uniform(0, min(cap, base * 2 ** attempt))
