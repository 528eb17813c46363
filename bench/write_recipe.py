"""The seed pipeline's upload as its authors wrote it, a contender in bench/writer.py: asyncio, a Semaphore(20),
aioboto3 at its defaults, one put_object per file. Runs in .venv-recipe (bench/requirements-recipe.txt), not
with streamwatch. Prints {elapsed, cpu, objects} for its upload alone (start-up and imports excluded)."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time

import aioboto3


async def upload(url: str, src: str, bucket: str, prefix: str) -> int:
    files = sorted(os.path.join(d, n) for d, _, names in os.walk(src) for n in names)
    semaphore = asyncio.Semaphore(20)
    async with aioboto3.Session().client("s3", endpoint_url=url) as s3:
        async def one(path: str) -> None:
            async with semaphore:
                with open(path, "rb") as fh:
                    body = fh.read()
                await s3.put_object(Bucket=bucket, Key=prefix + os.path.relpath(path, src), Body=body)
        await asyncio.gather(*(one(p) for p in files))
    return len(files)


def main() -> None:
    url, src, bucket, prefix = sys.argv[1:5]
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    n = asyncio.run(upload(url, src, bucket, prefix))
    elapsed, now = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    cpu = (now.ru_utime - before.ru_utime) + (now.ru_stime - before.ru_stime)
    print(json.dumps({"elapsed": elapsed, "cpu": cpu, "objects": n}))


if __name__ == "__main__":
    main()
