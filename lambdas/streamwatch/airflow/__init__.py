"""streamwatch for Airflow 3 (`pip install "streamwatch[airflow]"`): the two ways a DAG hears that a dataset is
complete (docs/airflow.md).

- `StreamwatchDatasetSensor` (`streamwatch.airflow.sensors`): a task that waits for one dataset or window, deferred
  by default to `StreamwatchDatasetTrigger` (one GetItem on the state table per poll).
- `StreamwatchEventTrigger` (`streamwatch.airflow.triggers`): an `AssetWatcher` trigger over an SQS queue that the
  construct's `on_event` feeds; one asset event per distinct `event_id`.

Nothing here runs in a Lambda or is imported by the runtime (the import contracts in pyproject.toml say so)."""

PROVIDER_PACKAGE = "streamwatch"


def get_provider_info() -> dict:
    """Airflow's provider discovery (the `apache_airflow_provider` entry point in pyproject.toml): the triggers and
    the sensor are found by class path, this only names them in `airflow providers list`."""
    return {
        "package-name": PROVIDER_PACKAGE,
        "name": "streamwatch",
        "description": "Wait for datasets that stream through Kinesis Firehose into S3 to be complete.",
        "sensors": [{"integration-name": "streamwatch",
                     "python-modules": ["streamwatch.airflow.sensors"]}],
        "triggers": [{"integration-name": "streamwatch",
                      "python-modules": ["streamwatch.airflow.triggers"]}],
        "integrations": [{"integration-name": "streamwatch", "external-doc-url":
                          "https://github.com/streamwatch/streamwatch/blob/main/docs/airflow.md", "tags": ["aws"]}],
    }
