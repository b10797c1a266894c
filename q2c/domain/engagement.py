"""Engagement: what was sold (opportunity, billing model, rate card, milestones)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import Enum

from pydantic import BaseModel, Field

from q2c.domain.customer import Customer
from q2c.domain.money import Money


class BillingModel(str, Enum):
    TIME_AND_MATERIALS = "time_and_materials"
    FIXED_FEE = "fixed_fee"
    RETAINER = "retainer"


class RateCardEntry(BaseModel):
    role: str
    rate: Decimal  # per hour, in the engagement currency
    effective_from: date | None = None
    estimated_hours: Decimal = Decimal("0")


class Milestone(BaseModel):
    key: str  # stable identifier (CRM line item id)
    name: str
    amount: Decimal
    due_date: date | None = None
    accepted: bool = False  # set together with invoiced, once the invoice exists
    invoiced: bool = False
    waived: bool = False  # decided not to invoice, by waived_by, because waived_reason
    waived_by: str | None = None
    waived_reason: str | None = None

    @property
    def open(self) -> bool:
        """Neither invoiced nor waived: an engagement cannot close with such a milestone."""
        return not self.invoiced and not self.waived


class Engagement(BaseModel):
    opportunity_id: str
    opportunity_name: str
    customer: Customer
    service_line: str | None = None
    region: str | None = None
    billing_model: BillingModel
    contract_value: Money
    start_date: date | None = None
    end_date: date | None = None
    rate_card: list[RateCardEntry] = Field(default_factory=list)
    milestones: list[Milestone] = Field(default_factory=list)
    retainer_amount: Decimal | None = None  # per service period
    # T&M not-to-exceed (CRM Not_To_Exceed__c); None: the contract value is the cap
    budget_cap: Decimal | None = None
    # expenses: billable to the client? (CRM Expenses_Billable__c; None: yes for T&M, no for
    # fixed fee and retainer) and the contract's markup on them (Expense_Markup_Percent__c)
    expenses_billable: bool | None = None
    expense_markup_percent: Decimal = Decimal(0)
    stage_name: str | None = None  # CRM stage as read

    @property
    def currency(self) -> str:
        return self.contract_value.currency

    @property
    def bills_expenses(self) -> bool:
        """Whether approved billable expenses are invoiced to the client."""
        if self.expenses_billable is not None:
            return self.expenses_billable
        return self.billing_model is BillingModel.TIME_AND_MATERIALS
