"""One input model per delivery-to-cash activity."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import BaseModel, Field

from q2c.domain.budget import BudgetState
from q2c.domain.delivery import InvoiceLine
from q2c.domain.engagement import RateCardEntry
from q2c.domain.expenses import ExpensePolicy


class PostTimeInput(BaseModel):
    opportunity_id: str
    workflow_id: str
    erp_project_id: str
    psa_workspace_id: str
    through: date  # post approved time dated up to and including this date
    rate_card: list[RateCardEntry]
    bill_time: bool  # time and materials: billable time carries a rate and is invoiced
    currency: str
    only_psa_ids: list[str] | None = None  # a replay of specific entries
    replay_open: bool = False  # a replay of every open exception of the engagement (the ledger knows them)
    batch_size: int = 50


class IssueInvoiceInput(BaseModel):
    opportunity_id: str
    external_id: str
    erp_customer_id: str
    erp_project_id: str
    period_start: date
    period_end: date
    currency: str
    bill_unbilled_time: bool = False  # time and materials: lines from unbilled ERP time <= period_end
    lines: list[InvoiceLine] = Field(default_factory=list)  # fixed fee / retainer / re-billed lines
    # not-to-exceed: bill unbilled time (in date order, whole entries) only while the invoice
    # stays within this amount; the rest is held (posted, unbilled). None: no cap.
    bill_up_to: Decimal | None = None
    # the contract's expense terms: billable expenses (at cost + markup) join the invoice; None: none
    expense_policy: ExpensePolicy | None = None


class WriteOffHeldInput(BaseModel):
    """A steward's write-off of the time held at the cap: what `bill_up_to` would hold now."""

    opportunity_id: str
    erp_project_id: str
    through: date
    room: Decimal
    currency: str
    marker: str  # recorded in the ledger on each entry written off (never invoiced afterwards)
    expense_policy: ExpensePolicy | None = None


class RefreshPaymentsInput(BaseModel):
    """Every invoice of the engagement (not only the open ones): the CRM's collection fields are
    totals over all of them as the ERP has them."""

    opportunity_id: str
    invoice_erp_ids: list[str]
    as_of: date
    erp_customer_id: str | None = None  # for the customer's unapplied payments (a credit)
    budget: BudgetState | None = None  # T&M: the budget position, written to the CRM with the totals


class CloseSystemsInput(BaseModel):
    opportunity_id: str
    erp_project_id: str | None = None
    psa_workspace_id: str | None = None


class WriteOffExceptionsInput(BaseModel):
    opportunity_id: str
    psa_ids: list[str] = Field(default_factory=list)  # empty: every open exception
    reason: str
    requested_by: str


class CrmStatusInput(BaseModel):
    opportunity_id: str
    status: str
