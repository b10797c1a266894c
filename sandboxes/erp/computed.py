"""The fields the ERP sandbox computes itself on finance records, as NetSuite does: dropped from
what a client sends, then recomputed (DERIVED) or carried over from the stored record
(CARRIED). Shared by the finance records and expense reports."""

from __future__ import annotations

from datetime import date

from sandboxes.erp.periods import period_for, posting_period
from sandboxes.erp.store import RecordStore

# Fields the sandbox computes: dropped from the input, then recomputed or carried over.
CARRIED = {
    "timeBill": ("isBilled", "invoice"),
    "invoice": ("tranId", "amountPaid"),
    "customerPayment": (),
    "creditMemo": ("tranId",),
    "expenseReport": ("tranId",),
}
DERIVED = {
    "timeBill": ("postingPeriod",),
    "invoice": ("postingPeriod", "total", "amountRemaining", "status", "terms", "subsidiary"),
    "customerPayment": ("postingPeriod", "applied", "unapplied", "subsidiary"),
    "creditMemo": ("postingPeriod", "total", "applied", "unapplied", "status", "subsidiary"),
    "expenseReport": ("postingPeriod", "total", "status", "custbody_job", "custbody_unbilled"),
}


def _start(record_type: str, out: dict, existing: dict | None) -> None:
    for name in DERIVED[record_type]:
        out.pop(name, None)
    for name in CARRIED[record_type]:
        out.pop(name, None)
        if existing is not None and existing.get(name) is not None:
            out[name] = existing[name]


def _period(out: dict, store: RecordStore, on: date, strict: bool) -> None:
    period = posting_period(store, on) if strict else period_for(store, on)
    if period is not None:
        out["postingPeriod"] = {"id": period["id"]}
