"""Budget control (issue 14, item 3) on the real stack: dev server, sandboxes, worker, API, CLI.

A T&M deal with a 1,000.00 USD contract and a Consultant at 150.00/h, on the demo calendar
(each month a few seconds). Approved time: Dec 600.00, Jan 300.00, Feb 100.00 + 300.00,
Mar 150.00 + 150.00, Apr 150.00 (every entry whole hours at 150/h, or 40 minutes = 100.00).

- Dec invoices 600.00 (60%); Jan 300.00 takes it to 90%: the 80% warning;
- Feb: 100.00 fits exactly (100%: the second warning), 300.00 is held (posted, not invoiced);
- a change order raises the cap to 1,500.00: the held time is invoiced once, in date order,
  while it fits; what does not (150.00) is held again; a retried change order changes nothing;
- the PMO releases that 150.00 from the CLI (billed beyond the cap, recorded);
- April's 150.00 is held; the contract ends with it undecided: the engagement parks in the PMO
  queue and is written off through the API (never billed, recorded), then closes.

At every step the ERP, the engagement, the CRM and the ledger agree to the cent, and every
timeBill is billed at most once.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from q2c.cli import main as cli
from q2c.domain.stage import EngagementStage
from q2c.engagement.client import workflow_id_for
from q2c.engagement.messages import DeliveryConfig
from q2c.engagement.search_attributes import BUDGET_STATUS
from q2c.ledger.store import BUDGET_WRITE_OFF_PREFIX
from tests.deals import create_deal
from tests.e2e.test_delivery import invoices_of, paying_customer
from tests.e2e.test_interfaces_steward_actions import STEWARD, VIEWER, audit_of, http, q2c, wait_until
from tests.e2e.test_parking import add_time
from tests.engagement_helpers import status_of

D = Decimal
PERIOD_SECONDS = 10


async def _crm_budget(stack, opp: str) -> dict:
    fields = [
        "Amount_Billed__c",
        "Amount_Credited__c",
        "Net_Billed__c",
        "Budget_Used_Percent__c",
        "Budget_Held__c",
        "Budget_Status__c",
    ]
    async with stack.crm.client() as crm:
        record = await crm.get_record("Opportunity", opp, fields=fields)
    return {f: record.get(f) for f in fields}


async def _crm_budget_when(stack, opp: str, ready, timeout: float = 30.0) -> dict:
    """The CRM's figures once the engagement's write has landed (it follows the invoice)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        crm = await _crm_budget(stack, opp)
        if ready(crm) or asyncio.get_running_loop().time() > deadline:
            return crm
        await asyncio.sleep(0.2)


async def _sa(stack, opp: str) -> str | None:
    desc = await stack.client.get_workflow_handle(workflow_id_for(opp)).describe()
    return desc.typed_search_attributes.get(BUDGET_STATUS)


async def test_cap_warns_holds_and_every_decision_bills_once(console_stack):
    stack = console_stack
    async with stack.crm.client() as crm:
        deal = await create_deal(
            crm,
            account_name="Budget Cap Partners LLC",
            start="2026-12-01",
            end="2027-04-30",
            stage="Negotiation/Review",
            not_to_exceed=None,
        )
        opp = deal.opportunity_id
        await crm.update_record("Opportunity", opp, {"Amount": 1000})
        await crm.set_opportunity_stage(opp, "Closed Won")
    await cli.start(
        stack.client,
        opp,
        task_queue=stack.settings.task_queue,
        delivery=DeliveryConfig(period_seconds=PERIOD_SECONDS, payment_poll_seconds=2, grace_days=3),
    )
    active = await wait_until(stack.client, opp, lambda s: s.active_since is not None, timeout=90, what="Active")
    assert active.budget is not None and (active.budget.cap, active.budget.currency) == (D("1000"), "USD")
    hour = {"minutes": 60}
    add_time(stack, active, ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"], **hour)
    add_time(stack, active, ["2027-01-05", "2027-01-06"], **hour)
    add_time(stack, active, ["2027-02-02"], minutes=40)
    add_time(stack, active, ["2027-02-03", "2027-02-04"], **hour)
    add_time(stack, active, ["2027-03-02", "2027-03-03"], **hour)
    april = add_time(stack, active, ["2027-04-05"], **hour)

    # Dec, Jan, Feb closed: 600 + 300 + 100 invoiced, 300 held, both warnings given
    st = await wait_until(
        stack.client,
        opp,
        lambda s: s.invoice(f"inv-{opp}-p002") is not None,
        timeout=120,
        what="February's invoice",
    )
    b = st.budget
    assert [(i.external_id[-4:], i.total) for i in st.invoices] == [
        ("p000", D("600.00")),
        ("p001", D("300.00")),
        ("p002", D("100.00")),
    ]
    assert (b.consumed, b.held_amount, b.held_items, b.warned) == (D("1000.00"), D("300.00"), 2, [80, 100])
    assert [(w.threshold, w.consumed, w.invoice[-4:]) for w in b.warnings] == [
        (80, D("900.00"), "p001"),
        (100, D("1000.00"), "p002"),
    ]
    assert await _sa(stack, opp) == "held"
    crm = await _crm_budget_when(stack, opp, lambda c: c["Budget_Held__c"] is not None and c["Budget_Held__c"] > 0)
    assert (D(str(crm["Net_Billed__c"])), D(str(crm["Budget_Held__c"])), crm["Budget_Used_Percent__c"]) == (
        D("1000.00"),
        D("300.00"),
        100,
    )
    assert crm["Budget_Status__c"].startswith("at cap: 300.00 USD held (2 item(s))")
    erp = invoices_of(stack.erp, opp)
    assert sorted(D(str(i["total"])) for i in erp.values()) == [D("100.00"), D("300.00"), D("600.00")]

    # the console shows the position and the decision form to a steward, not to a viewer
    async with http(stack) as h:
        page = (await h.get(f"/console/engagements/{opp}", headers=STEWARD)).text
        assert 'id="budget"' in page and "300.00 USD held" in page and 'id="budget-form"' in page
        assert "80%" in page and "100%" in page
        viewer = (await h.get(f"/console/engagements/{opp}", headers=VIEWER)).text
        assert 'id="budget"' in viewer and 'id="budget-form"' not in viewer
        # the PMO queue lists it while it holds time, without a pause
        rows = (await h.get("/api/queue", params={"queue": "pmo"}, headers=VIEWER)).json()["engagements"]
        row = next(r for r in rows if r["opportunity_id"] == opp)
        assert row["pause_kind"] == "budget_held" and row["action"] == "decide_budget_hold"
        assert "300.00 USD" in row["message"]

        # bad decisions are named field by field; nothing changes
        r = await h.post(f"/api/engagements/{opp}/budget-decisions", headers=STEWARD, json={"action": "x"})
        assert r.status_code == 422
        assert sorted(e["field"] for e in r.json()["errors"]) == ["action", "reason"]

        # a change order raises the cap: what was held is invoiced, once, within the new room
        body = {"budget_cap": "1500", "reason": "CO-7: extended discovery"}
        key = {**STEWARD, "Idempotency-Key": f"co-7-{opp}"}
        first = await h.post(f"/api/engagements/{opp}/amendments", headers=key, json=body)
        assert first.status_code == 200, first.text
        again = await h.post(f"/api/engagements/{opp}/amendments", headers=key, json=body)
        assert again.status_code == 200 and again.json() == first.json()

    # after the change order and March's close: 1,450.00 billed, 150.00 held
    st = await wait_until(
        stack.client,
        opp,
        lambda s: s.next_period_index >= 4 and s.invoice(f"inv-{opp}-bh01") is not None and s.budget.held_items == 1,
        timeout=90,
        what="March closed and the held time invoiced",
    )
    b = st.budget
    assert (b.cap, b.consumed, b.held_amount, b.held_items) == (D("1500"), D("1450.00"), D("150.00"), 1)
    assert sum((i.total for i in st.invoices), D(0)) == D("1450.00")
    assert [d.action for d in b.decisions] == ["change_order"]
    assert b.decisions[0].requested_by == "steward" and "CO-7" in b.decisions[0].reason
    assert b.warned == [80]  # at the new cap, 96%: 80% stays given, 100% armed again

    # the PMO releases the 150.00 from the CLI: billed beyond the cap, recorded
    result = await q2c(stack, "budget", "release", opp, "--reason", "client approved by email 2027-03-20", "--by", "pm")
    assert result.exit_code == 0, result.output
    assert "accepted: release of 150.00 USD (1 entries)" in result.output
    rerun = await q2c(stack, "budget", "release", opp, "--reason", "client approved by email 2027-03-20", "--by", "pm")
    assert rerun.exit_code in (0, 1), rerun.output  # the first outcome again, or "already applied"
    st = await status_of(stack.client, opp)
    b = st.budget
    assert (b.released, b.consumed, b.held_amount) == (D("150.00"), D("1600.00"), D("0"))
    assert [i.external_id[-4:] for i in st.invoices].count("bh02") == 1

    # April's hour is held; at the end date nothing closes until the PMO decides
    parked = await wait_until(
        stack.client,
        opp,
        lambda s: s.pause is not None and s.pause.kind.value == "budget_held",
        timeout=120,
        what="the budget pause at closure",
    )
    assert parked.pause.queue.value == "pmo" and parked.budget.held_amount == D("150.00")
    assert "150.00 USD of approved time held" in parked.pause.message
    async with http(stack) as h:
        r = await h.post(
            f"/api/engagements/{opp}/budget-decisions",
            headers={**STEWARD, "Idempotency-Key": f"wo-{opp}"},
            json={"action": "write_off", "reason": "goodwill: April support hour"},
        )
        assert r.status_code == 200, r.text
        decision = r.json()["decision"]
        assert (D(decision["amount"]), decision["items"]) == (D("150.00"), 1)

    handle = stack.client.get_workflow_handle(workflow_id_for(opp))
    async with paying_customer(stack.erp.url, st.erp_customer_id):
        await asyncio.wait_for(handle.result(), 120)
    final = await status_of(stack.client, opp)
    assert final.stage is EngagementStage.CLOSED
    assert [d.action for d in final.budget.decisions] == ["change_order", "release", "write_off"]
    assert sum((i.total for i in final.invoices), D(0)) == D("1600.00") == final.totals.billed
    # every timeBill billed at most once; the written-off hour never
    ledger_rows = {r.psa_id: r for r in stack.ledger.posted_time(opp)}
    assert ledger_rows[april[0]].invoice_external_id.startswith(BUDGET_WRITE_OFF_PREFIX)
    billed = [r.erp_time_bill_id for r in ledger_rows.values() if (r.invoice_external_id or "").startswith("inv-")]
    assert len(billed) == len(set(billed)) == 11
    erp = invoices_of(stack.erp, opp)
    assert sum((D(str(i["total"])) for i in erp.values()), D(0)) == D("1600.00")
    crm = await _crm_budget_when(stack, opp, lambda c: c["Budget_Held__c"] == 0)
    assert (D(str(crm["Amount_Billed__c"])), D(str(crm["Net_Billed__c"])), D(str(crm["Budget_Held__c"]))) == (
        D("1600.00"),
        D("1600.00"),
        D("0"),
    )
    ops = audit_of(stack, opp)
    assert ("decide_budget_hold", "ok", "pm") in ops and ("decide_budget_hold", "ok", "steward") in ops
