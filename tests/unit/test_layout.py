"""The rooms stay readable: no module over 400 lines without a reason at its top (docs/layout.md). And every test
reads Given/When/Then: a `# Given`, a `# When` and a `# Then` comment line, first met in that order."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "lambdas" / "streamwatch"
TESTS = Path(__file__).resolve().parents[1]
MAX_LINES = 400
STEPS = ("# Given", "# When", "# Then")


def test_a_long_module_says_why_at_its_top():
    # Given every module of the package
    long = {}
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        # When it is over 400 lines
        if text.count("\n") > MAX_LINES:
            long[str(path.relative_to(PACKAGE))] = "Why one long module" in (ast.get_docstring(ast.parse(text)) or "")
    # Then its docstring says why it is one long module
    assert all(long.values()), {k: v for k, v in long.items() if not v}


def _tests_in(tree: ast.Module):
    """The test functions of a module: at its top level, or in its classes."""
    for node in tree.body:
        for member in node.body if isinstance(node, ast.ClassDef) else [node]:
            if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef) and member.name.startswith("test"):
                yield member


def test_every_test_reads_given_when_then():
    # Given every test function of every test module under tests/, and the module's source lines
    lacking = []
    for path in sorted(TESTS.rglob("test_*.py")):
        source = path.read_text()
        lines = source.splitlines()
        for test in _tests_in(ast.parse(source)):
            # When the comment lines of its source are read in order
            comments = [s for s in (line.strip() for line in lines[test.lineno - 1:test.end_lineno]) if s[:1] == "#"]
            firsts = [next((i for i, c in enumerate(comments) if c.startswith(step)), None) for step in STEPS]
            if None in firsts or firsts != sorted(firsts):
                lacking.append(f"{path.relative_to(TESTS.parent)}::{test.name}")
    # Then each has a `# Given`, a `# When` and a `# Then` line, first met in that order
    assert lacking == [], "tests that do not read Given/When/Then:\n" + "\n".join(lacking)
