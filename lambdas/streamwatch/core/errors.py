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
_KEYLIKE = "A-Za-z0-9+/_-"
_CREDENTIALS = [
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@"), r"\1***@"),  # user:password@ in a URL
    (re.compile(r"(?i)([?&;](?:token|key|secret|sig|signature|password|passwd|pwd|auth|access_token|api_key|apikey|"
                r"x-amz-security-token|x-amz-signature|x-amz-credential)=)[^&\s#]+"), r"\1***"),
    # an Authorization header's whole value (Bearer, Basic, AWS4-HMAC-SHA256 Credential=..., Signature=...)
    (re.compile(r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\n]+"), r"\1***"),
    (re.compile(r"(?i)\b((?:bearer|basic)\s+)[A-Za-z0-9+/=._~-]{6,}"), r"\1***"),
    # a secret after its name: password=x, "password": "x", secret_key: x, aws_secret_access_key = x
    (re.compile(r"(?i)((?:token|secret|password|passwd|pwd|api[_-]?key|access[_-]?key|credentials?)[A-Za-z0-9_-]*"
                r"[\"']?\s*[:=]\s*[\"']?)[^\s,;'\"&}]+"), r"\1***"),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), "***"),  # AWS access key ids
    (re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*"), "***"),  # JWTs
]
# long key-like strings: a run of 32+ key characters holding a digit and a letter (checked on the run, so the
# scan stays linear: lookaheads at each position made it quadratic on a hostile text)
_KEY_RUN = re.compile(rf"(?<![{_KEYLIKE}])[{_KEYLIKE}]{{32,}}={{0,2}}")
_DIGIT, _LETTER = re.compile(r"\d"), re.compile(r"[A-Za-z]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _key_run(match: re.Match) -> str:
    run = match.group(0)
    return "***" if _DIGIT.search(run) and _LETTER.search(run) else run


def scrub_error(text: object, limit: int = MAX_ERROR_TEXT) -> str:
    """A producer's error text as it may leave the process (DynamoDB, the bus, the webhook): credentials in
    URLs, token-like query values, Authorization values, secrets after their names, access key ids, JWTs and
    long key-like strings replaced by ***, control characters dropped, at most `limit` characters.

    Only a window of the text is scrubbed (time stays bounded whatever a producer raised), cut at its last
    space so no secret is cut into a piece too short to recognise."""
    raw = str(text)
    window = 4 * limit
    if len(raw) > window:
        cut = raw.rfind(" ", 0, window)
        raw = raw[:cut] if cut > 0 else raw[:window]
    out = _CONTROL.sub("", raw)
    for pattern, replacement in _CREDENTIALS:
        out = pattern.sub(replacement, out)
    out = _KEY_RUN.sub(_key_run, out)
    return out if len(out) <= limit else out[: limit - 3] + "..."
