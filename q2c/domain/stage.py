"""The stages of one engagement's life (docs/domain.md, "One engagement's life")."""

from __future__ import annotations

from enum import Enum


class EngagementStage(str, Enum):
    RECEIVED = "Received"
    VALIDATING = "Validating"
    AWAITING_STEWARD = "AwaitingSteward"
    PROVISIONING = "Provisioning"
    ACTIVE = "Active"
    COLLECTING = "Collecting"
    CLOSED = "Closed"
    CANCELLED = "Cancelled"
