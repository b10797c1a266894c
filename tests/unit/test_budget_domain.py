"""The not-to-exceed rules (q2c/domain/budget.py), pure."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from q2c.domain.budget import (
    BudgetPolicy,
    BudgetState,
    budget_cap,
    cap_issue,
    crossed,
    held_total,
    percent_of,
    split_at_room,
)
from q2c.domain.customer import Customer
from q2c.domain.engagement import BillingModel, Engagement
from q2c.domain.money import Money

D = Decimal


def engagement(model: BillingModel, amount: str = "1000", cap: str | None = None) -> Engagement:
    return Engagement(
        opportunity_id="006X",
        opportunity_name="Deal",
        customer=Customer(crm_account_id="001X", name="Acme"),
        billing_model=model,
        contract_value=Money(amount=D(amount), currency="USD"),
        start_date=date(2027, 1, 1),
        end_date=date(2027, 3, 31),
        budget_cap=D(cap) if cap else None,
    )


def test_cap_is_the_not_to_exceed_or_the_contract_value_and_only_for_time_and_materials():
    assert budget_cap(engagement(BillingModel.TIME_AND_MATERIALS)) == D("1000")
    assert budget_cap(engagement(BillingModel.TIME_AND_MATERIALS, cap="800")) == D("800")
    assert budget_cap(engagement(BillingModel.FIXED_FEE)) is None
    assert budget_cap(engagement(BillingModel.RETAINER)) is None


def test_split_bills_whole_items_in_order_and_holds_from_the_first_that_does_not_fit():
    items = [D("600"), D("300"), D("150"), D("50")]
    assert split_at_room(items, lambda x: x, D("1000")) == ([D("600"), D("300")], [D("150"), D("50")])
    assert split_at_room(items, lambda x: x, D("900")) == ([D("600"), D("300")], [D("150"), D("50")])
    assert split_at_room(items, lambda x: x, D("0")) == ([], items)
    assert split_at_room(items, lambda x: x, None) == (items, [])  # no cap: all billed
    assert split_at_room([], lambda x: x, D("10")) == ([], [])


def test_percent_rounds_down_and_thresholds_warn_once_per_cap():
    assert percent_of(D("799.99"), D("1000")) == 79
    assert percent_of(D("800"), D("1000")) == 80
    assert percent_of(D("5"), D("0")) == 0
    state = BudgetState(cap=D("1000"), currency="USD", consumed=D("900"))
    policy = BudgetPolicy()
    assert crossed(policy, state) == [80]
    state.warned = [80]
    assert crossed(policy, state) == []
    state.consumed = D("1000")
    assert crossed(policy, state) == [100]
    assert crossed(BudgetPolicy(warn_at=[100, 50, 50]), BudgetState(cap=D(10), currency="USD", consumed=D(6))) == [50]


def test_room_counts_releases_and_never_goes_negative():
    state = BudgetState(cap=D("1000"), currency="USD", consumed=D("1200"))
    assert state.room == 0
    state.released = D("300")
    assert state.room == D("100")


def test_status_text_names_the_hold_in_the_currency_unit():
    state = BudgetState(cap=D("1000"), currency="USD", consumed=D("1000.00"), held_amount=D("300.00"), held_items=2)
    assert state.status_text() == "at cap: 300.00 USD held (2 item(s)); 100% of 1000.00 USD used"
    state.held_amount, state.held_items, state.warned = D(0), 0, [80, 100]
    assert state.status_text() == "warning: 100% reached; 100% of 1000.00 USD used"
    assert BudgetState(cap=D("1000"), currency="JPY").status_text() == "ok: 0% of 1000 JPY used"
    assert held_total([D("150.0000"), D("0.005")], "USD") == D("150.01")


def test_a_change_order_cannot_set_the_cap_below_what_is_billed():
    assert cap_issue(D("1500"), D("1000")) is None
    assert cap_issue(D("0"), D("0")) == "must be positive"
    assert "below what is already billed" in cap_issue(D("900"), D("1000"))


def test_a_crm_not_to_exceed_change_is_a_change_order_and_an_unchanged_one_is_nothing():
    from q2c.domain.stewardship import apply_amendment, validate_amendment
    from q2c.stewardship.change_orders import amendment_from_crm

    current = engagement(BillingModel.TIME_AND_MATERIALS, cap="1000")
    assert amendment_from_crm(current, current.model_copy()) is None
    raised = amendment_from_crm(current, current.model_copy(update={"budget_cap": D("1500")}))
    assert raised is not None and raised.budget_cap == D("1500") and raised.contract_value is None
    assert (
        validate_amendment(raised, current, billed=D("900"), last_invoiced_period_end=None, last_posted_date=None) == []
    )
    assert apply_amendment(current, raised, version=2).budget_cap == D("1500")
    lowered = raised.model_copy(update={"budget_cap": D("800")})
    issues = validate_amendment(lowered, current, billed=D("900"), last_invoiced_period_end=None, last_posted_date=None)
    assert [i.field for i in issues] == ["budget_cap"] and "below what is already billed" in issues[0].reason
    fixed = engagement(BillingModel.FIXED_FEE)
    issues = validate_amendment(raised, fixed, billed=D(0), last_invoiced_period_end=None, last_posted_date=None)
    assert [i.field for i in issues] == ["budget_cap"]
