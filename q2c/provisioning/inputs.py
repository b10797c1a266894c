"""One input model per setup (provisioning) and change-order activity."""

from __future__ import annotations

from pydantic import BaseModel

from q2c.domain.customer import Customer
from q2c.domain.engagement import Engagement
from q2c.domain.project import ProjectTemplate, Subsidiary


class FetchEngagementInput(BaseModel):
    opportunity_id: str


class ValidateEngagementInput(BaseModel):
    engagement: Engagement


class UpsertCustomerInput(BaseModel):
    customer: Customer
    subsidiary: Subsidiary


class UpsertProjectInput(BaseModel):
    engagement: Engagement
    erp_customer_id: str
    subsidiary: Subsidiary


class UpsertBillingScheduleInput(BaseModel):
    engagement: Engagement
    erp_project_id: str


class ProvisionWorkspaceInput(BaseModel):
    engagement: Engagement
    template: ProjectTemplate
    erp_project_id: str


class WriteBackInput(BaseModel):
    opportunity_id: str
    erp_customer_id: str | None = None
    erp_project_id: str | None = None
    psa_workspace_id: str | None = None
    status: str
    contract_version: int | None = None  # 1 at activation


class WriteCustomerInput(BaseModel):
    account_id: str
    patch: dict[str, str]


class ApplyAmendmentInput(BaseModel):
    opportunity_id: str
    engagement: Engagement
    erp_customer_id: str
    erp_project_id: str
    subsidiary: Subsidiary
    psa_workspace_id: str
    version: int
