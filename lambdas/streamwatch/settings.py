"""One typed settings object for the stack, the Lambda environment and the local run.

Sources, in the order they are applied: defaults here, then `cdk.json` context / `cdk synth -c name=value`
(flat keys, named as the fields below), or `STREAMWATCH_<NAME>` environment variables inside a Lambda.
Every value is validated before anything is built, and a bad one raises `SettingsError` naming the
setting, the value and the allowed range: the same message at `cdk synth`, at Lambda cold start and locally.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any

MODES = ("stability", "producers", "records")
DECAYS = ("constant", "divide", "exponential")
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653)
ENV_PREFIX = "STREAMWATCH_"
SQS_MAX_DELAY_S = 900


class SettingsError(ValueError):
    """A setting is out of its allowed range; the message names the setting, the value and the range."""


def _setting(default: Any, help: str, *, low: float | None = None, high: float | None = None,
             choices: tuple | None = None) -> Any:
    return field(default=default, metadata={"help": help, "low": low, "high": high, "choices": choices})


@dataclass(frozen=True)
class Settings:
    # --- completion policy -------------------------------------------------------------------------
    mode: str = _setting("stability", "completion rule: stability (count unchanged), producers (all done, "
                         "then settled), records (all done and every record persisted)", choices=MODES)
    max_num_repeat: int = _setting(3, "consecutive unchanged reads before stability declares", low=1, high=100)
    base_delay_s: int = _setting(30, "observer probe delay before decay, seconds (SQS DelaySeconds)",
                                 low=1, high=SQS_MAX_DELAY_S)
    decay: str = _setting("constant", "how the probe delay shrinks as reads repeat (the seed's formulas)",
                          choices=DECAYS)
    min_quiet_s: int | None = _setting(None, "never declare before the count was unchanged this long; "
                                       "default 1.5 x buffer interval + 60 s, never below the interval",
                                       low=60, high=86_400)
    min_objects: int = _setting(1, "never declare a dataset with fewer objects", low=1, high=10**9)
    max_observation_s: int = _setting(21_600, "hard cap on observation; then Dataset Stalled", low=300,
                                      high=7 * 86_400)
    settle_s: int | None = _setting(None, "producers mode: quiet time after the last producer is done; "
                                    "default 1.5 x buffer interval + 30 s", low=0, high=86_400)
    # --- Firehose ----------------------------------------------------------------------------------
    buffer_interval_s: int = _setting(300, "Firehose buffering interval, seconds", low=60, high=900)
    buffer_size_mib: int = _setting(64, "Firehose buffering size, MiB (dynamic partitioning needs >= 64)",
                                    low=64, high=128)
    data_prefix: str = _setting("data/", "S3 prefix Firehose writes under (must end with '/')")
    # --- producers ---------------------------------------------------------------------------------
    producer_count: int = _setting(4, "producers a run fans out to", low=1, high=1000)
    producer_concurrency: int = _setting(4, "PutRecordBatch calls in flight per producer", low=1, high=64)
    # --- monitor -----------------------------------------------------------------------------------
    monitor_batch_size: int = _setting(100, "S3 notifications per monitor invocation", low=1, high=10_000)
    monitor_batch_window_s: int = _setting(5, "monitor batching window, seconds", low=0, high=300)
    dedupe_ttl_days: int = _setting(7, "how long the per-object dedupe ledger is kept", low=1, high=365)
    # --- downstream & operations -------------------------------------------------------------------
    callback_url: str = _setting("", "optional https webhook that receives every event (API destination)")
    example_consumer: bool = _setting(True, "deploy the example consumer (manifest + _SUCCESS on Dataset Ready)",
                                      choices=(True, False))
    log_retention_days: int = _setting(30, "CloudWatch log retention, days", choices=LOG_RETENTION_DAYS)

    def __post_init__(self) -> None:
        self.validate()

    # --- derived values: computed here once so stack, Lambdas and simulator agree -------------------
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
    def count_records(self) -> bool:
        """Only records mode pays for reading each object to count its lines."""
        return self.mode == "records"

    # --- validation ----------------------------------------------------------------------------------
    def validate(self) -> None:
        for f in fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if value is None and f.default is None:
                continue
            low, high, choices = meta["low"], meta["high"], meta["choices"]
            if choices is not None and value not in choices:
                raise SettingsError(f"setting {f.name}={value!r} is invalid: allowed {', '.join(map(str, choices))}")
            if low is not None and not (low <= value <= high):
                raise SettingsError(f"setting {f.name}={value!r} is out of range: allowed {low}..{high}")
        if self.min_quiet_s is not None and self.min_quiet_s < self.buffer_interval_s:
            raise SettingsError(f"setting min_quiet_s={self.min_quiet_s!r} is out of range: allowed "
                                f"{self.buffer_interval_s}..86400 (never below buffer_interval_s)")
        if self.max_observation_s <= self.quiet_s:
            raise SettingsError(f"setting max_observation_s={self.max_observation_s!r} is out of range: "
                                f"must exceed the quiet window ({self.quiet_s} s)..{7 * 86_400}")
        if not self.data_prefix.endswith("/") or self.data_prefix.startswith("/") or "!{" in self.data_prefix:
            raise SettingsError(f"setting data_prefix={self.data_prefix!r} is invalid: a plain prefix ending "
                                "with '/', e.g. 'data/'")
        if self.callback_url and not self.callback_url.startswith("https://"):
            raise SettingsError(f"setting callback_url={self.callback_url!r} is invalid: allowed an https:// "
                                "URL or empty")
        if self.monitor_batch_size > 10 and self.monitor_batch_window_s < 1:
            raise SettingsError(f"setting monitor_batch_window_s={self.monitor_batch_window_s!r} is out of "
                                "range: allowed 1..300 when monitor_batch_size > 10 (an SQS rule)")

    # --- sources and sinks ---------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        """Build from CDK context or any mapping; strings (from `-c name=value`) are coerced by type."""
        kwargs = {}
        for f in fields(cls):
            if f.name in values and values[f.name] is not None:
                kwargs[f.name] = _coerce(f.name, values[f.name], f.default)
        return cls(**kwargs)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        return cls.from_mapping({k[len(ENV_PREFIX):].lower(): v for k, v in environ.items()
                                 if k.startswith(ENV_PREFIX) and not k.startswith("STREAMWATCH_RES_")})

    def to_env(self) -> dict[str, str]:
        """The Lambda environment: every setting, so a handler sees exactly what the stack was built with."""
        return {f"{ENV_PREFIX}{k.upper()}": "" if v is None else str(v) for k, v in asdict(self).items()}

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """Rows for the README settings table: name, default, allowed values, meaning."""
        rows = []
        for f in fields(cls):
            meta = f.metadata
            allowed = (" \\| ".join(map(str, meta["choices"])) if meta["choices"]
                       else f"{meta['low']}..{meta['high']}" if meta["low"] is not None else "")
            rows.append({"name": f.name, "default": None if f.default is MISSING else f.default,
                         "allowed": allowed, "help": meta["help"]})
        return rows


def _coerce(name: str, raw: Any, default: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    if raw == "" and default is None:
        return None
    kind = type(default) if default is not None else int
    if kind is str:
        return raw
    if kind is bool:
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        raise SettingsError(f"setting {name}={raw!r} is invalid: expected true or false")
    try:
        return kind(raw)
    except ValueError:
        raise SettingsError(f"setting {name}={raw!r} is invalid: expected {kind.__name__}") from None


@dataclass(frozen=True)
class Resources:
    """Names of the deployed resources, given to the Lambdas as env vars (by the stack or the sandbox)."""

    table: str = ""
    bucket: str = ""
    stream: str = ""
    observer_queue_url: str = ""
    event_bus: str = ""
    producer_function: str = ""

    def to_env(self) -> dict[str, str]:
        return {f"STREAMWATCH_RES_{k.upper()}": v for k, v in asdict(self).items()}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Resources:
        return cls(**{f.name: environ.get(f"STREAMWATCH_RES_{f.name.upper()}", "") for f in fields(cls)})
