#!/usr/bin/env python3
"""A producer of your own, against the local run (no AWS account): start a run, send records from two producers
(one in a thread), and wait for the Dataset Ready a downstream would get.

    .venv/bin/python examples/own_producer.py

Against a deployed stack, the same code takes `stack="Streamwatch"` (or STREAMWATCH_STACK) and no Sandbox.
"""

import threading
import time

from streamwatch.client.run import Run
from streamwatch.core.settings import Settings
from streamwatch.local.sandbox import Sandbox

DATASET = "orders-2026-11-24"


def orders(first: int, count: int):
    for i in range(first, first + count):
        yield {"order_id": i, "amount": round(9.5 + i % 7, 2), "currency": "EUR"}


def main() -> int:
    # A local deployment: moto on 127.0.0.1, the real handlers, Firehose buffering 60 s (1 s at x60)
    with Sandbox(Settings(buffer_interval_s=60, alarms=False), speed=60, log=lambda line: None) as sandbox:
        run = Run.start(DATASET, producers=["web", "batch"], expected_by=1800)  # who will write, and by when

        def batch_job() -> None:  # another process would call Run.attach(DATASET).producer("batch")
            with Run.attach(DATASET).producer("batch") as p:
                p.put_many(orders(100_000, 20_000))

        other = threading.Thread(target=batch_job)
        other.start()
        with run.producer("web") as p:  # a normal exit reports done with records_sent; an exception, failed
            for record in orders(0, 5_000):
                p.put(record)
        other.join()
        print(f"sent {p.report.records_sent} records from web in {p.report.batches} batches "
              f"({p.report.billed_bytes / max(1, p.report.records_sent):.0f} bytes billed per record: packed)")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready = [e for e in sandbox.events if e["detail-type"] == "Dataset Ready"]
            if ready:
                d = ready[0]["detail"]
                print(f"Dataset Ready: {d['dataset_id']}: {d['records']} records in {d['objects']} objects under "
                      f"s3://{d['bucket']}/{d['prefix']}, declared by {d['mode']} at {d['declared_at']}")
                return 0 if d["records"] == 25_000 else 1
            time.sleep(0.2)
        print("no Ready within a minute")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
