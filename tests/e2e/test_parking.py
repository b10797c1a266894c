"""Issue 7: a vendor that says no parks the engagement instead of failing it, and every
state-changing path goes through one door. Real EngagementWorkflow on the time-skipping
server, real connectors over HTTP against the sandboxes, no mocks.

How a vendor is made to say no, preferring its real rules:
- NetSuite refuses a transaction dated in a closed accounting period (the sandbox enforces it;
  `/__sandbox/accounting-periods/by-name/{name}` closes and reopens a period);
- a rule the sandbox does not model (an approval workflow locking the ERP project during a
  change order) is a `reject_writes` fault: NetSuite's own 400 body for writes to that record.
"""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import httpx
import pytest
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateStage

from q2c.domain.stage import EngagementStage
from q2c.engagement.client import start_engagement, workflow_id_for
from q2c.engagement.messages import (
    AcceptMilestoneInput,
    Amendment,
    ContractVersion,
    CrmChangedInput,
    EngagementStatus,
    InvoiceSummary,
    MilestoneChange,
    RateChange,
    RetryInput,
)
from q2c.engagement.search_attributes import STEWARD_QUEUE
from tests.deals import create_deal
from tests.e2e.test_delivery import _run_to_close, _start, invoices_of
from tests.engagement_helpers import status_of, wait_for_stage

RECORD_PATH = "/services/rest/record/v1"
CONSULTANT_ROLE_ID = "503"  # PSA seed: Consultant, 150/h on the test deals' rate card


# --- helpers --------------------------------------------------------------------------------


@contextmanager
def closed_period(erp_url: str, name: str):
    """Finance closes an ERP accounting period; the context reopens it however the test ends.
    Yields a function that reopens it early (the steward's fix)."""
    url = f"{erp_url}/__sandbox/accounting-periods/by-name/{name}"
    httpx.put(url, json={"closed": True}, timeout=10).raise_for_status()

    def reopen() -> None:
        httpx.put(url, json={"closed": False}, timeout=10).raise_for_status()

    try:
        yield reopen
    finally:
        reopen()


@contextmanager
def erp_faults(erp, **config):
    """ERP sandbox faults for the duration of the block (back to the defaults afterwards)."""
    erp.set_faults(**config)
    try:
        yield
    finally:
        erp.reset_faults()


def midnight(d: date) -> datetime:
    return datetime.combine(d, time(0), tzinfo=UTC)


async def skip_to(stack, when: datetime) -> None:
    """Move the time-skipping server's clock forward to `when` (firing every timer before it)."""
    now = await stack.env.get_current_time()
    if when > now:
        await stack.env.sleep(when - now)


async def skip_until_due(stack, when: datetime, lead: timedelta = timedelta(seconds=1)) -> None:
    """Skip to just before `when`: what falls due then (a period close) runs in real time after
    the skip returns, rather than inside one skipping call that has to wait for its activities."""
    await skip_to(stack, when - lead)


async def wait_until(stack, opportunity_id: str, predicate, what: str, timeout: float = 60.0) -> EngagementStatus:
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await status_of(stack.client, opportunity_id)
        if last is not None and predicate(last):
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(
        f"{what}: not reached within {timeout}s; last status: "
        f"{last and last.stage} {last and last.details} pause={last and last.pause}"
    )


def add_time(
    stack, status: EngagementStatus, days: list[str], minutes: int = 240, role_id: str = CONSULTANT_ROLE_ID
) -> list[str]:
    """Approved billable time in the PSA (one entry per day) on the workspace's billable task."""
    story = next(t for t in status.psa_workspace.tasks if t.billable)
    user = next(u for u in stack.psa.records("users") if u["role_id"] == role_id)
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
    r = httpx.post(f"{stack.psa.url}/__sandbox/time/bulk", json={"time_entries": entries, "approved": True}, timeout=60)
    assert r.status_code < 300, r.text
    return [str(i) for i in r.json()["time_entry_ids"]]


def erp_invoices(erp, external_id: str) -> list[dict]:
    return [r for r in erp.records("invoice") if r.get("externalId") == external_id]


def field_errors(err: WorkflowUpdateFailedError) -> dict[str, str]:
    return {e["field"]: e["reason"] for e in err.cause.details[0]["errors"]}


async def steward_queue(stack, opportunity_id: str) -> str | None:
    desc = await stack.client.get_workflow_handle(workflow_id_for(opportunity_id)).describe()
    return desc.typed_search_attributes.get(STEWARD_QUEUE)


async def fixed_fee_deal(
    crm, *, amount: int, milestones: list[int], start: str = "2027-01-01", end: str = "2027-03-31"
):
    """A closed-won fixed-fee deal with the given contract value and milestone amounts."""
    deal = await create_deal(
        crm, billing_model="Fixed Fee", region="UK", start=start, end=end, stage="Negotiation/Review"
    )
    lines = await crm.query(f"SELECT Id FROM OpportunityLineItem WHERE OpportunityId = '{deal.opportunity_id}'")
    for line in lines:
        await crm.delete_record("OpportunityLineItem", line["Id"])
    for i, value in enumerate(milestones):
        await crm.create_record(
            "OpportunityLineItem",
            {
                "OpportunityId": deal.opportunity_id,
                "Name": f"Milestone {i + 1}",
                "Line_Type__c": "Milestone",
                "Quantity": 1,
                "UnitPrice": value,
                "Milestone_Date__c": f"2027-0{i + 1}-28",
            },
        )
    await crm.update_record("Opportunity", deal.opportunity_id, {"Amount": amount})
    await crm.set_opportunity_stage(deal.opportunity_id, "Closed Won")
    return deal


# --- 1. an ERP rejection of a period invoice ------------------------------------------------


async def test_rejected_period_invoice_parks_then_retry_issues_it_once_and_closes(fresh_ts_stack, crm_client):
    stack = fresh_ts_stack
    deal = await create_deal(crm_client, start="2027-01-01", end="2027-02-28")
    opp = deal.opportunity_id
    status = await _start(stack, opp)
    handle = stack.client.get_workflow_handle(workflow_id_for(opp))
    await skip_to(stack, midnight(date(2027, 2, 2)))  # January closed: nothing to bill
    await wait_until(stack, opp, lambda s: s.next_period_index >= 1, "January closed")

    with closed_period(stack.erp.url, "Feb 2027") as reopen:  # finance closed February early
        # January time approved late: posted at February's close into January (open), and billed
        # on February's invoice, dated 2027-02-28, which NetSuite refuses in a closed period
        [late] = add_time(stack, status, ["2027-01-28"])
        await skip_to(stack, midnight(date(2027, 3, 1)) + timedelta(hours=1))
        st = await wait_for_stage(stack.client, opp, EngagementStage.AWAITING_STEWARD)

        pause = st.pause
        assert pause is not None, st
        assert pause.kind.value == "erp_rejected" and pause.system == "erp"
        assert pause.queue.value == "finance-ops" and pause.action.value == "retry"
        assert pause.vendor_code == "INVALID_FLD_VALUE"
        assert "The accounting period Feb 2027 is closed" in pause.vendor_message
        assert "invoice" in (pause.operation or "")
        assert pause.resume_stage is EngagementStage.ACTIVE
        assert await steward_queue(stack, opp) == "finance-ops"
        assert (await crm_client.get_record("Opportunity", opp))["Q2C_Status__c"] == "AwaitingSteward"
        external_id = f"inv-{opp}-p001"
        assert erp_invoices(stack.erp, external_id) == []
        bill = next(b for b in stack.erp.records("timeBill") if b.get("externalId") == f"psa-{late}")
        assert bill["isBilled"] is False  # posted, waiting for its invoice

        with pytest.raises(WorkflowUpdateFailedError):  # a change waits for the steward's answer
            await handle.execute_update(
                "amend_contract", Amendment(contract_value=Decimal("130000"), reason="CO while parked")
            )
        reopen()  # the fix, in the ERP
        answer = await handle.execute_update("retry", RetryInput(requested_by="fin-ops", note="Feb reopened"))
        assert "erp" in answer
        with pytest.raises(WorkflowUpdateFailedError) as twice:  # nothing parked any more
            await handle.execute_update("retry", RetryInput())
        assert "stage" in field_errors(twice.value)

        summary = await _run_to_close(stack, opp, status.erp_customer_id)

    assert summary.stage is EngagementStage.CLOSED
    [invoice] = erp_invoices(stack.erp, external_id)  # issued exactly once
    assert Decimal(str(invoice["total"])) == Decimal("600.00")  # 4 h x 150
    assert sorted(invoices_of(stack.erp, opp)) == [external_id]
    assert summary.billed == {"USD": Decimal("600.00")}
    bill = next(b for b in stack.erp.records("timeBill") if b.get("externalId") == f"psa-{late}")
    assert bill["isBilled"] is True
    st = await status_of(stack.client, opp)
    assert st.pause is None and [i.external_id for i in st.invoices] == [external_id]
    assert await steward_queue(stack, opp) is None
    assert stack.erp.record_by_eid("job", opp)["entityStatus"]["id"] == "CLOSED"


# --- 2. a rejected ERP write during a CRM change order ------------------------------------


async def test_rejected_change_order_write_parks_and_retry_applies_the_version_once(fresh_ts_stack, crm_client):
    stack = fresh_ts_stack
    deal = await create_deal(crm_client, start="2027-01-01", end="2027-03-31")
    opp = deal.opportunity_id
    status = await _start(stack, opp)
    handle = stack.client.get_workflow_handle(workflow_id_for(opp))
    assert status.contract_version == 1
    # NetSuite: a workflow on the project record refuses edits until a change request is approved
    lock = {
        "path_prefix": f"{RECORD_PATH}/job/eid:{opp}",
        "methods": ["PUT", "PATCH"],
        "status": 400,
        "code": "USER_ERROR",
        "message": f"Project {opp} is locked for editing: a project change request is pending approval "
        "(workflow 'Project Change Approval').",
    }
    with erp_faults(stack.erp, reject_writes=[lock]):
        # the change order, made in the CRM: more budget and one more month
        await crm_client.update_record("Opportunity", opp, {"Amount": 150000, "End_Date__c": "2027-04-30"})
        await handle.signal("crm_changed", CrmChangedInput(source="salesforce-outbound"))
        st = await wait_for_stage(stack.client, opp, EngagementStage.AWAITING_STEWARD)
        pause = st.pause
        assert pause.system == "erp" and pause.operation == "upsert_project"
        assert pause.kind.value == "erp_rejected"
        assert pause.queue.value == "finance-ops" and pause.action.value == "retry"
        assert pause.vendor_code == "USER_ERROR"
        assert "is locked for editing: a project change request is pending approval" in pause.vendor_message
        assert await steward_queue(stack, opp) == "finance-ops"
        assert st.contract_version == 1 and st.engagement.end_date == date(2027, 3, 31)
        job = stack.erp.record_by_eid("job", opp)
        assert Decimal(str(job["custentity_contract_value"])) == Decimal("120000")

        # the same Outbound Message delivered again while parked: no second pause, no second version
        again = await start_engagement(stack.client, opp, task_queue=stack.settings.task_queue, source="webhook")
        assert again.already_existed and again.signalled
        assert (await status_of(stack.client, opp)).pause.operation == "upsert_project"
    # the change request was approved in the ERP (the lock is gone): retry the parked step
    await handle.execute_update("retry", RetryInput(requested_by="fin-ops", note="change request approved"))
    st = await wait_until(
        stack, opp, lambda s: s.stage is EngagementStage.ACTIVE and s.contract_version == 2, "change order applied"
    )
    await asyncio.sleep(1)  # let the redelivered notification's read (queued at the door) run too
    await handle.signal("crm_changed", CrmChangedInput(source="salesforce-outbound"))  # and once more
    await asyncio.sleep(1)
    st = await status_of(stack.client, opp)
    assert st.stage is EngagementStage.ACTIVE and st.pause is None
    assert st.contract_version == 2 and [v.version for v in st.contract_versions] == [1, 2]
    assert st.contract_versions[1].requested_by == "crm" and st.crm_change_issues == []
    assert st.engagement.end_date == date(2027, 4, 30)
    assert st.engagement.contract_value.amount == Decimal("150000")
    job = stack.erp.record_by_eid("job", opp)
    assert Decimal(str(job["custentity_contract_value"])) == Decimal("150000")
    assert job["projectedEndDate"] == "2027-04-30"
    workspace = next(w for w in stack.psa.records("workspaces") if str(w["id"]) == status.psa_workspace.workspace_id)
    assert workspace["due_date"] == "2027-04-30"
    assert (await crm_client.get_record("Opportunity", opp))["Q2C_Contract_Version__c"] == 2

    summary = await _run_to_close(stack, opp, status.erp_customer_id)
    assert summary.stage is EngagementStage.CLOSED
    st = await status_of(stack.client, opp)
    assert st.next_period_index == 4 and st.contract_version == 2  # January..April: the new end date


# --- 3. a fixed-fee milestone whose invoice failed ------------------------------------------


async def test_failed_milestone_invoice_is_retried_and_invoiced_once(fresh_ts_stack, crm_client):
    stack = fresh_ts_stack
    deal = await create_deal(crm_client, billing_model="Fixed Fee", region="UK", start="2026-12-01", end="2027-01-31")
    opp = deal.opportunity_id
    status = await _start(stack, opp)
    handle = stack.client.get_workflow_handle(workflow_id_for(opp))
    first, *others = status.engagement.milestones
    today = (await stack.env.get_current_time()).date()
    period = f"{today:%b %Y}"
    external_id = f"inv-{opp}-ms-{first.key}"

    with closed_period(stack.erp.url, period) as reopen:  # the milestone invoice is dated today
        accepting = await handle.start_update(
            "accept_milestone",
            AcceptMilestoneInput(milestone_key=first.key, accepted_by="client"),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            result_type=InvoiceSummary,
        )
        st = await wait_for_stage(stack.client, opp, EngagementStage.AWAITING_STEWARD)
        assert st.pause.system == "erp" and st.pause.vendor_code == "INVALID_FLD_VALUE"
        assert f"The accounting period {period} is closed" in st.pause.vendor_message
        assert st.pause.queue.value == "finance-ops" and st.pause.action.value == "retry"
        milestone = next(m for m in st.engagement.milestones if m.key == first.key)
        assert not milestone.accepted and not milestone.invoiced  # not without its invoice
        assert erp_invoices(stack.erp, external_id) == []
        with pytest.raises(WorkflowUpdateFailedError) as meanwhile:  # the steward's answer comes first
            await handle.execute_update("accept_milestone", AcceptMilestoneInput(milestone_key=others[0].key))
        assert "parked" in str(meanwhile.value.cause)

        reopen()
        await handle.execute_update("retry", RetryInput(requested_by="fin-ops", note=f"{period} reopened"))
        invoice = await asyncio.wait_for(accepting.result(), 30)  # the same Update completes, with its invoice

    assert invoice is not None and invoice.external_id == external_id
    assert invoice.total == Decimal("20000.00") and invoice.currency == "GBP"
    [record] = erp_invoices(stack.erp, external_id)
    assert record["tranId"] == invoice.number and Decimal(str(record["total"])) == Decimal("20000.00")
    st = await status_of(stack.client, opp)
    milestone = next(m for m in st.engagement.milestones if m.key == first.key)
    assert milestone.accepted and milestone.invoiced and st.stage is EngagementStage.ACTIVE
    with pytest.raises(WorkflowUpdateFailedError) as twice:
        await handle.execute_update("accept_milestone", AcceptMilestoneInput(milestone_key=first.key))
    assert "already accepted and invoiced" in field_errors(twice.value)["milestone_key"]
    assert len(erp_invoices(stack.erp, external_id)) == 1

    for m in others:
        await handle.execute_update("accept_milestone", AcceptMilestoneInput(milestone_key=m.key))
    summary = await _run_to_close(stack, opp, status.erp_customer_id)
    assert summary.stage is EngagementStage.CLOSED
    assert summary.billed == {"GBP": Decimal("80000.00")} and summary.invoices == 3
    assert len(erp_invoices(stack.erp, external_id)) == 1


# --- 7. change orders race each other and the period close ----------------------------------


async def test_two_concurrent_amendments_are_serialized_and_the_second_is_checked_against_the_first(
    fresh_ts_stack, crm_client
):
    stack = fresh_ts_stack
    deal = await fixed_fee_deal(crm_client, amount=100000, milestones=[20000, 40000])
    opp = deal.opportunity_id
    status = await _start(stack, opp)
    assert sum(m.amount for m in status.engagement.milestones) == Decimal("60000")
    assert status.engagement.contract_value.amount == Decimal("100000")
    handle = stack.client.get_workflow_handle(workflow_id_for(opp))

    def adding(name: str) -> Amendment:
        return Amendment(
            milestones=[MilestoneChange(new_key=name.lower(), name=name, amount=Decimal("30000"))],
            reason=f"CO: {name}",
            requested_by=f"pm-{name.lower()}",
        )

    with erp_faults(stack.erp, latency_ms=700):  # the first change order takes a while in the ERP
        # both pass their validators (60,000 + 30,000 <= 100,000 on the state each one sees) ...
        started = await asyncio.gather(
            *(
                handle.start_update(
                    "amend_contract",
                    adding(n),
                    wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                    result_type=ContractVersion,
                )
                for n in ("Hypercare", "Training")
            )
        )
        # ... and are judged again, one after the other, inside the door
        results = await asyncio.gather(*(u.result() for u in started), return_exceptions=True)
    applied = [r for r in results if isinstance(r, ContractVersion)]
    refused = [r for r in results if isinstance(r, WorkflowUpdateFailedError)]
    assert len(applied) == 1 and len(refused) == 1, results
    assert "exceeds the contract value" in field_errors(refused[0])["milestones"]
    assert "120000" in field_errors(refused[0])["milestones"]  # 60,000 + the first 30,000 + its own
    assert applied[0].version == 2

    st = await status_of(stack.client, opp)
    assert sum(m.amount for m in st.engagement.milestones) == Decimal("90000")
    assert len(st.engagement.milestones) == 3 and st.contract_version == 2
    schedule = stack.erp.record_by_eid("billingSchedule", f"bs-{opp}")
    assert sum(Decimal(str(line["amount"])) for line in schedule["milestone"]["items"]) == Decimal("90000")
    history = await handle.fetch_history()
    accepted = [e for e in history.events if e.HasField("workflow_execution_update_accepted_event_attributes")]
    assert len(accepted) == 2  # both were accepted: the second was refused by the check inside the door


async def test_rate_change_racing_the_period_close_is_checked_after_the_close(fresh_ts_stack, crm_client):
    stack = fresh_ts_stack
    deal = await create_deal(crm_client, start="2027-01-01", end="2027-02-28")
    opp = deal.opportunity_id
    status = await _start(stack, opp)
    handle = stack.client.get_workflow_handle(workflow_id_for(opp))
    add_time(stack, status, ["2027-01-12", "2027-01-13"])

    with erp_faults(stack.erp, latency_ms=1000):  # the period close takes several seconds
        # to just before the period's end (skipping stops while activities run, so the close itself
        # is watched in real time)
        await skip_to(stack, midnight(date(2027, 2, 1)) - timedelta(seconds=2))
        closing = await wait_until(
            stack,
            opp,
            lambda s: s.details.startswith("Closing billing period 2027-01-01") and not s.invoices,
            "January closing",
            timeout=30,
        )
        assert closing.next_period_index == 0 and closing.invoices == []
        late = Amendment(
            rates=[RateChange(role="Consultant", rate=Decimal("175"), effective_from=date(2027, 1, 1))],
            reason="CO-7: rate raise backdated to January",
        )
        # the early answer cannot know yet: the period is still being closed, so it is accepted ...
        update = await handle.start_update(
            "amend_contract", late, wait_for_stage=WorkflowUpdateStage.ACCEPTED, result_type=ContractVersion
        )
        # ... and refused inside the door, against the period the close has just invoiced
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await asyncio.wait_for(update.result(), 120)
    reason = field_errors(refused.value)["rates[0].effective_from"]
    assert "before the end of the last invoiced period (2027-01-31)" in reason

    january = erp_invoices(stack.erp, f"inv-{opp}-p000")
    assert len(january) == 1
    assert [Decimal(str(line["rate"])) for line in january[0]["item"]["items"]] == [Decimal("150")] * len(
        january[0]["item"]["items"]
    )
    assert Decimal(str(january[0]["total"])) == Decimal("1200.00")  # 2 x 4 h at the old 150

    summary = await _run_to_close(stack, opp, status.erp_customer_id)
    assert summary.stage is EngagementStage.CLOSED and summary.billed == {"USD": Decimal("1200.00")}
    st = await status_of(stack.client, opp)
    assert st.contract_version == 1 and all(r.rate != Decimal("175") for r in st.engagement.rate_card)
