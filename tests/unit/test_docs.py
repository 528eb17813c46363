"""The docs stay true: the README's settings table is what `streamwatch settings --markdown` prints, and every
document the README links exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_settings_table_matches_the_settings():
    # Given the settings as the code defines them
    # When `streamwatch settings --markdown` prints their table
    table = subprocess.run([sys.executable, "-m", "streamwatch", "settings", "--markdown"], capture_output=True,
                           text=True, check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT / "lambdas"),
                                                                 "PATH": "/usr/bin:/bin"}).stdout.strip()
    # Then the README holds that table as it is
    assert table in (ROOT / "README.md").read_text()


def test_every_linked_document_exists_and_nothing_points_outside_the_repository():
    # Given the README and every document under docs/
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        # When each one's text and links are read
        text = doc.read_text()
        # Then none mentions DESIGN.md, and every relative link points at a file that exists
        assert "DESIGN.md" not in text, doc
        for link in re.findall(r"\]\(([^)#]+)\)", text):
            if not link.startswith("http"):
                assert (doc.parent / link).exists(), f"{doc.name} links to a missing {link}"


def test_the_state_table_doc_is_the_layout_modules():
    # Given the layout module's ITEMS
    # When their markdown is generated (regenerate the doc: python -m streamwatch.state.layout)
    from streamwatch.state import layout
    # Then docs/state-table.md shows exactly them
    assert layout.markdown() in (ROOT / "docs" / "state-table.md").read_text()


def test_the_event_schema_is_generated_from_the_model():
    # Given the detail model the publisher builds with
    # When its schema is generated (regenerate: python -m streamwatch.runtime.detail > docs/event-detail.schema.json)
    from streamwatch.runtime import detail
    # Then the committed schema is exactly what it generates
    assert (ROOT / "docs" / "event-detail.schema.json").read_text() == detail.schema_text()
