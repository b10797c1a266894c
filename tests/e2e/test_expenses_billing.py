"""Expenses end to end (issue 14, item 1) on the real stack: dev server, sandboxes, worker.

Approved PSA expenses are posted to the ERP once (an `expenseReport` keyed `exp-<PSA id>`) at
each period close, converted to the engagement's currency at the ERP's rate for their date (the
rate recorded on the report line and in the ledger), and invoiced the way the contract says:

- a T&M contract with a 10% markup: Dec 412.35 USD airfare -> 412.35 + 41.24 markup = 453.59;
  Jan 200.00 EUR hotel at the ERP's 1.1034 -> 220.68 USD + 22.07 = 242.75; a non-billable
  dinner is posted (cost) and never invoiced;
- a fixed-fee contract (expenses not billable): the expense is posted, non-billable, and the
  milestone invoice carries the milestone only.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx

from q2c.cli import main as cli
from q2c.engagement.messages import DeliveryConfig
from q2c.ledger.expenses import PostedExpenses
from stack.demo_env import DEMO_PSA_TOKEN
from tests.deals import create_deal
from tests.e2e.test_delivery import invoices_of
from tests.e2e.test_interfaces_steward_actions import STEWARD, http, q2c, wait_until

D = Decimal
PSA_AUTH = {"Authorization": f"Bearer {DEMO_PSA_TOKEN}"}


def add_expense(stack, status, **fields) -> str:
    """An approved expense in the PSA on the engagement's workspace; returns its id."""
    user = stack.psa.records("users")[0]["id"]
    body = {
        "workspace_id": status.psa_workspace.workspace_id,
        "user_id": user,
        "has_receipt": True,
        "approved": True,
        **fields,
    }
    r = httpx.post(f"{stack.psa.url}/api/v1/expenses.json", json={"expense": body}, headers=PSA_AUTH, timeout=30)
    assert r.status_code == 200, r.text
    ref = r.json()["results"][0]
    return str(ref["id"])


def reports_for(erp, psa_ids: list[str]) -> dict[str, dict]:
    wanted = {f"exp-{i}": i for i in psa_ids}
    return {wanted[r["externalId"]]: r for r in erp.records("expenseReport") if r.get("externalId") in wanted}


def lines_of(invoice: dict) -> list[tuple[str, Decimal]]:
    items = (invoice.get("item") or {}).get("items", []) + (invoice.get("expCost") or {}).get("items", [])
    return sorted((str(i.get("memo") or i.get("description") or ""), D(str(i["amount"]))) for i in items)


async def _tm_with_markup(stack) -> None:
    async with stack.crm.client() as crm:
        deal = await create_deal(
            crm, account_name="Expense Markup Inc", start="2026-12-01", end="2027-03-31", stage="Negotiation/Review"
        )
        opp = deal.opportunity_id
        await crm.update_record("Opportunity", opp, {"Expense_Markup_Percent__c": 10})
        await crm.set_opportunity_stage(opp, "Closed Won")
    await cli.start(
        stack.client,
        opp,
        task_queue=stack.settings.task_queue,
        delivery=DeliveryConfig(period_seconds=10, payment_poll_seconds=3600),
    )
    active = await wait_until(stack.client, opp, lambda s: s.active_since is not None, timeout=90, what="Active")
    assert active.engagement.expense_markup_percent == D(10) and active.engagement.bills_expenses
    airfare = add_expense(stack, active, date="2026-12-10", category="Airfare", amount_in_cents=41235)
    hotel = add_expense(stack, active, date="2027-01-12", category="Lodging", amount_in_cents=20000, currency="EUR")
    dinner = add_expense(stack, active, date="2027-01-13", category="Meals", amount_in_cents=5000, is_billable=False)
    st = await wait_until(
        stack.client,
        opp,
        lambda s: s.invoice(f"inv-{opp}-p001") is not None,
        timeout=120,
        what="January's invoice",
    )
    assert st.totals.posted_expenses == 3
    erp = invoices_of(stack.erp, opp)
    dec, jan = erp[f"inv-{opp}-p000"], erp[f"inv-{opp}-p001"]
    assert (D(str(dec["total"])), D(str(jan["total"]))) == (D("453.59"), D("242.75"))
    assert [i.total for i in st.invoices] == [D("453.59"), D("242.75")]
    assert sorted(a for _, a in lines_of(dec)) == sorted([D("412.35"), D("41.24")])
    assert sorted(a for _, a in lines_of(jan)) == sorted([D("220.68"), D("22.07")])
    assert any("Markup 10%" in memo for memo, _ in lines_of(jan))
    # one expense report per PSA expense, the EUR one at the ERP's rate for its date
    reports = reports_for(stack.erp, [airfare, hotel, dinner])
    assert len(reports) == 3 and len(stack.erp.records("expenseReport")) == len(
        {r["externalId"] for r in stack.erp.records("expenseReport")}
    )
    line = reports[hotel]["expense"]["items"][0]
    assert (D(str(line["foreignAmount"])), D(str(line["exchangeRate"])), D(str(line["amount"]))) == (
        D("200.00"),
        D("1.1034"),
        D("220.68"),
    )
    assert reports[dinner]["expense"]["items"][0]["isBillable"] is False
    ledger = {p.psa_id: p for p in PostedExpenses(stack.ledger.engine).for_opportunity(opp)}
    assert (ledger[hotel].original_currency, ledger[hotel].exchange_rate, ledger[hotel].amount) == (
        "EUR",
        D("1.1034"),
        D("220.68"),
    )
    assert ledger[airfare].invoice_external_id == f"inv-{opp}-p000"
    assert ledger[hotel].invoice_external_id == f"inv-{opp}-p001"
    assert ledger[dinner].invoice_external_id is None and not ledger[dinner].billable
    # the next period posts nothing twice and bills nothing again
    st = await wait_until(stack.client, opp, lambda s: s.next_period_index >= 3, timeout=60, what="February closed")
    assert st.totals.posted_expenses == 3 and len(st.invoices) == 2
    async with http(stack) as h:
        page = (await h.get(f"/console/engagements/{opp}", headers=STEWARD)).text
    assert "billable at cost + 10% markup; 3 posted to the ERP" in page
    assert len(reports_for(stack.erp, [airfare, hotel, dinner])) == 3
    await q2c(stack, "cancel", opp, "--reason", "test done")


async def _fixed_fee_without_expenses(stack) -> None:
    async with stack.crm.client() as crm:
        deal = await create_deal(
            crm, billing_model="Fixed Fee", region="UK", account_name="No Expenses Ltd", start="2026-12-01"
        )
    opp = deal.opportunity_id
    await cli.start(
        stack.client,
        opp,
        task_queue=stack.settings.task_queue,
        delivery=DeliveryConfig(period_seconds=10, payment_poll_seconds=3600),
    )
    active = await wait_until(stack.client, opp, lambda s: s.active_since is not None, timeout=90, what="Active")
    assert not active.engagement.bills_expenses
    taxi = add_expense(stack, active, date="2026-12-08", category="Ground Transportation", amount_in_cents=6400)
    await wait_until(stack.client, opp, lambda s: s.totals.posted_expenses == 1, timeout=60, what="expense posted")
    report = reports_for(stack.erp, [taxi])[taxi]
    assert report["expense"]["items"][0]["isBillable"] is False
    first = active.engagement.milestones[0].key
    result = await q2c(stack, "milestone", "accept", opp, first, "--by", "paula")
    assert result.exit_code == 0, result.output
    st = await wait_until(stack.client, opp, lambda s: len(s.invoices) == 1, what="the milestone invoice")
    assert st.invoices[0].total == D("20000.00")
    invoice = invoices_of(stack.erp, opp)[st.invoices[0].external_id]
    assert not (invoice.get("expCost") or {}).get("items")
    await q2c(stack, "cancel", opp, "--reason", "test done")


async def test_expenses_posted_once_and_billed_as_the_contract_says(console_stack):
    await asyncio.gather(_tm_with_markup(console_stack), _fixed_fee_without_expenses(console_stack))
