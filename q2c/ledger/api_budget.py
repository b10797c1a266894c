"""A daily API budget per vendor: q2c counts its calls per vendor per UTC day and respects a
budget, so q2c alone never spends a vendor's daily limit (issue 15: one 1,000-engagement run
spent 17,654 CRM calls where the org allows 15,000 a day, shared with people and other
integrations).

What is counted: every request a connector sends (`VendorClient`), whatever the answer, per
(system, UTC day) in `q2c_api_calls_daily`, summed over every process that shares the ledger
(SQLite or PostgreSQL). Token requests are not counted (Salesforce and NetSuite do not count them).

Cheap: a call increments a counter in memory; the counts are added to the row (one upsert
per vendor, `calls = calls + n`, so concurrent processes never lose each other's increments)
every `FLUSH_CALLS` calls or `FLUSH_SECONDS` seconds, whichever comes first, in a thread.
The flush also reads the day's total back, so each process sees the others' calls within
that bound too. **What a crash can lose**: the calls not yet flushed, i.e. fewer than
`FLUSH_CALLS` per vendor per process, made in the last `FLUSH_SECONDS` seconds; the budget
has a reserve for that (and for everything else that calls the vendor).

What "respected" means, for a vendor with a budget (0: counted, no budget):
- at `defer_at` (Q2C_API_BUDGET_DEFER_AT, 0.8) of it, *deferrable* work waits: payment polling
  and reconciliation (`DEFERRABLE_ACTIVITIES`, by activity type) get a retryable
  `VendorBudgetDeferred` error naming the vendor, the count and the budget, with a
  `next_retry_delay` of at most an hour (the day's count resets at 00:00 UTC): Temporal retries
  it later, nothing parks and nothing is sent;
- activation, posting and everything else go on until the budget itself is spent; then every
  call waits the same way (`VendorBudgetSpent`), until the next UTC day.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

if TYPE_CHECKING:
    from q2c.settings import Settings

FLUSH_CALLS = 50  # a vendor's pending calls are written after this many ...
FLUSH_SECONDS = 5.0  # ... or this long after the last write, whichever first
MAX_DEFER = timedelta(hours=1)  # a deferred call is retried at least this often (the count may fall behind)
DEFERRED_TYPE = "VendorBudgetDeferred"
SPENT_TYPE = "VendorBudgetSpent"
# Work that can wait a day without anyone waiting on it: payment polling, nightly reconciliation.
DEFERRABLE_ACTIVITIES = frozenset({"refresh_payments", "start_missed_deals", "check_engagements", "find_orphans"})
log = logging.getLogger("q2c.api_budget")

# (calls today, budget) gauges on the worker's Temporal runtime meter, set by
# q2c.observability.metrics.use_meter: `q2c_vendor_api_calls_today{system}` (every process's
# calls as of this process's last flush) and `q2c_vendor_api_budget{system}`
instruments: tuple | None = None


class _BudgetTable(SQLModel, registry=registry()):
    """Its own registry (as the CRM notification log has its own MetaData): created on first use."""


class ApiCallsDaily(_BudgetTable, table=True):
    __tablename__ = "q2c_api_calls_daily"

    system: str = Field(primary_key=True, max_length=16)
    day: date = Field(primary_key=True)
    calls: int = Field(default=0)


def today() -> date:
    return datetime.now(UTC).date()


def _until_next_day(now: datetime | None = None) -> timedelta:
    now = now or datetime.now(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    return midnight - now


class ApiBudget:
    """One per process, shared by its connectors. `count` and `check` are called on the event
    loop for every request and never touch the database; `flush` does, in a thread."""

    def __init__(
        self,
        engine: Engine,
        budgets: Mapping[str, int],
        *,
        defer_at: float = 0.8,
        flush_calls: int = FLUSH_CALLS,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        self.engine = engine
        self.budgets = {k: v for k, v in budgets.items() if v > 0}
        self.defer_at = defer_at
        self.flush_calls = flush_calls
        self.flush_seconds = flush_seconds
        self._pending: dict[str, int] = {}
        self._known: dict[str, int] = {}  # the day's total in the ledger at the last flush
        self._day = today()
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()  # flushes run in threads: one at a time
        self._flushing: asyncio.Task | None = None
        self._timer: asyncio.TimerHandle | None = None
        _BudgetTable.metadata.create_all(engine)

    @classmethod
    def from_settings(cls, engine: Engine, settings: Settings) -> ApiBudget:
        return cls(
            engine,
            {
                "crm": settings.crm.daily_api_budget,
                "erp": settings.erp.daily_api_budget,
                "psa": settings.psa.daily_api_budget,
            },
            defer_at=settings.api_budget_defer_at,
        )

    # --- the hot path (event loop, no I/O) ----------------------------------------------
    def used(self, system: str) -> int:
        """Today's calls to `system` as this process knows them: the ledger's total at the last
        flush plus this process's calls since."""
        self._roll_day()
        return self._known.get(system, 0) + self._pending.get(system, 0)

    def count(self, system: str, n: int = 1) -> None:
        self._roll_day()
        self._pending[system] = self._pending.get(system, 0) + n
        if self._pending[system] >= self.flush_calls or time.monotonic() - self._last_flush >= self.flush_seconds:
            self._flush_soon()
        elif self._timer is None:  # a call is never left unflushed longer than flush_seconds
            try:
                self._timer = asyncio.get_running_loop().call_later(self.flush_seconds, self._flush_soon)
            except RuntimeError:
                pass

    def check(self, system: str, operation: str) -> None:
        """Raise a retryable error (nothing sent) when `system`'s budget says this call must wait."""
        budget = self.budgets.get(system)
        if not budget:
            return
        used = self.used(system)
        if used >= budget:
            self._refuse(system, operation, used, budget, SPENT_TYPE, "the daily API budget is spent")
        if used >= self.defer_at * budget and _deferrable():
            self._refuse(
                system,
                operation,
                used,
                budget,
                DEFERRED_TYPE,
                f"{self.defer_at:.0%} of the daily API budget is spent (Q2C_API_BUDGET_DEFER_AT); "
                "deferrable work waits, activation and posting go on",
            )

    def _refuse(self, system: str, operation: str, used: int, budget: int, kind: str, why: str) -> None:
        delay = min(_until_next_day() + timedelta(seconds=5), MAX_DEFER)
        raise ApplicationError(
            f"{system} {operation}: not sent, {why}: {used:,} of {budget:,} calls today "
            f"(Q2C_{system.upper()}_DAILY_API_BUDGET); retried in {delay.total_seconds() / 60:.0f} min",
            {"system": system, "operation": operation, "used": used, "budget": budget},
            type=kind,
            next_retry_delay=delay,
        )

    def _roll_day(self) -> None:
        day = today()
        if day != self._day:  # the pending calls belong to the day they were made: flushed as such
            self._flush_now(self._day)
            self._day = day
            self._known = {}

    def _flush_soon(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None and not self._flushing.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._flush_now(self._day)
            return
        self._last_flush = time.monotonic()
        self._flushing = loop.create_task(self._flush_in_thread())

    async def _flush_in_thread(self) -> None:
        try:
            await asyncio.to_thread(self._flush_now, self._day)
        except Exception as err:  # counting must never fail a vendor call; the counts are kept
            log.warning("API budget counts not written (kept for the next flush): %s", err)

    # --- the database (threads) -----------------------------------------------------------
    def _flush_now(self, day: date) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._last_flush = time.monotonic()
            try:
                totals = add_calls(self.engine, day, pending)
            except Exception:
                for system, n in pending.items():  # kept for the next flush
                    self._pending[system] = self._pending.get(system, 0) + n
                raise
            if day == self._day:
                self._known.update(totals)
                self._publish(totals)

    def _publish(self, totals: Mapping[str, int]) -> None:
        if instruments is None:
            return
        try:
            calls_gauge, budget_gauge = instruments
            for system in sorted(set(totals) | set(self.budgets)):
                calls_gauge.set(totals.get(system, 0), {"system": system})
                budget_gauge.set(self.budgets.get(system, 0), {"system": system})
        except Exception:  # observability must never fail a vendor call
            pass

    async def flush(self) -> None:
        """Write the pending counts now (and learn the others' totals); at shutdown and in tests."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        await asyncio.to_thread(self._flush_now, self._day)


def add_calls(engine: Engine, day: date, calls: Mapping[str, int]) -> dict[str, int]:
    """Add `calls` (system -> n) to the day's rows in one transaction; return every system's
    total for the day (the others' calls included)."""
    table = ApiCallsDaily.__table__
    with engine.begin() as conn:
        insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)
        for system, n in calls.items():
            if n:
                stmt = insert.values(system=system, day=day, calls=n)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["system", "day"], set_={"calls": table.c.calls + stmt.excluded.calls}
                    )
                )
        rows = conn.execute(select(table.c.system, table.c.calls).where(table.c.day == day)).all()
    return {system: int(n) for system, n in rows}


def calls_on(engine: Engine, day: date | None = None) -> dict[str, int]:
    """Every vendor's counted calls on `day` (default today, UTC), for `q2c doctor` and metrics;
    only reads (no table yet: nothing counted)."""
    if not inspect(engine).has_table(ApiCallsDaily.__tablename__):
        return {}
    return add_calls(engine, day or today(), {})


def _deferrable() -> bool:
    """Whether the call is made by an activity whose work can wait (by activity type)."""
    return activity.in_activity() and activity.info().activity_type in DEFERRABLE_ACTIVITIES
