"""What each nightly reconciliation found, did and left open (tables `q2c_recon_*`).

- `q2c_recon_run`        one row per run (its workflow ID): counts by outcome, duration, vendor calls;
- `q2c_recon_difference` one row per difference a run found: the records involved, the system
                         of record's value and the other one, explained or not and why, and what
                         was done (explained / repaired / raised). A repaired row IS the repair's
                         audit: which field, before, after, by which run, when (the vendor call
                         itself is in `q2c_api_call` under the run's workflow ID);
- `q2c_recon_task`       the steward tasks reconciliation raises for what would move money
                         (a voided invoice, a timeBill edited by hand, ...). Keyed by what it is
                         about, so the next night finds the same task instead of a second one.

Separate from `q2c.ledger.store` on purpose: nothing here changes how the existing ledger
behaves; the tables share `LedgerTable.metadata` and are created by `ReconStore.create_all`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Optional

from sqlalchemy import Column, Text, func
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, select

from q2c.domain.text import clip
from q2c.ledger.columns import UTCDateTime, utcnow
from q2c.ledger.models import LedgerTable

TASK_OPEN = "open"
TASK_RESOLVED = "resolved"
OUTCOMES = ("explained", "repaired", "raised", "unexplained")


def _ts(nullable: bool = False):
    column = Column(UTCDateTime(), nullable=nullable)
    return Field(default=None, sa_column=column) if nullable else Field(default_factory=utcnow, sa_column=column)


class ReconRun(LedgerTable, table=True):
    __tablename__ = "q2c_recon_run"

    run_id: str = Field(primary_key=True, max_length=255)  # the run's workflow ID
    trigger: str = Field(default="schedule", max_length=40)
    started_at: datetime = _ts()
    finished_at: Optional[datetime] = _ts(nullable=True)
    status: str = Field(default="running", max_length=20)
    deals_seen: int = 0
    deals_started: int = 0
    engagements_checked: int = 0
    differences: int = 0
    explained: int = 0
    repaired: int = 0
    raised: int = 0
    unexplained: int = 0
    vendor_calls: int = 0
    started_ids: str = Field(default="[]", sa_column=Column(Text(), nullable=False, default="[]"))

    @property
    def started(self) -> list[str]:
        return json.loads(self.started_ids or "[]")

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class ReconDifference(LedgerTable, table=True):
    __tablename__ = "q2c_recon_difference"

    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: str = Field(index=True, max_length=255)
    opportunity_id: Optional[str] = Field(default=None, index=True, max_length=64)
    kind: str = Field(max_length=60)
    system: str = Field(max_length=16)  # where the differing record lives
    record: str = Field(max_length=500)  # e.g. "Opportunity 006... Last_Invoice_Amount__c"
    expected: str = Field(default="", max_length=500)  # the system of record's value
    actual: str = Field(default="", max_length=500)
    outcome: str = Field(max_length=16)  # explained | repaired | raised | unexplained
    explanation: str = Field(default="", max_length=2000)
    task_key: Optional[str] = Field(default=None, max_length=255)
    at: datetime = _ts()


class ReconTask(LedgerTable, table=True):
    __tablename__ = "q2c_recon_task"

    key: str = Field(primary_key=True, max_length=255)
    opportunity_id: Optional[str] = Field(default=None, index=True, max_length=64)
    kind: str = Field(max_length=60)
    message: str = Field(default="", max_length=2000)
    record: str = Field(default="", max_length=500)
    status: str = Field(default=TASK_OPEN, max_length=10)
    first_run: str = Field(max_length=255)
    last_run: str = Field(max_length=255)
    created_at: datetime = _ts()
    resolved_at: Optional[datetime] = _ts(nullable=True)
    resolved_by: Optional[str] = Field(default=None, max_length=200)


RECON_TABLES = (ReconRun, ReconDifference, ReconTask)


class ReconStore:
    """Short sync transactions over the reconciliation tables (callers in async code use
    `asyncio.to_thread`). Every write is keyed (run ID, task key), so a retried activity
    rewrites its own rows instead of adding a second set."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_all(self) -> None:
        LedgerTable.metadata.create_all(self.engine, tables=[t.__table__ for t in RECON_TABLES])

    # --- runs ------------------------------------------------------------------------------
    def begin_run(self, run_id: str, trigger: str) -> ReconRun:
        with Session(self.engine, expire_on_commit=False) as s:
            row = s.get(ReconRun, run_id)
            if row is None:
                row = ReconRun(run_id=run_id, trigger=trigger)
                s.add(row)
                s.commit()
                s.refresh(row)
            return row

    def add_started(self, run_id: str, seen: int, started: list[str]) -> None:
        with Session(self.engine, expire_on_commit=False) as s:
            row = s.get(ReconRun, run_id)
            if row is None:
                return
            ids = list(dict.fromkeys(row.started + started))
            row.started_ids = json.dumps(ids)
            row.deals_started = len(ids)
            row.deals_seen += seen
            s.add(row)
            s.commit()

    def finish_run(self, run_id: str, *, engagements_checked: int, vendor_calls: int) -> ReconRun:
        counts = self.outcome_counts(run_id)
        with Session(self.engine, expire_on_commit=False) as s:
            row = s.get(ReconRun, run_id)
            row.finished_at = utcnow()
            row.status = "finished"
            row.engagements_checked = engagements_checked
            row.vendor_calls = vendor_calls
            row.differences = sum(counts.values())
            for outcome in OUTCOMES:
                setattr(row, outcome, counts.get(outcome, 0))
            s.add(row)
            s.commit()
            s.refresh(row)
            return row

    def get_run(self, run_id: str) -> ReconRun | None:
        with Session(self.engine, expire_on_commit=False) as s:
            return s.get(ReconRun, run_id)

    def runs(self, limit: int = 20) -> list[ReconRun]:
        with Session(self.engine, expire_on_commit=False) as s:
            return list(s.exec(select(ReconRun).order_by(ReconRun.started_at.desc()).limit(limit)).all())

    def latest_run(self) -> ReconRun | None:
        found = self.runs(limit=1)
        return found[0] if found else None

    # --- differences -------------------------------------------------------------------------
    def record_differences(self, run_id: str, opportunity_id: str | None, rows: list[ReconDifference]) -> None:
        """Replace this run's rows for the engagement (None: the run-wide orphan check), so an
        activity retried after a crash leaves one set."""
        with Session(self.engine, expire_on_commit=False) as s:
            old = s.exec(
                select(ReconDifference).where(
                    ReconDifference.run_id == run_id,
                    ReconDifference.opportunity_id == opportunity_id
                    if opportunity_id is not None
                    else ReconDifference.opportunity_id.is_(None),
                )
            ).all()
            for row in old:
                s.delete(row)
            for row in rows:
                row.run_id = run_id
                row.opportunity_id = opportunity_id if row.opportunity_id is None else row.opportunity_id
                s.add(row)
            s.commit()

    def differences(self, run_id: str, opportunity_id: str | None = None) -> list[ReconDifference]:
        with Session(self.engine, expire_on_commit=False) as s:
            stmt = select(ReconDifference).where(ReconDifference.run_id == run_id)
            if opportunity_id:
                stmt = stmt.where(ReconDifference.opportunity_id == opportunity_id)
            return list(s.exec(stmt.order_by(ReconDifference.id)).all())

    def outcome_counts(self, run_id: str) -> dict[str, int]:
        with Session(self.engine, expire_on_commit=False) as s:
            rows = s.exec(
                select(ReconDifference.outcome, func.count())
                .where(ReconDifference.run_id == run_id)
                .group_by(ReconDifference.outcome)
            ).all()
            return {outcome: count for outcome, count in rows}

    def kind_counts(self, run_id: str) -> dict[str, dict[str, int]]:
        """{kind: {outcome: count}} for the report's table."""
        out: dict[str, dict[str, int]] = {}
        for d in self.differences(run_id):
            out.setdefault(d.kind, {}).setdefault(d.outcome, 0)
            out[d.kind][d.outcome] += 1
        return out

    # --- steward tasks -------------------------------------------------------------------------
    def raise_task(self, key: str, *, run_id: str, opportunity_id: str | None, kind: str, message: str, record: str):
        """Open the task, or find the one a previous night opened (its message refreshed)."""
        with Session(self.engine, expire_on_commit=False) as s:
            row = s.get(ReconTask, key)
            if row is None:
                row = ReconTask(
                    key=key,
                    opportunity_id=opportunity_id,
                    kind=kind,
                    message=clip(message, 2000),
                    record=clip(record, 500),
                    first_run=run_id,
                    last_run=run_id,
                )
            else:
                row.last_run = run_id
                row.message = clip(message, 2000)
            s.add(row)
            s.commit()
            s.refresh(row)
            return row

    def get_task(self, key: str) -> ReconTask | None:
        with Session(self.engine, expire_on_commit=False) as s:
            return s.get(ReconTask, key)

    def tasks(self, status: str | None = TASK_OPEN, opportunity_id: str | None = None) -> list[ReconTask]:
        with Session(self.engine, expire_on_commit=False) as s:
            stmt = select(ReconTask)
            if status:
                stmt = stmt.where(ReconTask.status == status)
            if opportunity_id:
                stmt = stmt.where(ReconTask.opportunity_id == opportunity_id)
            return list(s.exec(stmt.order_by(ReconTask.created_at, ReconTask.key)).all())

    def resolve_task(self, key: str, by: str) -> bool:
        with Session(self.engine, expire_on_commit=False) as s:
            row = s.get(ReconTask, key)
            if row is None or row.status != TASK_OPEN:
                return False
            row.status, row.resolved_at, row.resolved_by = TASK_RESOLVED, utcnow(), by
            s.add(row)
            s.commit()
            return True
