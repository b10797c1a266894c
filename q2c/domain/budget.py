"""Budget control for time-and-materials contracts (not-to-exceed), stated once and pure.

A T&M contract's **cap** is the CRM's `Not_To_Exceed__c` when it is set, else the opportunity
amount (the contract value). What counts against it is what the engagement has billed, net of
credit notes (`consumed`), plus a steward's recorded releases beyond it (`released`, which raise
the room instead of the cap, so the contract's own figure never changes without a change order).

The policy (from configuration, `Q2C_BUDGET_WARN_AT` and `Q2C_BUDGET_HOLD`):
- **warn** once per threshold (default 80% and 100% of the cap) when an invoice takes the
  consumed figure to or past it: in the engagement's status and details, the steward console,
  the CRM (`Budget_Status__c`, `Budget_Used_Percent__c`) and a metric;
- **hold** at the cap: an invoice bills posted time (and expenses) in date order while it fits
  the room left under the cap; the item that does not fit, and everything after it, stays
  posted and unbilled in the ERP — held — and the PMO decides: a change order that raises the
  cap (the held items are invoiced then, once), a release (billed beyond the cap, with who and
  why), or a write-off (never billed, with who and why). Nothing is billed beyond the contract
  without a recorded decision, and no item is ever split: an entry is billed whole or held whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import ROUND_FLOOR, Decimal
from typing import TypeVar

from pydantic import BaseModel, Field

from q2c.domain.engagement import BillingModel, Engagement
from q2c.domain.money import format_amount, round_money

DEFAULT_WARN_AT = (80, 100)
# the invoice reference the ledger gives what the PMO wrote off at the cap (`budget-write-off:<request>`)
BUDGET_WRITE_OFF_PREFIX = "budget-write-off:"
DECISIONS_KEPT = 20  # the latest decisions in the workflow state; the audit log keeps them all
WARNINGS_KEPT = 20

T = TypeVar("T")


class BudgetPolicy(BaseModel):
    """How a T&M engagement treats its cap (carried with the engagement from its start)."""

    warn_at: list[int] = Field(default_factory=lambda: list(DEFAULT_WARN_AT))  # percent of the cap
    hold_at_cap: bool = True  # False: warn only, bill everything (the firm's choice, documented)


class BudgetWarning(BaseModel):
    threshold: int  # percent
    cap: Decimal
    consumed: Decimal
    at: datetime | None = None
    invoice: str | None = None  # the invoice that crossed it


class BudgetDecision(BaseModel):
    """A steward's decision on held excess (or a change order that made room)."""

    action: str  # release | write_off | change_order
    amount: Decimal
    items: int = 0
    requested_by: str
    reason: str
    at: datetime | None = None


class BudgetState(BaseModel):
    """The engagement's budget position (T&M only); small and bounded."""

    cap: Decimal
    currency: str
    consumed: Decimal = Decimal(0)  # net billed (invoices less credit notes)
    released: Decimal = Decimal(0)  # decided by stewards beyond the cap
    held_amount: Decimal = Decimal(0)  # posted, unbilled, beyond the room (as of the last invoice)
    held_items: int = 0
    held_through: date | None = None  # the date the held time runs to (the invoice that held it)
    invoices: int = 0  # invoices made by a decision (inv-<opportunity>-bh<n>)
    warned: list[int] = Field(default_factory=list)  # thresholds warned at the current cap
    warnings: list[BudgetWarning] = Field(default_factory=list)  # the latest WARNINGS_KEPT
    decisions: list[BudgetDecision] = Field(default_factory=list)  # the latest DECISIONS_KEPT

    @property
    def room(self) -> Decimal:
        """What may still be billed without a decision."""
        return max(Decimal(0), self.cap + self.released - self.consumed)

    @property
    def used_percent(self) -> Decimal:
        return percent_of(self.consumed, self.cap)

    def money(self, amount: Decimal) -> str:
        return f"{format_amount(amount, self.currency)} {self.currency}"

    def status_text(self) -> str:
        """One line for the CRM's `Budget_Status__c`, the console and details."""
        used = f"{self.used_percent}% of {self.money(self.cap)} used"
        if self.held_amount > 0:
            return f"at cap: {self.money(self.held_amount)} held ({self.held_items} item(s)); {used}"
        reached = max(self.warned, default=None)
        return f"warning: {reached}% reached; {used}" if reached is not None else f"ok: {used}"


def held_total(amounts, currency: str) -> Decimal:
    """What held entries amount to: the sum of their billed amounts, in the currency's unit."""
    return round_money(sum(amounts, Decimal(0)), currency)


def percent_of(part: Decimal, whole: Decimal) -> Decimal:
    """Whole percent, rounded down (79.99% is not 80%)."""
    if whole <= 0:
        return Decimal(0)
    return (part * 100 / whole).quantize(Decimal(1), rounding=ROUND_FLOOR)


def budget_cap(engagement: Engagement) -> Decimal | None:
    """The not-to-exceed amount of a T&M contract; None for other billing models."""
    if engagement.billing_model is not BillingModel.TIME_AND_MATERIALS:
        return None
    return engagement.budget_cap if engagement.budget_cap is not None else engagement.contract_value.amount


def split_at_room(items: Sequence[T], amount_of, room: Decimal | None) -> tuple[list[T], list[T]]:
    """Bill items in their order while they fit `room`; the first that does not fit and every
    later one are held (never a later, smaller item ahead of an earlier one, never a split
    item). room=None: no hold, everything is billed."""
    if room is None:
        return list(items), []
    billed: list[T] = []
    total = Decimal(0)
    for index, item in enumerate(items):
        amount = amount_of(item)
        if total + amount > room:
            return billed, list(items[index:])
        total += amount
        billed.append(item)
    return billed, []


def crossed(policy: BudgetPolicy, state: BudgetState) -> list[int]:
    """Thresholds reached by the consumed figure and not yet warned at this cap (ascending)."""
    used = state.used_percent
    return [t for t in sorted(set(policy.warn_at)) if used >= t and t not in state.warned]


def cap_issue(new_cap: Decimal, consumed: Decimal) -> str | None:
    """Why a change order cannot set this cap, or None."""
    if new_cap <= 0:
        return "must be positive"
    if new_cap < consumed:
        return f"{new_cap} is below what is already billed net of credits ({consumed})"
    return None


def keep_latest(items: list[T], n: int) -> None:
    del items[:-n]
