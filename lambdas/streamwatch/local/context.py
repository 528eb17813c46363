"""The Lambda context object the handlers get, for the local run and the tests (one definition)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field


@dataclass
class LambdaContext:
    function_name: str = "local"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:local"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    timeout_s: float | None = None  # the local run's pollers set it (and kill the invocation past it)
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        if self.timeout_s is None:
            return 30_000
        return max(0, int((self.started + self.timeout_s - time.monotonic()) * 1000))
