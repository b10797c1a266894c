"""Accounting periods (NetSuite `accountingPeriod`), read through the record API.

Monthly posting periods Jan 2025 ... Dec 2030, internal IDs 1..72 in date order, with the
fields NetSuite's record has: `periodName` ("Jan 2027"), `startDate`, `endDate`, `closed`,
the lock flags `allLocked` / `apLocked` / `arLocked` (set together with `closed` here),
`isPosting` true, `isQuarter` / `isYear` / `isAdjust` false.

Seed: every period ending before 2026-11-01 is closed, the rest open. Seeding is idempotent
and independent of the other seed data (an older sandbox database gains the periods on its
next start). The sandbox-only admin API opens and closes periods (see finance_admin.py).

A transaction posts to the period containing its `tranDate`; NetSuite refuses a posting to a
closed period (400 INVALID_FLD_VALUE), and so does the sandbox.
"""

from __future__ import annotations

import calendar
from datetime import date

from sandboxes.erp.errors import NetSuiteError
from sandboxes.erp.store import RecordStore

FIRST_YEAR, LAST_YEAR = 2025, 2030
CLOSED_BEFORE = date(2026, 11, 1)  # seed: periods ending before this are closed


def period_name(d: date) -> str:
    return f"{calendar.month_abbr[d.month]} {d.year}"


def _lock_fields(closed: bool) -> dict:
    return {"closed": closed, "allLocked": closed, "apLocked": closed, "arLocked": closed}


def seed_periods(store: RecordStore) -> bool:
    """Insert the monthly periods unless there are some already."""
    with store.lock:
        if store.all("accountingPeriod"):
            return False
        pid = 0
        for year in range(FIRST_YEAR, LAST_YEAR + 1):
            for month in range(1, 13):
                pid += 1
                start = date(year, month, 1)
                end = date(year, month, calendar.monthrange(year, month)[1])
                store.create(
                    "accountingPeriod",
                    {
                        "periodName": period_name(start),
                        "startDate": start.isoformat(),
                        "endDate": end.isoformat(),
                        **_lock_fields(end < CLOSED_BEFORE),
                        "isPosting": True,
                        "isQuarter": False,
                        "isYear": False,
                        "isAdjust": False,
                    },
                    record_id=pid,
                )
        return True


def period_for(store: RecordStore, on: date) -> dict | None:
    iso = on.isoformat()
    return next((p for p in store.all("accountingPeriod") if p["startDate"] <= iso <= p["endDate"]), None)


def posting_period(store: RecordStore, on: date, field: str = "tranDate") -> dict:
    """The open period a transaction dated `on` posts to, or NetSuite's 400."""
    period = period_for(store, on)
    if period is None:
        raise NetSuiteError(
            400,
            "INVALID_FLD_VALUE",
            f"Invalid Field Value {on.isoformat()} for the following field: postingPeriod. "
            "No accounting period is set up for this date.",
            "postingPeriod",
        )
    if period.get("closed"):
        raise NetSuiteError(
            400,
            "INVALID_FLD_VALUE",
            f"Invalid Field Value {on.isoformat()} for the following field: {field}. "
            f"The accounting period {period['periodName']} is closed; you cannot post "
            "a transaction to a closed period.",
            field,
        )
    return period


def set_closed(store: RecordStore, period: dict, closed: bool) -> dict:
    with store.lock:
        fields = {k: v for k, v in period.items() if k not in ("id", "externalId")}
        fields.update(_lock_fields(closed))
        store.replace("accountingPeriod", int(period["id"]), fields, period.get("externalId"))
        return store.get("accountingPeriod", period["id"])


def find_by_name(store: RecordStore, name: str) -> dict | None:
    wanted = " ".join(name.split()).lower()
    return next((p for p in store.all("accountingPeriod") if p["periodName"].lower() == wanted), None)
