"""Project: the delivery vehicle in ERP (job) and PSA (workspace)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, Field


class Task(BaseModel):
    name: str
    billable: bool = True
    psa_story_id: str | None = None


class ResourceDemand(BaseModel):
    role: str
    hours: Decimal
    psa_resource_request_id: str | None = None


class ProjectTemplate(BaseModel):
    """A PSA project template for a service line."""

    template_id: str
    service_line: str
    name: str
    tasks: list[Task] = Field(default_factory=list)


class Subsidiary(BaseModel):
    """An ERP legal entity."""

    subsidiary_id: str
    name: str
    region: str
    country: str
    currency: str


class PsaWorkspace(BaseModel):
    workspace_id: str
    title: str
    tasks: list[Task] = Field(default_factory=list)
    resource_demand: list[ResourceDemand] = Field(default_factory=list)
