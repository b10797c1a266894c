"""Credit notes q2c raised (`q2c_credit_note`): one row per ERP credit memo, by external ID.

Why a table of its own: an issued invoice never changes (NetSuite corrects it with a credit
memo applied to it), so `q2c_invoice` keeps the invoice as issued and this table says what
was credited against it, by whom and why. Month-end reconciliation reads both: billed is the
invoices' totals, credited is this table, and the ERP's open balance must be billed - paid -
credited. Kept apart from `q2c.ledger.store` so existing tables and writes are untouched; the
table is created on first use (`CreditNotes(engine)`), like the console sessions.

Idempotent: the external ID (`cm-<request>`) is the natural key, so the activity retried
after a worker restart records the same row again, never a second one.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Optional

from sqlalchemy import Column, String, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, select

from q2c.ledger.columns import ExactDecimal, UTCDateTime, utcnow
from q2c.ledger.models import LedgerTable


class LedgerCreditNote(LedgerTable, table=True):
    __tablename__ = "q2c_credit_note"

    id: Optional[int] = Field(default=None, primary_key=True)
    external_id: str = Field(sa_column=Column(String(128), unique=True, nullable=False))
    erp_id: Optional[str] = Field(default=None, max_length=64, index=True)
    number: Optional[str] = Field(default=None, max_length=64)
    opportunity_id: str = Field(index=True, max_length=64)
    invoice_external_id: str = Field(index=True, max_length=128)
    invoice_erp_id: Optional[str] = Field(default=None, max_length=64)
    amount: Decimal = Field(default=Decimal("0"), sa_column=Column(ExactDecimal(), nullable=False))
    currency: str = Field(max_length=3)
    reason: str = Field(default="", max_length=1000)
    requested_by: str = Field(default="", max_length=200)
    credited_on: date
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class CreditNotes:
    """Sync SQLAlchemy, short transactions; from async code call through `asyncio.to_thread`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        LedgerCreditNote.__table__.create(engine, checkfirst=True)

    def record(self, note: LedgerCreditNote) -> None:
        """Insert the credit note, or refresh the ERP's ID and number on the one with its
        external ID (amount, reason and who asked never change: the ERP memo cannot)."""
        t = LedgerCreditNote.__table__
        values = note.model_dump(exclude={"id"})
        try:
            with self.engine.begin() as conn:
                conn.execute(t.insert().values(**values))
        except IntegrityError:
            with self.engine.begin() as conn:
                conn.execute(
                    update(t).where(t.c.external_id == note.external_id).values(erp_id=note.erp_id, number=note.number)
                )

    def for_opportunity(self, opportunity_id: str) -> list[LedgerCreditNote]:
        with Session(self.engine) as s:
            stmt = select(LedgerCreditNote).where(LedgerCreditNote.opportunity_id == opportunity_id)
            return list(s.exec(stmt.order_by(LedgerCreditNote.credited_on, LedgerCreditNote.id)).all())

    def credited_by_invoice(self, invoice_external_ids: Iterable[str]) -> dict[str, Decimal]:
        """Invoice external ID -> what q2c credited on it."""
        wanted = list(invoice_external_ids)
        if not wanted:
            return {}
        with Session(self.engine) as s:
            rows = s.exec(select(LedgerCreditNote).where(LedgerCreditNote.invoice_external_id.in_(wanted))).all()
        out: dict[str, Decimal] = {}
        for r in rows:
            out[r.invoice_external_id] = out.get(r.invoice_external_id, Decimal(0)) + r.amount
        return out
