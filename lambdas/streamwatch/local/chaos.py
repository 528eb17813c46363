"""What AWS really does, on demand: partial PutRecordBatch failures, throttled DynamoDB calls, crashes."""

from __future__ import annotations

import random
import threading

from botocore.exceptions import ClientError


class FlakyFirehose:
    """Wraps a Firehose client: each entry fails with ServiceUnavailableException at `rate`, as the real
    service reports it (HTTP 200, FailedPutCount > 0, ErrorCode per entry); the rest go through."""

    def __init__(self, client, rate: float, seed: int = 7) -> None:
        self.client, self.rate, self.rng, self.lock = client, rate, random.Random(seed), threading.Lock()
        self.calls = 0

    def put_record_batch(self, DeliveryStreamName: str, Records: list[dict]) -> dict:  # noqa: N803 (boto3 names)
        with self.lock:
            self.calls += 1
            fail = [self.rng.random() < self.rate for _ in Records]
        passed = [r for r, f in zip(Records, fail, strict=True) if not f]
        inner = iter(self.client.put_record_batch(DeliveryStreamName=DeliveryStreamName,
                                                  Records=passed)["RequestResponses"] if passed else [])
        responses = [{"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."} if f else next(inner)
                     for f in fail]
        return {"FailedPutCount": sum(1 for r in responses if "ErrorCode" in r), "RequestResponses": responses}


def throttling_error(operation: str) -> ClientError:
    return ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "throttled"}},
                       operation)


class ThrottleOnce:
    """Makes the next `times` calls of `method` on `target` raise a throttling error, then behaves."""

    def __init__(self, target, method: str, times: int = 1) -> None:
        self.target, self.method, self.left = target, method, times
        self.original = getattr(target, method)

    def __enter__(self):
        def flaky(*args, **kwargs):
            if self.left > 0:
                self.left -= 1
                raise throttling_error(self.method)
            return self.original(*args, **kwargs)
        setattr(self.target, self.method, flaky)
        return self

    def __exit__(self, *exc) -> None:
        setattr(self.target, self.method, self.original)
