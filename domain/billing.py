"""Billing rules, stated once and kept pure (no I/O): periods, rates, invoice lines, time checks.

Rounding: a time line's quantity is its billable minutes / 60, rounded half-up to 6 decimals;
every line amount is quantity x rate rounded half-up to the currency's minor unit; an invoice
total is the sum of its (already rounded) line amounts.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from pydantic import BaseModel

from domain.delivery import AccountingPeriod, InvoiceLine, PostedTime, TimeEntry
from domain.engagement import RateCardEntry
from domain.money import round_money
from domain.project import Task

QUANTITY_PLACES = Decimal("0.000001")


class BillingPeriod(BaseModel):
    index: int
    start: date
    end: date


def month_end(d: date) -> date:
    return d.replace(day=calendar.monthrange(d.year, d.month)[1])


def billing_periods(start: date, end: date) -> list[BillingPeriod]:
    """Calendar months from start to end (the first and last may be partial)."""
    periods: list[BillingPeriod] = []
    cursor = start
    while cursor <= end:
        last = min(month_end(cursor), end)
        periods.append(BillingPeriod(index=len(periods), start=cursor, end=last))
        cursor = last + timedelta(days=1)
    return periods


def rate_for(rate_card: list[RateCardEntry], role: str, on: date) -> Decimal | None:
    """The role's rate in effect on a date: the latest entry whose effective_from <= date
    (an entry without effective_from applies from the beginning)."""
    best: RateCardEntry | None = None
    for entry in rate_card:
        if entry.role != role:
            continue
        if entry.effective_from is not None and entry.effective_from > on:
            continue
        if best is None or (entry.effective_from or date.min) >= (best.effective_from or date.min):
            best = entry
    return best.rate if best else None


def line_amount(quantity: Decimal, rate: Decimal, currency: str) -> Decimal:
    return round_money(quantity * rate, currency)


def time_invoice_lines(posted: list[PostedTime], currency: str) -> list[InvoiceLine]:
    """One line per role (and per rate, when a rate changed within the period)."""
    minutes: dict[tuple[str, Decimal], int] = defaultdict(int)
    for p in posted:
        if p.billable and p.rate is not None:
            minutes[(p.role, p.rate)] += p.minutes
    lines = []
    for (role, rate), total in sorted(minutes.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        quantity = (Decimal(total) / Decimal(60)).quantize(QUANTITY_PLACES, rounding=ROUND_HALF_UP)
        lines.append(InvoiceLine(description=f"{role}: {quantity.normalize():f} h at {rate}/h",
                                 quantity=quantity, rate=rate, amount=line_amount(quantity, rate, currency)))
    return lines


def invoice_total(lines: list[InvoiceLine]) -> Decimal:
    return sum((line.amount for line in lines), Decimal(0))


class TimeCheck(BaseModel):
    """Result of validating one time entry: a rate to post at, or an exception reason."""

    psa_id: str
    ok: bool
    rate: Decimal | None = None
    reason_code: str | None = None
    message: str | None = None


def check_time_entry(entry: TimeEntry, *, tasks: dict[str, Task], rate_card: list[RateCardEntry],
                     periods: list[AccountingPeriod], project_open: bool = True,
                     bill_time: bool = True) -> TimeCheck:
    """Validate one approved entry against the engagement before it goes to the ERP.

    bill_time=False (fixed fee, retainer): time is posted for cost and utilisation only,
    never invoiced, so no rate is needed.
    """
    def fail(code: str, message: str) -> TimeCheck:
        return TimeCheck(psa_id=entry.psa_id, ok=False, reason_code=code, message=message)

    if not project_open:
        return fail("PROJECT_CLOSED", "the ERP project is closed")
    task = tasks.get(entry.task_id)
    if task is None:
        return fail("TASK_UNMAPPED", f"task {entry.task_id} is not a task of the engagement's workspace")
    if entry.billable and not task.billable:
        return fail("TASK_NOT_BILLABLE", f"billable time booked to non-billable task '{task.name}'")
    period = next((p for p in periods if p.start_date <= entry.date_performed <= p.end_date), None)
    if period is None:
        return fail("PERIOD_CLOSED", f"no ERP accounting period covers {entry.date_performed}")
    if period.closed:
        return fail("PERIOD_CLOSED", f"ERP accounting period {period.name} is closed")
    rate = None
    if entry.billable and bill_time:
        rate = rate_for(rate_card, entry.role, entry.date_performed)
        if rate is None:
            return fail("NO_RATE", f"no rate for role '{entry.role}' on {entry.date_performed}")
    return TimeCheck(psa_id=entry.psa_id, ok=True, rate=rate)
