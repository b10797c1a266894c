"""The business figures, computed once for the dashboard, `q2c kpis` and the /metrics endpoint.

Why one module: a finance lead compares the console's KPI page, the CLI's table and a Grafana
panel; computed by three pieces of code they would disagree at month end, which is exactly
the complaint the seed articles quote. So all three read `snapshot()`.

Where the figures come from, and why so, at any number of engagements:
- stage, customer, billing model, region: the engagements' search attributes, one visibility
  listing (pages of 1,000), never a query to each workflow (a query needs a worker and one
  round trip per engagement);
- billed, open balance, overdue days, posted-not-invoiced time, open exceptions, vendor
  calls, activation and payment-status timings: the ledger, a handful of GROUP BY queries
  over all engagements at once;
- contract value (for budget burn): the CRM, which owns commercial terms, in one SOQL query
  for every Closed Won opportunity (paged by the CRM), cached for `CONTRACT_CACHE_SECONDS`.

Activation cycle time is the time from the engagement's first vendor call (reading the
closed-won opportunity) to its successful provisioning write-back to the CRM (the
`write_back_crm` activity), both from the ledger's audit of vendor calls. Payment-status
latency is, for each payment refresh, the time from the ERP read to the CRM write of what it
found. "Approved time not yet posted" is the approved PSA entries held in the exception
queue (they failed a validation and wait for a steward); the PSA holds their hours.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import case, func, select

from q2c.ledger.models import (
    EXCEPTION_OPEN,
    ApiCall,
    LedgerInvoice,
    LedgerPostedTime,
    TimeException,
)
from q2c.ledger.store import Ledger

ZERO = Decimal("0")
HOURS = Decimal(60)
CONTRACT_CACHE_SECONDS = 60.0
AGING_BUCKETS = ("current", "1-30", "31-60", "61-90", "90+")
ACTIVATION_ACTIVITY = "write_back_crm"
PAYMENT_ACTIVITY = "refresh_payments"
INVOICE_ACTIVITY = "issue_invoice"
ACTIVATION_BUCKETS_SECONDS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86_400, 7 * 86_400)


def aging_bucket(days_overdue: int) -> str:
    if days_overdue <= 0:
        return "current"
    if days_overdue <= 30:
        return "1-30"
    if days_overdue <= 60:
        return "31-60"
    if days_overdue <= 90:
        return "61-90"
    return "90+"


@dataclass
class EngagementFigures:
    """One row of the overview."""

    opportunity_id: str
    workflow_id: str
    stage: str
    customer: str
    billing_model: str
    region: str
    status: str
    currency: str = ""
    contract_value: Decimal | None = None
    billed: Decimal = ZERO
    unbilled_hours: Decimal = ZERO  # posted to the ERP, not yet on an invoice
    unbilled_amount: Decimal = ZERO
    open_balance: Decimal = ZERO
    overdue_days: int = 0
    open_exceptions: int = 0

    @property
    def burn(self) -> Decimal | None:
        """Billed over contract value (0.25 = a quarter of the contract invoiced)."""
        if not self.contract_value:
            return None
        return self.billed / self.contract_value


@dataclass
class VendorFigures:
    calls: int = 0
    failed: int = 0  # any outcome but ok (retryable, rejected, error)
    total_ms: float = 0.0

    @property
    def failure_rate(self) -> float:
        return self.failed / self.calls if self.calls else 0.0


@dataclass
class Snapshot:
    """Everything the dashboard, `q2c kpis` and /metrics show, at `taken_at`."""

    taken_at: datetime
    engagements: list[EngagementFigures]
    activation_seconds: list[float] = field(default_factory=list)
    payment_latency_seconds: list[float] = field(default_factory=list)
    # currency -> (hours, amount)
    unbilled_by_currency: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    # bucket -> currency -> amount
    aging: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    exceptions_open_by_reason: dict[str, int] = field(default_factory=dict)
    exceptions_by_day: dict[date, dict[str, int]] = field(default_factory=dict)
    vendors: dict[str, VendorFigures] = field(default_factory=dict)
    vendor_outcomes: dict[tuple[str, str], int] = field(default_factory=dict)
    invoices_rejected: int = 0
    invoices_issued: int = 0
    contract_values_known: bool = True
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def by_stage(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for e in self.engagements:
            counts[e.stage or "Unknown"] += 1
        return dict(sorted(counts.items()))

    @property
    def open_exceptions(self) -> int:
        return sum(self.exceptions_open_by_reason.values())


# ---- the ledger: a few aggregate queries over all engagements -------------------------------


@dataclass
class LedgerFigures:
    invoices: dict[str, dict] = field(default_factory=dict)  # opp -> billed, open, overdue, currency
    unbilled: dict[str, tuple[Decimal, Decimal, str]] = field(default_factory=dict)  # opp -> hours, amount, cur
    exceptions_by_opp: dict[str, int] = field(default_factory=dict)
    aging: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    exceptions_open_by_reason: dict[str, int] = field(default_factory=dict)
    exceptions_by_day: dict[date, dict[str, int]] = field(default_factory=dict)
    vendors: dict[str, VendorFigures] = field(default_factory=dict)
    vendor_outcomes: dict[tuple[str, str], int] = field(default_factory=dict)
    activation_seconds: dict[str, float] = field(default_factory=dict)  # workflow id -> seconds
    payment_latency_seconds: list[float] = field(default_factory=list)
    invoices_rejected: int = 0
    invoices_issued: int = 0


def _seconds(later: datetime, earlier: datetime) -> float:
    return max(0.0, (later - earlier).total_seconds())


def ledger_figures(ledger: Ledger) -> LedgerFigures:
    """Every ledger aggregate the figures need, in one connection (sync: call in a thread)."""
    out = LedgerFigures()
    inv = LedgerInvoice.__table__
    pt = LedgerPostedTime.__table__
    exc = TimeException.__table__
    api = ApiCall.__table__
    with ledger.engine.connect() as conn:
        for opp, billed, open_balance, overdue, currency in conn.execute(
            select(
                inv.c.opportunity_id,
                func.sum(inv.c.total),
                func.sum(inv.c.open_balance),
                func.max(case((inv.c.open_balance > 0, inv.c.days_overdue), else_=0)),
                func.max(inv.c.currency),
            ).group_by(inv.c.opportunity_id)
        ):
            out.invoices[opp] = dict(
                billed=Decimal(billed or 0),
                open=Decimal(open_balance or 0),
                overdue=int(overdue or 0),
                currency=currency or "",
            )
        for days, currency, amount in conn.execute(
            select(inv.c.days_overdue, inv.c.currency, func.sum(inv.c.open_balance))
            .where(inv.c.open_balance > 0)
            .group_by(inv.c.days_overdue, inv.c.currency)
        ):
            bucket = out.aging.setdefault(aging_bucket(int(days or 0)), {})
            bucket[currency] = bucket.get(currency, ZERO) + Decimal(amount or 0)
        for opp, minutes, amount, currency in conn.execute(
            select(pt.c.opportunity_id, func.sum(pt.c.minutes), func.sum(pt.c.amount), func.max(pt.c.currency))
            .where(pt.c.invoice_external_id.is_(None), pt.c.billable.is_(True))
            .group_by(pt.c.opportunity_id)
        ):
            out.unbilled[opp] = (Decimal(int(minutes or 0)) / HOURS, Decimal(amount or 0), currency or "")
        for opp, reason, n in conn.execute(
            select(exc.c.opportunity_id, exc.c.reason_code, func.count())
            .where(exc.c.status == EXCEPTION_OPEN)
            .group_by(exc.c.opportunity_id, exc.c.reason_code)
        ):
            out.exceptions_by_opp[opp] = out.exceptions_by_opp.get(opp, 0) + int(n)
            out.exceptions_open_by_reason[reason] = out.exceptions_open_by_reason.get(reason, 0) + int(n)
        day = func.date(exc.c.first_seen)
        for d, reason, n in conn.execute(select(day, exc.c.reason_code, func.count()).group_by(day, exc.c.reason_code)):
            key = d if isinstance(d, date) else date.fromisoformat(str(d)[:10])
            out.exceptions_by_day.setdefault(key, {})[reason] = int(n)
        for system, outcome, n, ms in conn.execute(
            select(api.c.system, api.c.outcome, func.count(), func.sum(api.c.duration_ms)).group_by(
                api.c.system, api.c.outcome
            )
        ):
            v = out.vendors.setdefault(system, VendorFigures())
            v.calls += int(n)
            v.total_ms += float(ms or 0)
            if outcome != "ok":
                v.failed += int(n)
            out.vendor_outcomes[(system, outcome)] = int(n)
        for outcome, n in conn.execute(
            select(api.c.outcome, func.count())
            .where(api.c.system == "erp", api.c.activity_type == INVOICE_ACTIVITY, api.c.method != "GET")
            .group_by(api.c.outcome)
        ):
            if outcome == "rejected":
                out.invoices_rejected += int(n)
            elif outcome == "ok":
                out.invoices_issued += int(n)
        activated = func.min(
            case(
                (
                    (api.c.activity_type == ACTIVATION_ACTIVITY) & (api.c.system == "crm") & (api.c.outcome == "ok"),
                    api.c.at,
                ),
                else_=None,
            )
        )
        for wf, first, active in conn.execute(
            select(api.c.workflow_id, func.min(api.c.at), activated)
            .where(api.c.workflow_id.is_not(None))
            .group_by(api.c.workflow_id)
        ):
            if first is not None and active is not None:
                out.activation_seconds[wf] = _seconds(_dt(active), _dt(first))
        read_at: dict[str, datetime] = {}
        for wf, system, at in conn.execute(
            select(api.c.workflow_id, api.c.system, api.c.at)
            .where(api.c.activity_type == PAYMENT_ACTIVITY, api.c.outcome == "ok")
            .order_by(api.c.workflow_id, api.c.at, api.c.id)
        ):
            at = _dt(at)
            if system == "erp":
                read_at.setdefault(wf, at)
            elif system == "crm" and wf in read_at:
                out.payment_latency_seconds.append(_seconds(at, read_at.pop(wf)))
    return out


def _dt(value) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# ---- visibility and the CRM -------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    opportunity_id: str
    workflow_id: str
    stage: str
    customer: str
    billing_model: str
    region: str
    status: str


async def visibility_rows(client) -> list[Row]:
    """Every engagement (one row each, the latest run), from one paginated visibility listing."""
    from q2c.engagement.client import list_engagements

    return [
        Row(r.opportunity_id, r.workflow_id, r.stage, r.customer, r.billing_model, r.region, r.status)
        for r in await list_engagements(client)
    ]


ContractValues = Callable[[], Awaitable[dict[str, tuple[Decimal, str]]]]


def crm_contract_values(settings) -> ContractValues:
    """Contract value and currency of every Closed Won opportunity, one SOQL query (the CRM
    pages it), cached: the figures refresh every few seconds, contract values rarely change."""
    cache: dict[str, object] = {"at": float("-inf"), "values": {}}
    lock = asyncio.Lock()

    async def read() -> dict[str, tuple[Decimal, str]]:
        async with lock:
            if time.monotonic() - cache["at"] < CONTRACT_CACHE_SECONDS:
                return cache["values"]  # type: ignore[return-value]
            from q2c.vendors.salesforce.client import SalesforceClient

            async with SalesforceClient(settings.crm, timeout=settings.http_timeout_seconds) as crm:
                records = await crm.query(
                    "SELECT Id, Amount, CurrencyIsoCode FROM Opportunity WHERE StageName = 'Closed Won'"
                )
            values = {
                r["Id"]: (Decimal(str(r["Amount"])), r.get("CurrencyIsoCode") or "")
                for r in records
                if r.get("Amount") is not None
            }
            cache.update(at=time.monotonic(), values=values)
            return values

    return read


# ---- the snapshot ----------------------------------------------------------------------------


async def snapshot(client, ledger: Ledger, contract_values: ContractValues | None = None) -> Snapshot:
    """Visibility, the ledger and the CRM's contract values, read concurrently, joined in memory."""
    timings: dict[str, float] = {}

    async def timed(name: str, coro):
        started = time.perf_counter()
        try:
            return await coro
        finally:
            timings[name] = (time.perf_counter() - started) * 1000

    async def contracts():
        if contract_values is None:
            return None
        try:
            return await contract_values()
        except Exception:  # the CRM down: burn is unknown, everything else still shows
            return None

    rows, lf, values = await asyncio.gather(
        timed("visibility", visibility_rows(client)),
        timed("ledger", asyncio.to_thread(ledger_figures, ledger)),
        timed("crm", contracts()),
    )
    started = time.perf_counter()
    engagements = []
    activation = []
    for r in rows:
        e = EngagementFigures(
            opportunity_id=r.opportunity_id,
            workflow_id=r.workflow_id,
            stage=r.stage,
            customer=r.customer,
            billing_model=r.billing_model,
            region=r.region,
            status=r.status,
        )
        inv = lf.invoices.get(r.opportunity_id)
        if inv:
            e.billed, e.open_balance, e.overdue_days, e.currency = (
                inv["billed"],
                inv["open"],
                inv["overdue"],
                inv["currency"],
            )
        unbilled = lf.unbilled.get(r.opportunity_id)
        if unbilled:
            e.unbilled_hours, e.unbilled_amount = unbilled[0], unbilled[1]
            e.currency = e.currency or unbilled[2]
        if values and r.opportunity_id in values:
            e.contract_value, currency = values[r.opportunity_id]
            e.currency = e.currency or currency
        e.open_exceptions = lf.exceptions_by_opp.get(r.opportunity_id, 0)
        if r.workflow_id in lf.activation_seconds:
            activation.append(lf.activation_seconds[r.workflow_id])
        engagements.append(e)
    unbilled_by_currency: dict[str, tuple[Decimal, Decimal]] = {}
    for hours, amount, currency in lf.unbilled.values():
        h, a = unbilled_by_currency.get(currency, (ZERO, ZERO))
        unbilled_by_currency[currency] = (h + hours, a + amount)
    timings["join"] = (time.perf_counter() - started) * 1000
    return Snapshot(
        taken_at=datetime.now(UTC),
        engagements=engagements,
        activation_seconds=sorted(activation),
        payment_latency_seconds=lf.payment_latency_seconds,
        unbilled_by_currency=dict(sorted(unbilled_by_currency.items())),
        aging={b: lf.aging.get(b, {}) for b in AGING_BUCKETS},
        exceptions_open_by_reason=dict(sorted(lf.exceptions_open_by_reason.items())),
        exceptions_by_day=dict(sorted(lf.exceptions_by_day.items())),
        vendors=dict(sorted(lf.vendors.items())),
        vendor_outcomes=lf.vendor_outcomes,
        invoices_rejected=lf.invoices_rejected,
        invoices_issued=lf.invoices_issued,
        contract_values_known=values is not None,
        timings_ms=timings,
    )


class FiguresSource:
    """The snapshot of one process (webhook service, CLI), shared by the dashboard's pages, its
    JSON and /metrics, and reused for `max_age` seconds: a dashboard refreshing every few
    seconds in several browsers, plus Prometheus scraping, read visibility and the ledger
    once per window, not once per request."""

    def __init__(self, settings, get_client, *, ledger: Ledger | None = None, contract_values=None) -> None:
        self.settings = settings
        self.get_client = get_client
        self._ledger = ledger
        self.contract_values = contract_values if contract_values is not None else crm_contract_values(settings)
        self._lock = asyncio.Lock()
        self._last: Snapshot | None = None
        self._last_at = float("-inf")
        self._task: asyncio.Task | None = None

    def ledger(self) -> Ledger:
        if self._ledger is None:
            from q2c.ledger.config import ledger_url

            self._ledger = Ledger.from_url(ledger_url(self.settings))
            self._ledger.create_all()
        return self._ledger

    async def _refresh(self) -> Snapshot:
        ledger = await asyncio.to_thread(self.ledger)
        snap = await snapshot(await self.get_client(), ledger, self.contract_values)
        self._last, self._last_at = snap, time.monotonic()
        return snap

    async def get(self, max_age: float = 5.0) -> Snapshot:
        """The snapshot, at most `max_age` old when there is none yet; after that, stale while
        revalidating: a page answers at once from the last snapshot while the next one is read
        in the background (the visibility listing of thousands of engagements takes seconds
        on a small server; a page view must not wait for it)."""
        if self._last is None:
            async with self._lock:
                if self._last is None:
                    return await self._refresh()
        if time.monotonic() - self._last_at > max_age and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._refresh_quietly())
        return self._last

    async def _refresh_quietly(self) -> None:
        try:
            async with self._lock:
                await self._refresh()
        except Exception:  # the next request tries again; the last snapshot stays
            pass
