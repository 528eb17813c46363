"""`streamwatch.settings`, the public name of the one settings object (core/settings.py): the same module."""

import sys

from streamwatch.core import settings as _settings

sys.modules[__name__] = _settings
