"""The one definition of a valid dataset id and producer id: a full match of a small alphabet, so no control
character, newline, `#` (the table's key separator) or markup can reach a key, a log line or a table. Every
boundary uses it: the client, the CLI, the starter, the monitor (ids derived from keys and from error records),
the scheduler and the observer's messages. `re.fullmatch`, never `$`, which matches before a trailing newline.
"""

from __future__ import annotations

import re

from streamwatch.core.errors import InputError

DATASET_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,254}")
PRODUCER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
FIELD_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # one field of a key pattern (rules)


class InvalidId(InputError):
    """A dataset or producer id outside its definition; the message shows it escaped and the rule."""


def valid_dataset_id(value: object) -> bool:
    return isinstance(value, str) and DATASET_ID.fullmatch(value) is not None


def valid_producer_id(value: object) -> bool:
    return isinstance(value, str) and PRODUCER_ID.fullmatch(value) is not None


def valid_field_value(value: object) -> bool:
    return isinstance(value, str) and FIELD_VALUE.fullmatch(value) is not None


def check_dataset_id(value: object) -> str:
    if not valid_dataset_id(value):
        raise InvalidId(f"dataset id {_shown(value)} is invalid: 1-255 characters of A-Z a-z 0-9 . _ ~ -, starting "
                        "with a letter or digit")
    return value


def check_producer_id(value: object) -> str:
    if not valid_producer_id(value):
        raise InvalidId(f"producer id {_shown(value)} is invalid: 1-64 characters of A-Z a-z 0-9 . _ -, starting "
                        "with a letter or digit")
    return value


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
