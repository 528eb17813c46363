"""The example app's stack: the Streamwatch construct on resources it creates, and nothing else."""

from __future__ import annotations

from aws_cdk import Stack
from constructs import Construct

from streamwatch.cdk import Streamwatch
from streamwatch.core.settings import Settings


class ObserverStack(Stack):
    def __init__(self, scope: Construct, id: str, *, settings: Settings, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        self.watch = Streamwatch(self, "Watch", settings=settings)
