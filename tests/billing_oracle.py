"""An independent computation of what each invoice must total, from the PSA's raw records.

It reads the time entries straight from the PSA sandbox (not from q2c, not from the ERP) and
applies the stated rule: per period and role, quantity = minutes / 60 rounded half-up to 6
places; amount = quantity x rate rounded half-up to the cent.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import ROUND_HALF_UP, Decimal


def _round(value: Decimal, places: str) -> Decimal:
    return value.quantize(Decimal(places), rounding=ROUND_HALF_UP)


def rate_on(rates: list[tuple[str, Decimal, date | None]], role: str, on: date) -> Decimal:
    candidates = [(eff or date.min, rate) for r, rate, eff in rates if r == role and (eff is None or eff <= on)]
    return max(candidates)[1]


def expected_tm_totals(psa, workspace_id: str, rates: list[tuple[str, Decimal, date | None]],
                       periods: list[tuple[date, date]]) -> list[Decimal]:
    roles = {str(r["id"]): r["name"] for r in psa.records("roles")}
    user_roles = {str(u["id"]): str(u["role_id"]) for u in psa.records("users")}
    stories = {str(s["id"]): s for s in psa.records("stories")}
    entries = [e for e in psa.records("time_entries")
               if str(e["workspace_id"]) == str(workspace_id) and e["approved"] and e["billable"]
               and stories[str(e["story_id"])]["billable"]]
    totals = []
    for start, end in periods:
        minutes: dict[tuple[str, Decimal], int] = defaultdict(int)
        for e in entries:
            day = date.fromisoformat(e["date_performed"])
            if start <= day <= end:
                role = roles[str(e["role_id"] or user_roles[str(e["user_id"])])]
                minutes[(role, rate_on(rates, role, day))] += e["time_in_minutes"]
        totals.append(sum((_round(_round(Decimal(m) / 60, "0.000001") * rate, "0.01")
                           for (role, rate), m in minutes.items()), Decimal(0)))
    return totals
