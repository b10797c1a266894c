"""One input model per activity."""

from __future__ import annotations

from pydantic import BaseModel

from domain.customer import Customer
from domain.engagement import Engagement
from domain.project import ProjectTemplate, Subsidiary


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
    erp_customer_id: str
    erp_project_id: str
    psa_workspace_id: str
    status: str
