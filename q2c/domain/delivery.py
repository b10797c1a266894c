"""Delivery to cash: time entries, invoices, payments."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import Enum

from pydantic import BaseModel, Field, model_validator

from q2c.domain.money import entry_amount, is_currency


class InvoiceStatus(str, Enum):
    OPEN = "open"
    PARTIALLY_PAID = "partially_paid"
    PAID_IN_FULL = "paid_in_full"


class ApprovalState(str, Enum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"


class TimeEntry(BaseModel):
    """One PSA time entry (Kantata `time_entries`); only approved entries leave the PSA."""

    psa_id: str
    person: str  # PSA user id
    person_name: str | None = None
    role: str  # role name ON THE ENTRY (as booked), matched against the rate card; "" if unknown
    task_id: str  # PSA story id
    workspace_id: str | None = None
    date_performed: date
    minutes: int
    billable: bool
    approval: ApprovalState = ApprovalState.APPROVED
    notes: str | None = None
    role_issue: str | None = None  # why the PSA could not tell the entry's role (role is "")

    @property
    def hours(self) -> Decimal:
        return Decimal(self.minutes) / Decimal(60)


class AccountingPeriod(BaseModel):
    """An ERP posting period (NetSuite `accountingPeriod`)."""

    period_id: str
    name: str  # e.g. "Jan 2027"
    start_date: date
    end_date: date
    closed: bool = False


class PostedTime(BaseModel):
    """A time entry as posted to the ERP (`timeBill`, external ID = PSA entry id)."""

    psa_id: str
    erp_time_bill_id: str
    role: str
    date_performed: date
    minutes: int
    billable: bool
    rate: Decimal | None = None  # per hour, None when not billable
    currency: str
    # What the entry bills, by the one rule (`q2c.domain.money.entry_amount`); None when not
    # billable. Filled in from minutes and rate when not given; given, it is the figure the ERP
    # and the ledger hold for the entry.
    amount: Decimal | None = None

    @model_validator(mode="after")
    def _amount_by_the_rule(self) -> PostedTime:
        if not self.billable or self.rate is None:
            self.amount = None
        elif self.amount is None and is_currency(self.currency):
            self.amount = entry_amount(self.minutes, self.rate, self.currency)
        return self


class PaymentStatus(BaseModel):
    """What the ERP says about one invoice's collection."""

    invoice_erp_id: str
    invoice_number: str | None = None
    total: Decimal
    amount_paid: Decimal
    open_balance: Decimal
    currency: str
    due_date: date | None = None
    days_overdue: int = 0
    status: InvoiceStatus = InvoiceStatus.OPEN


class InvoiceLine(BaseModel):
    """One invoice line. A time line's amount is the sum of its entries' amounts (see
    domain/billing.py); its quantity is hours for display, never multiplied."""

    description: str
    quantity: Decimal
    rate: Decimal
    amount: Decimal
    time_bill_ids: list[str] = Field(default_factory=list)  # a time line: the ERP timeBills it bills
    expense_ids: list[str] = Field(default_factory=list)  # an expense line: the ERP expense reports it bills


class Invoice(BaseModel):
    external_id: str  # deterministic: inv-<opportunity>-<period or milestone>
    erp_id: str | None = None
    number: str | None = None
    period_start: date
    period_end: date
    lines: list[InvoiceLine] = Field(default_factory=list)
    total: Decimal
    currency: str
    status: InvoiceStatus = InvoiceStatus.OPEN
    time_bill_ids: list[str] = Field(default_factory=list)  # ERP timeBills this invoice bills
