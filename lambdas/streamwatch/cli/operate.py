"""`streamwatch status` and `streamwatch dlq`: where datasets stand, and what sits in the dead-letter queues."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import UTC, datetime

from streamwatch.cli.status import plain, printable, rich_table, row
from streamwatch.core.errors import InputError
from streamwatch.core.events import iso
from streamwatch.state.store import Store, day_of

STATUSES = ("OBSERVING", "WAITING", "READY", "FAILED", "STALLED")


def add_parsers(sub, deployment_options: argparse.ArgumentParser) -> None:
    p = sub.add_parser("status", parents=[deployment_options],
                       help="datasets and where they stand (or one dataset in detail)")
    p.add_argument("dataset", nargs="?", help="show this dataset in detail")
    p.add_argument("--since", default="24h", help="datasets started since: 90m, 24h, 7d, or an ISO time (default 24h)")
    p.add_argument("--status", choices=STATUSES, action="append", help="only datasets in this status (repeatable)")
    p.add_argument("--limit", type=int, default=200, help="at most this many rows (newest first)")
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("dlq", parents=[deployment_options], help="what sits in each dead-letter queue; --redrive")
    p.add_argument("--redrive", action="store_true", help="move messages back to their source queue")
    p.add_argument("--sample", type=int, default=5, help="messages to show per DLQ (default 5)")
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    p.set_defaults(func=cmd_dlq)


def parse_since(text: str, now: float) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if m:
        return now - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86_400}[m.group(2)]
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--since {text!r}: give a duration (90m, 24h, 7d) or an ISO time") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def cmd_status(args: argparse.Namespace) -> int:
    from streamwatch.cli import deployment_of

    deployment = deployment_of(args)
    store = Store.from_settings(deployment.settings, deployment.resources)
    now = time.time()
    if args.dataset:
        return _detail(store, args.dataset, now, args.json)
    since = parse_since(args.since, now)
    days, day = [], since
    while day_of(day) <= day_of(now):
        days.append(day_of(day))
        day += 86_400
    rows = []
    for d in reversed(days):  # newest first
        states = list(store.list_day(d, since_ts=since if d == day_of(since) else None))
        rows += [row(s, now) for s in reversed(states)]
    if args.status:
        rows = [r for r in rows if r.status in args.status]
    shown = rows[: args.limit]
    if not shown:
        print(f"no datasets since {iso(since)}" + (f" in status {', '.join(args.status)}" if args.status else ""))
    elif sys.stdout.isatty() and not args.json:
        from rich.console import Console
        Console().print(rich_table(shown, now, title=f"streamwatch: {len(shown)} of {len(rows)} dataset(s) since "
                                                      f"{iso(since)} ({deployment.source})"))
    else:
        print(plain(shown, now))
    if len(rows) > len(shown):
        print(f"... {len(rows) - len(shown)} more: raise --limit or narrow --since/--status", file=sys.stderr)
    if args.json:
        print(json.dumps({"datasets": [r.to_json() for r in shown], "total": len(rows)}))
    return 0


def _detail(store: Store, dataset_id: str, now: float, as_json: bool) -> int:
    state = store.get_state(dataset_id)
    if state is None:
        raise InputError(f"dataset {dataset_id!r} not found (nothing counted, nobody registered it)")
    producers = store.producers(dataset_id)
    seqs = store.seqs(dataset_id)
    detail = {
        **row(state, now).to_json(), "rule": state.rule, "tick": state.tick, "reads": state.reads,
        "started_at": iso(state.started_ts), "first_object_at": iso(state.first_object_ts),
        "records": {"distinct": state.distinct, "duplicates": state.duplicates, "foreign": state.foreign,
                    "error_output": state.error_records} if state.lines is not None else None,
        "producers": [{**p, "sequence_ranges": len(seqs.get(p["producer_id"], [])),
                       "records_persisted": sum(b - a + 1 for a, b in seqs.get(p["producer_id"], []))}
                      for p in producers],
        "deadline_at": iso(state.deadline_ts), "overdue_at": iso(state.overdue_ts),
        "window": [iso(state.window_start), iso(state.window_end)] if state.window_start is not None else None,
        "declared": {"mode": state.declared_mode, "reason": state.reason, "fallback": state.fallback}
        if state.declared_ts else None,
        "events": {"sent": sorted(state.sent_events), "pending": sorted(state.pending)},
        "failure": state.failure,
    }
    print(f"{printable(dataset_id)}: {detail['status']} (rule {state.rule}), {state.objects} objects, "
          f"{state.producers_done}/{max(state.producers_known, state.producers_expected or 0)} producers done")
    for key in ("started_at", "first_object_at", "last_object_at", "declared_at", "deadline_at", "overdue_at",
                "window", "records", "declared", "failure", "events"):
        if detail.get(key) not in (None, "", []):
            print(f"  {key}: {json.dumps(detail[key]) if not isinstance(detail[key], str) else printable(detail[key])}")
    print(f"  chain: tick {state.tick}, {state.reads} reads")
    for p in detail["producers"]:
        sent = "-" if p["records_sent"] is None else p["records_sent"]
        print(f"  producer {p['producer_id']}: {p['status']}{' (registered)' if p['expected'] else ''}, sent {sent}, "
              f"persisted {p['records_persisted']} in {p['sequence_ranges']} range(s)"
              + (f", error: {p['error']}" if p.get("error") else ""))
    if as_json:
        print(json.dumps(detail))
    return 0


# --- dead-letter queues ---------------------------------------------------------------------------------------
def _dataset_and_reason(name: str, message: dict) -> tuple[str, str]:
    """What a dead letter was about, parsed from its body (and EventBridge's error attributes, if any)."""
    attributes = {k: v.get("StringValue", "") for k, v in message.get("MessageAttributes", {}).items()}
    reason = attributes.get("ERROR_MESSAGE") or attributes.get("ERROR_CODE") or \
        "failed every delivery (maxReceiveCount): see the function's logs"
    try:
        body = json.loads(message["Body"])
    except ValueError:
        return "?", f"not JSON; {reason}"
    if isinstance(body, dict) and "detail" in body and isinstance(body["detail"], dict):
        return str(body["detail"].get("dataset_id") or body["detail"].get("object", {}).get("key", "?")), reason
    if isinstance(body, dict) and "dataset_id" in body:
        return str(body["dataset_id"]), f"{body.get('kind', 'tick')} {body.get('tick', '')}: {reason}"
    records = body.get("Records") if isinstance(body, dict) else None
    if isinstance(records, list) and records:
        keys = [r.get("s3", {}).get("object", {}).get("key", "?") for r in records if isinstance(r, dict)]
        return ", ".join(keys[:3]), reason
    return "?", reason


def cmd_dlq(args: argparse.Namespace) -> int:
    from streamwatch.cli import deployment_of
    from streamwatch.runtime import aws

    deployment = deployment_of(args)
    if not deployment.queues:
        raise InputError(f"{deployment.source} lists no queues (its `Queues` output): redeploy with this version")
    sqs = aws.client("sqs")
    report = {}
    for name, urls in deployment.queues.items():
        dlq = urls.get("dlq")
        if not dlq:
            continue
        attrs = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages",
                                                                      "QueueArn"])["Attributes"]
        count = int(attrs.get("ApproximateNumberOfMessages", 0))
        sample = []
        if count and args.sample:  # a peek: received with no visibility timeout, so they stay where they are
            got = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=min(10, args.sample), VisibilityTimeout=0,
                                      MessageAttributeNames=["All"], AttributeNames=["SentTimestamp"]).get(
                                          "Messages", [])
            for m in got:
                dataset, reason = _dataset_and_reason(name, m)
                sent = int(m.get("Attributes", {}).get("SentTimestamp", 0)) / 1000 or None
                sample.append({"dataset": dataset, "reason": reason, "sent_at": iso(sent)})
        oldest = min((s["sent_at"] for s in sample if s["sent_at"]), default=None)
        entry = {"dlq": dlq, "messages": count, "oldest_sampled": oldest, "sample": sample}
        print(f"{name}: {count} message(s) in {dlq.rsplit('/', 1)[-1]}" + (f", oldest sampled {oldest}" if oldest
                                                                           else ""))
        for s in sample:
            print(f"  {s['dataset']}: {s['reason']}")
        if args.redrive and count:
            entry["redrive"] = _redrive(sqs, name, urls, attrs["QueueArn"], count)
            print(f"  redrive: {entry['redrive']}")
        report[name] = entry
    if args.json:
        print(json.dumps({"dlqs": report}))
    return 0


def _redrive(sqs, name: str, urls: dict, dlq_arn: str, count: int) -> str:
    """SQS StartMessageMoveTask back to the source queue; where the endpoint lacks that API (moto), move them by
    hand (receive, send, delete). EventBridge target DLQs have no source queue: replay their events instead."""
    from botocore.exceptions import ClientError

    source = urls.get("queue")
    if not source:
        return (f"{name}'s DLQ holds events EventBridge could not deliver; there is no queue to move them to: fix "
                "the target, then replay them (each message body is the event)")
    source_arn = sqs.get_queue_attributes(QueueUrl=source, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    try:
        task = sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=source_arn)
        return f"move task {task['TaskHandle'][:24]}... started ({count} message(s))"
    except ClientError as exc:  # moto answers 500 "not implemented"; some emulators InvalidAction
        if exc.response["Error"]["Code"] not in ("InvalidAction", "UnsupportedOperation", "NotImplemented", "500",
                                                  "501"):
            raise
    moved = 0
    dlq = urls["dlq"]
    while True:
        got = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=30,
                                  MessageAttributeNames=["All"]).get("Messages", [])
        if not got:
            break
        for m in got:
            sqs.send_message(QueueUrl=source, MessageBody=m["Body"])
            sqs.delete_message(QueueUrl=dlq, ReceiptHandle=m["ReceiptHandle"])
            moved += 1
    return f"moved {moved} message(s) back by hand (this endpoint has no StartMessageMoveTask)"

