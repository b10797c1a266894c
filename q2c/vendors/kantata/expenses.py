"""Kantata (PSA) expenses: approved expenses out, "posted" marks back. Built on `KantataClient`.

Kantata API v1 facts this relies on (developer.kantata.com, "Expenses"):
- `GET /expenses.json` answers the usual envelope (`count`, `meta`, `results` of
  `{"key": "expenses", "id"}`, the objects under `expenses` by id); an expense has `date`,
  `category`, `notes`, `vendor`, `amount_in_cents` in its `currency` with `currency_base_unit`
  (minor units per major unit: 100 for USD, 1 for JPY), `is_billable`, `is_invoiced`,
  `receipt_id` (the receipt attachment, null without one), `story_id`, `workspace_id`,
  `user_id`, `created_at`, `updated_at`;
- `approved` filters expenses "on approved expense reports" (sent as `approved=true`); there is
  no "not yet synced" filter, so, as for time, q2c's ledger knows what it posted, and each
  posted expense carries an external reference (service_name "q2c", service_model
  "expenseReport", service_model_ref = the ERP expense report id) for people and tools;
- `read_approved_expenses` finds what changed as `read_approved_time` does: `updated_after`
  (the caller's watermark), `order=updated_at:asc`, pages of 200 (`per_page` maximum), and a
  pass read again when the list's `count` moved between pages (an expense left the list
  while it was read, shifting later pages). Withdrawing and giving an approval again moves an
  expense's `updated_at`, so a re-approved, edited expense is read again.

Wired from the worker's existing client: `KantataExpenses(KantataClient(settings.psa))`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from q2c.domain.expenses import Expense
from q2c.vendors.kantata import mapping as m
from q2c.vendors.kantata.client import (
    API_PREFIX,
    READ_PASSES,
    SANDBOX_PREFIX,
    ApprovedList,
    KantataClient,
    PostedMark,
)

EXPENSE_SUBJECT = "Expense"
EXPENSE_REPORT_MODEL = "expenseReport"  # service_model of a posted expense's reference


@dataclass
class ApprovedExpenseRead:
    """What `read_approved_expenses` saw (the same contract as `ApprovedTimeRead`): `expenses`
    by (date, id), each one's PSA `updated_at`, the PSA's clock when the last pass began, and
    whether the read was stable (only then may a watermark move past it)."""

    expenses: list[Expense] = field(default_factory=list)
    updated_at: dict[str, datetime] = field(default_factory=dict)
    server_time: datetime | None = None
    stable: bool = False
    pages: int = 0
    references: dict[str, list[dict[str, str]]] = field(default_factory=dict)


def amount_from_cents(cents: int, base_unit: int | None) -> Decimal:
    """Kantata's integer amount as an exact Decimal in the currency (12345 cents -> 123.45)."""
    unit = int(base_unit or 100)
    return Decimal(int(cents)) / Decimal(unit)


def expense_from_kantata(obj: dict[str, Any]) -> Expense:
    """A Kantata expense object as the canonical Expense."""
    return Expense(
        psa_id=str(obj["id"]),
        workspace_id=str(obj["workspace_id"]) if obj.get("workspace_id") is not None else None,
        person=str(obj.get("user_id") or ""),
        category=str(obj.get("category") or "Uncategorized"),
        amount=amount_from_cents(obj.get("amount_in_cents") or 0, obj.get("currency_base_unit")),
        currency=str(obj.get("currency") or ""),
        date_incurred=date.fromisoformat(obj["date"]),
        billable=bool(obj.get("is_billable", obj.get("billable", True))),
        approved=bool(obj.get("approved", True)),
        has_receipt=obj.get("receipt_id") not in (None, "") or bool(obj.get("has_receipt")),
        notes=obj.get("notes") or None,
        vendor=obj.get("vendor") or None,
        task_id=str(obj["story_id"]) if obj.get("story_id") not in (None, "") else None,
    )


async def _expenses_from(body: dict) -> list[Expense]:
    """A page of the approved list as Expenses (unlike time entries they need no other read)."""
    return [expense_from_kantata(obj) for obj in m.results(body)]


EXPENSE_MARK = PostedMark(EXPENSE_SUBJECT, "expenses", EXPENSE_REPORT_MODEL, "expense")

EXPENSES = ApprovedList(
    "expenses.json",
    "read_approved_expenses",
    lambda e: (e.date_incurred, int(e.psa_id) if e.psa_id.isdigit() else 0),
    mark=EXPENSE_MARK,
)


class KantataExpenses:
    """Expense calls over an existing `KantataClient` (its auth, retries, audit and limits)."""

    def __init__(self, client: KantataClient) -> None:
        self.client = client

    async def read_approved_expenses(
        self,
        workspace_id: str,
        *,
        updated_after: datetime | None = None,
        only_ids: list[str] | None = None,
        passes: int = READ_PASSES,
    ) -> ApprovedExpenseRead:
        """Every approved expense of the workspace changed after `updated_after` (None: every
        approved expense), or only those of `only_ids` (200 per request), whatever their date.
        One `GET expenses.json` per 200 expenses changed since `updated_after`."""
        read = await self.client.read_changed(
            EXPENSES, workspace_id, _expenses_from, updated_after=updated_after, only_ids=only_ids, passes=passes
        )
        return ApprovedExpenseRead(expenses=read.items, **read.without_items())

    async def mark_expense_posted(
        self, expense_id: str, erp_expense_report_id: str, *, known: list[dict[str, str]] | None = None
    ) -> None:
        """Mark an expense posted as an ERP expense report; repeating the call changes nothing
        (`KantataClient.mark_posted`)."""
        await self.client.mark_posted(EXPENSE_MARK, expense_id, erp_expense_report_id, known=known)

    async def generate_expenses(
        self,
        workspace_id: str,
        *,
        start: date,
        end: date,
        seed: int = 0,
        per_month: int = 2,
        approve: bool = True,
        foreign_currency: str | None = "EUR",
    ) -> dict:
        """Sandbox only (`POST /__sandbox/expenses/generate`): a few realistic expenses a month
        for the demo, one of them in `foreign_currency`. Returns the ids and counts."""
        payload = {
            "workspace_id": workspace_id,
            "start_date": start.isoformat(),
            "end_date": end.isoformat(),
            "seed": seed,
            "per_month": per_month,
            "approve": approve,
            "foreign_currency": foreign_currency,
        }
        base = self.client.base_url
        root = base[: -len(API_PREFIX)] if base.endswith(API_PREFIX) else base
        response = await self.client.request(
            "POST",
            f"{root}{SANDBOX_PREFIX}/expenses/generate",
            operation="generate_expenses",
            json=payload,
            ok_statuses=(200,),
        )
        return response.json()
