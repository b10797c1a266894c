"""Issue 7: how an engagement ends. Nothing closes while someone still has to decide (a
milestone neither invoiced nor waived, time that could not be posted); late approvals in the
grace window are billed; a cancellation after a partial setup closes what was provisioned; a
five-year engagement with thousands of parked entries keeps its state small. Real
EngagementWorkflow on the time-skipping server against the sandboxes over HTTP, no mocks."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal

import httpx
import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.query.v1 import WorkflowQuery
from temporalio.api.workflowservice.v1 import QueryWorkflowRequest
from temporalio.client import WorkflowUpdateFailedError

from q2c.domain.billing import billing_periods
from q2c.domain.stage import EngagementStage
from q2c.engagement.client import start_engagement, workflow_id_for
from q2c.engagement.messages import (
    AcceptMilestoneInput,
    CancelInput,
    DeliveryConfig,
    EngagementInput,
    EngagementSummary,
    PostingResult,
    ReplayExceptionsInput,
    RetryInput,
    WaiveMilestoneInput,
    WriteOffInput,
    WriteOffResult,
)
from q2c.ledger.config import ledger_url
from q2c.ledger.store import Ledger
from tests.deals import create_deal
from tests.e2e.test_delivery import _run_to_close, _start, invoices_of, paying_customer, run_histories
from tests.e2e.test_parking import (
    add_time,
    closed_period,
    erp_invoices,
    field_errors,
    midnight,
    skip_to,
    skip_until_due,
    steward_queue,
    wait_until,
)
from tests.engagement_helpers import status_of, wait_for_stage

KB = 1024


def ledger_of(stack) -> Ledger:
    return Ledger.from_url(ledger_url(stack.settings))


# --- 4. cancellation after a PSA rejection during setup -----------------------------------


async def test_cancel_after_psa_rejected_the_workspace_closes_the_erp_project(fresh_ts_stack, crm_client):
    stack = fresh_ts_stack
    # the rate card names a role Kantata does not have: the PSA cannot staff the workspace
    deal = await create_deal(
        crm_client,
        start="2027-01-01",
        end="2027-03-31",
        rate_lines=[("Engagement Manager", 100, "250", None), ("Data Wrangler", 200, "120", None)],
    )
    opp = deal.opportunity_id
    started = await start_engagement(stack.client, opp, task_queue=stack.settings.task_queue, source="test")
    st = await wait_for_stage(stack.client, opp, EngagementStage.AWAITING_STEWARD)
    pause = st.pause
    assert pause.system == "psa" and pause.action.value == "recheck"
    assert pause.queue.value == "pmo" and pause.kind.value == "psa_mapping_missing"
    assert "Data Wrangler" in pause.vendor_message
    assert await steward_queue(stack, opp) == "pmo"
    # the ERP side was provisioned before the PSA said no
    assert st.erp_customer_id and st.erp_project_id and st.erp_billing_schedule_id and st.psa_workspace is None
    job = stack.erp.record_by_eid("job", opp)
    assert job["entityStatus"]["id"] != "CLOSED"

    handle = stack.client.get_workflow_handle(
        workflow_id_for(opp), run_id=started.run_id, result_type=EngagementSummary
    )
    await handle.execute_update(
        "cancel", CancelInput(reason="client withdrew before kick-off", requested_by="sales-ops")
    )
    summary = await asyncio.wait_for(handle.result(), 60)
    assert summary.stage is EngagementStage.CANCELLED
    assert summary.invoices == 0 and summary.billed == {}

    job = stack.erp.record_by_eid("job", opp)
    assert job["entityStatus"]["id"] == "CLOSED"  # the provisioned project does not stay open
    assert stack.erp.record_by_eid("billingSchedule", f"bs-{opp}")["id"] == st.erp_billing_schedule_id
    crm_opp = await crm_client.get_record("Opportunity", opp)
    assert crm_opp["Q2C_Status__c"] == "Cancelled"
    assert crm_opp["ERP_Project_Id__c"] == st.erp_project_id  # the CRM is told what was provisioned
    assert crm_opp["ERP_Customer_Id__c"] == st.erp_customer_id
    assert not crm_opp.get("PSA_Workspace_Id__c")
    final = await status_of(stack.client, opp)
    assert final.stage is EngagementStage.CANCELLED and final.pause is None
    assert f"ERP project {st.erp_project_id} closed" in final.details
    assert await steward_queue(stack, opp) is None
    assert not invoices_of(stack.erp, opp)


async def test_cancel_after_psa_rejected_staffing_closes_the_half_created_workspace(fresh_ts_stack, crm_client):
    stack = fresh_ts_stack
    # Kantata refuses the staffing request of a workspace it has just created
    stack.psa.set_faults(
        reject_writes=[
            {
                "path_prefix": "/api/v1/resource_requests.json",
                "methods": ["POST"],
                "status": 422,
                "code": "validation",
                "message": "Role has been archived and cannot be requested",
            }
        ]
    )
    try:
        deal = await create_deal(crm_client, start="2027-01-01", end="2027-03-31")
        opp = deal.opportunity_id
        started = await start_engagement(stack.client, opp, task_queue=stack.settings.task_queue, source="test")
        st = await wait_for_stage(stack.client, opp, EngagementStage.AWAITING_STEWARD)
    finally:
        stack.psa.reset_faults()
    assert st.pause.system == "psa" and st.pause.action.value == "recheck"
    assert "Role has been archived" in st.pause.vendor_message
    [workspace] = [w for w in stack.psa.records("workspaces") if opp in (w.get("description") or "")]
    handle = stack.client.get_workflow_handle(
        workflow_id_for(opp), run_id=started.run_id, result_type=EngagementSummary
    )
    await handle.execute_update("cancel", CancelInput(reason="client withdrew", requested_by="sales-ops"))
    summary = await asyncio.wait_for(handle.result(), 60)
    assert summary.stage is EngagementStage.CANCELLED
    assert stack.erp.record_by_eid("job", opp)["entityStatus"]["id"] == "CLOSED"
    workspace = next(w for w in stack.psa.records("workspaces") if w["id"] == workspace["id"])
    assert workspace["status"]["message"] == "closed"  # what was provisioned in the PSA is closed too
    assert (await crm_client.get_record("Opportunity", opp))["PSA_Workspace_Id__c"] == str(workspace["id"])


# --- 5. a fixed-fee end date with milestones neither invoiced nor waived -----------------


async def test_fixed_fee_end_with_open_milestones_waits_for_the_pmo_then_closes(fresh_ts_stack, crm_client):
    stack = fresh_ts_stack
    deal = await create_deal(crm_client, billing_model="Fixed Fee", region="UK", start="2026-12-01", end="2027-01-31")
    opp = deal.opportunity_id
    status = await _start(stack, opp)
    handle = stack.client.get_workflow_handle(workflow_id_for(opp))
    first, second, third = status.engagement.milestones
    await handle.execute_update("accept_milestone", AcceptMilestoneInput(milestone_key=first.key))

    async with paying_customer(stack.erp.url, status.erp_customer_id):
        await skip_to(stack, midnight(date(2027, 2, 10)))  # the end date and the grace window passed
        st = await wait_until(stack, opp, lambda s: s.pause is not None, "PMO pause")
    assert st.stage is EngagementStage.AWAITING_STEWARD
    pause = st.pause
    assert pause.kind.value == "milestones_not_invoiced" and pause.queue.value == "pmo"
    assert pause.action.value == "accept_or_waive" and pause.resume_stage is EngagementStage.COLLECTING
    assert sorted(f.field for f in pause.fields) == sorted(f"milestones.{m.key}" for m in (second, third))
    assert "60000" in pause.message  # 45,000 + 15,000 GBP unbilled, said out loud
    assert await steward_queue(stack, opp) == "pmo"
    with pytest.raises(WorkflowUpdateFailedError):  # the pause is not a failed step
        await handle.execute_update("retry", RetryInput())

    await skip_to(stack, midnight(date(2027, 4, 1)))  # nobody decided: it does not close by itself
    st = await status_of(stack.client, opp)
    assert st.stage is EngagementStage.AWAITING_STEWARD and st.pause.kind.value == "milestones_not_invoiced"
    assert (await handle.describe()).status.name == "RUNNING"

    with pytest.raises(WorkflowUpdateFailedError) as no_reason:
        await handle.execute_update("waive_milestone", WaiveMilestoneInput(milestone_key=second.key, reason=" "))
    assert "reason" in field_errors(no_reason.value)
    await handle.execute_update(
        "waive_milestone",
        WaiveMilestoneInput(
            milestone_key=second.key, reason="descoped in the steering committee of 2027-01-20", requested_by="pmo-lead"
        ),
    )
    st = await status_of(stack.client, opp)
    assert st.stage is EngagementStage.AWAITING_STEWARD  # one still open
    with pytest.raises(WorkflowUpdateFailedError) as waived:
        await handle.execute_update("accept_milestone", AcceptMilestoneInput(milestone_key=second.key))
    assert "waived by pmo-lead" in field_errors(waived.value)["milestone_key"]
    await handle.execute_update("accept_milestone", AcceptMilestoneInput(milestone_key=third.key))

    summary = await _run_to_close(stack, opp, status.erp_customer_id)
    assert summary.stage is EngagementStage.CLOSED
    assert summary.billed == {"GBP": Decimal("35000.00")}  # 20,000 + 15,000; 45,000 waived
    assert sorted(invoices_of(stack.erp, opp)) == sorted(f"inv-{opp}-ms-{m.key}" for m in (first, third))
    st = await status_of(stack.client, opp)
    waived_ms = next(m for m in st.engagement.milestones if m.key == second.key)
    assert waived_ms.waived and waived_ms.waived_by == "pmo-lead"
    assert waived_ms.waived_reason == "descoped in the steering committee of 2027-01-20"
    assert not waived_ms.invoiced
    assert all(m.invoiced for m in st.engagement.milestones if m.key != second.key)


# --- 6. late approved time: billed in the grace window, else written off ------------------


async def _paid_in_erp(stack, opp: str, timeout: float = 60) -> None:
    """Every invoice of the engagement fully paid in the ERP (the test payer polls the list)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        invoices = [r for r in stack.erp.records("invoice") if (r.get("externalId") or "").startswith(f"inv-{opp}-")]
        if invoices and all(Decimal(str(r.get("amountRemaining", "0"))) == 0 for r in invoices):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not paid within {timeout}s: {invoices}")
        await asyncio.sleep(0.1)


async def test_late_time_in_the_grace_window_is_billed_and_unpostable_time_is_written_off(fresh_ts_stack, crm_client):
    stack = fresh_ts_stack
    deal = await create_deal(crm_client, start="2027-01-01", end="2027-02-28")
    opp = deal.opportunity_id
    status = await _start(stack, opp)
    handle = stack.client.get_workflow_handle(workflow_id_for(opp))
    add_time(stack, status, ["2027-01-12"])  # on time: January's invoice
    async with paying_customer(stack.erp.url, status.erp_customer_id):
        await skip_to(stack, midnight(date(2027, 2, 2)))
        await wait_until(stack, opp, lambda s: s.invoices, "January invoiced")
        await _paid_in_erp(stack, opp)  # the customer paid January before finance closes it

    with closed_period(stack.erp.url, "Jan 2027"):  # finance closed January's books after invoicing
        await skip_to(stack, midnight(date(2027, 3, 1)) + timedelta(hours=1))
        st = await wait_for_stage(stack.client, opp, EngagementStage.COLLECTING)
        assert st.grace_until is not None and st.grace_until > await stack.env.get_current_time()
        assert not st.final_posting_done
        # approved after the end date, inside the grace window
        [on_time_late, unpostable] = add_time(stack, status, ["2027-02-20", "2027-01-25"])
        await skip_to(stack, st.grace_until + timedelta(hours=1))
        st = await wait_until(stack, opp, lambda s: s.pause is not None, "finance-ops pause")
        assert st.stage is EngagementStage.AWAITING_STEWARD
        pause = st.pause
        assert pause.kind.value == "time_exceptions_open" and pause.queue.value == "finance-ops"
        assert pause.action.value == "replay_or_write_off" and "PERIOD_CLOSED 1" in pause.message
        assert await steward_queue(stack, opp) == "finance-ops"
        assert st.open_exception_count == 1 and [x.psa_id for x in st.open_exceptions] == [unpostable]
        assert "Jan 2027" in st.open_exceptions[0].message

        # the February entry approved late was posted and billed on a final invoice
        [final] = erp_invoices(stack.erp, f"inv-{opp}-final01")
        assert Decimal(str(final["total"])) == Decimal("600.00")
        bill = next(b for b in stack.erp.records("timeBill") if b.get("externalId") == f"psa-{on_time_late}")
        assert bill["isBilled"] is True and str(bill["invoice"]["id"]) == str(final["id"])
        assert not any(b.get("externalId") == f"psa-{unpostable}" for b in stack.erp.records("timeBill"))

        # a replay while January is still closed parks it again
        replayed = await handle.execute_update(
            "replay_exceptions", ReplayExceptionsInput(psa_ids=[unpostable]), result_type=PostingResult
        )
        assert replayed.posted == 0 and replayed.open_count == 1
        with pytest.raises(WorkflowUpdateFailedError) as no_reason:
            await handle.execute_update("write_off_exceptions", WriteOffInput(psa_ids=[unpostable], reason=""))
        assert "reason" in field_errors(no_reason.value)
        result = await handle.execute_update(
            "write_off_exceptions",
            WriteOffInput(
                psa_ids=[unpostable],
                requested_by="controller",
                reason="January is closed; agreed with the client not to bill",
            ),
            result_type=WriteOffResult,
        )
        assert result.written_off == 1 and result.open_remaining == 0
        summary = await _run_to_close(stack, opp, status.erp_customer_id)

    assert summary.stage is EngagementStage.CLOSED
    assert sorted(invoices_of(stack.erp, opp)) == [f"inv-{opp}-final01", f"inv-{opp}-p000"]
    assert summary.billed == {"USD": Decimal("1200.00")}
    ledger = ledger_of(stack)
    try:
        [row] = ledger.list_exceptions(opp, status="write_off")
        assert row.psa_id == unpostable
        assert row.message.startswith(
            "written off by controller: January is closed; agreed with the client not to bill"
        )
        assert "PERIOD_CLOSED" in row.message
        assert ledger.list_exceptions(opp, status="open") == []
        assert not ledger.is_posted(unpostable) and ledger.is_posted(on_time_late)
    finally:
        ledger.dispose()
    assert not any(b.get("externalId") == f"psa-{unpostable}" for b in stack.erp.records("timeBill"))
    st = await status_of(stack.client, opp)
    assert st.written_off_entries == 1 and st.open_exception_count == 0


# --- 8. bounded state over a five-year engagement with 2,000 parked entries ---------------

PARKED = 2000
LIMIT = 256 * KB


async def status_answer_bytes(client, workflow_id: str) -> int:
    """The size of the `status` query's answer as the server returns it (the encoded payload)."""
    response = await client.workflow_service.query_workflow(
        QueryWorkflowRequest(
            namespace=client.namespace,
            execution=WorkflowExecution(workflow_id=workflow_id),
            query=WorkflowQuery(query_type="status"),
        )
    )
    return response.query_result.ByteSize()


def continue_as_new_input_bytes(histories) -> list[int]:
    sizes = []
    for history in histories:
        for event in history.events:
            if event.HasField("workflow_execution_continued_as_new_event_attributes"):
                sizes.append(event.workflow_execution_continued_as_new_event_attributes.input.ByteSize())
    return sizes


async def wait_for_write_back(crm, opportunity_id: str, timeout: float = 60.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        opp = await crm.get_record("Opportunity", opportunity_id)
        if opp.get("PSA_Workspace_Id__c") and opp.get("ERP_Customer_Id__c"):
            return opp
        await asyncio.sleep(0.2)
    raise AssertionError(f"{opportunity_id}: no ERP/PSA ids written back to the CRM")


def add_entries(stack, workspace_id: str, story_id: str, days: list[str], minutes: int) -> list[str]:
    user = next(u for u in stack.psa.records("users") if u["role_id"] == "503")
    entries = [
        {
            "workspace_id": workspace_id,
            "story_id": story_id,
            "user_id": user["id"],
            "date_performed": day,
            "time_in_minutes": minutes,
            "billable": True,
        }
        for day in days
    ]
    r = httpx.post(
        f"{stack.psa.url}/__sandbox/time/bulk", json={"time_entries": entries, "approved": True}, timeout=120
    )
    assert r.status_code < 300, r.text
    return [str(i) for i in r.json()["time_entry_ids"]]


async def current_run(stack, workflow_id: str):
    """The latest run's history and the state it started with, read from the history only. No
    query reaches the workflow while its runs continue as new one after another: with queries
    polled through such a burst, the time-skipping test server was seen to stop skipping (its
    `sleep` timing out), after the worker logged "Task not found when completing ... workflow
    execution already completed"."""
    desc = await stack.client.get_workflow_handle(workflow_id).describe()
    history = await stack.client.get_workflow_handle(workflow_id, run_id=desc.run_id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    [run_input] = await stack.client.data_converter.decode(started.input.payloads, [EngagementInput])
    return history, run_input


def waiting_on_a_timer(history) -> bool:
    return history.events[-1].HasField("timer_started_event_attributes")


def waiting_forever(history) -> bool:
    """Parked on a steward: the last workflow task completed and nothing is scheduled after it."""
    return history.events[-1].HasField("workflow_task_completed_event_attributes")


async def wait_for_run(
    stack, workflow_id: str, started_with, what: str, *, then=None, idle=waiting_on_a_timer, timeout: float = 600.0
):
    """Wait for a run that started with a state matching `started_with` to sit idle (on a timer),
    then (only then) ask it for its status, which must match `then` when given."""
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        history, run_input = await current_run(stack, workflow_id)
        if run_input.state is not None and started_with(run_input.state) and idle(history):
            last = await status_of(stack.client, workflow_id.removeprefix("engagement-"))
            if last is not None and (then is None or then(last)):
                return last
        await asyncio.sleep(0.3)
    raise AssertionError(f"{what}: not reached within {timeout}s; last status {last and last.details}")


@pytest.mark.slow
async def test_five_year_engagement_with_2000_parked_entries_keeps_payloads_small(
    fresh_ts_stack, crm_client, psa_client
):
    stack = fresh_ts_stack
    # five years of monthly billing (the ERP sandbox has accounting periods through 2030; every
    # period before Nov 2026 is closed, as in a live ERP whose past months are closed)
    deal = await create_deal(crm_client, start="2026-01-01", end="2030-12-31")
    opp = deal.opportunity_id
    wid = workflow_id_for(opp)
    started = await start_engagement(
        stack.client,
        opp,
        task_queue=stack.settings.task_queue,
        source="test",
        delivery=DeliveryConfig(payment_poll_seconds=30 * 86_400),
    )
    # the first ten months are in the past: they close one after the other as soon as it is Active.
    # Meanwhile the test reads the IDs from the CRM (no query while runs continue as new)
    ids = await wait_for_write_back(crm_client, opp)
    ws, customer_id = ids["PSA_Workspace_Id__c"], ids["ERP_Customer_Id__c"]
    story = next(s for s in stack.psa.records("stories") if str(s["workspace_id"]) == ws and s["billable"])
    # 2,000 approved entries booked to March 2026, a closed ERP period: every one parks
    days = [date(2026, 3, 2) + timedelta(days=i % 28) for i in range(PARKED)]
    parked = add_entries(stack, ws, str(story["id"]), [d.isoformat() for d in days], minutes=30)
    assert len(parked) == PARKED
    # and ordinary billable time every week from here to the end: an invoice every month
    for start, end in (
        (date(2026, 11, 1), date(2027, 12, 31)),
        (date(2028, 1, 1), date(2029, 12, 31)),
        (date(2030, 1, 1), date(2030, 12, 31)),
    ):
        await psa_client.generate_time(
            ws, start=start, end=end, entries_per_week=1, seed=start.year, billable_only=True
        )

    # every billing period to the end, one skip at a time (the status answer measured after each)
    largest_status = 0
    periods = billing_periods(date(2026, 1, 1), date(2030, 12, 31))
    assert len(periods) == 60
    handle = stack.client.get_workflow_handle(wid, result_type=EngagementSummary)
    async with paying_customer(stack.erp.url, customer_id):
        for period in periods[:-1]:
            await skip_until_due(stack, midnight(period.end + timedelta(days=1)))
            st = await wait_for_run(
                stack,
                wid,
                lambda state: state.next_period_index > period.index,  # noqa: B023
                f"period {period.index} ({period.start:%b %Y}) closed",
            )
            largest_status = max(largest_status, await status_answer_bytes(stack.client, wid))
        last = periods[-1]
        await skip_until_due(stack, midnight(last.end + timedelta(days=1)))
        st = await wait_for_run(
            stack, wid, lambda state: True, "the last period closed", then=lambda s: s.collecting_since is not None
        )
        assert st.next_period_index == 60
        largest_status = max(largest_status, await status_answer_bytes(stack.client, wid))
        assert st.open_exception_count == PARKED and st.open_exceptions_by_reason == {"PERIOD_CLOSED": PARKED}
        # the grace window passes: the parked time keeps the engagement open until finance decides
        await skip_until_due(stack, st.grace_until)
        st = await wait_for_run(
            stack,
            wid,
            lambda state: True,
            "finance-ops pause",
            then=lambda s: s.pause is not None,
            idle=waiting_forever,
        )
        assert st.pause.kind.value == "time_exceptions_open", st.pause
        assert st.open_exception_count == PARKED and len(st.open_exceptions) <= 20  # a sample; all in the ledger
        largest_status = max(largest_status, await status_answer_bytes(stack.client, wid))
        written = await handle.execute_update(
            "write_off_exceptions",
            WriteOffInput(
                reason="booked to March 2026 after it was closed; agreed with the client not to bill",
                requested_by="controller",
            ),
            result_type=WriteOffResult,
        )
        assert written.written_off == PARKED and written.open_remaining == 0
        largest_status = max(largest_status, await status_answer_bytes(stack.client, wid))
        async with stack.env.time_skipping_unlocked():
            summary = await asyncio.wait_for(handle.result(), 600)

    assert summary.stage is EngagementStage.CLOSED
    histories = await run_histories(stack.client, wid, started.run_id)
    inputs = continue_as_new_input_bytes(histories)
    assert len(histories) >= 60 and len(inputs) == len(histories) - 1
    largest_input = max(inputs)
    figures = (
        f"five-year engagement, {PARKED} parked entries, {len(histories)} runs, "
        f"{summary.invoices} invoices: largest continue-as-new input {largest_input} bytes "
        f"({largest_input / KB:.1f} KB), largest status answer {largest_status} bytes "
        f"({largest_status / KB:.1f} KB); limit {LIMIT // KB} KB"
    )
    print(figures)
    assert largest_input < LIMIT, figures
    assert largest_status < LIMIT, figures
    ledger = ledger_of(stack)
    try:
        assert len(ledger.list_exceptions(opp, status="write_off")) == PARKED
        assert ledger.list_exceptions(opp, status="open") == []
    finally:
        ledger.dispose()
