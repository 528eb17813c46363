"""What every handler does: at import, give the logic modules' loggers its Powertools logger's output (JSON with
the Lambda context); at the start of an invocation, read its settings and resources from the environment (warning
once, at cold start, about STREAMWATCH_* variables that are not settings) and its lease; name metrics alike."""

from __future__ import annotations

import logging

from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

from streamwatch.core import scope
from streamwatch.core.settings import Resources, Settings

_warned = False


def share_logging(logger) -> None:
    """The construct names the Powertools logger after the deployment (`service`), so the `streamwatch.*` loggers of
    the logic modules are not its children: give them its handler and level (Powertools' own helper)."""
    logging.getLogger("streamwatch")  # registered, so the helper finds it
    copy_config_to_registered_loggers(source_logger=logger, include={"streamwatch"})


def environment(logger) -> tuple[Settings, Resources]:
    """The scope's environment (core/scope.py): the process's in Lambda."""
    global _warned
    environ = scope.environ()
    if not _warned:
        _warned = True
        for warning in Settings.unknown_env(environ):
            logger.warning(warning)
    return Settings.from_env(environ), Resources.from_env(environ)


def lease_s(default: float) -> float:
    """How long an invocation that claimed a dataset's publishing or a task's answer holds it before another message
    takes over: `default` (a limit of core/limits.py) in Lambda; the local run scales it with its functions'
    timeouts (STREAMWATCH_LEASE_S)."""
    return float(scope.environ().get("STREAMWATCH_LEASE_S", default))


def metric_name(*parts: str) -> str:
    """One style for every metric: PascalCase words (`Skipped` + `MalformedMessage`, `Observer` + `nudge-ignored`
    -> `ObserverNudgeIgnored`)."""
    words = []
    for part in parts:
        for word in part.replace("-", " ").replace("_", " ").split():
            words.append(word[0].upper() + word[1:])
    return "".join(words)
