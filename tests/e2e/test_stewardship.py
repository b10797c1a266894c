"""Stewardship and change orders on the time-skipping server: typed pause reasons, validated
Updates (customer data, amendments, cancel) and their effect on ERP, PSA, CRM and invoices."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import httpx
import pytest
from temporalio.client import WorkflowUpdateFailedError

from q2c.domain.stage import EngagementStage
from q2c.engagement.client import start_engagement, workflow_id_for
from q2c.engagement.messages import (
    AcceptMilestoneInput,
    Amendment,
    CancelInput,
    ContractVersion,
    CustomerPatch,
    EngagementStatus,
    MilestoneChange,
    RateChange,
)
from q2c.engagement.search_attributes import STEWARD_QUEUE
from tests.deals import create_deal
from tests.e2e.test_delivery import _run_to_close, _start, invoices_of
from tests.engagement_helpers import status_of, wait_for_stage


def field_errors(err: WorkflowUpdateFailedError) -> dict[str, str]:
    return {e["field"]: e["reason"] for e in err.cause.details[0]["errors"]}


async def _paused(stack, crm_client, **deal):
    d = await create_deal(crm_client, **deal)
    await start_engagement(stack.client, d.opportunity_id, task_queue=stack.settings.task_queue, source="test")
    return d, await wait_for_stage(stack.client, d.opportunity_id, EngagementStage.AWAITING_STEWARD)


async def test_pause_reason_names_fields_and_queue(ts_stack, crm_client):
    d, st = await _paused(ts_stack, crm_client, tax_id=None)
    assert st.pause.kind.value == "customer_master_incomplete" and st.pause.queue.value == "master-data"
    assert [f.field for f in st.pause.fields] == ["customer.tax_id"]
    desc = await ts_stack.client.get_workflow_handle(workflow_id_for(d.opportunity_id)).describe()
    assert desc.typed_search_attributes.get(STEWARD_QUEUE) == "master-data"

    _, st = await _paused(ts_stack, crm_client, service_line="Cybersecurity")
    assert st.pause.kind.value == "no_project_template" and st.pause.queue.value == "pmo"


async def test_invalid_customer_data_is_rejected_before_history_and_valid_resumes(ts_stack, crm_client):
    d, st = await _paused(ts_stack, crm_client, tax_id=None)
    handle = ts_stack.client.get_workflow_handle(workflow_id_for(d.opportunity_id))

    with pytest.raises(WorkflowUpdateFailedError) as bad:
        await handle.execute_update(
            "provide_customer_data", CustomerPatch(tax_id="abc", payment_terms="Net 7", currency="USD", region="XX")
        )
    errors = field_errors(bad.value)
    assert set(errors) == {"customer.tax_id", "customer.payment_terms", "customer.region"}
    assert "US EIN" in errors["customer.tax_id"]
    assert (await status_of(ts_stack.client, d.opportunity_id)).stage is EngagementStage.AWAITING_STEWARD
    history = await handle.fetch_history()
    assert not any(e.HasField("workflow_execution_update_accepted_event_attributes") for e in history.events)

    result = await handle.execute_update(
        "provide_customer_data", CustomerPatch(tax_id="98-7654321", provided_by="alice")
    )
    assert "tax_id" in result
    st = await wait_for_stage(ts_stack.client, d.opportunity_id, EngagementStage.ACTIVE)
    assert st.pause is None and st.engagement.customer.tax_id == "98-7654321"
    account = await crm_client.get_record("Account", d.account_id)
    assert account["Tax_Id__c"] == "98-7654321"  # written back to the CRM, which owns it
    assert ts_stack.erp.record_by_eid("customer", d.account_id)["vatRegNumber"] == "98-7654321"
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(STEWARD_QUEUE) is None


async def test_rate_raise_mid_engagement_bills_old_and_new_rates_to_the_cent(fresh_ts_stack, crm_client):
    stack = fresh_ts_stack
    deal = await create_deal(crm_client, start="2027-01-01", end="2027-02-28")
    status = await _start(stack, deal.opportunity_id)
    handle = stack.client.get_workflow_handle(workflow_id_for(deal.opportunity_id))
    version = await handle.execute_update(
        "amend_contract",
        Amendment(
            rates=[RateChange(role="Consultant", rate=Decimal("199.99"), effective_from=date(2027, 1, 16))],
            contract_value=Decimal("150000"),
            end_date=date(2027, 3, 31),
            reason="CO-1: rate increase and extension",
        ),
        result_type=ContractVersion,
    )
    assert version.version == 2 and version.contract_value == Decimal("150000")

    story = next(t for t in status.psa_workspace.tasks if t.billable)
    user = next(u for u in stack.psa.records("users") if u["role_id"] == "503")  # Consultant
    entries = [
        {
            "workspace_id": status.psa_workspace.workspace_id,
            "story_id": story.psa_story_id,
            "user_id": user["id"],
            "date_performed": day,
            "time_in_minutes": 465,
            "billable": True,
        }
        for day in ("2027-01-15", "2027-01-16", "2027-02-10")
    ]
    r = httpx.post(f"{stack.psa.url}/__sandbox/time/bulk", json={"time_entries": entries, "approved": True}, timeout=10)
    assert r.status_code < 300, r.text
    await stack.env.sleep(timedelta(days=70))  # January is invoiced
    st = await wait_for_stage(stack.client, deal.opportunity_id, EngagementStage.ACTIVE)
    for _ in range(100):
        st = await status_of(stack.client, deal.opportunity_id)
        if st.invoices:
            break
    with pytest.raises(WorkflowUpdateFailedError) as late:  # January is billed: its rates are final
        await handle.execute_update(
            "amend_contract",
            Amendment(
                rates=[RateChange(role="Consultant", rate=Decimal("210"), effective_from=date(2027, 1, 20))],
                reason="too late",
            ),
        )
    assert "rates[0].effective_from" in field_errors(late.value)

    summary = await _run_to_close(stack, deal.opportunity_id, status.erp_customer_id)
    invoices = invoices_of(stack.erp, deal.opportunity_id)
    january = invoices[f"inv-{deal.opportunity_id}-p000"]
    assert sorted(Decimal(str(line["amount"])) for line in january["item"]["items"]) == [
        Decimal("1162.50"),
        Decimal("1549.92"),
    ]  # 7.75 h x 150 ; 7.75 h x 199.99 = 1549.9225
    assert Decimal(str(invoices[f"inv-{deal.opportunity_id}-p001"]["total"])) == Decimal("1549.92")
    assert summary.stage is EngagementStage.CLOSED and summary.invoices == 2  # March had nothing to bill
    job = stack.erp.record_by_eid("job", deal.opportunity_id)
    assert Decimal(str(job["custentity_contract_value"])) == Decimal("150000")
    workspace = next(w for w in stack.psa.records("workspaces") if str(w["id"]) == status.psa_workspace.workspace_id)
    assert workspace["due_date"] == "2027-03-31"
    opp = await crm_client.get_record("Opportunity", deal.opportunity_id)
    assert opp["Q2C_Contract_Version__c"] == 2


async def test_invoiced_milestone_cannot_change_and_a_new_one_is_invoiced_once(fresh_ts_stack, crm_client):
    stack = fresh_ts_stack
    deal = await create_deal(crm_client, billing_model="Fixed Fee", region="UK", start="2026-12-01", end="2027-01-31")
    status = await _start(stack, deal.opportunity_id)
    handle = stack.client.get_workflow_handle(workflow_id_for(deal.opportunity_id))
    first = status.engagement.milestones[0]
    await handle.execute_update("accept_milestone", AcceptMilestoneInput(milestone_key=first.key))

    with pytest.raises(WorkflowUpdateFailedError) as replaced:
        await handle.execute_update(
            "amend_contract",
            Amendment(
                milestones=[MilestoneChange(key=first.key, name="Discovery (rescoped)", amount=Decimal("18000"))],
                reason="rescope",
            ),
        )
    assert "already invoiced" in field_errors(replaced.value)["milestones[0].key"]
    with pytest.raises(WorkflowUpdateFailedError) as too_much:
        await handle.execute_update(
            "amend_contract",
            Amendment(milestones=[MilestoneChange(name="Hypercare", amount=Decimal("12000"))], reason="CO-2"),
        )
    assert "exceeds the contract value" in field_errors(too_much.value)["milestones"]

    version = await handle.execute_update(
        "amend_contract",
        Amendment(
            contract_value=Decimal("92000"),
            milestones=[MilestoneChange(name="Hypercare", amount=Decimal("12000"))],
            reason="CO-2: hypercare",
        ),
        result_type=ContractVersion,
    )
    assert version.changes["milestones"][0]["name"] == "Hypercare"  # a version records what changed
    current = await handle.query("status", result_type=EngagementStatus)
    new_key = next(m.key for m in current.engagement.milestones if m.name == "Hypercare")
    schedule = stack.erp.record_by_eid("billingSchedule", f"bs-{deal.opportunity_id}")
    assert len(schedule["milestone"]["items"]) == 4
    for m in status.engagement.milestones[1:]:
        await handle.execute_update("accept_milestone", AcceptMilestoneInput(milestone_key=m.key))
    await handle.execute_update("accept_milestone", AcceptMilestoneInput(milestone_key=new_key))
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update("accept_milestone", AcceptMilestoneInput(milestone_key=new_key))

    summary = await _run_to_close(stack, deal.opportunity_id, status.erp_customer_id)
    invoices = invoices_of(stack.erp, deal.opportunity_id)
    assert Decimal(str(invoices[f"inv-{deal.opportunity_id}-ms-{new_key}"]["total"])) == Decimal("12000.00")
    assert len(invoices) == 4
    assert summary.billed == {"GBP": Decimal("92000.00")}


async def test_cancel_invoices_work_done_and_ends_cancelled(fresh_ts_stack, crm_client):
    stack = fresh_ts_stack
    deal = await create_deal(
        crm_client, billing_model="Retainer", region="DACH", tax_id="DE123456789", start="2026-12-01", end="2027-05-31"
    )
    status = await _start(stack, deal.opportunity_id)
    handle = stack.client.get_workflow_handle(workflow_id_for(deal.opportunity_id))
    with pytest.raises(WorkflowUpdateFailedError) as no_reason:
        await handle.execute_update("cancel", CancelInput(reason=" "))
    assert "reason" in field_errors(no_reason.value)
    await stack.env.sleep(timedelta(days=40))  # December billed
    await handle.execute_update("cancel", CancelInput(reason="client restructuring", requested_by="bob"))
    summary = await _run_to_close(stack, deal.opportunity_id, status.erp_customer_id)
    assert summary.stage is EngagementStage.CANCELLED
    invoices = invoices_of(stack.erp, deal.opportunity_id)
    assert sorted(invoices) == [f"inv-{deal.opportunity_id}-p000", f"inv-{deal.opportunity_id}-p001"]
    opp = await crm_client.get_record("Opportunity", deal.opportunity_id)
    assert opp["Q2C_Status__c"] == "Cancelled"


async def test_cancel_while_waiting_for_a_steward_provisions_nothing(ts_stack, crm_client):
    d, _ = await _paused(ts_stack, crm_client, tax_id=None)
    handle = ts_stack.client.get_workflow_handle(workflow_id_for(d.opportunity_id))
    await handle.execute_update("cancel", CancelInput(reason="deal fell through"))
    await wait_for_stage(ts_stack.client, d.opportunity_id, EngagementStage.CANCELLED)
    assert ts_stack.erp.record_by_eid("customer", d.account_id) is None
    assert (await crm_client.get_record("Opportunity", d.opportunity_id))["Q2C_Status__c"] == "Cancelled"
