"""Delivery to cash on the time-skipping server: every billing model from Active to Closed,
invoice totals checked to the cent against an independent computation from the PSA's records."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import asynccontextmanager
from datetime import date
from decimal import Decimal

import httpx
import pytest
from temporalio.client import WorkflowUpdateFailedError

from q2c.domain.stage import EngagementStage
from q2c.engagement.client import start_engagement, workflow_id_for
from q2c.engagement.messages import AcceptMilestoneInput, DeliveryConfig, EngagementSummary
from q2c.ledger.config import ledger_url
from q2c.ledger.store import Ledger
from tests.billing_oracle import expected_tm_totals
from tests.deals import create_deal
from tests.engagement_helpers import wait_for_stage

WEEKLY_POLL = DeliveryConfig(payment_poll_seconds=7 * 86_400)
TM_RATES = [
    ("Engagement Manager", Decimal(250), None),
    ("Senior Consultant", Decimal(185), None),
    ("Consultant", Decimal(150), None),
]


def month_periods(start: date, end: date) -> list[tuple[date, date]]:
    from q2c.domain.billing import billing_periods

    return [(p.start, p.end) for p in billing_periods(start, end)]


def invoices_of(erp, opportunity_id: str) -> dict[str, dict]:
    return {
        r["externalId"]: r
        for r in erp.records("invoice")
        if (r.get("externalId") or "").startswith(f"inv-{opportunity_id}-")
    }


@asynccontextmanager
async def paying_customer(erp_url: str, customer_id: str):
    """The customer pays every invoice in full on its invoice date, as soon as it appears."""
    stop = asyncio.Event()

    async def pay() -> None:
        async with httpx.AsyncClient(base_url=erp_url, timeout=30) as http:
            while not stop.is_set():
                try:
                    records = (await http.get("/__sandbox/records/invoice")).json()["items"]
                except httpx.TimeoutException:  # a busy machine (the slow run beside the rest): ask again
                    continue
                for inv in records:
                    if (
                        str(inv.get("entity", {}).get("id")) == str(customer_id)
                        and Decimal(str(inv.get("amountRemaining", "0"))) > 0
                    ):
                        r = await http.post(
                            "/__sandbox/payments", json={"invoice_id": inv["id"], "date": inv["tranDate"]}
                        )
                        assert r.status_code < 300, r.text
                await asyncio.sleep(0.2)  # whole-list reads: every 50 ms was a long pole on 2 cores

    task = asyncio.create_task(pay())
    try:
        yield
    finally:
        stop.set()
        await task


async def _start_run(stack, opportunity_id: str, delivery: DeliveryConfig = WEEKLY_POLL):
    """Start the engagement and wait for Active; returns its status and its first run id."""
    started = await start_engagement(
        stack.client, opportunity_id, task_queue=stack.settings.task_queue, source="test", delivery=delivery
    )
    return await wait_for_stage(stack.client, opportunity_id, EngagementStage.ACTIVE), started.run_id


async def _start(stack, opportunity_id: str, delivery: DeliveryConfig = WEEKLY_POLL):
    return (await _start_run(stack, opportunity_id, delivery))[0]


async def run_histories(client, workflow_id: str, first_run_id: str) -> list:
    """Every run's history, following continue-as-new from the first run."""
    histories, run_id = [], first_run_id
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        histories.append(history)
        last = history.events[-1]
        run_id = (
            last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            if last.HasField("workflow_execution_continued_as_new_event_attributes")
            else None
        )
    return histories


async def _run_to_close(stack, opportunity_id: str, customer_id: str, timeout: float = 120) -> EngagementSummary:
    handle = stack.client.get_workflow_handle(workflow_id_for(opportunity_id), result_type=EngagementSummary)
    async with paying_customer(stack.erp.url, customer_id), stack.env.time_skipping_unlocked():
        return await asyncio.wait_for(handle.result(), timeout)


async def test_time_and_materials_runs_to_closed_with_exact_invoices(fresh_ts_stack, crm_client, psa_client):
    deal = await create_deal(crm_client, start="2026-12-01", end="2027-02-28")
    status = await _start(fresh_ts_stack, deal.opportunity_id)
    ws = status.psa_workspace.workspace_id
    generated = await psa_client.generate_time(
        ws, start=date(2026, 12, 1), end=date(2027, 2, 28), entries_per_week=4, seed=7
    )
    summary = await _run_to_close(fresh_ts_stack, deal.opportunity_id, status.erp_customer_id)

    assert summary.stage is EngagementStage.CLOSED
    periods = month_periods(date(2026, 12, 1), date(2027, 2, 28))
    expected = expected_tm_totals(fresh_ts_stack.psa, ws, TM_RATES, periods)
    invoices = invoices_of(fresh_ts_stack.erp, deal.opportunity_id)
    for index, total in enumerate(expected):
        inv = invoices[f"inv-{deal.opportunity_id}-p{index:03d}"]
        assert Decimal(str(inv["total"])) == total, f"period {index}"
    assert len(invoices) == len(expected)  # nothing billed twice, no empty invoices
    assert summary.billed == {"USD": sum(expected)}
    assert summary.collected == {"USD": sum(expected)}
    # every approved entry posted exactly once (timeBill keyed by PSA entry id)
    bills = [b for b in fresh_ts_stack.erp.records("timeBill") if str(b["customer"]["id"]) == status.erp_project_id]
    assert len(bills) == generated["count"] == len({b["externalId"] for b in bills})
    assert summary.hours == Decimal(sum(b["custcol_minutes"] for b in bills)) / 60
    # each entry marked posted in the PSA once, pointing at its timeBill, from what the posting
    # read (`include=external_references`): one create per entry, no lookup before it
    entry_ids = {b["externalId"].removeprefix("psa-"): str(b["id"]) for b in bills}
    marks: dict[str, list[str]] = {}
    for ref in fresh_ts_stack.psa.records("external_references"):
        if ref["subject_type"] == "TimeEntry" and str(ref["subject_id"]) in entry_ids:
            marks.setdefault(str(ref["subject_id"]), []).append(str(ref["service_model_ref"]))
    assert marks == {entry: [bill] for entry, bill in entry_ids.items()}
    psa_calls = Counter(
        c.operation for c in Ledger.from_url(ledger_url(fresh_ts_stack.settings)).api_calls(system="psa")
    )
    assert (psa_calls["create_time_reference"], psa_calls["find_time_reference"]) == (len(bills), 0)
    opp = await crm_client.get_record("Opportunity", deal.opportunity_id)
    assert opp["Q2C_Status__c"] == "Closed"
    assert Decimal(str(opp["Open_Balance__c"])) == 0
    assert opp["Last_Invoice_Number__c"] == invoices[f"inv-{deal.opportunity_id}-p002"]["tranId"]
    job = fresh_ts_stack.erp.record_by_eid("job", deal.opportunity_id)
    assert job["entityStatus"]["id"] == "CLOSED"
    workspace = next(w for w in fresh_ts_stack.psa.records("workspaces") if str(w["id"]) == ws)
    assert workspace["status"]["message"] == "closed"


async def test_fixed_fee_invoices_each_accepted_milestone_once(fresh_ts_stack, crm_client):
    deal = await create_deal(crm_client, billing_model="Fixed Fee", region="UK", start="2026-12-01", end="2027-01-31")
    status = await _start(fresh_ts_stack, deal.opportunity_id)
    handle = fresh_ts_stack.client.get_workflow_handle(workflow_id_for(deal.opportunity_id))
    milestones = status.engagement.milestones
    first = await handle.execute_update("accept_milestone", AcceptMilestoneInput(milestone_key=milestones[0].key))
    assert first is not None
    with pytest.raises(WorkflowUpdateFailedError) as rejected:
        await handle.execute_update("accept_milestone", AcceptMilestoneInput(milestone_key=milestones[0].key))
    assert "already accepted" in str(rejected.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as unknown:
        await handle.execute_update("accept_milestone", AcceptMilestoneInput(milestone_key="nope"))
    assert "milestone_key" in str(unknown.value.cause)
    for m in milestones[1:]:
        await handle.execute_update("accept_milestone", AcceptMilestoneInput(milestone_key=m.key))

    summary = await _run_to_close(fresh_ts_stack, deal.opportunity_id, status.erp_customer_id)
    invoices = invoices_of(fresh_ts_stack.erp, deal.opportunity_id)
    assert sorted(Decimal(str(i["total"])) for i in invoices.values()) == [
        Decimal("15000.00"),
        Decimal("20000.00"),
        Decimal("45000.00"),
    ]
    assert summary.billed == {"GBP": Decimal("80000.00")} and summary.collected == {"GBP": Decimal("80000.00")}


async def test_retainer_invoices_the_fixed_amount_each_period(fresh_ts_stack, crm_client):
    deal = await create_deal(
        crm_client,
        billing_model="Retainer",
        region="DACH",
        tax_id="DE123456789",
        start="2026-12-01",
        end="2027-03-31",
        retainer_months=4,
    )
    status = await _start(fresh_ts_stack, deal.opportunity_id)
    summary = await _run_to_close(fresh_ts_stack, deal.opportunity_id, status.erp_customer_id)
    invoices = invoices_of(fresh_ts_stack.erp, deal.opportunity_id)
    assert sorted(invoices) == [f"inv-{deal.opportunity_id}-p{i:03d}" for i in range(4)]
    assert all(Decimal(str(i["total"])) == Decimal("8500.00") for i in invoices.values())
    assert summary.billed == {"EUR": Decimal("34000.00")}
    assert summary.stage is EngagementStage.CLOSED


async def test_new_rate_applies_from_its_effective_date(fresh_ts_stack, crm_client, psa_client):
    deal = await create_deal(
        crm_client,
        start="2027-01-01",
        end="2027-01-31",
        rate_lines=[("Consultant", 100, "150", None), ("Consultant", 100, "175.50", "2027-01-15")],
    )
    status = await _start(fresh_ts_stack, deal.opportunity_id)
    ws = status.psa_workspace.workspace_id
    story = next(t for t in status.psa_workspace.tasks if t.billable)
    user = next(u for u in fresh_ts_stack.psa.records("users") if u["role_id"] == "503")  # a Consultant
    entries = [
        {
            "workspace_id": ws,
            "story_id": story.psa_story_id,
            "user_id": user["id"],
            "date_performed": day,
            "time_in_minutes": 450,
            "billable": True,
        }
        for day in ("2027-01-14", "2027-01-15")
    ]
    r = httpx.post(
        f"{fresh_ts_stack.psa.url}/__sandbox/time/bulk", json={"time_entries": entries, "approved": True}, timeout=10
    )
    assert r.status_code < 300, r.text
    await _run_to_close(fresh_ts_stack, deal.opportunity_id, status.erp_customer_id)
    invoice = invoices_of(fresh_ts_stack.erp, deal.opportunity_id)[f"inv-{deal.opportunity_id}-p000"]
    amounts = sorted(Decimal(str(line["amount"])) for line in invoice["item"]["items"])
    assert amounts == [Decimal("1125.00"), Decimal("1316.25")]  # 7.5 h x 150, 7.5 h x 175.50
    assert Decimal(str(invoice["total"])) == Decimal("2441.25")


@pytest.mark.slow  # ~5 min: runs in make test's second process, beside the rest
async def test_three_year_engagement_keeps_every_run_small(fresh_ts_stack, crm_client, psa_client):
    deal = await create_deal(crm_client, start="2027-01-01", end="2029-12-31")
    status, first_run = await _start_run(
        fresh_ts_stack, deal.opportunity_id, DeliveryConfig(payment_poll_seconds=30 * 86_400)
    )
    ws = status.psa_workspace.workspace_id
    for year in (2027, 2028, 2029):  # the generator takes at most two years at a time
        await psa_client.generate_time(
            ws, start=date(year, 1, 1), end=date(year, 12, 31), entries_per_week=3, seed=year
        )
    summary = await _run_to_close(fresh_ts_stack, deal.opportunity_id, status.erp_customer_id, timeout=600)

    periods = month_periods(date(2027, 1, 1), date(2029, 12, 31))
    expected = expected_tm_totals(fresh_ts_stack.psa, ws, TM_RATES, periods)
    invoices = invoices_of(fresh_ts_stack.erp, deal.opportunity_id)
    assert {k: Decimal(str(v["total"])) for k, v in invoices.items()} == {
        f"inv-{deal.opportunity_id}-p{i:03d}": total for i, total in enumerate(expected) if total > 0
    }
    assert summary.billed == {"USD": sum(expected)}

    histories = await run_histories(fresh_ts_stack.client, workflow_id_for(deal.opportunity_id), first_run)
    assert len(histories) >= 36  # one run per billing period
    assert histories[-1].events[-1].HasField("workflow_execution_completed_event_attributes")
    sizes = [len(h.events) for h in histories]
    assert max(sizes) < 2000, sizes


async def test_period_with_nothing_to_bill_creates_no_invoice(fresh_ts_stack, crm_client):
    deal = await create_deal(crm_client, start="2027-01-01", end="2027-02-28")
    status = await _start(fresh_ts_stack, deal.opportunity_id)
    summary = await _run_to_close(fresh_ts_stack, deal.opportunity_id, status.erp_customer_id)
    assert summary.stage is EngagementStage.CLOSED
    assert summary.invoices == 0 and summary.billed == {}
    assert invoices_of(fresh_ts_stack.erp, deal.opportunity_id) == {}
