"""The whole pipeline on one machine: an embedded moto server on 127.0.0.1, the stack's resources built from
the same Settings, the real handlers run in-process by pollers that behave like Lambda's SQS event source
(batch size and window, partial batch failures, redelivery after the visibility timeout, DLQ after
maxReceiveCount, DelaySeconds honoured), and a Firehose emulation where moto falls short. A scaled clock
makes a 300 s buffer take seconds; every proportion is kept.

Reusable: tests and users can start a `Sandbox`, run producers (or write objects themselves), and read the
events their own downstream would receive from `sandbox.events`.
"""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import boto3
from botocore.awsrequest import AWSResponse

from streamwatch import aws, clock
from streamwatch import events as events_module
from streamwatch.clock import ScaledClock, WallClock
from streamwatch.handlers import monitor as monitor_handler
from streamwatch.handlers import observer as observer_handler
from streamwatch.local import infra
from streamwatch.local.chaos import FlakyFirehose
from streamwatch.local.firehose import LocalFirehose
from streamwatch.local.server import moto_server
from streamwatch.producing import MAX_BATCH_RECORDS, Producer, ProducerReport, make_records, start_run
from streamwatch.settings import Settings
from streamwatch.store import Store

VISIBILITY_S = 4  # real seconds before a failed message is redelivered
PUBLISH_LEASE_S = 2.0  # real seconds; < VISIBILITY_S, as the stack's lease is < its visibility timeout


@dataclass
class Chaos:
    """What AWS really does, each as a probability."""

    duplicate_notifications: float = 0.0  # an S3 notification delivered again, later (out of order)
    duplicate_observer: float = 0.0  # an observer message delivered again
    put_failures: float = 0.0  # a PutRecordBatch entry refused (FailedPutCount > 0)
    throttle: float = 0.0  # a DynamoDB call throttled
    crash: float = 0.0  # an invocation dies after its work, before SQS learns the result, or mid-batch
    publish_failures: float = 0.0  # PutEvents fails right after a declaration

    @classmethod
    def everything(cls) -> Chaos:
        return cls(duplicate_notifications=0.6, duplicate_observer=0.5, put_failures=0.2, throttle=0.03,
                   crash=0.15, publish_failures=0.3)

    def on(self) -> bool:
        return any(asdict(self).values())


@dataclass
class LambdaContext:
    function_name: str = "local"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:local"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@dataclass
class Stats:
    invocations: int = 0
    failed_records: int = 0
    crashes: int = 0
    duplicates_sent: int = 0


class Poller(threading.Thread):
    """Lambda's SQS event source for one queue -> one handler."""

    def __init__(self, sandbox: Sandbox, name: str, queue_url: str, handler: Callable, batch_size: int,
                 window_s: float, duplicate: float) -> None:
        super().__init__(name=name, daemon=True)
        self.sandbox, self.queue_url, self.handler = sandbox, queue_url, handler
        self.batch_size, self.window_s, self.duplicate = batch_size, window_s, duplicate
        self.stats, self.rng = Stats(), random.Random(zlib.crc32(name.encode()))
        self.busy = False

    def run(self) -> None:
        while not self.sandbox.stopping.is_set():
            batch = self._gather()
            if batch:
                self.busy = True
                try:
                    self._invoke(batch)
                finally:
                    self.busy = False

    def _gather(self) -> list[dict]:
        sqs, batch, deadline = self.sandbox.sqs, [], None
        while len(batch) < self.batch_size and not self.sandbox.stopping.is_set():
            wait = 1 if not batch else 0
            got = sqs.receive_message(QueueUrl=self.queue_url, WaitTimeSeconds=wait,
                                      MaxNumberOfMessages=min(10, self.batch_size - len(batch)),
                                      MessageAttributeNames=["All"],
                                      AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
            batch += got
            if batch and deadline is None:
                deadline = time.monotonic() + self.window_s
            if batch and (not got or time.monotonic() >= deadline):
                break
            if not batch and not got:
                return []
        return batch

    def _invoke(self, batch: list[dict]) -> None:
        sqs = self.sandbox.sqs
        if self.duplicate:
            for m in batch:
                if "chaos-copy" not in m.get("MessageAttributes", {}) and self.rng.random() < self.duplicate:
                    sqs.send_message(QueueUrl=self.queue_url, MessageBody=m["Body"],
                                     DelaySeconds=self.rng.randint(0, 2),
                                     MessageAttributes={"chaos-copy": {"DataType": "String", "StringValue": "1"}})
                    self.stats.duplicates_sent += 1
            self.rng.shuffle(batch)
        event = {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                              "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": "",
                              "eventSource": "aws:sqs", "eventSourceARN": "local", "awsRegion": "us-east-1"}
                             for m in batch]}
        self.stats.invocations += 1
        # One crash roll per invocation (so --crash P kills P of them): half of the monitor's crashes come
        # mid-batch (see _install_chaos), the rest after the work, before SQS hears the result.
        crash = bool(self.sandbox.chaos.crash) and self.rng.random() < self.sandbox.chaos.crash
        self.sandbox.crash_mid_batch = crash and self.name == "monitor" and self.rng.random() < 0.5
        try:
            failed = {f["itemIdentifier"] for f in self.handler(event, LambdaContext())["batchItemFailures"]}
        except Exception as exc:  # the whole invocation failed: every message comes back
            self.sandbox.log(f"{self.name}: invocation failed ({type(exc).__name__}: {exc}); batch will be retried")
            failed = {m["MessageId"] for m in batch}
        self.stats.failed_records += len(failed)
        if crash:
            self.stats.crashes += 1  # died before returning: nothing is deleted, everything is redelivered
            return
        done = [m for m in batch if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start:start + 10])])


class ChaosCrash(RuntimeError):
    """An invocation killed by the chaos switches."""


class _Raw:
    """The raw body botocore reads from an injected response."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **kwargs):
        yield self.data


class Sandbox:
    """`with Sandbox(settings, speed=30, chaos=Chaos()) as sb:` -> sb.run_producers(...), sb.events, ..."""

    def __init__(self, settings: Settings, *, speed: float = 30.0, chaos: Chaos | None = None,
                 log: Callable[[str], None] = print, name: str = "streamwatch") -> None:
        self.settings, self.speed, self.chaos, self.log, self.name = settings, speed, chaos or Chaos(), log, name
        self.stopping = threading.Event()
        self.events: list[dict] = []
        self.throttled = 0
        self.mid_batch_crashes = 0
        self.crash_mid_batch = False  # set by the monitor's poller for the invocation it is about to run
        self.reports: list[ProducerReport] = []
        self._saved_env: dict[str, str | None] = {}
        self._restore: list[Callable[[], None]] = []

    # --- lifecycle -------------------------------------------------------------------------------------
    def __enter__(self) -> Sandbox:
        self._server = moto_server()
        self.endpoint = self._server.__enter__()
        try:
            return self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def _start(self) -> Sandbox:
        self.session = boto3.Session()  # the sandbox's own calls: never throttled by chaos
        self.s3, self.sqs = self.session.client("s3"), self.session.client("sqs")
        self.table = self.session.resource("dynamodb")  # .Table(name): reads for progress and the summary
        self.local = infra.create(self.settings, self.name, visibility=VISIBILITY_S, session=self.session)
        self.resources = self.local.resources
        self._set_env({**self.settings.to_env(), **self.resources.to_env(),
                       "POWERTOOLS_SERVICE_NAME": "streamwatch", "POWERTOOLS_METRICS_NAMESPACE": "streamwatch",
                       "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_TRACE_DISABLED": "true",
                       "POWERTOOLS_LOG_LEVEL": os.environ.get("STREAMWATCH_LOG_LEVEL", "CRITICAL"),
                       "STREAMWATCH_PUBLISH_LEASE_S": str(PUBLISH_LEASE_S)})
        level = os.environ.get("STREAMWATCH_LOG_LEVEL", "CRITICAL")
        for handler in (monitor_handler, observer_handler):  # their loggers were made at import
            handler.logger.setLevel(level)
        clock.install(ScaledClock(self.speed))
        self._restore.append(lambda: clock.install(WallClock()))
        self._install_chaos()
        self.firehose = LocalFirehose(self.s3, self.resources.bucket, self.settings, stream=self.resources.stream)
        self.producer_firehose = (FlakyFirehose(self.firehose, self.chaos.put_failures)
                                  if self.chaos.put_failures else self.firehose)
        window = self.settings.monitor_batch_window_s / self.speed
        self.pollers = [
            Poller(self, "monitor", self.local.notification_queue_url, monitor_handler.handler,
                   min(self.settings.monitor_batch_size, 100), window, self.chaos.duplicate_notifications),
            Poller(self, "observer", self.resources.observer_queue_url, observer_handler.handler, 10, 0.0,
                   self.chaos.duplicate_observer),
        ]
        self._events_thread = threading.Thread(target=self._read_events, name="events", daemon=True)
        for t in [*self.pollers, self._events_thread]:
            t.start()
        self.producers = ThreadPoolExecutor(max_workers=32, thread_name_prefix="producer")
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        if hasattr(self, "producers"):
            self.producers.shutdown(wait=False, cancel_futures=True)
        if hasattr(self, "firehose"):
            self.firehose.close()
        for t in [*getattr(self, "pollers", []), getattr(self, "_events_thread", None)]:
            if t is not None and t.is_alive():
                t.join(timeout=5)
        for undo in reversed(self._restore):
            undo()
        for k, v in self._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self._server.__exit__(*exc)

    def _set_env(self, values: dict[str, str]) -> None:
        for k, v in values.items():
            self._saved_env.setdefault(k, os.environ.get(k))
            os.environ[k] = v

    def _install_chaos(self) -> None:
        rng = random.Random(5)
        if self.chaos.throttle:
            # A real 400 ProvisionedThroughputExceeded on the wire: botocore's retry handler sees it as AWS's.
            body = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                               "message": "chaos: throttled"}).encode()

            def throttle(request, **kwargs):
                if rng.random() < self.chaos.throttle:
                    self.throttled += 1
                    return AWSResponse(request.url, 400, {"x-amzn-RequestId": str(uuid.uuid4()),
                                                          "Content-Type": "application/x-amz-json-1.0"},
                                       _Raw(body))
                return None
            aws.reset()
            boto3.setup_default_session()
            boto3.DEFAULT_SESSION.events.register("before-send.dynamodb", throttle)
            self._restore.append(lambda: (boto3.DEFAULT_SESSION.events.unregister("before-send.dynamodb", throttle),
                                          aws.reset()))
        if self.chaos.crash:
            # A crash mid-batch: the monitor counts half of its batch, then dies (as a timeout would cut it);
            # SQS redelivers the whole batch and the ledger must keep the first half from counting twice.
            original_count = Store.count

            def crashing_count(store, objects, now):
                objects = list(objects)
                if self.crash_mid_batch and len(objects) > 1:
                    self.crash_mid_batch = False
                    original_count(store, objects[: len(objects) // 2], now)
                    self.mid_batch_crashes += 1
                    raise ChaosCrash("chaos: the monitor died half-way through its batch")
                return original_count(store, objects, now)
            Store.count = crashing_count
            self._restore.append(lambda: setattr(Store, "count", original_count))
        if self.chaos.publish_failures:
            original = events_module.publish

            def flaky_publish(*args, **kwargs):
                if rng.random() < self.chaos.publish_failures:
                    raise ConnectionError("chaos: PutEvents lost after the declaration")
                return original(*args, **kwargs)
            events_module.publish = flaky_publish
            self._restore.append(lambda: setattr(events_module, "publish", original))

    def _read_events(self) -> None:
        while not self.stopping.is_set():
            got = self.sqs.receive_message(QueueUrl=self.local.events_queue_url, MaxNumberOfMessages=10,
                                           WaitTimeSeconds=1).get("Messages", [])
            for m in got:
                event = json.loads(m["Body"])
                self.events.append(event)
                self.log(f"EVENT {event['detail-type']}: {event['detail']['dataset_id']} "
                         f"objects={event['detail']['objects']} records={event['detail']['records']} "
                         f"({event['detail']['reason']})")
                self.sqs.delete_message(QueueUrl=self.local.events_queue_url, ReceiptHandle=m["ReceiptHandle"])

    # --- producing ---------------------------------------------------------------------------------------
    def start_dataset(self, dataset_id: str, producers: list[dict]) -> None:
        """Register a run and fan out: each producer {"producer_id", "records", "start_s", "duration_s"}
        (virtual seconds) sends its records evenly over its duration, starting at `start_s`."""
        now = clock.get().now()

        def invoke(request: dict) -> None:
            self.producers.submit(self._produce, request, now)
        start_run(self.settings, self.resources, dataset_id, producers, invoke)

    def _produce(self, request: dict, origin: float) -> None:
        try:
            self.sleep_until(origin + request.get("start_s", 0))
            n, duration = int(request["records"]), float(request.get("duration_s", 0))
            batches = max(1, math.ceil(n / MAX_BATCH_RECORDS))
            started = clock.get().now()
            producer = Producer(self.settings, self.resources, firehose=self.producer_firehose, max_attempts=20)
            report = producer.run(request["dataset_id"], request["producer_id"],
                                  make_records(request["dataset_id"], request["producer_id"], n),
                                  pace=lambda i: self.sleep_until(started + duration * i / batches))
            self.reports.append(report)
        except Exception as exc:  # a producer failing is shown, never hidden
            self.log(f"producer {request.get('producer_id')} failed: {exc!r}")

    def sleep_until(self, virtual_ts: float) -> None:
        while not self.stopping.is_set():
            left = virtual_ts - clock.get().now()
            if left <= 0:
                return
            time.sleep(min(0.2, left / self.speed))

    # --- looking -----------------------------------------------------------------------------------------
    def quiet(self) -> bool:
        """No message in flight anywhere (queues empty, pollers idle, Firehose buffers flushed)."""
        for url in (self.local.notification_queue_url, self.resources.observer_queue_url):
            attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed"])["Attributes"]
            if any(int(v) for v in attrs.values()):
                return False
        return self.firehose.idle() and not any(p.busy for p in self.pollers)

    def dlq_depths(self) -> dict[str, int]:
        out = {}
        for name, url in (("notifications", self.local.notification_dlq_url),
                          ("observer", self.local.observer_dlq_url)):
            out[name] = int(self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                "ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"])
        return out
