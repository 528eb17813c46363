"""The event detail, as one model: the publisher builds every event's detail with it, the example consumer parses
with it, and docs/event-detail.schema.json is generated from it (`python -m streamwatch.runtime.detail`; a test
checks that the committed file is). pydantic is the Powertools layer's (its parser), so it costs the functions
no package of their own. The meaning of each field is docs/events.md's."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from streamwatch.core.events import DETAIL_TYPES, SOURCE
from streamwatch.core.settings import MODES

TIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"
Time = Annotated[str | None, Field(pattern=TIME_PATTERN, description="ISO-8601 UTC with milliseconds, or null.")]
Count = Annotated[int, Field(ge=0)]
SCHEMA_ID = "https://github.com/streamwatch/streamwatch/docs/event-detail.schema.json"


class _Part(BaseModel):
    # a consumer of an older version still parses an event with fields added since (they are ignored)
    model_config = ConfigDict(extra="ignore")


class PolicyDetail(BaseModel):
    """The completion policy that judged the dataset (all its numbers; mode and rule at least)."""

    model_config = ConfigDict(extra="allow")
    mode: str
    rule: str


class Producers(_Part):
    expected: int | None
    done: Count
    failed: Count
    unregistered: Count
    records_sent: Count


class RecordCounts(_Part):
    distinct: Count | None
    duplicates: Count | None
    foreign: Count | None
    error_output: Count


class DatasetDetail(_Part):
    """The `detail` of every event streamwatch puts on its bus (source `streamwatch`; detail-type Dataset Ready,
    Dataset Amended, Dataset Stalled, Dataset Failed or Dataset Overdue). See docs/events.md."""

    model_config = ConfigDict(extra="ignore", title="streamwatch event detail")
    event_id: str = Field(pattern=r"^.+:(ready|stalled|failed|overdue|amended:[0-9]+)$",
                          description="Stable per event: dedupe on it.")
    dataset_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,254}$")
    bucket: str
    prefix: str = Field(description="The dataset's S3 prefix (from its rule).")
    objects: Count
    bytes: Count
    records: Count | None = Field(description="Distinct records persisted (plus lines without the producer "
                                  "envelope); null when the rule does not count records.")
    first_object_at: Time
    last_object_at: Time
    declared_at: Time = Field(description="null until the dataset is declared (Overdue comes before).")
    mode: Literal[MODES] = Field(description="The completion rule that decided (auto resolved).")
    rule: str = Field(description="The dataset rule that owns the dataset.")
    ticks: Count
    reads: Count
    reason: str
    fallback: bool
    policy: PolicyDetail
    producers: Producers
    record_counts: RecordCounts
    # only for a time-window rule's datasets
    window_start: Time = None
    window_end: Time = None
    failure: str | None = Field(None, description="Dataset Failed: which producer failed and why, or the records "
                                "Firehose could not deliver.")
    deadline_at: Time = Field(None, description="Dataset Overdue: the deadline that passed.")

    def body(self) -> dict:
        """The detail as published: the fields an event of its kind has (unset optional ones left out)."""
        return self.model_dump(mode="json", exclude_unset=True)


class DatasetEvent(_Part):
    """A streamwatch event as the bus delivers it to a queue: what the catalog and waits functions read of its
    envelope (its source, its detail-type, its detail). Not Powertools' EventBridgeModel, which requires every field
    AWS sets (`account`, `time`, ...): moto's bus leaves some out, and these functions use none of them."""

    source: Literal[SOURCE]
    detail_type: Literal[DETAIL_TYPES] = Field(alias="detail-type")
    detail: DatasetDetail


def schema() -> dict:
    out = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
           **DatasetDetail.model_json_schema()}
    out["dependentRequired"] = {"window_start": ["window_end"]}
    return out


def schema_text() -> str:
    return json.dumps(schema(), indent=2) + "\n"


if __name__ == "__main__":
    print(schema_text(), end="")
