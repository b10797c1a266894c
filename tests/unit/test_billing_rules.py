"""The billing rules in domain/billing.py, stated once and checked here without any system."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from q2c.domain.billing import billing_periods, check_time_entry, rate_for, time_invoice_lines
from q2c.domain.delivery import AccountingPeriod, PostedTime, TimeEntry
from q2c.domain.engagement import RateCardEntry
from q2c.domain.money import round_money
from q2c.domain.project import Task

CARD = [
    RateCardEntry(role="Consultant", rate=Decimal("150")),
    RateCardEntry(role="Consultant", rate=Decimal("175.50"), effective_from=date(2027, 1, 15)),
    RateCardEntry(role="Engagement Manager", rate=Decimal("250"), effective_from=date(2027, 1, 1)),
]


def test_rate_in_effect_on_the_entry_date():
    assert rate_for(CARD, "Consultant", date(2027, 1, 14)) == Decimal("150")
    assert rate_for(CARD, "Consultant", date(2027, 1, 15)) == Decimal("175.50")  # the day it takes effect
    assert rate_for(CARD, "Engagement Manager", date(2026, 12, 31)) is None  # not yet in effect
    assert rate_for(CARD, "Architect", date(2027, 2, 1)) is None


def test_half_up_to_the_minor_unit():
    assert round_money(Decimal("0.125"), "USD") == Decimal("0.13")
    assert round_money(Decimal("0.124999"), "USD") == Decimal("0.12")
    assert round_money(Decimal("2.5"), "JPY") == Decimal("3")
    assert round_money(Decimal("1.0005"), "BHD") == Decimal("1.001")


def test_one_line_per_role_and_rate_summing_entries_rounded_once_each():
    def posted(i: int, role: str, minutes: int, rate: str, billable: bool = True) -> PostedTime:
        return PostedTime(
            psa_id=str(i),
            erp_time_bill_id=f"b{i}",
            role=role,
            date_performed=date(2027, 1, 10),
            minutes=minutes,
            billable=billable,
            rate=Decimal(rate),
            currency="USD",
        )

    entries = [
        posted(1, "Consultant", 20, "150"),
        posted(2, "Consultant", 20, "150"),
        posted(3, "Consultant", 60, "175.50"),
        posted(4, "Engagement Manager", 45, "250"),
        posted(5, "Consultant", 600, "150", billable=False),
    ]
    assert [e.amount for e in entries] == [
        Decimal("50.00"),
        Decimal("50.00"),
        Decimal("175.50"),
        Decimal("187.50"),
        None,
    ]
    lines = time_invoice_lines(entries, "USD")
    assert [(line.description, line.quantity, line.rate, line.amount, line.time_bill_ids) for line in lines] == [
        (
            "Consultant: 0.67 h (40 min) at 150.00/h",
            Decimal("0.666667"),
            Decimal("150"),
            Decimal("100.00"),
            ["b1", "b2"],
        ),
        ("Consultant: 1 h at 175.50/h", Decimal("1.000000"), Decimal("175.50"), Decimal("175.50"), ["b3"]),
        ("Engagement Manager: 0.75 h at 250.00/h", Decimal("0.750000"), Decimal("250"), Decimal("187.50"), ["b4"]),
    ]


def test_a_line_is_the_sum_of_its_entries_not_its_hours_times_the_rate():
    # two entries of 7 min at 100/h: 11.67 each (11.666...), so the line bills 23.34, while
    # 14 min x 100 / 60 = 23.33 if rounded once for the line: the ledger rows would not add up
    entries = [
        PostedTime(
            psa_id=str(i),
            erp_time_bill_id=f"b{i}",
            role="Consultant",
            date_performed=date(2027, 1, 4),
            minutes=7,
            billable=True,
            rate=Decimal("100"),
            currency="USD",
        )
        for i in (1, 2)
    ]
    [line] = time_invoice_lines(entries, "USD")
    assert line.amount == sum(e.amount for e in entries) == Decimal("23.34")
    assert line.description == "Consultant: 0.23 h (14 min) at 100.00/h"


def test_calendar_months_with_partial_first_and_last():
    periods = billing_periods(date(2026, 12, 15), date(2027, 2, 10))
    assert [(p.start, p.end) for p in periods] == [
        (date(2026, 12, 15), date(2026, 12, 31)),
        (date(2027, 1, 1), date(2027, 1, 31)),
        (date(2027, 2, 1), date(2027, 2, 10)),
    ]


def test_time_entry_checks_name_the_reason():
    tasks = {
        "1": Task(name="Build", billable=True, psa_story_id="1"),
        "2": Task(name="Internal QA", billable=False, psa_story_id="2"),
    }
    periods = [
        AccountingPeriod(
            period_id="1", name="Jan 2027", start_date=date(2027, 1, 1), end_date=date(2027, 1, 31), closed=True
        ),
        AccountingPeriod(period_id="2", name="Feb 2027", start_date=date(2027, 2, 1), end_date=date(2027, 2, 28)),
    ]

    def check(task: str, day: date, role: str = "Consultant", billable: bool = True, bill_time: bool = True):
        entry = TimeEntry(
            psa_id="9", person="u", role=role, task_id=task, date_performed=day, minutes=60, billable=billable
        )
        return check_time_entry(entry, tasks=tasks, rate_card=CARD, periods=periods, bill_time=bill_time)

    assert check("1", date(2027, 2, 3)).rate == Decimal("175.50")
    assert check("1", date(2027, 1, 20)).reason_code == "PERIOD_CLOSED"
    assert check("7", date(2027, 2, 3)).reason_code == "TASK_UNMAPPED"
    assert check("2", date(2027, 2, 3)).reason_code == "TASK_NOT_BILLABLE"
    assert check("2", date(2027, 2, 3), billable=False).ok  # internal time on an internal task
    assert check("1", date(2027, 2, 3), role="Architect").reason_code == "NO_RATE"
    assert check("1", date(2027, 2, 3), role="Architect", bill_time=False).ok  # fixed fee: no rate needed
    assert check("1", date(2027, 3, 3)).reason_code == "PERIOD_CLOSED"  # no period set up


def test_an_entry_without_a_role_is_parked_naming_what_is_missing():
    tasks = {"1": Task(name="Build", billable=True, psa_story_id="1")}
    periods = [
        AccountingPeriod(period_id="2", name="Feb 2027", start_date=date(2027, 2, 1), end_date=date(2027, 2, 28))
    ]
    entry = TimeEntry(
        psa_id="9",
        person="u",
        role="",
        task_id="1",
        date_performed=date(2027, 2, 3),
        minutes=60,
        billable=True,
        role_issue="the PSA entry carries no role and user 203 holds no role on workspace 7002",
    )
    check = check_time_entry(entry, tasks=tasks, rate_card=CARD, periods=periods)
    assert (check.ok, check.reason_code) == (False, "NO_RATE")
    assert "no role for time entry 9" in check.message and "user 203 holds no role on workspace 7002" in check.message
    # fixed fee: no rate needed, so no role either
    assert check_time_entry(entry, tasks=tasks, rate_card=CARD, periods=periods, bill_time=False).ok


def test_an_over_precise_rate_is_parked_before_the_erp_sees_it():
    tasks = {"1": Task(name="Build", billable=True, psa_story_id="1")}
    periods = [
        AccountingPeriod(period_id="2", name="Feb 2027", start_date=date(2027, 2, 1), end_date=date(2027, 2, 28))
    ]
    card = [RateCardEntry(role="Consultant", rate=Decimal("150.12345"))]
    entry = TimeEntry(
        psa_id="9",
        person="u",
        role="Consultant",
        task_id="1",
        date_performed=date(2027, 2, 3),
        minutes=60,
        billable=True,
    )
    check = check_time_entry(entry, tasks=tasks, rate_card=card, periods=periods, currency="USD")
    assert check.reason_code == "NO_RATE" and "5 decimal places" in check.message
    assert check_time_entry(entry, tasks=tasks, rate_card=card, periods=periods).reason_code == "NO_RATE"
