"""One input/output model per workflow, signal, update and query (fields can be added later)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from domain.engagement import Engagement
from domain.project import PsaWorkspace
from domain.stage import EngagementStage
from domain.validation import FieldIssue


class EngagementInput(BaseModel):
    opportunity_id: str
    source: str = "webhook"  # webhook | cli | reconciliation


class RecheckInput(BaseModel):
    requested_by: str = "steward"
    note: str | None = None


class StatusQueryInput(BaseModel):
    pass


class EngagementStatus(BaseModel):
    opportunity_id: str
    stage: EngagementStage
    details: str = ""
    missing_fields: list[FieldIssue] = Field(default_factory=list)
    engagement: Engagement | None = None
    erp_customer_id: str | None = None
    erp_project_id: str | None = None
    erp_billing_schedule_id: str | None = None
    psa_workspace: PsaWorkspace | None = None
    rechecks: int = 0
    active_since: datetime | None = None
