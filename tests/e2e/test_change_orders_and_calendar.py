"""Issue 7 regressions: CRM change orders are idempotent, the calendar follows the contract,
bad intake data parks instead of failing, a retried update ID applies once.

All through the real EngagementWorkflow on the time-skipping server, the sandboxes over HTTP.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal

import httpx
import pytest

from q2c.domain.stage import EngagementStage
from q2c.engagement.client import start_engagement, workflow_id_for
from q2c.engagement.messages import (
    Amendment,
    ContractVersion,
    CrmChangedInput,
    EngagementStatus,
    RecheckInput,
    StewardAction,
)
from tests.deals import create_deal
from tests.e2e.test_delivery import _run_to_close, _start, invoices_of
from tests.engagement_helpers import status_of, wait_for_stage


async def _wait(client, opp: str, predicate, timeout: float = 30.0) -> EngagementStatus:
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await status_of(client, opp)
        if last is not None and predicate(last):
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"condition not reached; last: {last and last.stage} {last and last.details}")


def _book(stack, status, days: list[str], minutes: int = 480, approved: bool = True) -> list[str]:
    story = next(t for t in status.psa_workspace.tasks if t.billable)
    user = next(u for u in stack.psa.records("users") if u["role_id"] == "503")  # Consultant, 150/h
    entries = [
        {
            "workspace_id": status.psa_workspace.workspace_id,
            "story_id": story.psa_story_id,
            "user_id": user["id"],
            "date_performed": day,
            "time_in_minutes": minutes,
            "billable": True,
        }
        for day in days
    ]
    r = httpx.post(
        f"{stack.psa.url}/__sandbox/time/bulk", json={"time_entries": entries, "approved": approved}, timeout=10
    )
    assert r.status_code < 300, r.text
    body = r.json()
    return [str(e["id"]) for e in body.get("results", body.get("time_entries", []))] if isinstance(body, dict) else []


async def test_redelivered_crm_change_order_adds_one_milestone_and_one_version(fresh_ts_stack, crm_client):
    stack = fresh_ts_stack
    deal = await create_deal(crm_client, billing_model="Fixed Fee", region="UK", start="2026-12-01", end="2027-03-31")
    status = await _start(stack, deal.opportunity_id)
    assert status.contract_version == 1  # version 1 from activation
    opp = await crm_client.get_record("Opportunity", deal.opportunity_id)
    assert opp["Q2C_Contract_Version__c"] == 1
    line_id = await crm_client.create_record(
        "OpportunityLineItem",
        {
            "OpportunityId": deal.opportunity_id,
            "Name": "Hypercare",
            "Line_Type__c": "Milestone",
            "Quantity": 1,
            "UnitPrice": 10000,
            "Milestone_Date__c": "2027-03-28",
        },
    )
    await crm_client.update_opportunity(deal.opportunity_id, {"Amount": 90000})
    for _ in range(3):  # the same Outbound Message delivered three times
        await start_engagement(
            stack.client, deal.opportunity_id, task_queue=stack.settings.task_queue, source="salesforce-outbound"
        )
    st = await _wait(stack.client, deal.opportunity_id, lambda s: s.contract_version == 2)
    await asyncio.sleep(1.0)  # let any queued notifications run
    handle = stack.client.get_workflow_handle(workflow_id_for(deal.opportunity_id))
    for _ in range(2):  # and again later: nothing changed in the CRM since
        await handle.signal("crm_changed", CrmChangedInput(source="salesforce-outbound"))
    await asyncio.sleep(1.0)
    st = await status_of(stack.client, deal.opportunity_id)
    assert st.contract_version == 2 and len(st.contract_versions) == 2
    keys = [m.key for m in st.engagement.milestones]
    assert keys.count(line_id) == 1 and len(keys) == 4  # keyed by the CRM line ID, added once
    assert st.engagement.contract_value.amount == Decimal("90000")
    assert st.crm_change_issues == []
    schedule = stack.erp.record_by_eid("billingSchedule", f"bs-{deal.opportunity_id}")
    assert len(schedule["milestone"]["items"]) == 4
    # a later, real change order is still accepted (the redelivery did not poison the contract)
    await crm_client.update_opportunity(deal.opportunity_id, {"End_Date__c": "2027-04-30"})
    await handle.signal("crm_changed", CrmChangedInput(source="salesforce-outbound"))
    st = await _wait(stack.client, deal.opportunity_id, lambda s: s.contract_version == 3)
    assert st.engagement.end_date == date(2027, 4, 30) and len(st.engagement.milestones) == 4


async def test_end_date_extended_in_the_last_period_is_honoured(fresh_ts_stack, crm_client):
    stack = fresh_ts_stack
    deal = await create_deal(crm_client, start="2026-12-01", end="2026-12-31")  # one period
    status = await _start(stack, deal.opportunity_id)
    await stack.env.sleep(timedelta(days=15))  # mid-December: the last period
    handle = stack.client.get_workflow_handle(workflow_id_for(deal.opportunity_id))
    await handle.execute_update(
        "amend_contract", Amendment(end_date=date(2027, 1, 31), reason="extension"), result_type=ContractVersion
    )
    _book(stack, status, ["2026-12-10", "2027-01-12"])
    summary = await _run_to_close(stack, deal.opportunity_id, status.erp_customer_id)
    invoices = invoices_of(stack.erp, deal.opportunity_id)
    assert set(invoices) == {f"inv-{deal.opportunity_id}-p000", f"inv-{deal.opportunity_id}-p001"}
    assert Decimal(str(invoices[f"inv-{deal.opportunity_id}-p001"]["total"])) == Decimal("1200.00")  # 8 h x 150
    assert summary.stage is EngagementStage.CLOSED and summary.billed == {"USD": Decimal("2400.00")}
    st = await status_of(stack.client, deal.opportunity_id)
    assert st.invoices[-1].period_end == date(2027, 1, 31)


async def test_end_date_shortened_in_the_last_period_stops_posting_at_the_new_end(fresh_ts_stack, crm_client):
    stack = fresh_ts_stack
    deal = await create_deal(crm_client, start="2026-12-01", end="2027-01-31")
    status = await _start(stack, deal.opportunity_id)
    await stack.env.sleep(timedelta(days=40))  # into January, the last period
    await _wait(stack.client, deal.opportunity_id, lambda s: s.next_period_index == 1)
    handle = stack.client.get_workflow_handle(workflow_id_for(deal.opportunity_id))
    await handle.execute_update(
        "amend_contract", Amendment(end_date=date(2027, 1, 15), reason="ends early"), result_type=ContractVersion
    )
    _book(stack, status, ["2027-01-12", "2027-01-20"])
    summary = await _run_to_close(stack, deal.opportunity_id, status.erp_customer_id)
    invoices = invoices_of(stack.erp, deal.opportunity_id)
    jan = invoices[f"inv-{deal.opportunity_id}-p001"]
    assert Decimal(str(jan["total"])) == Decimal("1200.00")  # only the 12th: the 20th is after the end
    assert not any(k.endswith("final01") for k in invoices)
    bills = [b for b in stack.erp.records("timeBill") if str(b["customer"]["id"]) == status.erp_project_id]
    assert sorted(b["tranDate"] for b in bills) == ["2027-01-12"]
    assert summary.stage is EngagementStage.CLOSED
    assert stack.erp.record_by_eid("job", deal.opportunity_id)["entityStatus"]["id"] == "CLOSED"


async def test_blank_billing_model_parks_then_resumes_after_the_crm_is_fixed(fresh_ts_stack, crm_client):
    stack = fresh_ts_stack
    deal = await create_deal(crm_client)
    await crm_client.update_opportunity(deal.opportunity_id, {"Billing_Model__c": None})
    await start_engagement(stack.client, deal.opportunity_id, task_queue=stack.settings.task_queue, source="test")
    st = await wait_for_stage(stack.client, deal.opportunity_id, EngagementStage.AWAITING_STEWARD)
    assert st.pause.kind.value == "crm_data_invalid" and st.pause.action is StewardAction.RECHECK
    assert st.pause.system == "crm" and "Billing_Model__c" in st.pause.message
    desc = await stack.client.get_workflow_handle(workflow_id_for(deal.opportunity_id)).describe()
    assert desc.status.name == "RUNNING"  # parked, not Failed
    await crm_client.update_opportunity(deal.opportunity_id, {"Billing_Model__c": "Time and Materials"})
    await stack.client.get_workflow_handle(workflow_id_for(deal.opportunity_id)).signal(
        "recheck", RecheckInput(requested_by="test")
    )
    st = await wait_for_stage(stack.client, deal.opportunity_id, EngagementStage.ACTIVE)
    assert st.pause is None and st.erp_project_id


async def test_unsupported_currency_parks_instead_of_retrying_forever(fresh_ts_stack, crm_client):
    stack = fresh_ts_stack
    deal = await create_deal(crm_client)
    try:
        await crm_client.update_opportunity(deal.opportunity_id, {"CurrencyIsoCode": "XAU"})
    except Exception as err:  # the CRM's picklist may refuse it; then the test is moot here
        pytest.skip(f"CRM sandbox refuses the currency: {err}")
    await start_engagement(stack.client, deal.opportunity_id, task_queue=stack.settings.task_queue, source="test")
    st = await wait_for_stage(stack.client, deal.opportunity_id, EngagementStage.AWAITING_STEWARD, timeout=90)
    assert st.pause.kind.value in ("crm_data_invalid", "deal_not_ready", "customer_master_incomplete")
    assert "XAU" in st.pause.message
    history = await stack.client.get_workflow_handle(workflow_id_for(deal.opportunity_id)).fetch_history()
    attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
    ]
    assert max(attempts) <= 5  # bounded


async def test_a_retried_update_id_applies_once(fresh_ts_stack, crm_client):
    stack = fresh_ts_stack
    deal = await create_deal(crm_client, start="2026-12-01", end="2027-03-31")
    await _start(stack, deal.opportunity_id)
    handle = stack.client.get_workflow_handle(workflow_id_for(deal.opportunity_id))
    amendment = Amendment(contract_value=Decimal("130000"), reason="CO-7")
    first = await handle.execute_update("amend_contract", amendment, id="console-req-1", result_type=ContractVersion)
    again = await handle.execute_update("amend_contract", amendment, id="console-req-1", result_type=ContractVersion)
    assert first.version == again.version == 2
    st = await status_of(stack.client, deal.opportunity_id)
    assert st.contract_version == 2 and len(st.contract_versions) == 2


async def test_an_update_id_applied_in_an_earlier_run_is_not_applied_again(fresh_ts_stack, crm_client):
    """Temporal de-duplicates update IDs within a run; the engagement does it across continue-as-new."""
    stack = fresh_ts_stack
    deal = await create_deal(crm_client, start="2026-12-01", end="2027-03-31")
    await _start(stack, deal.opportunity_id)
    handle = stack.client.get_workflow_handle(workflow_id_for(deal.opportunity_id))
    amendment = Amendment(contract_value=Decimal("125000"), reason="CO-8")
    await handle.execute_update("amend_contract", amendment, id="api-req-8", result_type=ContractVersion)
    await stack.env.sleep(timedelta(days=35))  # December closes: the engagement continues as new
    st = await _wait(stack.client, deal.opportunity_id, lambda s: s.runs >= 2)
    from temporalio.client import WorkflowUpdateFailedError

    with pytest.raises(WorkflowUpdateFailedError) as again:
        await stack.client.get_workflow_handle(workflow_id_for(deal.opportunity_id)).execute_update(
            "amend_contract", amendment, id="api-req-8", result_type=ContractVersion
        )
    assert "already applied" in str(again.value.cause)
    st = await status_of(stack.client, deal.opportunity_id)
    assert st.contract_version == 2


async def test_over_precise_rate_in_a_change_order_is_refused_field_by_field(fresh_ts_stack, crm_client):
    stack = fresh_ts_stack
    deal = await create_deal(crm_client, start="2026-12-01", end="2027-03-31")
    await _start(stack, deal.opportunity_id)
    handle = stack.client.get_workflow_handle(workflow_id_for(deal.opportunity_id))
    from temporalio.client import WorkflowUpdateFailedError

    from q2c.engagement.messages import RateChange

    with pytest.raises(WorkflowUpdateFailedError) as bad:
        await handle.execute_update(
            "amend_contract",
            Amendment(
                rates=[RateChange(role="Consultant", rate=Decimal("150.12345"), effective_from=date(2027, 2, 1))],
                reason="too precise",
            ),
            result_type=ContractVersion,
        )
    errors = {e["field"]: e["reason"] for e in bad.value.cause.details[0]["errors"]}
    assert "rates[0].rate" in errors
