"""The example consumer's logic: read a Ready dataset, write `_manifest.json` and `_SUCCESS` next to it.

`_SUCCESS` is Hadoop's convention, so Spark or Airflow jobs can key off it. Names starting with `_` are not
data: the monitor does not count them and the manifest leaves them out (`rules.is_marker`, the one definition).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from streamwatch.core.rules import MANIFEST, SUCCESS, is_marker
from streamwatch.reader import DatasetReader, LineCountSink, ObjectInfo


class IncompleteRead(RuntimeError):
    """Some objects could not be read: no manifest, no _SUCCESS; the invocation is retried."""


def data_objects(objects: list[ObjectInfo]) -> list[ObjectInfo]:
    return [o for o in objects if not is_marker(o.key)]


def write_manifest(detail: dict, reader: DatasetReader, s3) -> dict:
    bucket, prefix = detail["bucket"], detail["prefix"]
    objects = data_objects(reader.list(bucket, prefix))
    report = reader.fetch(bucket, prefix, objects=objects, sink_factory=lambda key: LineCountSink())
    refused = [{"key": r.key, "reason": r.error} for r in report.failed if (r.error or "").startswith("Refused:")]
    if len(report.failed) > len(refused):  # a read that failed may succeed next time; a refused key never will
        raise IncompleteRead(json.dumps(report.summary())[:2000])
    entries = sorted(({"key": r.key, "size": r.bytes, "etag": r.etag, "records": r.records} for r in report.ok),
                     key=lambda e: e["key"])
    totals = {"objects": len(entries), "bytes": sum(e["size"] for e in entries),
              "records": sum(e["records"] for e in entries)}
    manifest = {
        "dataset_id": detail["dataset_id"], "bucket": bucket, "prefix": prefix, "objects": entries, "totals": totals,
        "declared": {k: detail.get(k) for k in ("objects", "bytes", "records", "declared_at", "mode", "event_id")},
        "matches_declaration": totals["objects"] == detail.get("objects") and not refused, "refused": refused,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    s3.put_object(Bucket=bucket, Key=prefix + MANIFEST, Body=json.dumps(manifest, indent=1).encode(),
                  ContentType="application/json")
    s3.put_object(Bucket=bucket, Key=prefix + SUCCESS, Body=b"")
    return manifest
