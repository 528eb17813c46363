"""Step Functions' task tokens as AWS keeps them, where moto does not: moto's SendTaskSuccess, SendTaskFailure
and SendTaskHeartbeat accept any token, any number of times.

A token belongs to one waiting task. The first SendTaskSuccess or SendTaskFailure completes the task; any answer
after that gets TaskTimedOut ("Task Timed Out: 'Provided task does not exist anymore'"), as does one for a task that
timed out. A token Step Functions never issued gets InvalidToken (Step Functions API reference, SendTaskSuccess:
Errors). Installed as botocore hooks on a session, it answers those calls and records every one, so a test counts
the answers each task got and the ones refused.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field

from botocore.awsrequest import AWSResponse

from streamwatch.local.server import RawBody

CALLS = ("SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat")


@dataclass
class Task:
    dataset_id: str
    status: str = "waiting"  # waiting, succeeded, failed, timed-out
    output: dict | None = None
    error: str | None = None
    cause: str | None = None
    refused: int = 0  # answers after the first (TaskTimedOut)
    heartbeats: int = 0


@dataclass
class TaskTokens:
    tasks: dict[str, Task] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (operation, token)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, dataset_id: str) -> str:
        """A new waiting task's token (Step Functions' are opaque strings of up to 1,024 characters)."""
        token = f"AQB8AAAAKgAAAAMAAAAA{uuid.uuid4().hex}{uuid.uuid4().hex}"
        with self.lock:
            self.tasks[token] = Task(dataset_id)
        return token

    def time_out(self, token: str) -> None:
        with self.lock:
            self.tasks[token].status = "timed-out"

    def install(self, events) -> None:
        for name in CALLS:
            events.register(f"before-call.sfn.{name}", self._answer)

    def _answer(self, model, params, **kwargs):
        body = json.loads(params["body"])
        token = body.get("taskToken", "")
        with self.lock:
            self.calls.append((model.name, token))
            task = self.tasks.get(token)
            if task is None:
                return _error("InvalidToken", "Invalid Token: 'Invalid token'")
            if task.status != "waiting":
                task.refused += 1
                return _error("TaskTimedOut", "Task Timed Out: 'Provided task does not exist anymore'")
            if model.name == "SendTaskHeartbeat":
                task.heartbeats += 1
            elif model.name == "SendTaskSuccess":
                task.status, task.output = "succeeded", json.loads(body["output"])
            else:
                task.status, task.error, task.cause = "failed", body.get("error"), body.get("cause")
        return AWSResponse("local", 200, {}, RawBody(b"{}")), {}


def _error(code: str, message: str):
    parsed = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}}
    return AWSResponse("local", 400, {}, RawBody(json.dumps({"__type": code, "message": message}).encode())), parsed
