"""The errors a person can cause, as types: the CLI prints their message in one line and exits with their code.

Pure: no AWS import. Everything that hands streamwatch something (a file, a setting, a stack name, a record)
raises one of these with a message that names the thing and says what to do. Anything else that escapes is a
bug, and the CLI says so (docs/errors.md lists the codes and the common messages).
"""

from __future__ import annotations

import difflib
import re
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


MAX_ERROR_TEXT = 500
_CREDENTIALS = [
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@"), r"\1***@"),  # user:password@ in a URL
    (re.compile(r"(?i)([?&;](?:token|key|secret|sig|signature|password|passwd|pwd|auth|access_token|api_key|apikey|"
                r"x-amz-security-token|x-amz-signature|x-amz-credential)=)[^&\s#]+"), r"\1***"),
    (re.compile(r"(?i)\b(authorization|bearer|token|secret|password|api[_-]?key)(\s*[:=]\s*|\s+)"
                r"(?:bearer\s+)?[^\s,;'\"]{6,}"), r"\1\2***"),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), "***"),  # AWS access key ids
    (re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*"), "***"),  # JWTs
    (re.compile(r"\b(?=[A-Za-z0-9+/_-]*\d)(?=[A-Za-z0-9+/_-]*[A-Za-z])[A-Za-z0-9+/_-]{32,}={0,2}"), "***"),  # keys
]
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def scrub_error(text: object, limit: int = MAX_ERROR_TEXT) -> str:
    """A producer's error text as it may leave the process (DynamoDB, the bus, the webhook): credentials in
    URLs, token-like query values, secrets after their names, access key ids, JWTs and long key-like strings
    replaced by ***, control characters dropped, at most `limit` characters."""
    out = _CONTROL.sub("", str(text))
    for pattern, replacement in _CREDENTIALS:
        out = pattern.sub(replacement, out)
    return out if len(out) <= limit else out[: limit - 3] + "..."
