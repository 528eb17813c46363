"""Dataset rules: which S3 keys make up a dataset, what the dataset is called, and which policy judges it.

Pure: no AWS. The monitor (key -> dataset), the construct (Firehose prefix, notification filters), the client
(dataset -> the fields its records carry), the simulator and the local run all read the same rules.

A rule is a key pattern with fields, e.g. `data/dataset={dataset_id}/` (the default), `raw/{dataset_id}/`,
Hive-style `events/source={source}/dt={dt}/`, or a time window `logs/{yyyy}/{MM}/{dd}/{HH}/`, plus optional
policy overrides (mode, min_quiet_s, ...). The first rule whose pattern matches a key owns it; keys that no
rule matches are not data. The full syntax is in docs/dataset-rules.md.

Dataset ids (URL-safe, `~`-separated):
- one rule, no time fields: the field values, e.g. `orders-2026-11-24` or `web~2026-11-24` (two fields);
- several rules, or a time window: the rule's name first, e.g. `orders~2026-11-24`, `hourly~2026-11-24T13`.
A window is written last as `YYYY-MM-DD` (day) or `YYYY-MM-DDTHH` (hour), always in UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streamwatch.core import ids
from streamwatch.core.catalog import Catalog, CatalogError, check_columns
from streamwatch.core.errors import InputError, did_you_mean

FIELD_VALUE = ids.FIELD_VALUE.pattern
FIELD_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RULE_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
SEPARATOR = "~"
TIME_FIELDS = {"yyyy": r"\d{4}", "MM": r"\d{2}", "dd": r"\d{2}", "HH": r"\d{2}"}
WINDOWS = {frozenset({"yyyy", "MM", "dd"}): 86_400, frozenset({"yyyy", "MM", "dd", "HH"}): 3_600}
MAX_PARTITION_KEYS = 50  # Firehose: at most 50 dynamic partitioning keys
TIME_LIKE = {"YYYY", "yy", "YY", "M", "mm", "DD", "d", "D", "hh", "H", "h", "m", "ss", "s", "SS"}  # Java-ish typos
RESERVED_FIELDS = {"_sw"}  # the producer envelope (streamwatch.core.envelope)
# Policy settings a rule may override (validated by Settings, which owns their ranges).
OVERRIDABLE = ("mode", "max_num_repeat", "base_delay_s", "decay", "min_quiet_s", "min_objects", "max_observation_s",
               "settle_s", "deadline_s", "grace_s", "emit_empty")
DEFAULT_PATTERN = "data/dataset={dataset_id}/"
_TOKEN_RE = re.compile(r"\{([^{}]*)\}")


class RuleError(InputError):
    """A rule that cannot work; the message names the rule and what to change."""


valid_dataset_id = ids.valid_dataset_id  # the one definition (streamwatch.core.ids)


MANIFEST, SUCCESS = "_manifest.json", "_SUCCESS"  # the example consumer's markers (what its role may write)


def is_marker(key: str) -> bool:
    """Files whose name starts with `_` are not data: `_SUCCESS`, `_manifest.json` (Hadoop's convention)."""
    return key.rsplit("/", 1)[-1].startswith("_")


@dataclass(frozen=True)
class Match:
    rule: Rule
    dataset_id: str
    fields: dict[str, str]
    window_start: float | None = None  # epoch seconds, UTC; None for a rule without time fields


@dataclass(frozen=True)
class Rule:
    pattern: str
    name: str = "default"
    overrides: tuple[tuple[str, Any], ...] = ()
    named_ids: bool = False  # set by RuleSet: ids start with the rule's name
    catalog: Catalog | None = None  # a Glue table: each Ready dataset registered as its partition (core/catalog.py)
    fields: tuple[str, ...] = field(default=(), compare=False)  # every placeholder, in order
    regex: re.Pattern | None = field(default=None, compare=False, repr=False)

    # --- construction -----------------------------------------------------------------------------------
    @classmethod
    def parse(cls, spec: str | dict, *, default_name: str = "default") -> Rule:
        """From a pattern string or {"pattern": ..., "name": ..., <policy overrides>}."""
        if isinstance(spec, str):
            spec = {"pattern": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("pattern"), str):
            raise RuleError(f"dataset rule {spec!r} is invalid: give a pattern string or an object with "
                            "'pattern' (and optionally 'name' and policy overrides)")
        extra = set(spec) - {"pattern", "name", "catalog", *OVERRIDABLE}
        name = spec.get("name", default_name)
        if extra:
            bad = sorted(extra)[0]
            raise RuleError(f"dataset rule {name!r}: unknown key {bad!r}"
                            f"{did_you_mean(bad, ['pattern', 'name', 'catalog', *OVERRIDABLE])}; allowed: pattern, "
                            "name, catalog, " + ", ".join(OVERRIDABLE))
        if not isinstance(name, str) or not RULE_NAME_RE.fullmatch(name):
            raise RuleError(f"dataset rule name {name!r} is invalid: lowercase letters, digits and '-', "
                            "at most 40, e.g. 'orders'")
        overrides = tuple(sorted((k, v) for k, v in spec.items() if k in OVERRIDABLE))
        try:
            catalog = None if spec.get("catalog") is None else Catalog.parse(spec["catalog"], f"dataset rule {name!r}")
        except CatalogError as exc:
            raise RuleError(str(exc)) from None
        return cls(pattern=spec["pattern"], name=name, overrides=overrides, catalog=catalog)._compiled()

    def _compiled(self) -> Rule:
        p, where = self.pattern, f"dataset rule {self.name!r} ({self.pattern!r})"
        if not p.endswith("/") or p.startswith("/") or "//" in p:
            raise RuleError(f"{where}: a pattern is a folder: it ends with '/', does not start with '/' and has "
                            "no empty segment, e.g. 'data/dataset={dataset_id}/'")
        if "!{" in p:
            raise RuleError(f"{where}: write fields as {{name}}; the Firehose expressions are generated from them")
        names, parts, last_end, prev_field_end, prev_time = [], ["^"], 0, None, False
        for m in _TOKEN_RE.finditer(p):
            literal = p[last_end:m.start()]
            if "{" in literal or "}" in literal:
                raise RuleError(f"{where}: unbalanced braces")
            name = m.group(1)
            is_time = name in TIME_FIELDS
            if name in TIME_LIKE:
                raise RuleError(f"{where}: field {{{name}}} cannot be filled: it looks like a time, and the time "
                                "fields Firehose fills (from the arrival time) are {yyyy}, {MM}, {dd} and {HH}")
            if not is_time and (not FIELD_NAME_RE.fullmatch(name) or name in RESERVED_FIELDS):
                raise RuleError(f"{where}: field {{{name}}} cannot be filled: a field is a top-level JSON key of "
                                f"the record ([A-Za-z_][A-Za-z0-9_]*, not {', '.join(sorted(RESERVED_FIELDS))})")
            if name in names:
                raise RuleError(f"{where}: field {{{name}}} appears twice")
            if prev_field_end == m.start() and not (is_time and prev_time):
                raise RuleError(f"{where}: fields {{{names[-1]}}} and {{{name}}} touch: put a literal between them "
                                "so a key can be split")
            parts.append(re.escape(literal))
            parts.append(f"(?P<{name}>{TIME_FIELDS[name] if is_time else FIELD_VALUE})")
            names.append(name)
            last_end = prev_field_end = m.end()
            prev_time = is_time
        tail = p[last_end:]
        if "{" in tail or "}" in tail:
            raise RuleError(f"{where}: unbalanced braces")
        parts.append(re.escape(tail))
        if not names:
            raise RuleError(f"{where}: the pattern has no field, so every object would be one dataset forever: "
                            "name the part of the key that tells datasets apart, e.g. 'raw/{dataset_id}/'")
        times = frozenset(n for n in names if n in TIME_FIELDS)
        if times and times not in WINDOWS:
            raise RuleError(f"{where}: time fields must be {{yyyy}}, {{MM}}, {{dd}} (a day) and optionally {{HH}} "
                            f"(an hour); got {', '.join(sorted(times))}")
        if len(names) - len(times) + (1 if times else 0) > MAX_PARTITION_KEYS:
            raise RuleError(f"{where}: Firehose partitions by at most {MAX_PARTITION_KEYS} keys")
        if self.catalog is not None:  # its partition keys are the fields: distinct, none a column too
            try:
                check_columns(self.catalog, tuple(names), where)
            except CatalogError as exc:
                raise RuleError(str(exc)) from None
        # the object's own name follows the pattern (Firehose appends more folders or a file name)
        parts.append(r"(?P<_rest>.+)")
        object.__setattr__(self, "fields", tuple(names))
        object.__setattr__(self, "regex", re.compile("".join(parts)))
        return self

    # --- what the rule says -----------------------------------------------------------------------------
    @property
    def time_fields(self) -> tuple[str, ...]:
        return tuple(n for n in self.fields if n in TIME_FIELDS)

    @property
    def value_fields(self) -> tuple[str, ...]:
        return tuple(n for n in self.fields if n not in TIME_FIELDS)

    @property
    def window_s(self) -> int | None:
        """3600 (hour) or 86400 (day) for a time-window rule, else None."""
        return WINDOWS.get(frozenset(self.time_fields)) if self.time_fields else None

    @property
    def literal_prefix(self) -> str:
        """The pattern up to its first field: what S3 notification filters and IAM grants use."""
        return self.pattern[: self.pattern.index("{")]

    @property
    def settings_overrides(self) -> dict[str, Any]:
        return dict(self.overrides)

    def to_spec(self) -> dict:
        catalog = {"catalog": self.catalog.to_spec()} if self.catalog is not None else {}
        return {"pattern": self.pattern, "name": self.name, **catalog, **dict(self.overrides)}

    def partition_values(self, dataset_id: str) -> list[str]:
        """The dataset's partition in the rule's catalog table: its field values, in the pattern's order."""
        values, _ = self.parse_id(dataset_id)
        return [values[n] for n in self.fields]

    # --- keys <-> datasets ------------------------------------------------------------------------------
    def match(self, key: str) -> Match | None:
        m = self.regex.fullmatch(key)
        if not m or is_marker(key):
            return None
        values = {n: m.group(n) for n in self.fields}
        window_start = None
        if self.time_fields:
            try:
                start = datetime(int(values["yyyy"]), int(values["MM"]), int(values["dd"]),
                                 int(values.get("HH", 0)), tzinfo=UTC)
            except ValueError:
                return None  # 2026/13/45: not a time this rule writes
            window_start = start.timestamp()
        return Match(self, self.dataset_id(values, window_start), values, window_start)

    def dataset_id(self, values: dict[str, str], window_start: float | None = None) -> str:
        parts = [self.name] if self.named_ids else []
        parts += [values[n] for n in self.value_fields]
        if window_start is not None:
            parts.append(window_token(window_start, self.window_s))
        return SEPARATOR.join(parts)

    def parse_id(self, dataset_id: str) -> tuple[dict[str, str], float | None]:
        """The field values and window start a dataset id stands for; RuleError if it is not this rule's."""
        parts = dataset_id.split(SEPARATOR)
        if self.named_ids:
            if not parts or parts[0] != self.name:
                raise RuleError(f"dataset id {dataset_id!r} is not rule {self.name!r}'s: ids of this rule start "
                                f"with '{self.name}{SEPARATOR}'")
            parts = parts[1:]
        window_start = None
        if self.window_s:
            if not parts:
                raise RuleError(f"dataset id {dataset_id!r}: rule {self.name!r} ends ids with a window")
            window_start = parse_window_token(parts.pop(), self.window_s, dataset_id)
        if len(parts) != len(self.value_fields) or not all(ids.valid_field_value(v) for v in parts):
            shape = SEPARATOR.join([*([self.name] if self.named_ids else []), *(f"<{n}>" for n in self.value_fields),
                                    *(["<window>"] if self.window_s else [])])
            raise RuleError(f"dataset id {dataset_id!r} does not fit rule {self.name!r}: expected {shape}, each "
                            "value of letters, digits, '.', '_' or '-'")
        values = dict(zip(self.value_fields, parts, strict=True))
        if window_start is not None:
            t = datetime.fromtimestamp(window_start, UTC)
            values.update(yyyy=f"{t:%Y}", MM=f"{t:%m}", dd=f"{t:%d}", HH=f"{t:%H}")
        return values, window_start

    def prefix_of(self, dataset_id: str) -> str:
        """The S3 prefix holding a dataset's objects."""
        values, _ = self.parse_id(dataset_id)
        return _TOKEN_RE.sub(lambda m: values[m.group(1)], self.pattern)

    def record_fields(self, dataset_id: str) -> dict[str, str]:
        """What a record of this dataset carries so Firehose partitions it here (time fields come from Firehose)."""
        values, _ = self.parse_id(dataset_id)
        return {n: values[n] for n in self.value_fields}

    # --- Firehose ---------------------------------------------------------------------------------------
    def firehose_prefix(self) -> str:
        """The S3 prefix expression of a stream that writes this layout (dynamic partitioning + timestamp)."""
        return _TOKEN_RE.sub(lambda m: (f"!{{timestamp:{m.group(1)}}}" if m.group(1) in TIME_FIELDS
                                        else f"!{{partitionKeyFromQuery:{m.group(1)}}}"), self.pattern)

    def jq_query(self) -> dict[str, str]:
        """MetadataExtraction: one partition key per value field, read from the record's top level."""
        return {n: f".{n}" for n in self.value_fields}

    def sample_key(self, salt: str = "a") -> str:
        """A key this rule would own (used to find rules that can never match)."""
        sample = {"yyyy": "2026", "MM": "11", "dd": "24", "HH": "13"}
        return _TOKEN_RE.sub(lambda m: sample.get(m.group(1), f"v{salt}{m.start()}"), self.pattern) + "part-0"


def window_token(window_start: float, window_s: int | None) -> str:
    t = datetime.fromtimestamp(window_start, UTC)
    return f"{t:%Y-%m-%d}" if window_s == 86_400 else f"{t:%Y-%m-%dT%H}"


def parse_window_token(token: str, window_s: int, dataset_id: str = "") -> float:
    fmt = "%Y-%m-%d" if window_s == 86_400 else "%Y-%m-%dT%H"
    try:
        return datetime.strptime(token, fmt).replace(tzinfo=UTC).timestamp()
    except ValueError:
        example = "2026-11-24" if window_s == 86_400 else "2026-11-24T13"
        raise RuleError(f"dataset id {dataset_id or token!r}: window {token!r} is not like {example} (UTC)") from None


def window_bounds(window_start: float, window_s: int) -> tuple[float, float]:
    return window_start, window_start + window_s


def windows_between(start: float, end: float, window_s: int) -> list[float]:
    """Window starts whose window ends in (start, end]: what a schedule closes when it runs."""
    first = (int(start) // window_s) * window_s
    out, t = [], float(first)
    while t + window_s <= end:
        if t + window_s > start:
            out.append(t)
        t += window_s
    return out


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]

    @classmethod
    def parse(cls, specs) -> RuleSet:
        if isinstance(specs, (str, dict)):
            specs = [specs]
        specs = list(specs or [DEFAULT_PATTERN])
        several = len(specs) > 1
        rules = []
        for i, spec in enumerate(specs):
            if several and (isinstance(spec, str) or "name" not in spec):
                pattern = spec if isinstance(spec, str) else spec.get("pattern")
                raise RuleError(f"dataset rule {i + 1} ({pattern!r}) needs a name: with several rules, dataset ids "
                                "start with the rule's name so they cannot collide")
            rule = Rule.parse(spec)
            rules.append(Rule(pattern=rule.pattern, name=rule.name, overrides=rule.overrides, catalog=rule.catalog,
                              named_ids=several or bool(rule.time_fields))._compiled())
        names = [r.name for r in rules]
        for name in names:
            if names.count(name) > 1:
                raise RuleError(f"dataset rule name {name!r} is used twice")
        ruleset = cls(tuple(rules))
        for i, later in enumerate(rules):
            for earlier in rules[:i]:
                if all(earlier.match(later.sample_key(s)) for s in ("a", "b")):
                    raise RuleError(f"dataset rule {later.name!r} ({later.pattern!r}) can never match: rule "
                                    f"{earlier.name!r} ({earlier.pattern!r}) comes first and owns its keys; put "
                                    "the narrower rule first")
        return ruleset

    def match(self, key: str) -> Match | None:
        for rule in self.rules:
            m = rule.match(key)
            if m:
                return m
        return None

    def rule_for(self, dataset_id: str) -> Rule:
        """The rule a dataset id belongs to (by its name part when there are several)."""
        if len(self.rules) == 1:
            return self.rules[0]
        head = dataset_id.split(SEPARATOR, 1)[0]
        for rule in self.rules:
            if rule.name == head:
                return rule
        raise RuleError(f"dataset id {dataset_id!r} names no rule: ids start with one of "
                        + ", ".join(f"'{r.name}{SEPARATOR}'" for r in self.rules))

    def find(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise RuleError(f"no dataset rule named {name!r}: rules are " + ", ".join(r.name for r in self.rules))

    @property
    def stream_rule(self) -> Rule:
        """The layout a stream the construct creates writes: the first rule."""
        return self.rules[0]

    @property
    def watched_prefixes(self) -> list[str]:
        """The fewest prefixes that cover every rule (S3 rejects overlapping notification filters)."""
        prefixes = sorted({r.literal_prefix for r in self.rules})
        return [p for p in prefixes if not any(q != p and p.startswith(q) for q in prefixes)]

    def specs(self) -> list[dict]:
        return [r.to_spec() for r in self.rules]
