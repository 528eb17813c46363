"""streamwatch: know when a dataset streamed through Firehose into S3 is complete, and say so once."""

__version__ = "0.1.0"
