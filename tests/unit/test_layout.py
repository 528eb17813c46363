"""The rooms stay readable: no module over 400 lines without a reason at its top (docs/layout.md)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "lambdas" / "streamwatch"
MAX_LINES = 400


def test_a_long_module_says_why_at_its_top():
    long = {}
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if text.count("\n") > MAX_LINES:
            long[str(path.relative_to(PACKAGE))] = "Why one long module" in (ast.get_docstring(ast.parse(text)) or "")
    assert all(long.values()), {k: v for k, v in long.items() if not v}
