"""What every handler does at the start of an invocation: read its settings and resources from the environment
(warning once, at cold start, about STREAMWATCH_* variables that are not settings), and name metrics alike."""

from __future__ import annotations

import os

from streamwatch.core.settings import Resources, Settings

_warned = False


def environment(logger) -> tuple[Settings, Resources]:
    global _warned
    if not _warned:
        _warned = True
        for warning in Settings.unknown_env(os.environ):
            logger.warning(warning)
    return Settings.from_env(os.environ), Resources.from_env(os.environ)


def metric_name(*parts: str) -> str:
    """One style for every metric: PascalCase words (`Skipped` + `MalformedMessage`, `Observer` + `nudge-ignored`
    -> `ObserverNudgeIgnored`)."""
    words = []
    for part in parts:
        for word in part.replace("-", " ").replace("_", " ").split():
            words.append(word[0].upper() + word[1:])
    return "".join(words)
