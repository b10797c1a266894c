"""The billing rules in domain/billing.py, stated once and checked here without any system."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from domain.billing import billing_periods, check_time_entry, rate_for, time_invoice_lines
from domain.delivery import AccountingPeriod, PostedTime, TimeEntry
from domain.engagement import RateCardEntry
from domain.money import round_money
from domain.project import Task

CARD = [RateCardEntry(role="Consultant", rate=Decimal("150")),
        RateCardEntry(role="Consultant", rate=Decimal("175.50"), effective_from=date(2027, 1, 15)),
        RateCardEntry(role="Engagement Manager", rate=Decimal("250"), effective_from=date(2027, 1, 1))]


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


def test_one_line_per_role_and_rate_rounded_per_line():
    def posted(i: int, role: str, minutes: int, rate: str, billable: bool = True) -> PostedTime:
        return PostedTime(psa_id=str(i), erp_time_bill_id=f"b{i}", role=role, date_performed=date(2027, 1, 10),
                          minutes=minutes, billable=billable, rate=Decimal(rate), currency="USD")

    lines = time_invoice_lines([posted(1, "Consultant", 20, "150"), posted(2, "Consultant", 20, "150"),
                                posted(3, "Consultant", 60, "175.50"), posted(4, "Engagement Manager", 45, "250"),
                                posted(5, "Consultant", 600, "150", billable=False)], "USD")
    assert [(line.quantity, line.rate, line.amount) for line in lines] == [
        (Decimal("0.666667"), Decimal("150"), Decimal("100.00")),  # 40 min: 0.666667 h x 150 = 100.00005
        (Decimal("1.000000"), Decimal("175.50"), Decimal("175.50")),
        (Decimal("0.750000"), Decimal("250"), Decimal("187.50")),
    ]


def test_calendar_months_with_partial_first_and_last():
    periods = billing_periods(date(2026, 12, 15), date(2027, 2, 10))
    assert [(p.start, p.end) for p in periods] == [(date(2026, 12, 15), date(2026, 12, 31)),
                                                   (date(2027, 1, 1), date(2027, 1, 31)),
                                                   (date(2027, 2, 1), date(2027, 2, 10))]


def test_time_entry_checks_name_the_reason():
    tasks = {"1": Task(name="Build", billable=True, psa_story_id="1"),
             "2": Task(name="Internal QA", billable=False, psa_story_id="2")}
    periods = [AccountingPeriod(period_id="1", name="Jan 2027", start_date=date(2027, 1, 1),
                                end_date=date(2027, 1, 31), closed=True),
               AccountingPeriod(period_id="2", name="Feb 2027", start_date=date(2027, 2, 1),
                                end_date=date(2027, 2, 28))]

    def check(task: str, day: date, role: str = "Consultant", billable: bool = True, bill_time: bool = True):
        entry = TimeEntry(psa_id="9", person="u", role=role, task_id=task, date_performed=day, minutes=60,
                          billable=billable)
        return check_time_entry(entry, tasks=tasks, rate_card=CARD, periods=periods, bill_time=bill_time)

    assert check("1", date(2027, 2, 3)).rate == Decimal("175.50")
    assert check("1", date(2027, 1, 20)).reason_code == "PERIOD_CLOSED"
    assert check("7", date(2027, 2, 3)).reason_code == "TASK_UNMAPPED"
    assert check("2", date(2027, 2, 3)).reason_code == "TASK_NOT_BILLABLE"
    assert check("2", date(2027, 2, 3), billable=False).ok  # internal time on an internal task
    assert check("1", date(2027, 2, 3), role="Architect").reason_code == "NO_RATE"
    assert check("1", date(2027, 2, 3), role="Architect", bill_time=False).ok  # fixed fee: no rate needed
    assert check("1", date(2027, 3, 3)).reason_code == "PERIOD_CLOSED"  # no period set up
