"""`streamwatch put` when Firehose refuses records for good: exit 1, and the dataset fails. (Its own sandbox, in its
own module: two sandboxes cannot share a process.)"""

from __future__ import annotations

import json

import pytest

from streamwatch.cli import main
from streamwatch.core.settings import Settings
from streamwatch.local.sandbox import Chaos, Sandbox
from tests.cli.test_commands import wait_for

pytestmark = pytest.mark.e2e


def test_put_exits_1_when_firehose_refuses_records_and_the_dataset_fails(tmp_path, monkeypatch, capsys):
    # Given retries without waiting, 20 rows in a file, and a local run whose Firehose refuses every record
    monkeypatch.setattr("streamwatch.core.backoff.Backoff.delay", lambda self, attempt: 0.0)  # retries without waiting
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(20)))
    settings = Settings(buffer_interval_s=60, alarms=False)
    with Sandbox(settings, speed=120, log=lambda s: None, chaos=Chaos(put_failures=1.0)) as sb:
        # When the rows are put (put exits 1)
        assert main(["put", "refused-1", "--producer", "p", str(rows)]) == 1
        # Then stderr says Firehose refused all 20 after every retry, and the dataset fails saying so
        assert "Firehose refused 20 record(s) after every retry (ServiceUnavailableException)" in \
            capsys.readouterr().err
        assert "refused 20 record(s)" in wait_for(sb, "refused-1", "Dataset Failed")["failure"]
