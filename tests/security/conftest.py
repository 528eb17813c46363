"""The handler tests' virtual clock, for the security tests that drive handlers."""

from tests.handlers.conftest import fake_clock  # noqa: F401 (a fixture)
