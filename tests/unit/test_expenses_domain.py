"""Expense rules (q2c.domain.expenses): conversion rounded once, lines per category at cost,
the markup as one line computed once, and the checks that park an expense."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from q2c.domain.delivery import AccountingPeriod, InvoiceLine
from q2c.domain.expenses import (
    Expense,
    ExpensePolicy,
    PostedExpense,
    check_expense,
    convert,
    exception_key,
    expense_invoice_lines,
    psa_id_of,
)
from q2c.domain.project import Task

JAN = AccountingPeriod(period_id="25", name="Jan 2027", start_date=date(2027, 1, 1), end_date=date(2027, 1, 31))
DEC = AccountingPeriod(
    period_id="24", name="Dec 2026", start_date=date(2026, 12, 1), end_date=date(2026, 12, 31), closed=True
)


def expense(**kw) -> Expense:
    base = dict(
        psa_id="9001",
        person="202",
        category="Airfare",
        amount=Decimal("412.35"),
        currency="USD",
        date_incurred=date(2027, 1, 12),
        billable=True,
        has_receipt=True,
    )
    return Expense(**{**base, **kw})


def posted(psa_id: str, category: str, amount: str, billable: bool = True, report: str | None = None) -> PostedExpense:
    return PostedExpense(
        psa_id=psa_id,
        erp_expense_report_id=report or f"140{psa_id}",
        category=category,
        date_incurred=date(2027, 1, 12),
        original_amount=Decimal(amount),
        original_currency="USD",
        exchange_rate=Decimal(1),
        amount=Decimal(amount),
        currency="USD",
        billable=billable,
    )


def test_conversion_is_exact_then_rounded_half_up_once():
    # 123.45 EUR x 1.1034 = 136.214730 USD -> 136.21; 0.05 x 1.1 = 0.055 -> 0.06 (half-up, not banker's)
    assert convert(Decimal("123.45"), Decimal("1.1034"), "USD") == Decimal("136.21")
    assert convert(Decimal("0.05"), Decimal("1.1"), "USD") == Decimal("0.06")
    assert convert(Decimal("1000"), Decimal("0.921659"), "JPY") == Decimal("922")
    # converting each of two expenses once is not converting their sum: the recorded figures are summed
    assert convert(Decimal("0.05"), Decimal("1.1"), "USD") * 2 == Decimal("0.12")
    assert convert(Decimal("0.10"), Decimal("1.1"), "USD") == Decimal("0.11")


def test_check_converts_at_the_erps_rate_and_records_it():
    check = check_expense(
        expense(currency="EUR", amount=Decimal("123.45")), currency="USD", periods=[JAN], rate=Decimal("1.1034")
    )
    assert check.ok and check.exchange_rate == Decimal("1.1034") and check.amount == Decimal("136.21")
    same = check_expense(expense(), currency="USD", periods=[JAN], rate=None)
    assert same.ok and same.exchange_rate == 1 and same.amount == Decimal("412.35")


@pytest.mark.parametrize(
    ("kw", "check_kw", "code", "words"),
    [
        ({"date_incurred": date(2026, 12, 3)}, {}, "PERIOD_CLOSED", "Dec 2026 is closed"),
        ({"date_incurred": date(2031, 1, 3)}, {}, "PERIOD_CLOSED", "no ERP accounting period covers 2031-01-03"),
        ({"currency": "EUR"}, {"rate": None}, "NO_RATE", "no EUR to USD exchange rate for 2027-01-12"),
        ({"currency": "EUR"}, {"rate": Decimal("1.123456789")}, "NO_RATE", "more than 8 decimal places"),
        ({"currency": "XYZ"}, {}, "CURRENCY_UNSUPPORTED", "'XYZ'"),
        ({"has_receipt": False}, {"policy": ExpensePolicy(receipt_required_above=Decimal(75))}, "NO_RECEIPT", "412.35"),
        ({}, {"project_open": False}, "PROJECT_CLOSED", "closed"),
        ({"approved": False}, {}, "NOT_APPROVED", "not approved"),
        (
            {"task_id": "s-9"},
            {"tasks": {"s-9": Task(name="Internal QA", billable=False, psa_story_id="s-9")}},
            "TASK_NOT_BILLABLE",
            "Internal QA",
        ),
    ],
)
def test_checks_park_with_a_reason(kw, check_kw, code, words):
    args = {"currency": "USD", "periods": [DEC, JAN], "rate": Decimal("1.1")} | check_kw
    check = check_expense(expense(**kw), **args)
    assert not check.ok and check.reason_code == code and words in check.message


def test_receipt_rule_applies_above_the_threshold_only():
    policy = ExpensePolicy(receipt_required_above=Decimal("412.35"))
    assert check_expense(expense(has_receipt=False), currency="USD", periods=[JAN], rate=None, policy=policy).ok


def test_one_line_per_category_at_cost_and_the_markup_once():
    items = [
        posted("1", "Airfare", "0.05"),
        posted("2", "Airfare", "0.05"),
        posted("3", "Airfare", "0.05"),
        posted("4", "Lodging", "310.00"),
        posted("5", "Software", "49.00", billable=False),
    ]
    lines = expense_invoice_lines(items, "USD", ExpensePolicy(markup_percent=Decimal("10")))
    assert [(x.description, x.amount, x.expense_ids) for x in lines] == [
        ("Expenses: Airfare (3 items)", Decimal("0.15"), ["1401", "1402", "1403"]),
        ("Expenses: Lodging (1 item)", Decimal("310.00"), ["1404"]),
        # once on the total at cost: 310.15 x 10% = 31.015 -> 31.02 (per expense it would be 31.00 + 3 x 0.01)
        ("Markup 10% on expenses", Decimal("31.02"), []),
    ]
    markup = lines[-1]
    assert (markup.quantity, markup.rate) == (Decimal("310.15"), Decimal("0.1"))
    assert all(isinstance(x, InvoiceLine) for x in lines)
    assert sum(x.amount for x in lines) == Decimal("341.17")


def test_at_cost_no_markup_line_and_not_billable_policy_bills_nothing():
    items = [posted("1", "Airfare", "100.00")]
    assert [x.description for x in expense_invoice_lines(items, "USD", ExpensePolicy())] == [
        "Expenses: Airfare (1 item)"
    ]
    assert expense_invoice_lines(items, "USD", ExpensePolicy(billable=False)) == []
    with pytest.raises(ValueError):
        expense_invoice_lines(items, "USD", ExpensePolicy(markup_percent=Decimal("-1")))
    with pytest.raises(ValueError):
        eur = posted("1", "Airfare", "1.00").model_copy(update={"currency": "EUR"})
        expense_invoice_lines([eur], "USD", ExpensePolicy())


def test_queue_keys_and_no_floats():
    assert exception_key("77") == "expense:77" and psa_id_of("expense:77") == "77" and psa_id_of("77") is None
    with pytest.raises(ValueError):
        expense(amount=1.5)
    with pytest.raises(ValueError):
        ExpensePolicy(markup_percent=10.0)
