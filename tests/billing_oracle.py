"""An independent computation of what q2c must bill, from the PSA's raw records.

It reads the time entries straight from the PSA sandbox (not from q2c, not from the ERP) and
applies the stated rule (domain/billing.py) with its own arithmetic: the amount of an entry is
its exact minutes x the rate of the role it was booked under, at its date, / 60, rounded
half-up once to the currency's minor unit; an invoice bills the sum of its entries' amounts.

The role is the entry's own `role_id`; without one, the user's single project role on the
workspace (`workspace_resources`); an entry whose role cannot be told is not billed (q2c parks
it). The user's current account role is never used.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction


def entry_amount(minutes: int, rate: Decimal, minor_unit: str = "0.01") -> Decimal:
    """minutes x rate / 60 as an exact fraction, rounded half-up once to `minor_unit`."""
    exact = Fraction(minutes) * Fraction(rate) / 60
    unit = Fraction(Decimal(minor_unit))
    units = exact / unit
    whole = units.numerator // units.denominator
    if units - whole >= Fraction(1, 2):
        whole += 1
    return (Decimal(whole) * Decimal(minor_unit)).quantize(Decimal(minor_unit), rounding=ROUND_HALF_UP)


def rate_on(rates: list[tuple[str, Decimal, date | None]], role: str, on: date) -> Decimal:
    candidates = [(eff or date.min, rate) for r, rate, eff in rates if r == role and (eff is None or eff <= on)]
    return max(candidates)[1]


def booked_roles(psa, workspace_id: str) -> dict[str, str]:
    """PSA entry id -> the role name it was booked under, for the workspace's entries whose role
    can be told (see the module docstring)."""
    roles = {str(r["id"]): r["name"] for r in psa.records("roles")}
    held: dict[str, set[str]] = defaultdict(set)
    for r in psa.records("workspace_resources"):
        if str(r["workspace_id"]) == str(workspace_id) and r.get("user_id"):
            held[str(r["user_id"])].add(str(r["role_id"]))
    out = {}
    for e in psa.records("time_entries"):
        if str(e["workspace_id"]) != str(workspace_id):
            continue
        role_id = e["role_id"]
        if not role_id and len(held[str(e["user_id"])]) == 1:
            role_id = next(iter(held[str(e["user_id"])]))
        if role_id:
            out[str(e["id"])] = roles[str(role_id)]
    return out


def expected_entry_amounts(
    psa, workspace_id: str, rates: list[tuple[str, Decimal, date | None]], minor_unit: str = "0.01"
) -> dict[str, Decimal]:
    """PSA entry id -> what it bills, for the workspace's approved, billable entries on
    billable stories whose role can be told."""
    stories = {str(s["id"]): s for s in psa.records("stories")}
    roles = booked_roles(psa, workspace_id)
    out = {}
    for e in psa.records("time_entries"):
        eid = str(e["id"])
        if (
            str(e["workspace_id"]) == str(workspace_id)
            and e["approved"]
            and e["billable"]
            and stories[str(e["story_id"])]["billable"]
            and eid in roles
        ):
            rate = rate_on(rates, roles[eid], date.fromisoformat(e["date_performed"]))
            out[eid] = entry_amount(e["time_in_minutes"], rate, minor_unit)
    return out


def expected_tm_totals(
    psa,
    workspace_id: str,
    rates: list[tuple[str, Decimal, date | None]],
    periods: list[tuple[date, date]],
    minor_unit: str = "0.01",
) -> list[Decimal]:
    """Per billing period (start, end), the invoice total: the sum of its entries' amounts."""
    amounts = expected_entry_amounts(psa, workspace_id, rates, minor_unit)
    dates = {str(e["id"]): date.fromisoformat(e["date_performed"]) for e in psa.records("time_entries")}
    return [sum((a for eid, a in amounts.items() if start <= dates[eid] <= end), Decimal(0)) for start, end in periods]
