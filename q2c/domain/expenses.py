"""Expenses (travel, subcontractor costs) from the PSA to the ERP and onto invoices: pure rules.

Money is computed one way, here (the rounding rule of `q2c.domain.money.round_money`:
half-up to the currency's minor unit):

- **Conversion, once.** An expense in another currency than the engagement's is converted at
  the ERP's exchange rate for the expense's date (NetSuite `currencyRate`, units of the
  engagement currency per unit of the expense's currency): amount x rate, computed exactly and
  rounded half-up ONCE to the engagement currency's minor unit (`convert`). The rate and that
  converted figure are recorded (ERP expense report line, ledger); nothing converts again:
  invoices, totals and reconciliation add the recorded figures.
- **Invoice lines at cost.** One line per category ("Expenses: Travel (3 items)") billing the
  sum of its expenses' converted amounts (quantity 1, rate = amount), naming the ERP expense
  reports it bills (`InvoiceLine.expense_ids`). The sum of recorded figures needs no rounding.
- **Markup, once.** A contract markup is its own line ("Markup 10% on expenses"): the total at
  cost of the invoice's billable expenses x percent / 100, rounded half-up ONCE (quantity = the
  total at cost, rate = percent / 100, so quantity x rate rounded is the amount). Never per
  expense or per category: 3 x 0.05 marked up 10% each would round to 0.01 x 3, while the
  total 0.15 x 10% = 0.015 rounds to 0.02 once.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal

from pydantic import BaseModel, field_validator

from q2c.domain.delivery import AccountingPeriod, InvoiceLine
from q2c.domain.money import format_amount, is_currency, round_money
from q2c.domain.project import Task

# Decimals an exchange rate may carry: what the ERP's currencyRate and the ledger keep exactly.
MAX_EXCHANGE_RATE_PLACES = 8
MAX_MARKUP_PLACES = 4

# Reason codes of the exception queue for expenses (the same queue as time, psa id `expense:<id>`).
PERIOD_CLOSED = "PERIOD_CLOSED"
PROJECT_CLOSED = "PROJECT_CLOSED"
NO_RECEIPT = "NO_RECEIPT"
CURRENCY_UNSUPPORTED = "CURRENCY_UNSUPPORTED"
NO_RATE = "NO_RATE"
TASK_NOT_BILLABLE = "TASK_NOT_BILLABLE"
NOT_APPROVED = "NOT_APPROVED"
ERP_REJECTED = "ERP_REJECTED"
EXPENSE_PREFIX = "expense:"


def exception_key(psa_id: str) -> str:
    """An expense's id in the shared exception queue (`expense:<PSA id>`), so it never collides
    with a time entry's id and the steward's replay and write-off can tell them apart."""
    return f"{EXPENSE_PREFIX}{psa_id}"


def psa_id_of(key: str) -> str | None:
    """The PSA expense id of an exception-queue id, None for a time entry's."""
    return key[len(EXPENSE_PREFIX) :] if key.startswith(EXPENSE_PREFIX) else None


class Expense(BaseModel):
    """One PSA expense (Kantata `expenses`); only approved expenses leave the PSA."""

    psa_id: str
    workspace_id: str | None = None
    person: str  # PSA user id
    person_name: str | None = None
    category: str
    amount: Decimal  # in `currency`, exact (Kantata's amount_in_cents / currency_base_unit)
    currency: str
    date_incurred: date
    billable: bool
    approved: bool = True
    has_receipt: bool = False
    notes: str | None = None
    vendor: str | None = None
    task_id: str | None = None

    @field_validator("amount", mode="before")
    @classmethod
    def _no_float(cls, v: object) -> object:
        if isinstance(v, float):
            raise ValueError("money amounts must be Decimal or string, never float")
        return v


class PostedExpense(BaseModel):
    """An expense as posted to the ERP (`expenseReport`, external ID `exp-<PSA id>`): the original
    amount and currency, the ERP's rate for its date, and the amount in the engagement's
    currency converted once by `convert` (the figure the ERP line, the ledger and invoices hold)."""

    psa_id: str
    erp_expense_report_id: str
    category: str
    date_incurred: date
    original_amount: Decimal
    original_currency: str
    exchange_rate: Decimal  # engagement currency per unit of the original currency (1 when the same)
    amount: Decimal  # in `currency` (the engagement's)
    currency: str
    billable: bool


class ExpensePolicy(BaseModel):
    """What the contract says about expenses: whether they are billed to the client (T&M
    usually; a fixed fee or retainer says so explicitly), at cost plus `markup_percent`, and
    above which amount (engagement currency) a receipt is required (None: never)."""

    billable: bool = True
    markup_percent: Decimal = Decimal(0)
    receipt_required_above: Decimal | None = None

    @field_validator("markup_percent", "receipt_required_above", mode="before")
    @classmethod
    def _no_float(cls, v: object) -> object:
        if isinstance(v, float):
            raise ValueError("use Decimal or string, never float")
        return v


class ExpenseCheck(BaseModel):
    """Result of validating one expense: the rate and converted amount to post, or a reason."""

    psa_id: str
    ok: bool
    exchange_rate: Decimal | None = None
    amount: Decimal | None = None  # in the engagement's currency
    reason_code: str | None = None
    message: str | None = None


def convert(amount: Decimal, rate: Decimal, currency: str) -> Decimal:
    """THE conversion: amount x rate, exact, rounded half-up once to `currency`'s minor unit."""
    if not isinstance(amount, Decimal) or not isinstance(rate, Decimal):
        raise TypeError("amount and rate must be Decimal")
    return round_money(amount * rate, currency)


def rate_issue(rate: Decimal) -> str | None:
    """Why an exchange rate cannot be used, or None."""
    if not isinstance(rate, Decimal) or not rate.is_finite() or rate <= 0:
        return f"exchange rate {rate!r} is not a positive decimal number"
    exponent = rate.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_EXCHANGE_RATE_PLACES:
        return f"exchange rate {rate} has more than {MAX_EXCHANGE_RATE_PLACES} decimal places"
    return None


def check_expense(
    expense: Expense,
    *,
    currency: str,
    periods: list[AccountingPeriod],
    rate: Decimal | None,
    policy: ExpensePolicy | None = None,
    project_open: bool = True,
    tasks: dict[str, Task] | None = None,
) -> ExpenseCheck:
    """Validate one approved expense before it goes to the ERP (mirrors `check_time_entry`).

    `rate` is the ERP's exchange rate from the expense's currency to the engagement's on the
    expense's date (None when the ERP has none; ignored when the currencies are the same).
    Checks, in order: open project, approval, currencies q2c can hold, billable task (when the
    expense names a task), an open accounting period for its date, a rate, then the receipt
    rule of the policy on the converted amount."""
    policy = policy or ExpensePolicy()

    def fail(code: str, message: str) -> ExpenseCheck:
        return ExpenseCheck(psa_id=expense.psa_id, ok=False, reason_code=code, message=message)

    if not project_open:
        return fail(PROJECT_CLOSED, "the ERP project is closed")
    if not expense.approved:
        return fail(NOT_APPROVED, f"expense {expense.psa_id} is not approved in the PSA")
    if not is_currency(expense.currency):
        return fail(
            CURRENCY_UNSUPPORTED, f"expense {expense.psa_id} is in '{expense.currency}', not a supported currency"
        )
    if not is_currency(currency):
        return fail(CURRENCY_UNSUPPORTED, f"the engagement's currency '{currency}' is not supported")
    if expense.amount <= 0:
        return fail(CURRENCY_UNSUPPORTED, f"expense {expense.psa_id} has no positive amount ({expense.amount})")
    if tasks is not None and expense.task_id and expense.billable:
        task = tasks.get(expense.task_id)
        if task is not None and not task.billable:
            return fail(TASK_NOT_BILLABLE, f"billable expense booked to non-billable task '{task.name}'")
    period = next((p for p in periods if p.start_date <= expense.date_incurred <= p.end_date), None)
    if period is None:
        return fail(PERIOD_CLOSED, f"no ERP accounting period covers {expense.date_incurred}")
    if period.closed:
        return fail(PERIOD_CLOSED, f"ERP accounting period {period.name} is closed")
    if expense.currency == currency:
        used = Decimal(1)
    else:
        if rate is None:
            return fail(
                NO_RATE,
                f"the ERP has no {expense.currency} to {currency} exchange rate for {expense.date_incurred}; "
                "add the rate in the ERP, then replay the expense",
            )
        issue = rate_issue(rate)
        if issue:
            return fail(NO_RATE, f"the ERP's {expense.currency} to {currency} rate cannot be used: {issue}")
        used = rate
    amount = convert(expense.amount, used, currency)
    threshold = policy.receipt_required_above
    if threshold is not None and amount > threshold and not expense.has_receipt:
        return fail(
            NO_RECEIPT,
            f"expense {expense.psa_id} of {format_amount(amount, currency)} {currency} has no receipt "
            f"(required above {format_amount(threshold, currency)} {currency}); attach it in the PSA, then replay",
        )
    return ExpenseCheck(psa_id=expense.psa_id, ok=True, exchange_rate=used, amount=amount)


def markup_issue(percent: Decimal) -> str | None:
    if not isinstance(percent, Decimal) or not percent.is_finite() or percent < 0:
        return f"markup {percent!r} must be a decimal number of percent, 0 or more"
    exponent = percent.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_MARKUP_PLACES:
        return f"markup {percent}% has more than {MAX_MARKUP_PLACES} decimal places"
    return None


def expense_invoice_lines(posted: list[PostedExpense], currency: str, policy: ExpensePolicy) -> list[InvoiceLine]:
    """The invoice's expense lines: one per category at cost (sorted by category), then the
    markup as its own line, computed once on the total at cost (see the module doc). Nothing
    when the policy does not bill expenses; non-billable expenses are never billed."""
    if not policy.billable:
        return []
    issue = markup_issue(policy.markup_percent)
    if issue:
        raise ValueError(issue)
    amounts: dict[str, Decimal] = defaultdict(Decimal)
    reports: dict[str, list[str]] = defaultdict(list)
    for p in posted:
        if not p.billable:
            continue
        if p.currency != currency:
            raise ValueError(f"expense {p.psa_id} was posted in {p.currency}, not the invoice's {currency}")
        amounts[p.category] += p.amount
        reports[p.category].append(p.erp_expense_report_id)
    lines: list[InvoiceLine] = []
    for category in sorted(amounts):
        count = len(reports[category])
        total = round_money(amounts[category], currency)  # a sum of minor units: exact, never changes it
        lines.append(
            InvoiceLine(
                description=f"Expenses: {category} ({count} item{'s' if count != 1 else ''})",
                quantity=Decimal(1),
                rate=total,
                amount=total,
                expense_ids=sorted(reports[category], key=lambda i: (len(i), i)),
            )
        )
    cost = sum(amounts.values(), Decimal(0))
    if policy.markup_percent > 0 and cost > 0:
        rate = policy.markup_percent / Decimal(100)
        lines.append(
            InvoiceLine(
                description=f"Markup {policy.markup_percent.normalize():f}% on expenses",
                quantity=cost,
                rate=rate,
                amount=round_money(cost * rate, currency),
            )
        )
    return lines


def expenses_total(lines: list[InvoiceLine]) -> Decimal:
    return sum((line.amount for line in lines), Decimal(0))
