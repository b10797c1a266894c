"""The ledger's tables (all prefixed `q2c_`, on their own MetaData: `LedgerTable.metadata`).

Natural keys carry the idempotency: a repeated write with the same key updates the row
instead of adding one (see `q2c.ledger.store`).

- `q2c_xref`            one ID per (entity, system, external_key), e.g. the ERP customer
                        internal id for external key `opp-006...`;
- `q2c_posted_time`     one row per PSA time entry posted to the ERP (`timeBill`);
- `q2c_invoice`         one row per invoice external id, with its collection status;
- `q2c_time_exception`  the steward queue of time entries that failed validation/posting,
                        id `exc-<psa_id>` so the same entry failing again is the same item;
- `q2c_api_call`        append-only audit of every vendor call (with Temporal context);
- `q2c_inbound_message` one row per message a webhook took (Standard Webhooks `webhook-id`,
                        Outbound Message notification `Id`), so a redelivery or a replay is
                        recognised on any replica and after a restart (see `q2c.ledger.inbound`).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Optional

from sqlalchemy import Column, Index, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from q2c.domain.delivery import InvoiceStatus, PostedTime
from q2c.ledger.columns import ExactDecimal, UTCDateTime, utcnow

SYSTEMS = ("crm", "psa", "erp")
EXCEPTION_OPEN = "open"
EXCEPTION_RESOLVED = "resolved"
EXCEPTION_WRITTEN_OFF = "write_off"  # a steward decided it will never be billed (who and why in message)

# Reason codes of the time-entry exception queue (free text is allowed, these are the known ones).
PERIOD_CLOSED = "PERIOD_CLOSED"
TASK_NOT_BILLABLE = "TASK_NOT_BILLABLE"
TASK_UNMAPPED = "TASK_UNMAPPED"
NO_RATE = "NO_RATE"
PROJECT_CLOSED = "PROJECT_CLOSED"
ERP_REJECTED = "ERP_REJECTED"


def exception_id(psa_id: str) -> str:
    return f"exc-{psa_id}"


def _money(nullable: bool = False):
    return Field(default=None if nullable else Decimal("0"), sa_column=Column(ExactDecimal(), nullable=nullable))


def _ts(nullable: bool = False, index: bool = False):
    column = Column(UTCDateTime(), nullable=nullable, index=index)
    if nullable:
        return Field(default=None, sa_column=column)
    return Field(default_factory=utcnow, sa_column=column)


class LedgerTable(SQLModel, registry=registry()):
    """Base of every ledger table; `LedgerTable.metadata` holds only these tables."""


class Xref(LedgerTable, table=True):
    __tablename__ = "q2c_xref"
    __table_args__ = (UniqueConstraint("entity", "system", "external_key", name="uq_q2c_xref_key"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    opportunity_id: str = Field(index=True, max_length=64)
    entity: str = Field(max_length=40)  # customer, project, billing_schedule, workspace, time_entry, invoice
    system: str = Field(max_length=8)  # crm | psa | erp
    external_key: str = Field(max_length=255)
    system_id: str = Field(max_length=255)
    updated_at: datetime = _ts()


class LedgerPostedTime(LedgerTable, table=True):
    """One PSA entry as posted to the ERP: exactly the minutes, rate and amount the ERP accepted.

    `amount` is the entry's billable amount by the one rule (`q2c.domain.money.entry_amount`:
    exact minutes x rate / 60, rounded half-up once to the currency's minor unit), the same
    figure the ERP timeBill carries and the invoice line sums. `rate` and `amount` are
    NUMERIC(18,4) (`ExactDecimal`), which holds every rate `q2c.domain.billing.rate_issue` lets in
    (at most MAX_RATE_PLACES = 4 decimals) and every minor unit (at most 3) without rounding."""

    __tablename__ = "q2c_posted_time"

    id: Optional[int] = Field(default=None, primary_key=True)
    psa_id: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    erp_time_bill_id: str = Field(max_length=64)
    opportunity_id: str = Field(index=True, max_length=64)
    role: str = Field(max_length=120)
    date_performed: date
    minutes: int
    billable: bool
    rate: Optional[Decimal] = _money(nullable=True)
    amount: Optional[Decimal] = _money(nullable=True)  # None when not billable
    currency: str = Field(max_length=3)
    posted_at: datetime = _ts()
    invoice_external_id: Optional[str] = Field(default=None, max_length=128, index=True)

    def to_domain(self) -> PostedTime:
        """As posted; a row written before amounts were stored gets its amount by the rule."""
        return PostedTime(
            psa_id=self.psa_id,
            erp_time_bill_id=self.erp_time_bill_id,
            role=self.role,
            date_performed=self.date_performed,
            minutes=self.minutes,
            billable=self.billable,
            rate=self.rate,
            currency=self.currency,
            amount=self.amount,
        )

    @property
    def billed_amount(self) -> Decimal:
        """What the entry bills (0 when not billable): the stored amount, or for a row written
        before amounts were stored, the same figure by the rule."""
        return self.to_domain().amount or Decimal("0")


class LedgerInvoice(LedgerTable, table=True):
    __tablename__ = "q2c_invoice"

    id: Optional[int] = Field(default=None, primary_key=True)
    external_id: str = Field(max_length=128, sa_column_kwargs={"unique": True})
    erp_id: Optional[str] = Field(default=None, max_length=64, index=True)
    number: Optional[str] = Field(default=None, max_length=64)
    opportunity_id: str = Field(index=True, max_length=64)
    period_start: date
    period_end: date
    total: Decimal = _money()
    currency: str = Field(max_length=3)
    status: str = Field(default=InvoiceStatus.OPEN.value, max_length=20)
    amount_paid: Decimal = _money()
    open_balance: Decimal = _money()
    days_overdue: int = 0
    updated_at: datetime = _ts()


class TimeException(LedgerTable, table=True):
    __tablename__ = "q2c_time_exception"
    __table_args__ = (Index("ix_q2c_time_exception_opp_status", "opportunity_id", "status"),)

    id: str = Field(primary_key=True, max_length=80)  # exc-<psa_id>
    opportunity_id: str = Field(max_length=64)
    workflow_id: Optional[str] = Field(default=None, max_length=255)
    psa_id: str = Field(max_length=64, index=True)
    reason_code: str = Field(max_length=40)
    message: str = Field(default="", max_length=2000)
    status: str = Field(default=EXCEPTION_OPEN, max_length=10)
    attempts: int = 1
    first_seen: datetime = _ts()
    last_seen: datetime = _ts()
    resolved_at: Optional[datetime] = _ts(nullable=True)


class ApiCall(LedgerTable, table=True):
    __tablename__ = "q2c_api_call"

    id: Optional[int] = Field(default=None, primary_key=True)
    at: datetime = _ts(index=True)
    correlation_id: str = Field(max_length=64, index=True)
    system: str = Field(max_length=16, index=True)
    operation: str = Field(max_length=120)
    method: str = Field(max_length=10)
    url: str = Field(max_length=2000)
    status: Optional[int] = None
    outcome: str = Field(max_length=16)
    duration_ms: float = 0.0
    error_code: Optional[str] = Field(default=None, max_length=120)
    workflow_id: Optional[str] = Field(default=None, max_length=255, index=True)
    activity_type: Optional[str] = Field(default=None, max_length=255)
    attempt: Optional[int] = None
    actor: Optional[str] = Field(default=None, max_length=255)


INBOUND_PENDING = "pending"  # a request is acting on it now (or crashed doing so: see the lease)
INBOUND_DONE = "done"  # acted on: the same message again does nothing


class InboundMessage(LedgerTable, table=True):
    """A message a webhook took, by its sender's ID. The unique key is what de-duplicates: the
    row is written with an insert that does nothing on a conflict, so two replicas receiving the
    same message at once cannot both act on it. Rows older than the source's window are pruned."""

    __tablename__ = "q2c_inbound_message"
    __table_args__ = (UniqueConstraint("source", "message_id", name="uq_q2c_inbound_message_key"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    source: str = Field(max_length=80)  # standard-webhooks | salesforce-om:<org id>
    message_id: str = Field(max_length=255)
    state: str = Field(default=INBOUND_PENDING, max_length=10)
    received_at: datetime = _ts(index=True)  # claimed at (a takeover after the lease renews it)
    done_at: Optional[datetime] = _ts(nullable=True)


LEDGER_TABLES = (Xref, LedgerPostedTime, LedgerInvoice, TimeException, ApiCall, InboundMessage)
