"""What the transfer benchmarks (reader.py, writer.py) share: the two data sets, the loopback endpoint's delay,
the scratch folder and the credentials every contender gets."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

LATENCY, BUCKET, MIN_ROUNDS = 0.020, "bench", 5  # s per request; rounds below MIN_ROUNDS are not published
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
       "AWS_REGION": "us-east-1"}
BIN = Path(sys.executable).parent  # s5cmd and aws come with the dev requirements


@dataclass(frozen=True)
class DataSet:
    name: str
    objects: int
    size: int
    serial_objects: int  # serial boto3 moves a subset: its rate is what matters

    @property
    def prefix(self) -> str:
        return f"{self.name}/"


SMALL, LARGE = DataSet("small", 1000, 64 * 1024, 200), DataSet("large", 16, 64 << 20, 3)
