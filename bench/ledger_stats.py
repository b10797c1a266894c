"""What q2c's own ledger says during and after the timed part: progress (time rows posted,
invoices issued) and every vendor call by operation and outcome (the connectors' audit hook
writes one row per HTTP request, so 429s show up per operation)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from q2c.ledger.models import ApiCall, LedgerInvoice, LedgerPostedTime
from q2c.ledger.store import Ledger


@dataclass(frozen=True)
class Progress:
    posted: int
    invoices: int


def progress(ledger: Ledger) -> Progress:
    with ledger.engine.connect() as conn:
        posted = conn.execute(select(func.count()).select_from(LedgerPostedTime.__table__)).scalar_one()
        invoices = conn.execute(select(func.count()).select_from(LedgerInvoice.__table__)).scalar_one()
    return Progress(posted=posted, invoices=invoices)


def last_call_id(ledger: Ledger) -> int:
    with ledger.engine.connect() as conn:
        return conn.execute(select(func.max(ApiCall.__table__.c.id))).scalar_one() or 0


def calls_by_operation(ledger: Ledger, system: str, after_id: int) -> list[tuple[str, dict[str, int]]]:
    """[(operation, {outcome: count})] for calls after `after_id`, busiest operation first."""
    t = ApiCall.__table__
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            select(t.c.operation, t.c.outcome, func.count())
            .where(t.c.id > after_id, t.c.system == system)
            .group_by(t.c.operation, t.c.outcome)
        ).all()
    out: dict[str, dict[str, int]] = {}
    for operation, outcome, count in rows:
        out.setdefault(operation, {})[outcome] = count
    return sorted(out.items(), key=lambda kv: -sum(kv[1].values()))
