"""The streamwatch CDK construct (`pip install "streamwatch[cdk]"`): `from streamwatch.cdk import Streamwatch`.

Never part of the Lambda asset (streamwatch.cdk.bundling leaves it out)."""

from streamwatch.cdk.construct import Streamwatch, StreamwatchPropsError, event_pattern
from streamwatch.cdk.nag import register_nag

__all__ = ["Streamwatch", "StreamwatchPropsError", "event_pattern", "register_nag"]
