"""Billing rules, stated once and kept pure (no I/O): periods, rates, amounts, invoice lines,
time checks.

Money is computed one way, here:

- **The amount of a time entry** is its exact minutes x the hourly rate / 60, computed exactly
  (no intermediate rounding: not of the hours, not of the product) and rounded half-up ONCE to
  the currency's minor unit (`q2c.domain.money.round_money`: cents for USD, whole yen for JPY,
  fils for BHD). `entry_amount` (in `money.py`, beside the rounding it uses) is that rule; nothing
  else multiplies minutes by a rate.
- **An invoice time line** (one per role and rate) bills the sum of its entries' amounts, and
  an invoice total is the sum of its line amounts. So the ledger's posted amount, the ERP
  timeBill's amount and the invoice line are the same per-entry figures, summed: they agree to
  the cent by construction. Rounding once per line instead would not (two 61-minute entries at
  500.09/h are 508.42 + 508.42 = 1016.84, while 122 min x 500.09 / 60 = 1016.85).
- A line shows its hours exactly as a duration ("1 h 01 min") and its rate to the currency's
  minor unit ("500.09/h", more places only when the rate has them). Its numeric `quantity`
  (hours to 6 places) is for the reader and the ERP's quantity column; it is never multiplied.
- **Rates** carry at most `MAX_RATE_PLACES` decimals (the ERP rate and the ledger's
  NUMERIC(18,4) columns hold exactly that), are positive, and are looked up for the role ON THE
  ENTRY at the entry's date. A rate the ledger could not store exactly is refused where it
  enters (`rate_issue`), so nothing is ever accepted by the ERP and then refused by the ledger.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from pydantic import BaseModel

from q2c.domain.delivery import AccountingPeriod, InvoiceLine, PostedTime, TimeEntry
from q2c.domain.engagement import RateCardEntry
from q2c.domain.money import (  # noqa: F401 (the rule, re-exported)
    MINOR_UNITS,
    entry_amount,
    format_amount,
    is_currency,
    round_money,
)
from q2c.domain.project import Task

# Hours shown on an invoice line's quantity column (display only: amounts never use it).
QUANTITY_PLACES = Decimal("0.000001")
# Decimals a rate may carry: what the ERP rate and the ledger's NUMERIC(18,4) hold exactly.
MAX_RATE_PLACES = 4
# Digits before the decimal point that NUMERIC(18,4) leaves a rate.
MAX_RATE_INTEGER_DIGITS = 18 - MAX_RATE_PLACES


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


def decimal_places(value: Decimal) -> int:
    """Significant decimals of a value (150.10 has 1, 150 has 0, 0.00005 has 5)."""
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def rate_issue(rate: Decimal, currency: str) -> str | None:
    """Why an hourly rate cannot be billed, or None if it can.

    Checked where a rate enters q2c (the rate card at intake, an amendment) and again before
    time is posted, so a rate the ledger could not store exactly never reaches the ERP (which
    would accept it, leaving a posting the ledger refuses on every retry)."""
    if not is_currency(currency):
        return f"'{currency}' is not a supported currency for rates"
    return _rate_shape_issue(rate, f"{currency}/h")


def _rate_shape_issue(rate: Decimal, unit: str) -> str | None:
    if not isinstance(rate, Decimal) or not rate.is_finite():
        return f"rate {rate!r} is not a decimal number"
    if rate <= 0:
        return f"rate {rate} {unit} must be positive"
    places = decimal_places(rate)
    if places > MAX_RATE_PLACES:
        return (
            f"rate {rate} {unit} has {places} decimal places; at most {MAX_RATE_PLACES} are allowed "
            f"(the ERP and the ledger keep rates to {MAX_RATE_PLACES} places)"
        )
    if rate.adjusted() + 1 > MAX_RATE_INTEGER_DIGITS:
        return f"rate {rate} {unit} is too large (at most {MAX_RATE_INTEGER_DIGITS} digits before the point)"
    return None


def line_amount(quantity: Decimal, rate: Decimal, currency: str) -> Decimal:
    """A non-time line (a milestone, a retainer): quantity x rate rounded half-up once."""
    return round_money(quantity * rate, currency)


def format_rate(rate: Decimal, currency: str) -> str:
    """A rate as printed on an invoice: to the currency's minor unit (USD 150 -> "150.00", JPY
    15000 -> "15000", GBP 95.5 -> "95.50"), with more places only when the rate has them
    (150.125 -> "150.125"): an invoice never shows a rate other than the one billed."""
    return format_amount(rate, currency)


def format_duration(minutes: int) -> str:
    """A line's hours as an invoice reader expects them: decimal hours, no trailing zeros
    ("2 h", "1.5 h", "0.25 h", "0.1 h"), when two decimals state them exactly (whole multiples
    of 36 seconds: every count of minutes divisible by 3); otherwise to two decimals with the
    exact minutes beside them ("1.02 h (61 min)"), so quantity x rate can always be checked."""
    exact = Decimal(minutes) / Decimal(60)
    shown = exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    text = f"{shown.normalize():f}"
    return f"{text} h" if shown == exact else f"{text} h ({minutes} min)"


def posted_amount(p: PostedTime, currency: str) -> Decimal:
    """What one posted entry bills: the amount posted with it (the ERP's and the ledger's
    figure), which is `entry_amount` of its minutes and rate; 0 when not billable."""
    if not p.billable or p.rate is None:
        return Decimal(0)
    return p.amount if p.amount is not None else entry_amount(p.minutes, p.rate, currency)


def time_invoice_lines(posted: list[PostedTime], currency: str) -> list[InvoiceLine]:
    """One line per role (and per rate, when a rate changed within the period), billing the sum
    of its entries' amounts and naming the timeBills it bills."""
    minutes: dict[tuple[str, Decimal], int] = defaultdict(int)
    amounts: dict[tuple[str, Decimal], Decimal] = defaultdict(Decimal)
    bills: dict[tuple[str, Decimal], list[str]] = defaultdict(list)
    for p in posted:
        if p.billable and p.rate is not None:
            key = (p.role, p.rate)
            minutes[key] += p.minutes
            amounts[key] += posted_amount(p, currency)
            bills[key].append(p.erp_time_bill_id)
    lines = []
    for key in sorted(minutes, key=lambda k: (k[0], k[1])):
        role, rate = key
        quantity = (Decimal(minutes[key]) / Decimal(60)).quantize(QUANTITY_PLACES, rounding=ROUND_HALF_UP)
        lines.append(
            InvoiceLine(
                description=f"{role}: {format_duration(minutes[key])} at {format_rate(rate, currency)}/h",
                quantity=quantity,
                rate=rate,
                amount=round_money(amounts[key], currency),
                time_bill_ids=sorted(bills[key]),
            )
        )
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


def check_time_entry(
    entry: TimeEntry,
    *,
    tasks: dict[str, Task],
    rate_card: list[RateCardEntry],
    periods: list[AccountingPeriod],
    project_open: bool = True,
    bill_time: bool = True,
    currency: str | None = None,
) -> TimeCheck:
    """Validate one approved entry against the engagement before it goes to the ERP.

    bill_time=False (fixed fee, retainer): time is posted for cost and utilisation only,
    never invoiced, so no rate is needed.

    The rate is the one of the role ON THE ENTRY (as the PSA recorded it when the time was
    booked) at the entry's date, never the person's role of today. An entry whose role the PSA
    could not tell is parked (NO_RATE, naming what is missing) rather than priced by a guess,
    and so is one whose rate could not be stored exactly (`rate_issue`).
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
        if not entry.role.strip():
            why = entry.role_issue or "the PSA entry carries no role"
            return fail(
                "NO_RATE",
                f"no role for time entry {entry.psa_id} on {entry.date_performed}: {why}; "
                "set the entry's role in the PSA, then replay it",
            )
        rate = rate_for(rate_card, entry.role, entry.date_performed)
        if rate is None:
            return fail("NO_RATE", f"no rate for role '{entry.role}' on {entry.date_performed}")
        issue = rate_issue(rate, currency) if currency else _rate_shape_issue(rate, "per hour")
        if issue:
            return fail(
                "NO_RATE",
                f"the rate for role '{entry.role}' on {entry.date_performed} cannot be "
                f"billed: {issue}; correct the rate card",
            )
    return TimeCheck(psa_id=entry.psa_id, ok=True, rate=rate)
