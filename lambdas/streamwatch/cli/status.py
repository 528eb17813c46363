"""Where datasets stand, as rows and tables: `streamwatch status` and the demo's live progress use the same view.

Reads only `store.State` (no AWS calls of its own). Tables render with rich when it is installed and the output
is a terminal; plain aligned text otherwise. Not part of the Lambda asset.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from streamwatch.core.events import iso
from streamwatch.state.store import State

COLUMNS = ("dataset", "status", "objects", "bytes", "records", "producers", "age", "last object", "declared",
           "overdue")


@dataclass(frozen=True)
class Row:
    dataset: str
    status: str
    objects: int
    bytes: int
    records: int | None
    producers: str
    age_s: float | None
    last_object_at: float | None
    declared_at: float | None
    overdue: bool
    rule: str = "default"

    def cells(self, now: float) -> list[str]:
        return [printable(self.dataset), self.status, f"{self.objects:,}", human_bytes(self.bytes),
                "-" if self.records is None else f"{self.records:,}", self.producers,
                human_age(self.age_s), ago(self.last_object_at, now), ago(self.declared_at, now),
                "yes" if self.overdue else ""]

    def to_json(self) -> dict:
        return {"dataset_id": self.dataset, "status": self.status, "objects": self.objects, "bytes": self.bytes,
                "records": self.records, "producers": self.producers, "age_s": self.age_s,
                "last_object_at": iso(self.last_object_at), "declared_at": iso(self.declared_at),
                "overdue": self.overdue, "rule": self.rule}


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """A value from the table as one visible line: control characters (ESC, newline) shown escaped, never sent
    to the terminal, so a stored id cannot fake rows or recolour the screen."""
    return _UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1], text)


def row(state: State, now: float) -> Row:
    expected = state.producers_expected
    producers = "-" if not expected and not state.producers_known else \
        f"{state.producers_done}/{max(expected or 0, state.producers_known)}" + \
        (f" ({state.producers_failed} failed)" if state.producers_failed else "")
    status = state.status if state.chain_started or state.status != "OBSERVING" else "WAITING"
    return Row(dataset=state.dataset_id, status=status, objects=state.objects, bytes=state.bytes,
               records=state.records, producers=producers,
               age_s=None if state.started_ts is None else now - state.started_ts,
               last_object_at=state.last_object_ts, declared_at=state.declared_ts,
               overdue=state.overdue_ts is not None, rule=state.rule)


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 2 * 86_400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86_400:.1f}d"


def ago(ts: float | None, now: float) -> str:
    return "-" if ts is None else f"{human_age(now - ts)} ago"


def plain(rows: list[Row], now: float | None = None) -> str:
    """Aligned text, one line per dataset (for pipes, logs and CI)."""
    now = time.time() if now is None else now
    cells = [list(COLUMNS)] + [r.cells(now) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c[i].ljust(widths[i]) for i in range(len(COLUMNS))).rstrip() for c in cells)


def rich_table(rows: list[Row], now: float | None = None, title: str | None = None):
    """A rich Table (rich is a CLI dependency; imported here, never by the Lambdas)."""
    from rich.table import Table
    from rich.text import Text

    now = time.time() if now is None else now
    table = Table(title=title, header_style="bold")
    for name in COLUMNS:
        table.add_column(name, justify="right" if name in ("objects", "bytes", "records") else "left")
    colours = {"READY": "green", "FAILED": "red", "STALLED": "yellow", "OBSERVING": "cyan"}
    for r in rows:
        cells = [Text(c) for c in r.cells(now)]  # Text: stored values are never read as rich markup
        cells[1].stylize(colours.get(r.status, "white"))
        table.add_row(*cells)
    return table
