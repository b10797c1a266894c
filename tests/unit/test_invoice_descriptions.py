"""Invoice line descriptions: money to the currency's minor unit, hours to a readable precision
that is still exact (issue 14, item 5)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from q2c.domain.billing import format_duration, format_rate, time_invoice_lines
from q2c.domain.delivery import PostedTime
from q2c.domain.money import format_amount, minor_units


def posted(minutes: int, rate: str, currency: str, role: str = "Consultant", n: int = 1) -> PostedTime:
    return PostedTime(
        psa_id=f"te-{n}",
        erp_time_bill_id=f"b{n}",
        role=role,
        date_performed=date(2027, 1, 4),
        minutes=minutes,
        billable=True,
        rate=Decimal(rate),
        currency=currency,
    )


def test_minor_units_are_the_iso_exponents():
    assert [minor_units(c) for c in ("USD", "GBP", "EUR", "JPY", "KRW", "BHD")] == [2, 2, 2, 0, 0, 3]


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        ("150", "USD", "150.00"),
        ("150.0000", "USD", "150.00"),
        ("15000", "JPY", "15000"),
        ("15000.00", "JPY", "15000"),
        ("95.5", "GBP", "95.50"),
        ("1.5", "BHD", "1.500"),
        ("150.125", "USD", "150.125"),  # a rate with more places than the currency shows all of them
        ("1E+3", "USD", "1000.00"),
    ],
)
def test_amounts_print_to_the_minor_unit_and_never_lose_a_place(amount, currency, text):
    assert format_amount(Decimal(amount), currency) == text
    assert format_rate(Decimal(amount), currency) == text


@pytest.mark.parametrize(
    ("minutes", "text"),
    [
        (120, "2 h"),
        (90, "1.5 h"),
        (15, "0.25 h"),
        (45, "0.75 h"),
        (6, "0.1 h"),
        (600, "10 h"),
        (150, "2.5 h"),
        (61, "1.02 h (61 min)"),  # not exact in two decimals: the minutes say what is billed
        (40, "0.67 h (40 min)"),
        (1843, "30.72 h (1843 min)"),
    ],
)
def test_hours_are_decimal_and_exact(minutes, text):
    assert format_duration(minutes) == text


def test_usd_line_reads_hours_and_cents():
    [line] = time_invoice_lines([posted(120, "150.0000", "USD")], "USD")
    assert (line.description, line.quantity, line.amount) == (
        "Consultant: 2 h at 150.00/h",
        Decimal("2.000000"),
        Decimal("300.00"),
    )


def test_jpy_line_has_no_decimals_for_money():
    [line] = time_invoice_lines([posted(90, "15000", "JPY")], "JPY")
    assert (line.description, line.amount) == ("Consultant: 1.5 h at 15000/h", Decimal("22500"))


def test_gbp_lines_per_role_with_quarter_hours():
    lines = time_invoice_lines(
        [
            posted(15, "95.5", "GBP", n=1),
            posted(30, "95.5", "GBP", n=2),
            posted(61, "210", "GBP", role="Engagement Manager", n=3),
        ],
        "GBP",
    )
    assert [(line.description, line.amount) for line in lines] == [
        ("Consultant: 0.75 h at 95.50/h", Decimal("71.63")),  # 23.88 + 47.75, each entry rounded once
        ("Engagement Manager: 1.02 h (61 min) at 210.00/h", Decimal("213.50")),
    ]
