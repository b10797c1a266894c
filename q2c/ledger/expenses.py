"""Expenses q2c posted (`q2c_posted_expense`): one row per PSA expense posted to the ERP.

Why a table of its own (like `q2c.ledger.credits`): an expense is not a time entry (no
minutes, no role; an original amount and currency, the ERP's exchange rate and the converted
amount), and existing tables and writes stay untouched. The table is created on first use
(`PostedExpenses(engine)`); it works on SQLite and PostgreSQL alike.

What a row holds is what the ERP expense report line got: the original amount and currency,
the rate (`ExactRate`, NUMERIC(18,8): rates carry up to 8 places, more than money's 4), and the
amount in the engagement's currency converted once (`q2c.domain.expenses.convert`), so the
ledger, the ERP and the invoice line agree to the minor unit by construction; the invoice's
external ID once an invoice bills it.

Idempotent: the PSA id is the natural key; posting the same expense again (a retried batch, a
re-approved expense) updates its row and keeps `posted_at` and the invoice.

Exceptions (validation or ERP refusals) go to the SAME queue as time (`Ledger.upsert_exception`,
`q2c_time_exception`) under `expense:<PSA id>` (`q2c.domain.expenses.exception_key`), so a
steward's replay and write-off work through the existing actions.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Optional

from sqlalchemy import Column, Numeric, String, func, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, Session, select

from q2c.domain.expenses import PostedExpense
from q2c.ledger.columns import ExactDecimal, UTCDateTime, utcnow
from q2c.ledger.models import LedgerTable

RATE_SCALE = 8
_RATE_QUANTUM = Decimal(1).scaleb(-RATE_SCALE)


class ExactRate(TypeDecorator):
    """An exchange rate, exact: NUMERIC(18,8) on PostgreSQL, canonical text on SQLite (which has
    no exact decimal type); a rate that would need rounding to fit is refused, never changed."""

    impl = Numeric(18, RATE_SCALE, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric(18, RATE_SCALE, asdecimal=True))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, float):
            raise ValueError("refusing a float exchange rate: pass a Decimal")
        try:
            dec = Decimal(str(value)) if not isinstance(value, Decimal) else value
            exact = dec.quantize(_RATE_QUANTUM)
        except InvalidOperation as err:
            raise ValueError(f"not an exchange rate within NUMERIC(18,{RATE_SCALE}): {value!r}") from err
        if exact != dec:
            raise ValueError(f"{value!r} has more than {RATE_SCALE} decimal places; the ledger never rounds a rate")
        return format(exact, "f") if dialect.name == "sqlite" else exact

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return Decimal(value) if not isinstance(value, Decimal) else value.quantize(_RATE_QUANTUM)


class LedgerPostedExpense(LedgerTable, table=True):
    __tablename__ = "q2c_posted_expense"

    id: Optional[int] = Field(default=None, primary_key=True)
    psa_id: str = Field(sa_column=Column(String(64), unique=True, nullable=False))
    erp_expense_report_id: str = Field(max_length=64, index=True)
    opportunity_id: str = Field(index=True, max_length=64)
    category: str = Field(max_length=120)
    date_incurred: date
    billable: bool
    original_amount: Decimal = Field(sa_column=Column(ExactDecimal(), nullable=False))
    original_currency: str = Field(max_length=3)
    exchange_rate: Decimal = Field(sa_column=Column(ExactRate(), nullable=False))
    amount: Decimal = Field(sa_column=Column(ExactDecimal(), nullable=False))
    currency: str = Field(max_length=3)
    posted_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    invoice_external_id: Optional[str] = Field(default=None, max_length=128, index=True)

    def to_domain(self) -> PostedExpense:
        return PostedExpense(
            psa_id=self.psa_id,
            erp_expense_report_id=self.erp_expense_report_id,
            category=self.category,
            date_incurred=self.date_incurred,
            original_amount=self.original_amount,
            original_currency=self.original_currency,
            exchange_rate=self.exchange_rate,
            amount=self.amount,
            currency=self.currency,
            billable=self.billable,
        )


class PostedExpenses:
    """Sync SQLAlchemy, short transactions; from async code call through `asyncio.to_thread`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        LedgerPostedExpense.__table__.create(engine, checkfirst=True)

    def record(self, posted: Iterable[PostedExpense], opportunity_id: str) -> int:
        """Record expenses posted to the ERP as the ERP got them; a repeat updates the row
        (keeps posted_at and the invoice)."""
        table = LedgerPostedExpense.__table__
        count = 0
        now = utcnow()
        with self.engine.begin() as conn:
            for p in posted:
                fields = dict(
                    erp_expense_report_id=p.erp_expense_report_id,
                    opportunity_id=opportunity_id,
                    category=p.category[:120],
                    date_incurred=p.date_incurred,
                    billable=p.billable,
                    original_amount=p.original_amount,
                    original_currency=p.original_currency,
                    exchange_rate=p.exchange_rate,
                    amount=p.amount,
                    currency=p.currency,
                )
                values = dict(psa_id=p.psa_id, posted_at=now, **fields)
                dialect = conn.dialect.name
                if dialect in ("sqlite", "postgresql"):
                    insert = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)
                    conn.execute(insert.values(**values).on_conflict_do_update(index_elements=["psa_id"], set_=fields))
                else:  # pragma: no cover - other dialects: update, else insert
                    result = conn.execute(update(table).where(table.c.psa_id == p.psa_id).values(**fields))
                    if not result.rowcount:
                        conn.execute(table.insert().values(**values))
                count += 1
        return count

    def by_psa_id(self, psa_ids: Iterable[str]) -> dict[str, PostedExpense]:
        """What was posted for each of these PSA expenses (those the ledger knows), 500 at a time."""
        ids = list(dict.fromkeys(psa_ids))
        found: dict[str, PostedExpense] = {}
        with Session(self.engine) as s:
            for start in range(0, len(ids), 500):
                stmt = select(LedgerPostedExpense).where(LedgerPostedExpense.psa_id.in_(ids[start : start + 500]))
                found.update({r.psa_id: r.to_domain() for r in s.exec(stmt).all()})
        return found

    def for_reports(self, report_ids: Iterable[str]) -> list[PostedExpense]:
        """What we posted as these ERP expense reports (those we know of)."""
        ids = list(dict.fromkeys(report_ids))
        if not ids:
            return []
        with Session(self.engine) as s:
            stmt = select(LedgerPostedExpense).where(LedgerPostedExpense.erp_expense_report_id.in_(ids))
            return [r.to_domain() for r in s.exec(stmt).all()]

    def for_opportunity(self, opportunity_id: str, *, uninvoiced_only: bool = False) -> list[LedgerPostedExpense]:
        with Session(self.engine, expire_on_commit=False) as s:
            stmt = select(LedgerPostedExpense).where(LedgerPostedExpense.opportunity_id == opportunity_id)
            if uninvoiced_only:
                stmt = stmt.where(LedgerPostedExpense.invoice_external_id.is_(None))
            return list(s.exec(stmt.order_by(LedgerPostedExpense.date_incurred, LedgerPostedExpense.psa_id)).all())

    def mark_invoiced(self, report_ids: Iterable[str], invoice_external_id: str) -> int:
        """The invoice (external ID) that bills these ERP expense reports."""
        ids = list(dict.fromkeys(report_ids))
        if not ids:
            return 0
        t = LedgerPostedExpense.__table__
        with self.engine.begin() as conn:
            result = conn.execute(
                update(t).where(t.c.erp_expense_report_id.in_(ids)).values(invoice_external_id=invoice_external_id)
            )
            return result.rowcount

    def marked_with_prefix(self, report_ids: Iterable[str], prefix: str) -> set[str]:
        """Which of these expense reports carry an invoice reference starting with `prefix`
        (e.g. a budget write-off's `budget-write-off:`): never billed by q2c."""
        ids = list(dict.fromkeys(report_ids))
        if not ids:
            return set()
        t = LedgerPostedExpense.__table__
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.c.erp_expense_report_id).where(
                    t.c.erp_expense_report_id.in_(ids), t.c.invoice_external_id.like(f"{prefix}%")
                )
            )
            return {r[0] for r in rows}

    def totals(self, opportunity_id: str) -> tuple[int, Decimal, Decimal]:
        """(expenses posted, their amount, the billable part) in the engagement's currency."""
        t = LedgerPostedExpense
        with Session(self.engine) as s:
            rows = s.exec(select(t.amount, t.billable).where(t.opportunity_id == opportunity_id)).all()
        total = sum((a for a, _ in rows), Decimal(0))
        billable = sum((a for a, b in rows if b), Decimal(0))
        return len(rows), total, billable

    def count(self, opportunity_id: str) -> int:
        with Session(self.engine) as s:
            return int(
                s.exec(
                    select(func.count(LedgerPostedExpense.id)).where(
                        LedgerPostedExpense.opportunity_id == opportunity_id
                    )
                ).one()
            )
