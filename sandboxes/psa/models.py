"""Tables of the Kantata sandbox (sqlmodel, on a registry of their own).

The tables live on their own SQLAlchemy registry so that the CRM and ERP sandboxes' tables
never end up in the PSA database (and table names cannot clash across sandboxes).

Kantata facts mirrored here: every object id is rendered as a *string* of digits, foreign ids
too (`"workspace_id": "7001"`); dates are ISO `YYYY-MM-DD`; money is integer cents
(`budget_in_cents`) beside an ISO `currency`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel


def utcnow() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class PsaTable(SQLModel, registry=registry()):
    """Base of every PSA sandbox table; `PsaTable.metadata` holds only these tables."""


class User(PsaTable, table=True):
    __tablename__ = "kantata_users"
    id: int | None = Field(default=None, primary_key=True)
    full_name: str
    email_address: str
    headline: str = ""
    role_id: int | None = None


class Role(PsaTable, table=True):
    __tablename__ = "kantata_roles"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)


class Workspace(PsaTable, table=True):
    __tablename__ = "kantata_workspaces"
    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(index=True)
    description: str = ""
    start_date: str | None = None
    due_date: str | None = None
    budget_in_cents: int | None = None
    currency: str = "USD"
    creator_role: str = "maven"
    status: str = "Not Started"
    archived: bool = False
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)


class Story(PsaTable, table=True):
    __tablename__ = "kantata_stories"
    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(index=True)
    title: str
    description: str = ""
    story_type: str = "task"
    billable: bool = True
    state: str = "not started"
    position: int = 0
    start_date: str | None = None
    due_date: str | None = None
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)


class ResourceRequest(PsaTable, table=True):
    __tablename__ = "kantata_resource_requests"
    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(index=True)
    role_id: int
    hours: str  # decimal text, rendered as a JSON number
    start_date: str | None = None
    end_date: str | None = None
    status: str = "open"
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)


class WorkspaceResource(PsaTable, table=True):
    """Kantata `workspace_resources`: a person (named, `user_id`) or a placeholder (unnamed) in
    a ROLE on one workspace. One user may hold several (e.g. Engineer on one task, Designer on
    another); together they are the user's project roles there, which is what prices time
    booked to the workspace (the account role of the user is only a default)."""

    __tablename__ = "kantata_workspace_resources"
    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(index=True)
    user_id: int | None = Field(default=None, index=True)
    role_id: int
    label: str = ""
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)


class ExternalReference(PsaTable, table=True):
    __tablename__ = "kantata_external_references"
    id: int | None = Field(default=None, primary_key=True)
    subject_type: str = Field(index=True)
    subject_id: int = Field(index=True)
    service_name: str = Field(index=True)
    service_model: str
    service_model_ref: str = Field(index=True)
    status: str | None = None
    external_link: str | None = None
    external_status: str | None = None
    external_message: str | None = None
    last_synced_at: str | None = None
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)


class WorkspaceTemplate(PsaTable, table=True):
    __tablename__ = "kantata_workspace_templates"
    id: int | None = Field(default=None, primary_key=True)
    title: str
    description: str = ""
    service_line: str = Field(index=True)  # a custom field value in a real Kantata account


class TemplateStory(PsaTable, table=True):
    __tablename__ = "kantata_template_stories"
    id: int | None = Field(default=None, primary_key=True)
    template_id: int = Field(index=True)
    title: str
    story_type: str = "task"
    billable: bool = True
    position: int = 0


class TimeEntry(PsaTable, table=True):
    """Kantata `time_entries`: minutes a user logged on a story of a workspace on one day.

    `role_id` is the project role the time was booked under, fixed when the entry is made (a
    later change of the user's role does not touch it); it is empty when the user had no role
    then.

    `approved` turns true when the timesheet submission covering the entry is approved; an
    approved entry is locked. `timesheet_submission_id` is the pending or approved submission
    that covers it (cleared again when that submission is rejected).
    """

    __tablename__ = "kantata_time_entries"
    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(index=True)
    story_id: int | None = Field(default=None, index=True)
    user_id: int = Field(index=True)
    role_id: int | None = None
    date_performed: str = Field(index=True)  # YYYY-MM-DD
    time_in_minutes: int
    billable: bool = True
    approved: bool = Field(default=False, index=True)
    notes: str = ""
    rate_in_cents: int | None = None
    currency: str | None = None
    timesheet_submission_id: int | None = Field(default=None, index=True)
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow, index=True)


class TimesheetSubmission(PsaTable, table=True):
    """Kantata `timesheet_submissions`: one user's time in one workspace for a date range,
    `pending` until approved or rejected. `time_entry_ids` is the covered entries, as text
    ("1,2,3") fixed when the submission is made."""

    __tablename__ = "kantata_timesheet_submissions"
    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(index=True)
    user_id: int = Field(index=True)
    start_date: str
    end_date: str
    status: str = Field(default="pending", index=True)  # pending | approved | rejected
    time_entry_ids: str = ""
    resolution_description: str | None = None
    resolved_at: str | None = None
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)


class Expense(PsaTable, table=True):
    """Kantata `expenses`: a cost a user incurred on a workspace (travel, a subcontractor's
    bill), not related to time; "once created, expenses can be included in generated invoices".

    Kantata's object (the API reference, "Expenses"): `date`, `category` (the expense
    category's name), `notes`, `vendor`, `amount_in_cents` with its `currency` (an expense
    may be in another currency than its workspace), `is_billable`, `reimbursable`,
    `is_invoiced`, `receipt_id` (the receipt attachment, null without one), `story_id`,
    `workspace_id`, `user_id`. Kantata approves expenses through expense report submissions;
    the sandbox keeps the outcome on the expense (`approved`, set by an update or the
    generator) and, like Kantata, locks an approved expense."""

    __tablename__ = "kantata_expenses"
    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(index=True)
    story_id: int | None = None
    user_id: int = Field(index=True)
    date: str = Field(index=True)  # YYYY-MM-DD
    category: str
    notes: str = ""
    vendor: str = ""
    amount_in_cents: int
    currency: str
    is_billable: bool = True
    reimbursable: bool = True
    is_invoiced: bool = False
    receipt_id: int | None = None
    approved: bool = Field(default=False, index=True)
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow, index=True)
