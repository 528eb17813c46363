"""Retrying, in one place: botocore's retry mode for every AWS client (it retries a whole call: throttling, 5xx,
connection errors), and the named backoff policies between resends of what a call accepted but refused in part (a
batch's failed entries, a cancelled transaction, a body that broke mid-read), which botocore does not retry."""

from __future__ import annotations

import random
from dataclasses import dataclass

RETRIES = {"mode": "standard", "max_attempts": 8}  # botocore's retries of a whole call


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter (the AWS Architecture Blog's recommendation)."""

    base_s: float
    cap_s: float

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry `attempt + 1`."""
        return random.uniform(0, min(self.cap_s, self.base_s * 2 ** attempt))


# Inside a Lambda, whose time is bounded: resending PutEvents or SendMessageBatch entries that were refused.
LAMBDA_RESEND = Backoff(base_s=0.1, cap_s=2.0)
# A cancelled DynamoDB transaction (another batch won a condition): the winner is done within milliseconds.
TRANSACTION = Backoff(base_s=0.05, cap_s=2.0)
# A client's process (producer, reader): Firehose and S3 slow-downs last seconds.
CLIENT = Backoff(base_s=0.1, cap_s=5.0)
