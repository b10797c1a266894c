"""`Ledger`: idempotent, thread-safe writes and simple reads over the q2c ledger tables.

Every write is keyed by a natural key and written as one atomic upsert
(`INSERT ... ON CONFLICT DO UPDATE` on SQLite and PostgreSQL; other dialects fall back to
insert, and on IntegrityError update), so a retried activity, a replayed exception or two
workers racing never add a second row. Sync SQLAlchemy: from async code call the methods
through `asyncio.to_thread`.

    ledger = Ledger.from_url(ledger_url()); ledger.create_all()
    ledger.record_posted_time(posted, opportunity_id="006...")
    ledger.upsert_exception(opp, wf_id, psa_id, "PERIOD_CLOSED", "period Jan 2027 is closed")
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, func, inspect, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from q2c.domain.budget import BUDGET_WRITE_OFF_PREFIX  # noqa: F401 (re-exported: the ledger's marker)
from q2c.domain.delivery import Invoice, PaymentStatus, PostedTime
from q2c.domain.text import clip
from q2c.ledger.columns import utcnow
from q2c.ledger.config import make_ledger_engine
from q2c.ledger.models import (
    EXCEPTION_OPEN,
    EXCEPTION_RESOLVED,
    EXCEPTION_WRITTEN_OFF,
    SYSTEMS,
    ApiCall,
    LedgerInvoice,
    LedgerPostedTime,
    LedgerTable,
    TimeException,
    Xref,
    exception_id,
)
from q2c.vendors.calls import CallRecord

_ZERO = Decimal("0")


def api_call_row(
    record: CallRecord,
    *,
    at: datetime | None = None,
    workflow_id: str | None = None,
    activity_type: str | None = None,
    attempt: int | None = None,
    actor: str | None = None,
) -> dict:
    """One `q2c_api_call` row for a vendor call, stamped now unless `at` is given."""
    return {
        "at": at or utcnow(),
        "correlation_id": record.correlation_id,
        "system": record.system,
        "operation": record.operation,
        "method": record.method,
        "url": clip(record.url, 2000),
        "status": record.status,
        "outcome": record.outcome,
        "duration_ms": float(record.duration_ms),
        "error_code": record.error_code,
        "workflow_id": workflow_id,
        "activity_type": activity_type,
        "attempt": attempt,
        "actor": actor,
    }


class Ledger:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def from_url(cls, url: str) -> Ledger:
        return cls(make_ledger_engine(url))

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=False)

    def create_all(self) -> None:
        LedgerTable.metadata.create_all(self.engine)
        self._add_posted_amount_column()

    def dispose(self) -> None:
        self.engine.dispose()

    # --- upsert plumbing ---------------------------------------------------------------
    def _upsert(self, conn, table: Table, values: dict[str, Any], keys: Sequence[str], set_: dict[str, Any]) -> None:
        """Insert `values`; if a row with the same `keys` exists, apply `set_` to it instead.

        `set_` values may be SQL expressions over the existing row (e.g. attempts + 1).
        """
        dialect = conn.dialect.name
        if dialect in ("sqlite", "postgresql"):
            insert = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)
            stmt = insert.values(**values).on_conflict_do_update(index_elements=list(keys), set_=set_)
            conn.execute(stmt)
            return
        where = [table.c[k] == values[k] for k in keys]
        for _ in range(3):
            result = conn.execute(update(table).where(*where).values(**set_))
            if result.rowcount:
                return
            try:
                with conn.begin_nested():
                    conn.execute(table.insert().values(**values))
                return
            except IntegrityError:
                continue  # a concurrent writer inserted it first: update it
        raise RuntimeError(f"could not upsert into {table.name} for key {[values[k] for k in keys]}")

    # --- cross-references --------------------------------------------------------------
    def record_xref(self, opportunity_id: str, entity: str, system: str, external_key: str, system_id: str) -> None:
        """Remember that `external_key` is `system_id` in `system` (crm|psa|erp) for this entity."""
        if system not in SYSTEMS:
            raise ValueError(f"system must be one of {SYSTEMS}, not {system!r}")
        now = utcnow()
        table = Xref.__table__
        with self.engine.begin() as conn:
            self._upsert(
                conn,
                table,
                dict(
                    opportunity_id=opportunity_id,
                    entity=entity,
                    system=system,
                    external_key=external_key,
                    system_id=str(system_id),
                    updated_at=now,
                ),
                ("entity", "system", "external_key"),
                dict(opportunity_id=opportunity_id, system_id=str(system_id), updated_at=now),
            )

    def xref(self, entity: str, system: str, external_key: str) -> str | None:
        with Session(self.engine) as s:
            row = s.exec(
                select(Xref).where(Xref.entity == entity, Xref.system == system, Xref.external_key == external_key)
            ).first()
            return row.system_id if row else None

    def xrefs(self, opportunity_id: str) -> list[Xref]:
        return self._all(
            select(Xref)
            .where(Xref.opportunity_id == opportunity_id)
            .order_by(Xref.entity, Xref.system, Xref.external_key)
        )

    # --- posted time ----------------------------------------------------------------------
    def _add_posted_amount_column(self) -> None:
        """A ledger created before posted amounts were stored gets the (nullable) column; its
        old rows read their amount by the rule (`LedgerPostedTime.to_domain`)."""
        table = LedgerPostedTime.__table__
        with self.engine.connect() as conn:
            present = {c["name"] for c in inspect(conn).get_columns(table.name)}
        if "amount" in present:
            return
        column_type = table.c.amount.type.compile(dialect=self.engine.dialect)
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN amount {column_type}")

    def record_posted_time(self, entries: Iterable[PostedTime], opportunity_id: str) -> int:
        """Record time entries posted to the ERP, with the amount posted (the entry's amount by
        the rule, as the ERP's timeBill holds it); a repeat updates (keeps posted_at and invoice)."""
        table = LedgerPostedTime.__table__
        count = 0
        now = utcnow()
        with self.engine.begin() as conn:
            for e in entries:
                fields = dict(
                    erp_time_bill_id=e.erp_time_bill_id,
                    opportunity_id=opportunity_id,
                    role=e.role,
                    date_performed=e.date_performed,
                    minutes=e.minutes,
                    billable=e.billable,
                    rate=e.rate,
                    amount=e.amount,
                    currency=e.currency,
                )
                self._upsert(conn, table, dict(psa_id=e.psa_id, posted_at=now, **fields), ("psa_id",), fields)
                count += 1
        return count

    def mark_time_invoiced(self, psa_ids: Iterable[str], invoice_external_id: str) -> int:
        ids = list(psa_ids)
        if not ids:
            return 0
        with self.engine.begin() as conn:
            result = conn.execute(
                update(LedgerPostedTime.__table__)
                .where(LedgerPostedTime.__table__.c.psa_id.in_(ids))
                .values(invoice_external_id=invoice_external_id)
            )
            return result.rowcount

    def budget_written_off_bills(self, erp_time_bill_ids: Iterable[str]) -> set[str]:
        """Which of these timeBills a steward wrote off at the not-to-exceed cap: posted, never
        invoiced (the ERP still lists them as unbilled; q2c never bills them)."""
        ids = list(dict.fromkeys(erp_time_bill_ids))
        found: set[str] = set()
        table = LedgerPostedTime.__table__
        for start in range(0, len(ids), 500):
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(table.c.erp_time_bill_id).where(
                        table.c.erp_time_bill_id.in_(ids[start : start + 500]),
                        table.c.invoice_external_id.like(f"{BUDGET_WRITE_OFF_PREFIX}%"),
                    )
                )
                found.update(r[0] for r in rows)
        return found

    def posted_time(self, opportunity_id: str, *, uninvoiced_only: bool = False) -> list[LedgerPostedTime]:
        stmt = select(LedgerPostedTime).where(LedgerPostedTime.opportunity_id == opportunity_id)
        if uninvoiced_only:
            stmt = stmt.where(LedgerPostedTime.invoice_external_id.is_(None))
        return self._all(stmt.order_by(LedgerPostedTime.date_performed, LedgerPostedTime.psa_id))

    def posted_time_for_bills(self, erp_time_bill_ids: Iterable[str]) -> list[PostedTime]:
        """What we posted as these ERP timeBills (those we know of)."""
        ids = list(erp_time_bill_ids)
        if not ids:
            return []
        rows = self._all(select(LedgerPostedTime).where(LedgerPostedTime.erp_time_bill_id.in_(ids)))
        return [r.to_domain() for r in rows]

    def posted_time_by_psa_id(self, psa_ids: Iterable[str]) -> dict[str, PostedTime]:
        """What was posted for each of these PSA entries (those the ledger knows), as the ERP
        got it: the posting run compares an approved entry with it to tell new or changed time
        (post) from time already posted unchanged (skip). Read 500 ids at a time."""
        ids = list(dict.fromkeys(psa_ids))
        found: dict[str, PostedTime] = {}
        for start in range(0, len(ids), 500):
            rows = self._all(select(LedgerPostedTime).where(LedgerPostedTime.psa_id.in_(ids[start : start + 500])))
            found.update({r.psa_id: r.to_domain() for r in rows})
        return found

    # The PSA time watermark: the moment (PSA clock) after which the next posting run reads
    # changed approved time. Kept as a cross-reference row (entity TIME_WATERMARK, system psa,
    # keyed by workspace), so no table changes; the value is an ISO 8601 UTC timestamp.
    TIME_WATERMARK = "psa_time_watermark"

    def time_watermark(self, workspace_id: str) -> datetime | None:
        """The PSA time watermark of a workspace, None before its first complete posting run."""
        value = self.xref(self.TIME_WATERMARK, "psa", str(workspace_id))
        return datetime.fromisoformat(value) if value else None

    def record_time_watermark(self, opportunity_id: str, workspace_id: str, at: datetime) -> None:
        """Set the workspace's PSA time watermark (the caller computes it; it may move back)."""
        self.record_xref(opportunity_id, self.TIME_WATERMARK, "psa", str(workspace_id), at.isoformat())

    def posted_among(self, psa_ids: Iterable[str]) -> set[str]:
        ids = list(psa_ids)
        if not ids:
            return set()
        with Session(self.engine) as s:
            return set(s.exec(select(LedgerPostedTime.psa_id).where(LedgerPostedTime.psa_id.in_(ids))).all())

    def posted_totals(self, opportunity_id: str) -> tuple[int, int, date | None]:
        """(entries, minutes, latest date) posted for an engagement: exact however often a
        posting was retried, since each entry is one row keyed by its PSA id."""
        with Session(self.engine) as s:
            count, minutes, last = s.exec(
                select(
                    func.count(LedgerPostedTime.id),
                    func.coalesce(func.sum(LedgerPostedTime.minutes), 0),
                    func.max(LedgerPostedTime.date_performed),
                ).where(LedgerPostedTime.opportunity_id == opportunity_id)
            ).one()
            return int(count), int(minutes), last

    def is_posted(self, psa_id: str) -> bool:
        with Session(self.engine) as s:
            return s.exec(select(LedgerPostedTime.id).where(LedgerPostedTime.psa_id == psa_id)).first() is not None

    # --- invoices and payments -------------------------------------------------------------
    def record_invoice(self, invoice: Invoice, opportunity_id: str) -> None:
        """Record an invoice by external id. A repeat updates its ERP id/number/period/total but
        never forgets a known ERP id or number, nor the payment fields (see update_payment)."""
        t = LedgerInvoice.__table__
        now = utcnow()
        with self.engine.begin() as conn:
            values = dict(
                external_id=invoice.external_id,
                erp_id=invoice.erp_id,
                number=invoice.number,
                opportunity_id=opportunity_id,
                period_start=invoice.period_start,
                period_end=invoice.period_end,
                total=invoice.total,
                currency=invoice.currency,
                status=invoice.status.value,
                amount_paid=_ZERO,
                open_balance=invoice.total,
                days_overdue=0,
                updated_at=now,
            )
            set_ = dict(
                opportunity_id=opportunity_id,
                period_start=invoice.period_start,
                period_end=invoice.period_end,
                total=invoice.total,
                currency=invoice.currency,
                updated_at=now,
            )
            if invoice.erp_id:
                set_["erp_id"] = invoice.erp_id
            if invoice.number:
                set_["number"] = invoice.number
            self._upsert(conn, t, values, ("external_id",), set_)
            # Nothing collected yet: the open balance follows the (possibly corrected) total.
            conn.execute(
                update(t)
                .where(t.c.external_id == invoice.external_id, t.c.amount_paid == _ZERO)
                .values(open_balance=invoice.total)
            )

    def update_payment(self, payment: PaymentStatus) -> bool:
        """Apply the ERP's collection status to the invoice with that ERP id; False if unknown."""
        t = LedgerInvoice.__table__
        values: dict[str, Any] = dict(
            amount_paid=payment.amount_paid,
            open_balance=payment.open_balance,
            days_overdue=payment.days_overdue,
            status=payment.status.value,
            total=payment.total,
            updated_at=utcnow(),
        )
        if payment.invoice_number:
            values["number"] = payment.invoice_number
        with self.engine.begin() as conn:
            result = conn.execute(update(t).where(t.c.erp_id == payment.invoice_erp_id).values(**values))
            return result.rowcount > 0

    def invoices(self, opportunity_id: str | None = None) -> list[LedgerInvoice]:
        stmt = select(LedgerInvoice)
        if opportunity_id is not None:
            stmt = stmt.where(LedgerInvoice.opportunity_id == opportunity_id)
        return self._all(stmt.order_by(LedgerInvoice.period_start, LedgerInvoice.external_id))

    def get_invoice(self, external_id: str) -> LedgerInvoice | None:
        with Session(self.engine) as s:
            return s.exec(select(LedgerInvoice).where(LedgerInvoice.external_id == external_id)).first()

    # --- time-entry exceptions (steward queue) -------------------------------------------------
    def upsert_exception(
        self, opportunity_id: str, workflow_id: str | None, psa_id: str, reason_code: str, message: str
    ) -> str:
        """Open (or re-open) the exception for this PSA entry; a repeat counts one more attempt
        and refreshes reason, message and last_seen. Returns its id `exc-<psa_id>`."""
        t = TimeException.__table__
        exc_id = exception_id(psa_id)
        now = utcnow()
        message = (message or "")[:2000]
        with self.engine.begin() as conn:
            self._upsert(
                conn,
                t,
                dict(
                    id=exc_id,
                    opportunity_id=opportunity_id,
                    workflow_id=workflow_id,
                    psa_id=psa_id,
                    reason_code=reason_code,
                    message=message,
                    status=EXCEPTION_OPEN,
                    attempts=1,
                    first_seen=now,
                    last_seen=now,
                    resolved_at=None,
                ),
                ("id",),
                dict(
                    opportunity_id=opportunity_id,
                    workflow_id=workflow_id,
                    reason_code=reason_code,
                    message=message,
                    status=EXCEPTION_OPEN,
                    attempts=t.c.attempts + 1,
                    last_seen=now,
                    resolved_at=None,
                ),
            )
        return exc_id

    def resolve_exceptions(self, psa_ids: Iterable[str]) -> int:
        """Mark the open exceptions of these PSA entries resolved; returns how many were open."""
        ids = [exception_id(p) for p in psa_ids]
        if not ids:
            return 0
        t = TimeException.__table__
        with self.engine.begin() as conn:
            result = conn.execute(
                update(t)
                .where(t.c.id.in_(ids), t.c.status == EXCEPTION_OPEN)
                .values(status=EXCEPTION_RESOLVED, resolved_at=utcnow())
            )
            return result.rowcount

    def list_exceptions(
        self, opportunity_id: str | None = None, status: str | None = EXCEPTION_OPEN
    ) -> list[TimeException]:
        """Exceptions, oldest first; status "open", "resolved", or None/"all" for both."""
        stmt = select(TimeException)
        if opportunity_id is not None:
            stmt = stmt.where(TimeException.opportunity_id == opportunity_id)
        if status not in (None, "all"):
            if status not in (EXCEPTION_OPEN, EXCEPTION_RESOLVED, EXCEPTION_WRITTEN_OFF):
                raise ValueError(f"status must be open, resolved, {EXCEPTION_WRITTEN_OFF} or all, not {status!r}")
            stmt = stmt.where(TimeException.status == status)
        return self._all(stmt.order_by(TimeException.first_seen, TimeException.id))

    def get_exception(self, exc_id: str) -> TimeException | None:
        with Session(self.engine) as s:
            return s.get(TimeException, exc_id)

    def open_exception_summary(
        self, opportunity_id: str, sample: int
    ) -> tuple[int, dict[str, int], list[TimeException]]:
        """The engagement's open exceptions as the workflow carries them: the count, the count
        per reason code, and the first `sample` by PSA id (the workflow never holds them all)."""
        t = TimeException.__table__
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.c.reason_code, func.count())
                .where(t.c.opportunity_id == opportunity_id, t.c.status == EXCEPTION_OPEN)
                .group_by(t.c.reason_code)
            ).all()
        by_reason = {code: int(n) for code, n in rows}
        first = self._all(
            select(TimeException)
            .where(TimeException.opportunity_id == opportunity_id, TimeException.status == EXCEPTION_OPEN)
            .order_by(TimeException.psa_id)
            .limit(sample)
        )
        return sum(by_reason.values()), by_reason, first

    def open_exception_psa_ids(self, opportunity_id: str) -> list[str]:
        t = TimeException.__table__
        with self.engine.connect() as conn:
            return [
                r[0]
                for r in conn.execute(
                    select(t.c.psa_id)
                    .where(t.c.opportunity_id == opportunity_id, t.c.status == EXCEPTION_OPEN)
                    .order_by(t.c.psa_id)
                )
            ]

    def written_off_among(self, psa_ids: Iterable[str]) -> set[str]:
        """Of these PSA entries, the ones a steward wrote off (never posted again)."""
        ids = list(psa_ids)
        found: set[str] = set()
        t = TimeException.__table__
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                found |= {
                    r[0]
                    for r in conn.execute(
                        select(t.c.psa_id).where(
                            t.c.psa_id.in_(ids[start : start + 500]), t.c.status == EXCEPTION_WRITTEN_OFF
                        )
                    )
                }
        return found

    def write_off_exceptions(
        self, opportunity_id: str, psa_ids: Iterable[str] | None, reason: str, decided_by: str
    ) -> list[str]:
        """Close open exceptions as written off, keeping who decided and why in the message (the
        original reason stays in front of it). None: every open one. Returns the PSA ids closed;
        an id that is not open is left alone (a repeat writes nothing)."""
        t = TimeException.__table__
        cond = [t.c.opportunity_id == opportunity_id, t.c.status == EXCEPTION_OPEN]
        wanted = None if psa_ids is None else set(psa_ids)
        closed: list[str] = []
        with self.engine.begin() as conn:
            stmt = select(t.c.id, t.c.psa_id, t.c.reason_code, t.c.message).where(*cond)
            rows = conn.execute(stmt).all()
            for row in rows:
                if wanted is not None and row.psa_id not in wanted:
                    continue
                note = f"written off by {decided_by}: {reason} (was {row.reason_code}: {row.message})"[:2000]
                conn.execute(
                    update(t)
                    .where(t.c.id == row.id, t.c.status == EXCEPTION_OPEN)
                    .values(status=EXCEPTION_WRITTEN_OFF, message=note, resolved_at=utcnow())
                )
                closed.append(row.psa_id)
        return sorted(closed)

    # --- audit of vendor calls ------------------------------------------------------------------
    def record_api_call(self, record: CallRecord, **context: Any) -> None:
        """One audit row; `context` as `api_call_row` takes it (at, workflow_id, activity_type, attempt, actor)."""
        self.record_api_calls([api_call_row(record, **context)])

    def record_api_calls(self, rows: list[dict]) -> None:
        """Several audit rows (from `api_call_row`) in one transaction: the audit hook's group
        commit writes every call that finished while the previous write was running at once."""
        if not rows:
            return
        with self.engine.begin() as conn:
            conn.execute(ApiCall.__table__.insert(), rows)

    def api_calls(
        self,
        correlation_id: str | None = None,
        system: str | None = None,
        *,
        workflow_id: str | None = None,
        limit: int | None = None,
    ) -> list[ApiCall]:
        stmt = select(ApiCall)
        if correlation_id is not None:
            stmt = stmt.where(ApiCall.correlation_id == correlation_id)
        if system is not None:
            stmt = stmt.where(ApiCall.system == system)
        if workflow_id is not None:
            stmt = stmt.where(ApiCall.workflow_id == workflow_id)
        stmt = stmt.order_by(ApiCall.at, ApiCall.id)
        if limit is not None:
            stmt = stmt.limit(limit)
        return self._all(stmt)

    # --- helpers ---------------------------------------------------------------------------------
    def _all(self, stmt) -> list:
        with Session(self.engine, expire_on_commit=False) as s:
            return list(s.exec(stmt).all())
