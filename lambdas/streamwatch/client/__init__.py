"""The producer client (`from streamwatch.client import Run`): runs, producers, and the Firehose sender."""

from streamwatch.client.run import (
    DeploymentNotFound,
    MissingOutput,
    Producer,
    RecordError,
    RecordsRefused,
    RecordTooLarge,
    RuleError,
    Run,
    StackNotFound,
)

__all__ = ["DeploymentNotFound", "MissingOutput", "Producer", "RecordError", "RecordTooLarge", "RecordsRefused",
           "Run", "RuleError", "StackNotFound"]
