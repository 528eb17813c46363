"""One typed settings object for the construct, the Lambda environment and the local run.

Sources, in the order they are applied: defaults here, then the construct's `settings=` (or `cdk.json`
context / `cdk synth -c name=value` in the example app), or `STREAMWATCH_<NAME>` environment variables inside
a Lambda. Every value is validated before anything is built, and a bad one raises `SettingsError` naming the
setting, the value and the allowed range: the same message at `cdk synth`, at Lambda cold start and locally.
An unknown name is refused with a did-you-mean, so a typo is never silently ignored.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any

from streamwatch.core.errors import InputError, did_you_mean, is_close
from streamwatch.core.rules import RuleError, RuleSet

MODES = ("auto", "stability", "producers", "records", "window")
DECAYS = ("constant", "divide", "exponential")
NOTIFICATIONS = ("auto", "s3", "eventbridge")
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653)
ENV_PREFIX = "STREAMWATCH_"
RESOURCE_ENV_PREFIX = "STREAMWATCH_RES_"
# the handlers', the local run's and the client's own variables
OTHER_ENV = ("STREAMWATCH_LEASE_S", "STREAMWATCH_LOG_LEVEL", "STREAMWATCH_QUEUES", "STREAMWATCH_STACK")
# Settings only the construct reads (a webhook URL often embeds a credential): never in a function's environment
# or in the stack's Settings output
SYNTH_ONLY = ("callback_url",)
SQS_MAX_DELAY_S = 900  # SQS DelaySeconds: 0..900; the one definition (policy and clock import it)
WEEK_S = 7 * 86_400


class SettingsError(InputError):
    """A setting is unknown or out of its allowed range; the message names it, the value and the range."""


def _setting(default: Any, help: str, *, low: float | None = None, high: float | None = None,
             choices: tuple | None = None, kind: type | None = None, derived: bool = False) -> Any:
    """`derived`: a None default means "computed from other settings" (else it means "none")."""
    kind = kind or (type(default) if default is not None else int)
    return field(default=default, metadata={"help": help, "low": low, "high": high, "choices": choices,
                                            "kind": kind, "derived": derived})


@dataclass(frozen=True)
class Settings:
    # --- completion policy (each may be overridden per dataset rule) ----------------------------------
    mode: str = _setting("auto", "completion rule: auto (records when producers report counts, producers when "
                         "they report done, else stability; window for time-window rules), stability, producers, "
                         "records, window", choices=MODES)
    max_num_repeat: int = _setting(3, "consecutive unchanged reads before stability declares", low=1, high=100)
    base_delay_s: int = _setting(30, "observer probe delay before decay, seconds (SQS DelaySeconds)",
                                 low=1, high=SQS_MAX_DELAY_S)
    decay: str = _setting("constant", "how the probe delay shrinks as reads repeat (the seed's formulas)",
                          choices=DECAYS)
    min_quiet_s: int | None = _setting(None, "never declare by a count rule before nothing landed this long; "
                                       "default 1.5 x buffer interval + 60 s, never below the interval",
                                       low=60, high=86_400, derived=True)
    min_objects: int = _setting(1, "never declare a dataset with fewer objects", low=1, high=10**9)
    max_observation_s: int = _setting(21_600, "hard cap on observation; then Dataset Stalled", low=300, high=WEEK_S)
    settle_s: int | None = _setting(None, "producers mode: quiet time after the last producer is done; "
                                    "default 1.5 x buffer interval + 30 s", low=0, high=86_400, derived=True)
    deadline_s: int | None = _setting(None, "a dataset not Ready this long after its run started (or its first "
                                      "object landed) gets one Dataset Overdue; none by default", low=60, high=WEEK_S)
    grace_s: int | None = _setting(None, "window mode: how long after a window's end its last object may still "
                                   "land; default 1.5 x buffer interval + 60 s (Firehose stamps arrival time)",
                                   low=0, high=86_400, derived=True)
    emit_empty: bool = _setting(False, "window mode: a window with no object still gets its Ready (objects 0) "
                                "when it closes", choices=(True, False))
    # --- datasets ------------------------------------------------------------------------------------
    datasets: tuple = _setting(("data/dataset={dataset_id}/",), "dataset rules: key patterns with {fields}, "
                               "first match wins, each with optional policy overrides (docs/dataset-rules.md)",
                               kind=tuple)
    # --- Firehose ------------------------------------------------------------------------------------
    buffer_interval_s: int = _setting(300, "Firehose buffering interval, seconds", low=60, high=900)
    buffer_size_mib: int = _setting(64, "Firehose buffering size, MiB (dynamic partitioning needs >= 64)",
                                    low=64, high=128)
    error_prefix: str = _setting("errors/", "where Firehose writes records it could not deliver (its error output "
                                 "prefix); the monitor reads them and fails their datasets; empty: not watched")
    pack_records: bool | None = _setting(None, "producers pack small records into one Firehose record (billed "
                                         "per 5 KB); default on for a stream the construct creates, off for yours "
                                         "unless it de-aggregates JSON", choices=(True, False, None), kind=bool,
                                         derived=True)
    # --- notifications -------------------------------------------------------------------------------
    notifications: str = _setting("auto", "how object events reach the monitor: s3 (bucket notification), "
                                  "eventbridge (the bucket's EventBridge events), auto: eventbridge for a bucket "
                                  "you pass, s3 for one the construct creates", choices=NOTIFICATIONS)
    # --- producers -----------------------------------------------------------------------------------
    producer_count: int = _setting(4, "producers a run fans out to", low=1, high=1000)
    producer_concurrency: int = _setting(4, "PutRecordBatch calls in flight per producer", low=1, high=64)
    record_source: str = _setting("", "the producer Lambda's records: 'package.module:function' called with the "
                                  "produce request (yields dicts or bytes); empty: sample records")
    producer_code_dir: str = _setting("", "a directory bundled into the producer Lambda for record_source")
    # --- monitor -------------------------------------------------------------------------------------
    monitor_batch_size: int = _setting(100, "S3 notifications per monitor invocation", low=1, high=10_000)
    monitor_batch_window_s: int = _setting(5, "monitor batching window, seconds", low=0, high=300)
    dedupe_ttl_days: int = _setting(7, "how long the per-object dedupe ledger and dataset state are kept",
                                    low=1, high=365)
    # --- limits (docs/security.md) --------------------------------------------------------------------
    require_registration: bool = _setting(False, "observe only datasets started with `run start` / Run.start; "
                                          "objects of any other dataset are skipped (SkippedUnregistered)",
                                          choices=(True, False))
    trusted_writers: tuple = _setting((), "count only objects whose notification names one of these writers "
                                      "(prefixes of S3's userIdentity.principalId, e.g. 'AWS:AROA...:' for the "
                                      "stream's role id, or of EventBridge's requester); empty: every writer",
                                      kind=tuple)
    max_open_datasets: int = _setting(1000, "alarm when more datasets than this are observed at once, or start in "
                                      "one hour", low=1, high=1_000_000)
    monitor_max_concurrency: int = _setting(20, "most monitor invocations at once (the SQS event source's maximum "
                                            "concurrency)", low=2, high=1000)
    observer_max_concurrency: int = _setting(20, "most observer invocations at once (the SQS event source's "
                                             "maximum concurrency)", low=2, high=1000)
    max_producers_per_run: int = _setting(100, "most producers the starter fans out to for one run",
                                          low=1, high=1000)
    max_records_per_producer: int = _setting(10_000_000, "most records the starter asks one producer for",
                                             low=1, high=10**9)
    # --- downstream & operations ---------------------------------------------------------------------
    callback_url: str = _setting("", "optional https webhook that receives every event (API destination)")
    example_consumer: bool = _setting(True, "deploy the example consumer (manifest + _SUCCESS on Dataset Ready)",
                                      choices=(True, False))
    alarms: bool = _setting(True, "CloudWatch alarms and a dashboard for every stage", choices=(True, False))
    alarm_email: str = _setting("", "an address subscribed to the alarm topic the construct creates")
    log_retention_days: int = _setting(30, "CloudWatch log retention, days", choices=LOG_RETENTION_DAYS)

    def __post_init__(self) -> None:
        if not isinstance(self.datasets, tuple):
            object.__setattr__(self, "datasets", tuple(self.datasets) if isinstance(self.datasets, list)
                               else (self.datasets,))
        self.validate()

    # --- derived values: computed here once so construct, Lambdas and simulator agree -----------------
    @property
    def quiet_s(self) -> int:
        """Minimum quiet window. Firehose delivers a partition's buffer up to ~1.5x the interval late."""
        if self.min_quiet_s is not None:
            return self.min_quiet_s
        return math.ceil(1.5 * self.buffer_interval_s) + 60

    @property
    def producers_settle_s(self) -> int:
        if self.settle_s is not None:
            return self.settle_s
        return math.ceil(1.5 * self.buffer_interval_s) + 30

    @property
    def window_grace_s(self) -> int:
        """Arrival-time prefixes: a window's last buffer is written up to ~1.5 intervals after it ends."""
        if self.grace_s is not None:
            return self.grace_s
        return math.ceil(1.5 * self.buffer_interval_s) + 60

    @property
    def rules(self) -> RuleSet:
        return _ruleset(self.datasets)

    def for_rule(self, rule) -> Settings:
        """These settings with a rule's policy overrides applied (validated when the settings were made)."""
        return replace(self, **rule.settings_overrides) if rule.overrides else self

    def reads_objects(self) -> bool:
        """Whether the monitor reads objects (records and sequence numbers): every mode but plain counting."""
        return any(self.for_rule(r).mode in ("auto", "records") for r in self.rules.rules)

    # --- validation --------------------------------------------------------------------------------------
    def validate(self) -> None:
        for f in fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if value is None and f.default is None:
                continue
            low, high, choices = meta["low"], meta["high"], meta["choices"]
            if choices is not None and value not in choices:
                allowed = ", ".join(str(c) for c in choices if c is not None)
                raise SettingsError(f"setting {f.name}={value!r} is invalid: allowed {allowed}")
            if low is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                    or not (low <= value <= high)):
                raise SettingsError(f"setting {f.name}={value!r} is out of range: allowed {low}..{high}")
        if self.min_quiet_s is not None and self.min_quiet_s < self.buffer_interval_s:
            raise SettingsError(f"setting min_quiet_s={self.min_quiet_s!r} is out of range: allowed "
                                f"{self.buffer_interval_s}..86400 (never below buffer_interval_s)")
        if self.max_observation_s <= self.quiet_s:
            raise SettingsError(f"setting max_observation_s={self.max_observation_s!r} is out of range: "
                                f"must exceed the quiet window ({self.quiet_s} s)..{WEEK_S}")
        if self.callback_url and not self.callback_url.startswith("https://"):
            raise SettingsError(f"setting callback_url={self.callback_url!r} is invalid: allowed an https:// "
                                "URL or empty")
        if self.alarm_email and ("@" not in self.alarm_email or " " in self.alarm_email):
            raise SettingsError(f"setting alarm_email={self.alarm_email!r} is invalid: an e-mail address or empty")
        if self.record_source and (":" not in self.record_source or self.record_source.count(":") > 1):
            raise SettingsError(f"setting record_source={self.record_source!r} is invalid: 'package.module:function'")
        if self.error_prefix and (not self.error_prefix.endswith("/") or self.error_prefix.startswith("/")
                                  or "{" in self.error_prefix):
            raise SettingsError(f"setting error_prefix={self.error_prefix!r} is invalid: a plain prefix ending with "
                                "'/', e.g. 'errors/', or empty")
        if not all(isinstance(w, str) and 0 < len(w) <= 256 for w in self.trusted_writers):
            raise SettingsError(f"setting trusted_writers={list(self.trusted_writers)!r} is invalid: a list of "
                                "non-empty principal id prefixes")
        if self.monitor_batch_size > 10 and self.monitor_batch_window_s < 1:
            raise SettingsError(f"setting monitor_batch_window_s={self.monitor_batch_window_s!r} is out of "
                                "range: allowed 1..300 when monitor_batch_size > 10 (an SQS rule)")
        try:
            ruleset = _ruleset(self.datasets)
        except RuleError as exc:
            raise SettingsError(f"setting datasets: {exc}") from None
        for rule in ruleset.rules:
            try:
                effective = replace(self, datasets=(rule.pattern,), **rule.settings_overrides) \
                    if rule.overrides else self
            except SettingsError as exc:
                raise SettingsError(f"dataset rule {rule.name!r}: {exc}") from None
            if effective.mode == "window" and not rule.window_s:
                raise SettingsError(f"dataset rule {rule.name!r}: mode 'window' needs time fields in the pattern, "
                                    "e.g. 'logs/{yyyy}/{MM}/{dd}/{HH}/'")

    # --- sources and sinks ---------------------------------------------------------------------------
    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, base: Settings | None = None) -> Settings:
        """Build from a mapping of setting names (strings from `-c name=value` or `--set` are coerced).
        An unknown name is an error with a did-you-mean."""
        known = {f.name: f for f in fields(cls)}
        for name in values:
            if name not in known:
                raise SettingsError(f"unknown setting {name!r}{did_you_mean(name, known)}; "
                                    "`streamwatch settings` lists them")
        kwargs = {name: _coerce(name, raw, known[name]) for name, raw in values.items() if raw is not None}
        return replace(base, **kwargs) if base is not None else cls(**kwargs)

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> Settings:
        """From CDK context: settings by name; a key that is not a setting but close to one is a typo and fails
        synth; CDK's own keys (`@aws-cdk/...`) and unrelated keys are left alone."""
        names = cls.names()
        for key in context:
            if key not in names and not key.startswith("@") and ":" not in key and is_close(key, names):
                raise SettingsError(f"unknown setting {key!r} in the CDK context{did_you_mean(key, names)}")
        return cls.from_mapping({k: v for k, v in context.items() if k in names})

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        names = set(cls.names())
        return cls.from_mapping({k[len(ENV_PREFIX):].lower(): v for k, v in environ.items()
                                 if k.startswith(ENV_PREFIX) and k[len(ENV_PREFIX):].lower() in names})

    @classmethod
    def env_names(cls) -> list[str]:
        return [f"{ENV_PREFIX}{name.upper()}" for name in cls.names()]

    @classmethod
    def unknown_env(cls, environ: Mapping[str, str]) -> list[str]:
        """Warnings for STREAMWATCH_* variables that are not settings (logged at cold start)."""
        names, out = cls.names(), []
        for key in environ:
            if (key.startswith(ENV_PREFIX) and not key.startswith(RESOURCE_ENV_PREFIX) and key not in OTHER_ENV
                    and key[len(ENV_PREFIX):].lower() not in names):
                out.append(f"environment variable {key} is not a streamwatch setting and is ignored"
                           f"{did_you_mean(key[len(ENV_PREFIX):].lower(), names)}")
        return out

    def to_env(self) -> dict[str, str]:
        """The Lambda environment: the settings that differ from the defaults (the handlers' code has the same
        defaults, so they see exactly what the stack was built with, and Lambda's 4 KB for all of a function's
        variables goes to what was changed), never the synth-only ones."""
        return {f"{ENV_PREFIX}{k.upper()}": _text(v) for k, v in self.changed().items()}

    def changed(self) -> dict[str, Any]:
        """Only the settings that differ from the defaults, synth-only ones left out (what a function's
        environment and a stack output carry)."""
        default = Settings()
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()
                if v != getattr(default, k) and k not in SYNTH_ONLY}

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """Rows for the README settings table: name, default, allowed values, meaning."""
        rows = []
        for f in fields(cls):
            meta = f.metadata
            choices = [c for c in meta["choices"] or () if c is not None]
            allowed = (" \\| ".join(map(str, choices)) if choices
                       else f"{meta['low']}..{meta['high']}" if meta["low"] is not None else "")
            default = None if f.default is MISSING else f.default
            if isinstance(default, tuple):
                default = list(default)
            rows.append({"name": f.name, "default": default, "allowed": allowed, "help": meta["help"],
                         "derived": meta["derived"]})
        return rows


def _ruleset(specs: tuple) -> RuleSet:
    return _parse_rules(json.dumps(list(specs), sort_keys=True))


@functools.lru_cache(maxsize=64)
def _parse_rules(specs_json: str) -> RuleSet:
    """Parsed once per distinct rule list: the monitor matches every key against it."""
    return RuleSet.parse(json.loads(specs_json))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple | list | dict):
        return json.dumps(list(value) if isinstance(value, tuple) else value, separators=(",", ":"))
    return str(value)


def _coerce(name: str, raw: Any, f) -> Any:
    kind, default = f.metadata["kind"], f.default
    if kind is tuple:
        if isinstance(raw, str):
            text = raw.strip()
            if text.startswith(("[", "{")):
                try:
                    raw = json.loads(text)
                except ValueError as exc:
                    raise SettingsError(f"setting {name}={raw!r} is invalid: not JSON ({exc})") from None
            else:
                raw = [text]
        if isinstance(raw, dict | str):
            raw = [raw]
        if not isinstance(raw, list | tuple):
            raise SettingsError(f"setting {name}={raw!r} is invalid: expected a list of rules")
        return tuple(raw)
    if not isinstance(raw, str):
        if kind is int and isinstance(raw, float) and raw.is_integer():
            return int(raw)
        return raw
    if raw == "" and default is None:
        return None
    if kind is str:
        return raw
    if kind is bool:
        if raw.lower() in ("true", "1", "yes", "on"):
            return True
        if raw.lower() in ("false", "0", "no", "off"):
            return False
        raise SettingsError(f"setting {name}={raw!r} is invalid: expected true or false")
    try:
        return kind(raw)
    except ValueError:
        raise SettingsError(f"setting {name}={raw!r} is invalid: expected {kind.__name__}") from None


@dataclass(frozen=True)
class Resources:
    """Names of the deployed resources, given to the Lambdas as env vars (by the construct or the sandbox) and
    to clients by the stack's outputs (`streamwatch.client.deployment`)."""

    # required: a name left out must not switch a check off silently (the backlog check needs the queue)
    table: str
    bucket: str
    stream: str
    observer_queue_url: str
    notification_queue_url: str
    event_bus: str
    # optional features, off when empty
    producer_function: str = ""
    idempotency_table: str = ""  # the example consumer's Powertools Idempotency records (state.layout.IDEMPOTENCY_*)

    def to_env(self) -> dict[str, str]:
        return {f"{RESOURCE_ENV_PREFIX}{k.upper()}": v for k, v in asdict(self).items()}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Resources:
        """The names the construct (or the local run) set; a required one missing is a SettingsError naming it."""
        required = [f.name for f in fields(cls) if f.default is MISSING]
        missing = [f"{RESOURCE_ENV_PREFIX}{n.upper()}" for n in required
                   if f"{RESOURCE_ENV_PREFIX}{n.upper()}" not in environ]
        if missing:
            raise SettingsError(f"environment: {', '.join(missing)} not set (the construct sets every resource "
                                "name; outside the stack, give --stack NAME)")
        return cls(**{f.name: environ.get(f"{RESOURCE_ENV_PREFIX}{f.name.upper()}", "") for f in fields(cls)})
