"""Delivery to cash: time entries, invoices, payments."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import Enum

from pydantic import BaseModel, Field


class ApprovalState(str, Enum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"


class TimeEntry(BaseModel):
    psa_id: str
    person: str
    role: str
    task_id: str
    date_performed: date
    minutes: int
    billable: bool
    approval: ApprovalState = ApprovalState.APPROVED


class InvoiceLine(BaseModel):
    description: str
    quantity: Decimal
    rate: Decimal
    amount: Decimal


class InvoiceStatus(str, Enum):
    OPEN = "open"
    PAID_IN_FULL = "paid_in_full"
    PARTIALLY_PAID = "partially_paid"


class Invoice(BaseModel):
    erp_id: str | None = None
    number: str | None = None
    period_start: date
    period_end: date
    lines: list[InvoiceLine] = Field(default_factory=list)
    total: Decimal
    currency: str
    status: InvoiceStatus = InvoiceStatus.OPEN


class Payment(BaseModel):
    invoice_erp_id: str
    amount: Decimal
    currency: str
    received_on: date
