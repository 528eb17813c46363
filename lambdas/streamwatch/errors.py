"""The errors a person can cause, as types: the CLI prints their message in one line and exits with their code.

Pure: no AWS import. Everything that hands streamwatch something (a file, a setting, a stack name, a record)
raises one of these with a message that names the thing and says what to do. Anything else that escapes is a
bug, and the CLI says so (docs/errors.md lists the codes and the common messages).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class InputError(ValueError):
    """Bad input: a file, a setting, an option, a name. Exit 2."""

    exit_code = EXIT_INPUT


class NotFound(InputError):
    """Something named does not exist (a bucket, a stack, a stack output, a queue, a dataset)."""


class AccessError(InputError):
    """Credentials missing, expired or not allowed to do this."""


class RunFailed(RuntimeError):
    """The command ran and what it did failed (records refused, objects unreadable). Exit 1."""

    exit_code = EXIT_FAILED


def did_you_mean(name: str, known: Iterable[str], cutoff: float = 0.75) -> str:
    """' (did you mean max_num_repeat?)' when a close name exists, else ''."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=cutoff)
    return f" (did you mean {close[0]}?)" if close else ""


def is_close(name: str, known: Iterable[str], cutoff: float = 0.75) -> bool:
    return bool(difflib.get_close_matches(name, list(known), n=1, cutoff=cutoff))
