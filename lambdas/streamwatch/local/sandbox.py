"""The whole pipeline on one machine: an embedded moto server on 127.0.0.1, the construct's resources built
from the same Settings, the real handlers run in-process by pollers that behave like Lambda's SQS event source
(batch size and window, partial batch failures, redelivery after the visibility timeout, DLQ after
maxReceiveCount, DelaySeconds honoured), and a Firehose emulation where moto falls short. A scaled clock
makes a 300 s buffer take seconds; every proportion is kept.

Reusable (docs/local-run.md): `with Sandbox(settings) as sb:` runs its body in the sandbox's scope (core/scope.py:
its environment, session and clock), so the producer client (`streamwatch.client.run.Run`) works unchanged inside
it and its PutRecordBatch calls reach the Firehose emulation; `sb.resources` holds the names; `sb.events` collects
every event on the bus. Nothing is patched process-wide: chaos goes in through the sandbox's own session (hooks)
and its event source, so two sandboxes share a process.

Why one long module: it is the local Lambda service (the pollers, Lambda's timing, the chaos switches and the
forwarding S3 and EventBridge do), whose parts share one moto server, one clock and one stop; what stands alone
is elsewhere: firehose.py, infra.py, server.py, s3_endpoint.py, chaos.py, demo.py.
"""

from __future__ import annotations

import base64
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
from dataclasses import asdict, dataclass
from pathlib import Path

import boto3
from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError

from streamwatch.client.producer import ProducerReport, sample_records
from streamwatch.client.run import Run
from streamwatch.core import scope
from streamwatch.core.clock import ScaledClock
from streamwatch.core.scope import Scope
from streamwatch.core.settings import RESOURCE_ENV_PREFIX, Settings
from streamwatch.handlers import catalog as catalog_handler
from streamwatch.handlers import monitor as monitor_handler
from streamwatch.handlers import observer as observer_handler
from streamwatch.handlers import scheduler as scheduler_handler
from streamwatch.handlers import waits as waits_handler
from streamwatch.local import infra, server
from streamwatch.local.context import LambdaContext
from streamwatch.local.firehose import LocalFirehose
from streamwatch.local.lambda_imports import check_handlers
from streamwatch.local.stepfunctions import TaskTokens
from streamwatch.runtime import aws

CACHE = Path(os.environ.get("STREAMWATCH_BUILD_CACHE") or Path.home() / ".cache" / "streamwatch")
LOCAL_RUN_FILE = CACHE / "local-run.json"  # where a running local run says it is (status --local)
_invocation = threading.local()  # the deadline (monotonic) of the invocation running on this thread


class InvocationTimedOut(RuntimeError):
    """A call made by an invocation past its timeout: Lambda would have killed it, so nothing it does lands."""


@dataclass(frozen=True)
class Timing:
    """Lambda's timing in the local run, in real seconds, keeping the invariants AWS's numbers keep (limits.py):
    - an invocation past its function's timeout is dead: SQS never hears its result, its calls are refused;
    - the publish lease outlives the observer's timeout, so a live holder's writes come before any takeover;
    - a queue's visibility timeout outlives its function's, so no message is handed out again while its
      invocation runs (in AWS 6x, for Lambda's own retries of a throttled batch; here one poller per queue).
    The timeouts are not the stack's divided by the clock's speed: the handlers' own work does not speed up with
    the clock (docs/local-run.md has what they take here), and an invocation killed for the emulator's slowness
    would be a failure AWS never sees. The visibility and the lease
    are short, so a failed message or a dead publisher is retried in pipeline minutes, as in AWS."""

    timeouts_s: dict
    visibility_s: dict
    lease_s: float

    def __post_init__(self) -> None:
        assert self.lease_s > self.timeouts_s["observer"]
        assert all(self.visibility_s[f] > self.timeouts_s[f] for f in self.timeouts_s)


TIMING = Timing(timeouts_s={"monitor": 3.5, "observer": 3.0, "catalog": 3.0, "waits": 3.0},
                visibility_s={"monitor": 4, "observer": 4, "catalog": 4, "waits": 4}, lease_s=4.0)


def stack_timing(settings: Settings) -> Timing:
    """The stack's own timing (limits.py), for a run whose clock goes at real time (speed 1): every function's
    timeout, its queue's visibility and the publish lease as in AWS. A load the emulator is slow under (thousands
    of datasets in one process) then gets Lambda's time, not the demo's seconds."""
    from streamwatch.core.limits import FUNCTIONS, OBSERVER_VISIBILITY_S, PUBLISH_LEASE_S, notification_visibility_s
    timeouts = {name.lower(): float(FUNCTIONS[name].timeout_s) for name in ("Monitor", "Observer", "Catalog", "Waits")}
    visibility = {name: 6 * t for name, t in timeouts.items()}
    visibility.update(monitor=notification_visibility_s(settings), observer=OBSERVER_VISIBILITY_S)
    return Timing(timeouts_s=timeouts, visibility_s=visibility, lease_s=float(PUBLISH_LEASE_S))


@dataclass
class Chaos:
    """What AWS really does, each as a probability."""

    duplicate_notifications: float = 0.0  # an S3 notification delivered again, later (out of order)
    duplicate_observer: float = 0.0  # an observer message delivered again
    put_failures: float = 0.0  # a PutRecordBatch entry refused (FailedPutCount > 0)
    throttle: float = 0.0  # a DynamoDB call throttled
    crash: float = 0.0  # an invocation dies after its work, before SQS learns the result, or mid-batch (and with
    # any rate, each function's third invocation does: every chaos run has its crashes)
    publish_failures: float = 0.0  # PutEvents fails right after a declaration
    duplicate_records: float = 0.0  # Firehose writes a buffer again as a second object
    crash_after_publish: float = 0.0  # the observer dies right after PutEvents, before it records the event as
    # sent: the one window where an event repeats (same event_id); the soak counts those apart
    resend_prefix: float = 0.0  # a producer is retried and sends a prefix of its records again
    hostile_writer: float = 0.0  # how often (per second) another writer of the bucket drops objects no stream
    # writes: forged error output, error records naming ids no key holds, lines without end under a dataset

    @classmethod
    def everything(cls) -> Chaos:
        """`streamwatch demo --chaos`, the chaos e2e test and bench/soak.py: the same rates."""
        return cls(duplicate_notifications=0.7, duplicate_observer=0.6, put_failures=0.25, throttle=0.03,
                   crash=0.05, publish_failures=0.03, duplicate_records=0.4, resend_prefix=1.0, hostile_writer=2.0,
                   crash_after_publish=0.02)

    def on(self) -> bool:
        return any(asdict(self).values())


@dataclass
class Stats:
    invocations: int = 0
    failed_records: int = 0
    crashes: int = 0
    duplicates_sent: int = 0
    timeouts: int = 0  # invocations that passed their timeout (dead: nothing deleted, later calls refused)
    slowest_s: float = 0.0  # the longest invocation, real seconds (against the poller's timeout)


class Poller(threading.Thread):
    """Lambda's SQS event source for one queue -> one handler."""

    def __init__(self, sandbox: Sandbox, name: str, queue_url: str, module, batch_size: int,
                 window_s: float, duplicate: float, timeout_s: float) -> None:
        """`module`: the handler's module (its `handler`, and its Powertools `metrics`, cleared after each
        invocation as a Lambda's are flushed). `timeout_s`: the function's timeout, real seconds."""
        super().__init__(name=name, daemon=True)
        self.sandbox, self.queue_url, self.handler, self.metrics = sandbox, queue_url, module.handler, module.metrics
        self.batch_size, self.window_s, self.duplicate, self.timeout_s = batch_size, window_s, duplicate, timeout_s
        self.stats, self.rng = Stats(), random.Random(zlib.crc32(name.encode()))
        self.busy = False
        self.deliveries: dict[str, list[str]] = {}  # message id -> what each delivery ended as (the DLQ's traces)

    def run(self) -> None:
        with scope.entered(self.sandbox.scope):
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
                                      AttributeNames=["ApproximateReceiveCount", "SentTimestamp"]).get("Messages", [])
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
        # One crash roll per invocation (so --crash P kills P of them): the invocation dies after its work, before
        # SQS hears the result. Half of the monitor's die half-way, on the wire: right after the first counting
        # transaction lands (the sandbox's hook); SQS hands out the whole batch again, and the ledger must not
        # count those objects twice. The handler always gets the whole batch, as Lambda gives it.
        crash = bool(self.sandbox.chaos.crash) and (self.rng.random() < self.sandbox.chaos.crash
                                                    or self.stats.invocations == 3)
        _invocation.crash_mid_batch = crash and self.name == "monitor" and self.rng.random() < 0.5
        started = time.monotonic()
        _invocation.deadline = started + self.timeout_s
        try:
            failed = {f["itemIdentifier"] for f in self.handler(event, LambdaContext(
                timeout_s=self.timeout_s, started=started))["batchItemFailures"]}
        except Exception as exc:  # the whole invocation failed: every message comes back
            self.sandbox.log(f"{self.name}: invocation failed ({type(exc).__name__}: {exc}); batch will be retried")
            failed = {m["MessageId"] for m in batch}
        finally:  # metrics are disabled locally, so nothing flushes them: clear them (Powertools caps at 100)
            _invocation.deadline = None
            _invocation.crash_mid_batch = False
            self.metrics.clear_metrics()
        elapsed = time.monotonic() - started
        self.stats.slowest_s = max(self.stats.slowest_s, round(elapsed, 3))
        timed_out = elapsed > self.timeout_s
        self.stats.failed_records += len(failed)
        for m in batch:
            self.deliveries.setdefault(m["MessageId"], []).append(
                "timed-out" if timed_out else "crashed" if crash else
                "failed" if m["MessageId"] in failed else "ok")
        if timed_out:  # Lambda killed it at its timeout: SQS never hears the result
            self.stats.timeouts += 1
            self.sandbox.log(f"{self.name}: invocation timed out after {elapsed:.2f} s (timeout "
                             f"{self.timeout_s:.2f} s); its batch comes back after the visibility timeout")
            return
        if crash:
            self.stats.crashes += 1  # died before returning: nothing is deleted, everything is redelivered
            return
        done = [m for m in batch if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start:start + 10])])


class _Hooks:
    """botocore hooks registered on several sessions' event emitters at once."""

    def __init__(self, emitters: list) -> None:
        self.emitters = emitters

    def register(self, name: str, handler) -> None:
        for emitter in self.emitters:
            emitter.register(name, handler)

    def register_first(self, name: str, handler) -> None:
        for emitter in self.emitters:
            emitter.register_first(name, handler)


class ChaosCrash(RuntimeError):
    """An invocation killed by the chaos switches."""


class Sandbox:
    """`with Sandbox(settings, speed=30, chaos=Chaos()) as sb:` -> sb.start_dataset(...), sb.events, ..."""

    def __init__(self, settings: Settings, *, speed: float = 30.0, chaos: Chaos | None = None,
                 log: Callable[[str], None] = print, name: str = "streamwatch", notifications: str = "s3",
                 start: float | None = None, export_env: bool = True, timing: Timing | None = None) -> None:
        """`start`: the pipeline time the run begins at (default: now), e.g. minutes before an hour.
        `export_env`: also point the process's environment at this run (its endpoint, credentials, settings and
        names), for code that reads os.environ itself: an Airflow hook, a subprocess, the user's own boto3. The
        handlers and the client need only the sandbox's scope. One sandbox at a time may export; others in the
        same process pass False. `timing`: Lambda's timing here (default TIMING; stack_timing for a run at real
        time)."""
        if settings.pack_records is None:  # as the construct resolves it: its own stream de-aggregates
            settings = settings.with_(pack_records=True)
        self.settings, self.speed, self.chaos, self.log, self.name = settings, speed, chaos or Chaos(), log, name
        self.notifications, self.start, self.export_env = notifications, start, export_env
        self.timing = timing or TIMING
        self._saved_env: dict[str, str | None] = {}
        self.streams: dict[str, LocalFirehose] = {}
        self.windows_closed: list[str] = []
        self.stopping = threading.Event()
        self.events: list[dict] = []
        self.throttled = 0
        self.mid_batch_crashes = 0
        self.crashed_after_publish: list[str] = []  # event_ids out on the bus whose publisher then died
        self.resent_records = 0
        self.hostile_objects = 0
        self.reports: list[ProducerReport] = []
        self.producing: list = []  # each producer's future: a run is not over while one still sends
        self.producer_errors: list[str] = []
        self.tokens = TaskTokens()  # Step Functions' task tokens, as AWS keeps them (local/stepfunctions.py)
        self.waits_queue_url, self.waits_dlq_url = "", ""  # made by the first start_wait
        self._waits_lock = threading.Lock()
        self.scope: Scope | None = None  # its environment, session and clock (core/scope.py), set on entering
        self._entered = None
        self._restore: list[Callable[[], None]] = []
        self._threads: list[threading.Thread] = []

    # --- lifecycle -------------------------------------------------------------------------------------
    def __enter__(self) -> Sandbox:
        with _powertools_lock:  # one moto server per process: the names (bucket, table, queues) must differ
            if self.name in _running:
                raise RuntimeError(f"a Sandbox named {self.name!r} is already running in this process: give the "
                                   "second one another name (Sandbox(..., name='other'))")
            _running.add(self.name)
        self._restore.append(lambda: _running.discard(self.name))
        try:
            check_handlers()  # each handler imports with only its own layers, as in Lambda (once per process)
            self._server = server.shared_server()
            self.endpoint = self._server.__enter__()
            return self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def _start(self) -> Sandbox:
        self.session = server.Session(self.endpoint)  # the sandbox's own calls: never touched by chaos
        self.lambda_session = server.Session(self.endpoint)  # the handlers' and the client's: chaos hooks on it
        self.s3, self.sqs = self.session.client("s3"), self.session.client("sqs")
        self.table = self.session.resource("dynamodb")  # .Table(name): reads for progress and the summary
        self.local = infra.create(self.settings, self.name, visibility=self.timing.visibility_s["monitor"],
                                  observer_visibility=self.timing.visibility_s["observer"], session=self.session,
                                  notifications=self.notifications)
        self.resources = self.local.resources
        self.exported = {**server.ENV, "AWS_ENDPOINT_URL": self.endpoint, **self.settings.to_env(),
                         **self.resources.to_env(), "STREAMWATCH_QUEUES": json.dumps(self.local.queues),
                         "STREAMWATCH_LEASE_S": str(self.timing.lease_s)}
        _powertools_env(+1)
        self._restore.append(lambda: _powertools_env(-1))
        self.clock = ScaledClock(self.speed, start=self.start)
        self.scope = Scope(environ=self._environ(self.exported), session=self.lambda_session, clock=self.clock)
        self._entered = scope.entered(self.scope)  # the `with` body runs in it (the client works unchanged there)
        self._entered.__enter__()
        if self.export_env:
            self._export()
        level = os.environ.get("STREAMWATCH_LOG_LEVEL", "CRITICAL")
        for handler in (monitor_handler, observer_handler, scheduler_handler, catalog_handler, waits_handler):
            handler.logger.setLevel(level)
        self.firehose = LocalFirehose(self.s3, self.resources.bucket, self.settings, stream=self.resources.stream,
                                      clock=self.clock,
                                      duplicate_records=self.chaos.duplicate_records,
                                      put_failures=self.chaos.put_failures)
        self.streams[self.resources.stream] = self.firehose
        self._install_hooks()
        window = self.settings.monitor_batch_window_s / self.speed
        self.pollers = [
            Poller(self, "monitor", self.local.notification_queue_url, monitor_handler,
                   min(self.settings.monitor_batch_size, 100), window, self.chaos.duplicate_notifications,
                   self.timing.timeouts_s["monitor"]),
            Poller(self, "observer", self.resources.observer_queue_url, observer_handler, 10, 0.0,
                   self.chaos.duplicate_observer, self.timing.timeouts_s["observer"]),
        ]
        if self.local.catalog_queue_url:  # rules with a Glue table: Ready -> its partition
            self.pollers.append(Poller(self, "catalog", self.local.catalog_queue_url, catalog_handler, 10, 0.0,
                                       self.chaos.duplicate_observer, self.timing.timeouts_s["catalog"]))
        self._threads = [*self.pollers, threading.Thread(target=self._read_events, name="events", daemon=True)]
        if self.local.catalog_queue_url:
            self._threads.append(threading.Thread(target=self._watch_partitions, name="partitions", daemon=True))
        if self.local.raw_s3_queue_url:
            self._threads.append(threading.Thread(target=self._forward_to_eventbridge, name="s3-to-eventbridge",
                                                  daemon=True))
        if any(r.window_s and self.settings.for_rule(r).emit_empty for r in self.settings.rules.rules):
            self._threads.append(threading.Thread(target=scope.bound(self._schedule), name="schedules", daemon=True))
        if self.chaos.hostile_writer:
            self._threads.append(threading.Thread(target=self._hostile_writer, name="hostile", daemon=True))
        for t in self._threads:
            t.start()
        self.producers = ThreadPoolExecutor(max_workers=32, thread_name_prefix="producer")
        self._announce()
        return self

    def _announce(self) -> None:
        """Where this local run is, for `streamwatch status --local` / `dlq --local` in another terminal."""
        announced = json.dumps({"pid": os.getpid(), "name": self.name, "env": self.exported})

        def withdraw() -> None:  # only our own: another sandbox of this process may have announced itself since
            try:
                if LOCAL_RUN_FILE.read_text() == announced:
                    LOCAL_RUN_FILE.unlink()
            except OSError:
                pass
        try:
            LOCAL_RUN_FILE.parent.mkdir(parents=True, exist_ok=True)
            LOCAL_RUN_FILE.write_text(announced)
            self._restore.append(withdraw)
        except OSError:  # a read-only home: the run works, only --local cannot find it
            pass

    def add_stream(self, rule_name: str) -> LocalFirehose:
        """Another writer's Firehose stream (the user's own), writing another rule's layout into the bucket."""
        rule = self.settings.rules.find(rule_name)
        stream = LocalFirehose(self.s3, self.resources.bucket, self.settings, stream=f"{self.name}-{rule.name}",
                               clock=self.clock,
                               rule=rule, deaggregate=False)
        self.streams[stream.stream] = stream
        return stream

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        if hasattr(self, "producers"):
            self.producers.shutdown(wait=False, cancel_futures=True)
        for stream in self.streams.values():
            stream.close()
        for t in self._threads:
            if t.is_alive():
                t.join(timeout=5)
        for undo in reversed(self._restore):
            undo()
        if self._entered is not None:
            self._entered.__exit__(None, None, None)
            self._entered = None
        aws.reset()  # its clients (live sandboxes make theirs again, from their own sessions)
        if hasattr(self, "_server"):
            self._server.__exit__(*exc)

    def _export(self) -> None:
        with _powertools_lock:
            if _exported["by"] is not None:
                raise RuntimeError(f"the Sandbox {_exported['by']!r} already points this process's environment at "
                                   "itself: pass export_env=False to a second Sandbox in the same process")
            _exported["by"] = self.name
        self._saved_env = {k: os.environ.get(k) for k in set(self.scope.environ) | set(os.environ)
                           if os.environ.get(k) != self.scope.environ.get(k)}

        def unexport() -> None:
            for k, v in self._saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            _exported["by"] = None
        self._restore.append(unexport)
        for k in self._saved_env:
            if k in self.scope.environ:
                os.environ[k] = self.scope.environ[k]
            else:
                os.environ.pop(k, None)

    @staticmethod
    def _environ(values: dict[str, str]) -> dict[str, str]:
        """The process's environment with these variables, and no other setting's, resource's or stack's: the
        environment carries only what differs from the defaults, so one left over in the caller's would leak in."""
        foreign = set(Settings.env_names()) | {"STREAMWATCH_STACK", "AWS_PROFILE"}
        kept = {k: v for k, v in os.environ.items() if k not in foreign and not k.startswith(RESOURCE_ENV_PREFIX)}
        return {**kept, **values}

    def _install_hooks(self) -> None:
        """On the sandbox's Lambda session (every client the handlers and the client make in its scope): PutRecordBatch
        reaches the Firehose emulation and task answers the task-token emulation (through botocore's own request
        pipeline); a call past its invocation's timeout is refused; chaos throttles DynamoDB on the wire, loses
        PutEvents, or kills the observer right after it. A sandbox that exports its environment gives boto3's
        default session the same hooks, for threads of the user's that are not in its scope (their clients talk to
        its server through the environment, and their PutRecordBatch must reach its Firehose too)."""
        rng = random.Random(5)
        emitters = [self.lambda_session.events]  # registered before any client is made from one (clients copy them)
        if self.export_env:
            saved = boto3.DEFAULT_SESSION
            boto3.setup_default_session()
            emitters.append(boto3.DEFAULT_SESSION.events)
            aws.reset()

            def restore() -> None:
                boto3.DEFAULT_SESSION = saved
                aws.reset()
            self._restore.append(restore)
        events = _Hooks(emitters)

        def firehose(params, **kwargs):
            body = json.loads(params["body"])
            records = [{"Data": base64.b64decode(r["Data"])} for r in body["Records"]]
            parsed = self.streams.get(body["DeliveryStreamName"], self.firehose).put_record_batch(
                body["DeliveryStreamName"], records)
            return AWSResponse(params.get("url", "local"), 200, {}, server.RawBody(b"")), parsed
        events.register("before-call.firehose.PutRecordBatch", firehose)
        self.tokens.install(events)  # moto accepts any answer to any token; Step Functions does not

        def dead_after_timeout(model, **kwargs):  # Lambda killed the invocation: nothing it calls happens
            deadline = getattr(_invocation, "deadline", None)
            if deadline is not None and time.monotonic() > deadline:
                raise InvocationTimedOut(f"{model.name} after the invocation's timeout")
        events.register_first("before-call", dead_after_timeout)
        if self.chaos.throttle:
            # A real 400 ProvisionedThroughputExceeded on the wire: botocore's retry handler sees it as AWS's.
            body = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                               "message": "chaos: throttled"}).encode()

            def throttle(request, **kwargs):
                if rng.random() < self.chaos.throttle:
                    self.throttled += 1
                    return AWSResponse(request.url, 400, {"x-amzn-RequestId": str(uuid.uuid4()),
                                                          "Content-Type": "application/x-amz-json-1.0"},
                                       server.RawBody(body))
                return None
            events.register("before-send.dynamodb", throttle)
        if self.chaos.crash:
            def died_half_way(http_response, **kwargs):  # the monitor's first counting transaction landed; it died
                if getattr(_invocation, "crash_mid_batch", False) and http_response.status_code < 300:
                    _invocation.crash_mid_batch = False
                    self.mid_batch_crashes += 1
                    raise ChaosCrash("chaos: the monitor died right after its first counting transaction")
            events.register("after-call.dynamodb.TransactWriteItems", died_half_way)
        if self.chaos.publish_failures or self.chaos.crash_after_publish:
            def lost(params, context, **kwargs):  # PutEvents that never reached the bus (botocore gave up)
                entry = json.loads(params["body"])["Entries"][0]
                context["chaos_event_id"] = json.loads(entry["Detail"]).get("event_id")
                if rng.random() < self.chaos.publish_failures:
                    raise EndpointConnectionError(endpoint_url=f"{self.endpoint} (chaos: PutEvents lost)")

            def crashed(parsed, context, **kwargs):  # out on the bus, but the observer dies before recording it
                if not parsed.get("FailedEntryCount") and rng.random() < self.chaos.crash_after_publish:
                    self.crashed_after_publish.append(context.get("chaos_event_id"))
                    raise ChaosCrash("chaos: the observer died right after PutEvents")
            events.register("before-call.eventbridge.PutEvents", lost)
            events.register("after-call.eventbridge.PutEvents", crashed)

    def _hostile_writer(self) -> None:
        """Another writer of the bucket (docs/security.md): what it drops must hurt nothing. In AWS the bucket
        policy keeps it out of the watched prefixes; moto enforces no bucket policy, so here the monitor's own
        checks are what stands: error objects not in Firehose's layout, error records naming ids no key holds,
        and (where records are required, mode `records`) objects whose line never ends. In `auto` mode such an
        object is one of a stream without AppendDelimiter and counts as an object: only the bucket policy keeps
        a hostile one out."""
        from streamwatch.core.envelope import MAX_LINE_BYTES
        rng, n, poisoned = random.Random(11), 0, set()
        errors = self.settings.error_prefix or "errors/"
        rule = self.settings.rules.stream_rule
        reads = self.settings.for_rule(rule).mode == "records"
        forged = json.dumps({"attemptsMade": 1, "arrivalTimestamp": 1764547200000, "errorCode": "Forged",
                             "rawData": base64.b64encode(b'{"dataset_id": "DATASET#x\\nfake"}').decode()})
        while not self.stopping.wait(1 / self.chaos.hostile_writer):
            n += 1
            try:
                choice = rng.choice(("foreign", "bad-id", "poison"))
                if choice == "foreign":
                    self.s3.put_object(Bucket=self.resources.bucket, Key=f"{errors}hostile/foreign-{n}",
                                       Body=b'{"dataset_id": "victim"}\n')
                elif choice == "bad-id":
                    self.s3.put_object(Bucket=self.resources.bucket, Key=f"{errors}hostile/bad-id-{n}",
                                       Body=forged.encode() + b"\n")
                elif reads:
                    listed = self.s3.list_objects_v2(Bucket=self.resources.bucket, Prefix=rule.literal_prefix)
                    folders = {c["Key"].rsplit("/", 1)[0] for c in listed.get("Contents", [])} - poisoned
                    for folder in sorted(folders)[:1]:
                        poisoned.add(folder)
                        self.s3.put_object(Bucket=self.resources.bucket, Key=f"{folder}/zz-hostile-{n}",
                                           Body=b"x" * (MAX_LINE_BYTES + 1))
                self.hostile_objects += 1
            except Exception as exc:  # the run goes on; the summary says what it wrote
                self.log(f"hostile writer: {exc!r}")

    def partitions(self) -> dict[str, list[dict]]:
        """Each catalog table ("database.table") -> its partitions (Values, Location), as Glue holds them."""
        glue, out = self.session.client("glue"), {}
        for rule in self.settings.rules.rules:
            if rule.catalog is None:
                continue
            name = f"{rule.catalog.database}.{rule.catalog.table}"
            try:
                pages = glue.get_paginator("get_partitions").paginate(DatabaseName=rule.catalog.database,
                                                                      TableName=rule.catalog.table)
                out[name] = [{"Values": p["Values"], "Location": p["StorageDescriptor"]["Location"]}
                             for page in pages for p in page["Partitions"]]
            except glue.exceptions.EntityNotFoundException:
                out[name] = []
        return out

    def _watch_partitions(self) -> None:
        """Shows each partition as the catalog function registers it (the demo's windows scenario)."""
        seen: set = set()
        while not self.stopping.wait(0.5):
            try:
                for table, partitions in self.partitions().items():
                    for p in partitions:
                        if (table, tuple(p["Values"])) not in seen:
                            seen.add((table, tuple(p["Values"])))
                            self.log(f"PARTITION {table} ({', '.join(p['Values'])}) -> {p['Location']}")
            except Exception as exc:  # shown; the run goes on
                self.log(f"partitions: {exc!r}")

    def _read_events(self) -> None:
        while not self.stopping.is_set():
            got = self.sqs.receive_message(QueueUrl=self.local.events_queue_url, MaxNumberOfMessages=10,
                                           WaitTimeSeconds=1).get("Messages", [])
            for m in got:
                event = json.loads(m["Body"])
                self.events.append(event)
                d = event["detail"]
                self.log(f"EVENT {event['detail-type']}: {d['dataset_id']} objects={d['objects']} "
                         f"records={d['records']} ({d['reason']})")
                self.sqs.delete_message(QueueUrl=self.local.events_queue_url, ReceiptHandle=m["ReceiptHandle"])

    def _forward_to_eventbridge(self) -> None:
        """EventBridge mode: S3's notifications become the `Object Created` events S3 puts on the default bus."""
        ev = self.session.client("events")
        while not self.stopping.is_set():
            got = self.sqs.receive_message(QueueUrl=self.local.raw_s3_queue_url, MaxNumberOfMessages=10,
                                           WaitTimeSeconds=1).get("Messages", [])
            for m in got:
                doc = json.loads(m["Body"])
                entries = [{"Source": "aws.s3", "DetailType": "Object Created",
                            "Detail": json.dumps(infra.to_eventbridge(r)["detail"]),
                            "Resources": [f"arn:aws:s3:::{r['s3']['bucket']['name']}"], "EventBusName": "default",
                            "Time": r["eventTime"]} for r in doc.get("Records", [])]
                if entries:
                    ev.put_events(Entries=entries)
                self.sqs.delete_message(QueueUrl=self.local.raw_s3_queue_url, ReceiptHandle=m["ReceiptHandle"])

    def _schedule(self) -> None:
        """The construct's EventBridge schedules: at every window end (pipeline time), the scheduler Lambda's
        real handler opens the windows that may be empty (twice when observer messages are duplicated by chaos:
        EventBridge delivers at least once)."""
        lengths = sorted({r.window_s for r in self.settings.rules.rules if r.window_s})
        last = self.clock.now()
        scheduler_handler.handler({"action": "close_windows"}, LambdaContext())  # the first run: watching from now
        while not self.stopping.wait(0.05):
            now = self.clock.now()
            if any(int(now // w) != int(last // w) for w in lengths):
                for _ in range(2 if self.chaos.duplicate_observer else 1):
                    try:
                        opened = scheduler_handler.handler({"action": "close_windows"}, LambdaContext())["opened"]
                        self.windows_closed += opened
                    except Exception as exc:  # a failed schedule is shown; EventBridge would retry it
                        self.log(f"scheduler: {exc!r}")
                    finally:
                        scheduler_handler.metrics.clear_metrics()
            last = now

    # --- producing ---------------------------------------------------------------------------------------
    def start_dataset(self, dataset_id: str, producers: list[dict], *, register: bool = True,
                      expected_by: float | None = None) -> None:
        """Start a run through the producer client and fan out: each producer {"producer_id", "records",
        "start_s", "duration_s"} (virtual seconds) sends its records evenly over its duration, from `start_s`;
        `"fail_after"`: it raises after that many records (-> Dataset Failed)."""
        now = self.clock.now()
        if register:
            with scope.entered(self.scope):  # whichever thread asks
                Run.start(dataset_id, [p["producer_id"] for p in producers], expected_by=expected_by)
        for request in producers:
            self.producing.append(self.producers.submit(self.in_scope(self._produce),
                                                        {"dataset_id": dataset_id, **request}, now))

    def _produce(self, request: dict, origin: float) -> None:
        try:
            self.sleep_until(origin + request.get("start_s", 0))
            records = list(sample_records(request))
            n, duration = len(records), float(request.get("duration_s", 0))
            run = Run.attach(request["dataset_id"])
            rng = random.Random(f"{request['dataset_id']}/{request['producer_id']}")
            if self.chaos.resend_prefix and rng.random() < self.chaos.resend_prefix:
                # a first attempt that died after sending a third of its records, before its report (a Lambda
                # timeout); its retry below sends everything again: those records land twice
                crashed = run.producer(request["producer_id"], max_attempts=20)
                with crashed.attempt():
                    crashed.put_many(records[: max(1, n // 3)])
                self.resent_records += crashed.report.records_sent
            steps = max(1, math.ceil(n / 500))
            started = self.clock.now()
            producer = run.producer(request["producer_id"], max_attempts=20)
            fail_after = request.get("fail_after")
            with producer:
                for i in range(steps):
                    self.sleep_until(started + duration * i / steps)
                    chunk = records[i * 500:(i + 1) * 500]
                    if fail_after is not None and i * 500 + len(chunk) > fail_after:
                        producer.put_many(chunk[:max(0, fail_after - i * 500)])
                        raise RuntimeError("chaos: the producer's own code failed")
                    producer.put_many(chunk)
            self.reports.append(producer.report)
        except Exception as exc:  # a producer failing is shown, never hidden
            self.producer_errors.append(f"{request.get('producer_id')}: {exc!r}")
            self.log(f"producer {request.get('producer_id')} of {request.get('dataset_id')} failed: {exc!r}")

    def start_wait(self, dataset_id: str) -> str:
        """What a state machine's `wait_for_dataset_task` does: a new task token, registered for the dataset through
        the waits queue (`sqs:sendMessage.waitForTaskToken`). `sb.tokens.tasks[token]` shows how it was answered."""
        with self._waits_lock:
            if not self.waits_queue_url:
                self.waits_queue_url, self.waits_dlq_url = infra.create_waits(
                    self.name, self.session, self.resources.event_bus, self.timing.visibility_s["waits"])
                poller = Poller(self, "waits", self.waits_queue_url, waits_handler, 10, 0.0,
                                self.chaos.duplicate_observer, self.timing.timeouts_s["waits"])
                self.pollers.append(poller)
                self._threads.append(poller)
                poller.start()
        token = self.tokens.issue(dataset_id)
        self.sqs.send_message(QueueUrl=self.waits_queue_url,
                              MessageBody=json.dumps({"dataset_id": dataset_id, "task_token": token}))
        return token

    def in_scope(self, fn: Callable) -> Callable:
        """`fn` in this sandbox's scope, from whichever thread calls it."""
        def run(*args, **kwargs):
            with scope.entered(self.scope):
                return fn(*args, **kwargs)
        return run

    def sleep_until(self, virtual_ts: float) -> None:
        while not self.stopping.is_set():
            left = virtual_ts - self.clock.now()
            if left <= 0:
                return
            time.sleep(min(0.2, left / self.speed))

    # --- looking -----------------------------------------------------------------------------------------
    def quiet(self) -> bool:
        """No producer still sending, no message in flight anywhere (queues empty, pollers idle, Firehose buffers
        flushed). (A stability rule may declare while a producer is held up; the run goes on to its Amended.)"""
        if not all(f.done() for f in self.producing):
            return False
        urls = [self.local.notification_queue_url, self.resources.observer_queue_url]
        urls += [u for u in (self.local.raw_s3_queue_url, self.local.catalog_queue_url, self.waits_queue_url) if u]
        for url in urls:
            attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed"])["Attributes"]
            if any(int(v) for v in attrs.values()):
                return False
        return self.firehose.idle() and not any(p.busy for p in self.pollers)

    def dlq_traces(self) -> dict[str, dict[str, list[str]]]:
        """Each message in a DLQ, with what each of its deliveries ended as (ok, failed, crashed, timed-out): why
        it got there. SQS keeps a message's id when it moves it to the DLQ."""
        out = {}
        for name, url, poller in self._dlqs():
            got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0,
                                           WaitTimeSeconds=0).get("Messages", [])
            if got:
                out[name] = {m["MessageId"]: poller.deliveries.get(m["MessageId"], []) for m in got}
        return out

    def _dlqs(self) -> list[tuple[str, str, Poller]]:
        """(name, DLQ url, the poller of its queue) for each function's queue."""
        by_name = {p.name: p for p in self.pollers}
        dlqs = [("notifications", self.local.notification_dlq_url, by_name["monitor"]),
                ("observer", self.local.observer_dlq_url, by_name["observer"])]
        if self.local.catalog_dlq_url:
            dlqs.append(("catalog", self.local.catalog_dlq_url, by_name["catalog"]))
        if self.waits_dlq_url:
            dlqs.append(("waits", self.waits_dlq_url, by_name["waits"]))
        return dlqs

    def dlq_depths(self) -> dict[str, int]:
        out = {}
        for name, url, _ in self._dlqs():
            out[name] = int(self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                "ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"])
        return out


_POWERTOOLS = {"POWERTOOLS_SERVICE_NAME": "streamwatch", "POWERTOOLS_METRICS_NAMESPACE": "streamwatch",
               "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_TRACE_DISABLED": "true"}
_powertools_users = {"n": 0, "saved": {}}
_running: set[str] = set()  # the names of the sandboxes running in this process
_exported: dict = {"by": None}  # the one sandbox whose names the process's environment holds
_powertools_lock = threading.Lock()


def _powertools_env(step: int) -> None:
    """Powertools reads os.environ itself, once per process: what every sandbox sets alike (no metrics, no
    traces, quiet logs) is set while at least one runs, and put back after the last."""
    with _powertools_lock:
        users = _powertools_users
        if step > 0 and not users["n"]:
            values = {**_POWERTOOLS, "POWERTOOLS_LOG_LEVEL": os.environ.get("STREAMWATCH_LOG_LEVEL", "CRITICAL")}
            users["saved"] = {k: os.environ.get(k) for k in values}
            os.environ.update(values)
        users["n"] += step
        if step < 0 and not users["n"]:
            for k, v in users["saved"].items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def attach_local_run():
    """The deployment of a `streamwatch demo` running in another process (its moto server and resources)."""
    from streamwatch.client.deployment import Deployment
    from streamwatch.core.errors import NotFound

    try:
        doc = json.loads(LOCAL_RUN_FILE.read_text())
        os.kill(doc["pid"], 0)
    except (OSError, ValueError, KeyError):
        raise NotFound("no local run is going: start one with `streamwatch demo` (in another terminal)") from None
    os.environ.update(doc["env"])
    aws.reset()
    return Deployment.from_env()
