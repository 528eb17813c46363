"""Bounded worker threads for the reader and the writer: `threads` workers take jobs from one iterable, in order,
until it is spent. The iterable is read under a lock and only as workers free up, so a generator of jobs holds
at most one job per worker ahead."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from streamwatch.core import scope


def run_jobs(jobs: Iterable[Callable[[], None]], threads: int, name: str) -> None:
    """Each job reports its own outcome; a worker that finds the iterable spent ends."""
    lock, queue = threading.Lock(), iter(jobs)

    def work() -> None:
        while True:
            with lock:
                job = next(queue, None)
            if job is None:
                return
            job()

    workers = [threading.Thread(target=scope.bound(work), name=f"{name}-{i}", daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
