"""EventBridge event shapes (the contract in DESIGN.md) and publishing them."""

from __future__ import annotations

SOURCE = "streamwatch"
READY, AMENDED, STALLED = "Dataset Ready", "Dataset Amended", "Dataset Stalled"
DETAIL_TYPES = (READY, AMENDED, STALLED)
