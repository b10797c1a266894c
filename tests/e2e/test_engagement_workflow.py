"""EngagementWorkflow on the time-skipping server, with the real worker and the sandboxes over HTTP."""

from __future__ import annotations

from decimal import Decimal

from q2c.domain.stage import EngagementStage
from q2c.engagement.client import start_engagement
from q2c.engagement.messages import RecheckInput
from tests.deals import create_deal
from tests.engagement_helpers import wait_for_stage

ACTIVE = EngagementStage.ACTIVE
AWAITING = EngagementStage.AWAITING_STEWARD


async def _start(stack, opportunity_id: str):
    return await start_engagement(stack.client, opportunity_id, task_queue=stack.settings.task_queue, source="test")


async def test_time_and_materials_deal_becomes_active(ts_stack, crm_client):
    deal = await create_deal(crm_client, billing_model="Time and Materials", region="NA")
    await _start(ts_stack, deal.opportunity_id)
    status = await wait_for_stage(ts_stack.client, deal.opportunity_id, ACTIVE)

    customers = [r for r in ts_stack.erp.records("customer") if r.get("externalId") == deal.account_id]
    jobs = [r for r in ts_stack.erp.records("job") if r.get("externalId") == deal.opportunity_id]
    assert len(customers) == 1 and len(jobs) == 1
    assert customers[0]["id"] == status.erp_customer_id
    assert jobs[0]["id"] == status.erp_project_id
    assert jobs[0]["parent"]["id"] == status.erp_customer_id
    assert customers[0]["subsidiary"]["id"] == "1"  # NA -> Q2C Consulting Inc.

    opp = await crm_client.get_record("Opportunity", deal.opportunity_id)
    assert opp["ERP_Customer_Id__c"] == status.erp_customer_id
    assert opp["ERP_Project_Id__c"] == status.erp_project_id
    assert opp["PSA_Workspace_Id__c"] == status.psa_workspace.workspace_id
    assert opp["Q2C_Status__c"] == "Active"

    workspaces = [w for w in ts_stack.psa.records("workspaces") if deal.opportunity_id in w["title"]]
    assert len(workspaces) == 1
    requests = [
        r
        for r in ts_stack.psa.records("resource_requests")
        if str(r["workspace_id"]) == status.psa_workspace.workspace_id
    ]
    assert sorted(Decimal(str(r["hours"])) for r in requests) == [Decimal(100), Decimal(200), Decimal(300)]
    assert status.engagement.contract_value.amount == Decimal("120000")


async def test_fixed_fee_deal_gets_milestone_billing_schedule(ts_stack, crm_client):
    deal = await create_deal(crm_client, billing_model="Fixed Fee", region="UK")
    await _start(ts_stack, deal.opportunity_id)
    status = await wait_for_stage(ts_stack.client, deal.opportunity_id, ACTIVE)
    schedule = ts_stack.erp.record_by_eid("billingSchedule", f"bs-{deal.opportunity_id}")
    assert schedule is not None and schedule["id"] == status.erp_billing_schedule_id
    amounts = sorted(Decimal(str(m["amount"])) for m in schedule["milestone"]["items"])
    assert amounts == [Decimal("15000"), Decimal("20000"), Decimal("45000")]
    customer = ts_stack.erp.record_by_eid("customer", deal.account_id)
    assert customer["subsidiary"]["id"] == "2" and customer["currency"]["id"] == "2"  # GBP


async def test_retainer_deal_becomes_active(ts_stack, crm_client):
    deal = await create_deal(crm_client, billing_model="Retainer", region="DACH", tax_id="DE123456789")
    await _start(ts_stack, deal.opportunity_id)
    status = await wait_for_stage(ts_stack.client, deal.opportunity_id, ACTIVE)
    schedule = ts_stack.erp.record_by_eid("billingSchedule", f"bs-{deal.opportunity_id}")
    assert Decimal(str(schedule["recurrenceAmount"])) == Decimal("8500")
    assert status.engagement.retainer_amount == Decimal("8500")


async def test_missing_tax_id_pauses_then_recheck_resumes(ts_stack, crm_client):
    deal = await create_deal(crm_client, tax_id=None)
    await _start(ts_stack, deal.opportunity_id)
    status = await wait_for_stage(ts_stack.client, deal.opportunity_id, AWAITING)
    assert [i.field for i in status.missing_fields] == ["customer.tax_id"]
    assert "tax ID" in status.details
    # nothing half-created in the ERP
    assert ts_stack.erp.record_by_eid("customer", deal.account_id) is None
    assert ts_stack.erp.record_by_eid("job", deal.opportunity_id) is None

    # a recheck before the fix keeps it paused, naming the same field
    handle = ts_stack.client.get_workflow_handle(f"engagement-{deal.opportunity_id}")
    await handle.signal("recheck", RecheckInput(requested_by="steward@example.com"))
    await crm_client.update_account(deal.account_id, {"Tax_Id__c": "98-7654321"})
    await handle.signal("recheck", RecheckInput(requested_by="steward@example.com"))
    status = await wait_for_stage(ts_stack.client, deal.opportunity_id, ACTIVE)
    assert status.missing_fields == []
    assert status.rechecks >= 1
    assert ts_stack.erp.record_by_eid("customer", deal.account_id)["vatRegNumber"] == "98-7654321"


async def test_same_name_different_accounts_become_two_customers(ts_stack, crm_client):
    name = "Summit Partners (test)"
    a = await create_deal(crm_client, account_name=name, region="NA")
    b = await create_deal(crm_client, account_name=name, region="NA", tax_id="55-5555555")
    await _start(ts_stack, a.opportunity_id)
    await _start(ts_stack, b.opportunity_id)
    sa = await wait_for_stage(ts_stack.client, a.opportunity_id, ACTIVE)
    sb = await wait_for_stage(ts_stack.client, b.opportunity_id, ACTIVE)
    assert sa.erp_customer_id != sb.erp_customer_id
    named = [r for r in ts_stack.erp.records("customer") if r.get("externalId") in (a.account_id, b.account_id)]
    assert len(named) == 2 and {r["companyName"] for r in named} == {name}


async def test_second_deal_for_same_account_links_existing_customer(ts_stack, crm_client):
    first = await create_deal(crm_client, region="NA")
    second = await create_deal(crm_client, account_id=first.account_id, billing_model="Retainer", region="NA")
    await _start(ts_stack, first.opportunity_id)
    await _start(ts_stack, second.opportunity_id)
    s1 = await wait_for_stage(ts_stack.client, first.opportunity_id, ACTIVE)
    s2 = await wait_for_stage(ts_stack.client, second.opportunity_id, ACTIVE)
    assert s1.erp_customer_id == s2.erp_customer_id
    assert s1.erp_project_id != s2.erp_project_id
    assert len([r for r in ts_stack.erp.records("customer") if r.get("externalId") == first.account_id]) == 1


async def test_service_line_without_template_waits_for_steward(ts_stack, crm_client):
    deal = await create_deal(crm_client, service_line="Cybersecurity")
    await _start(ts_stack, deal.opportunity_id)
    status = await wait_for_stage(ts_stack.client, deal.opportunity_id, AWAITING)
    assert [i.field for i in status.missing_fields] == ["opportunity.service_line"]
    assert "Cybersecurity" in status.missing_fields[0].reason


async def test_deal_not_closed_won_is_not_provisioned(ts_stack, crm_client):
    deal = await create_deal(crm_client, stage="Negotiation/Review")
    await _start(ts_stack, deal.opportunity_id)
    status = await wait_for_stage(ts_stack.client, deal.opportunity_id, AWAITING)
    assert [i.field for i in status.missing_fields] == ["opportunity.stage_name"]
    assert ts_stack.erp.record_by_eid("customer", deal.account_id) is None
