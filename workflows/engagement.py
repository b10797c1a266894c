"""EngagementWorkflow: one engagement from closed-won to Closed.

Workflow id: ``engagement-<OpportunityId>``. Deterministic orchestration only; every call to
a system of record is an activity whose summary says what it does, so the Temporal UI reads
like the life of the engagement in DOMAIN.md. Setup (validate, provision) is in
`workflows/provisioning.py`; delivery to cash (periods, time, invoices, payments, closure)
in `workflows/delivery.py`. The state travels across continue-as-new in `EngagementStatus`.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.delivery import DeliveryActivities
    from activities.engagement import EngagementActivities
    from activities.models import CrmStatusInput, FetchEngagementInput, WriteCustomerInput
    from domain.engagement import BillingModel
    from domain.stewardship import apply_customer_patch, validate_amendment, validate_customer_patch
    from domain.stage import EngagementStage
    from workflows.delivery import Delivery
    from workflows.models import (
        AcceptMilestoneInput,
        Amendment,
        CancelInput,
        CloseInput,
        ContractVersion,
        CrmChangedInput,
        CustomerPatch,
        EngagementInput,
        EngagementStatus,
        EngagementSummary,
        InvoiceSummary,
        PauseKind,
        PostingResult,
        RecheckInput,
        ReplayExceptionsInput,
        StatusQueryInput,
    )
    from workflows.change_orders import amendment_from_crm
    from workflows.provisioning import VENDOR_RETRY, VENDOR_TIMEOUT, EngagementCancelled, Provisioning
    from workflows.rejections import reject, reject_one
    from workflows.visibility import set_details, set_stage

SETUP_STAGES = {EngagementStage.RECEIVED, EngagementStage.VALIDATING,
                EngagementStage.AWAITING_STEWARD, EngagementStage.PROVISIONING}
DELIVERY_STAGES = {EngagementStage.ACTIVE, EngagementStage.COLLECTING}


@workflow.defn
class EngagementWorkflow:
    @workflow.init
    def __init__(self, input: EngagementInput) -> None:
        if input.state is not None:
            self._status = input.state
            self._status.runs += 1
        else:
            self._status = EngagementStatus(opportunity_id=input.opportunity_id, stage=EngagementStage.RECEIVED,
                                            details=f"Closed-won event received (source: {input.source})")
        self._input = input
        self._recheck: RecheckInput | None = None
        self._provisioning = Provisioning(self._status, self._recheck_requested, self._take_recheck)
        self._delivery = Delivery(self._status, input.delivery)
        self._amending = asyncio.Lock()

    # --- queries, signals, updates ----------------------------------------------------
    @workflow.query(name="status")
    def status(self, _: StatusQueryInput | None = None) -> EngagementStatus:
        return self._status

    @workflow.signal(name="recheck")
    def recheck(self, input: RecheckInput) -> None:
        """A steward fixed the source system: read it again and re-validate."""
        self._recheck = input

    @workflow.signal(name="crm_changed")
    async def crm_changed(self, input: CrmChangedInput) -> None:
        """The CRM notified a change: waiting engagements re-check; active ones take a change
        order (contract value, end date, rates, milestones) through amend_contract's rules."""
        st = self._status
        if st.stage is EngagementStage.AWAITING_STEWARD:
            self._recheck = RecheckInput(requested_by="crm", note=f"CRM changed ({input.source})")
            return
        if st.stage is not EngagementStage.ACTIVE:
            return
        async with self._amending:
            fresh = await workflow.execute_activity_method(
                EngagementActivities.fetch_engagement, FetchEngagementInput(opportunity_id=st.opportunity_id),
                start_to_close_timeout=VENDOR_TIMEOUT, retry_policy=VENDOR_RETRY,
                summary="CRM: read the amended opportunity (change order)")
            amendment = amendment_from_crm(st.engagement, fresh)
            if amendment is None:
                return
            invoiced_ends = [i.period_end for i in st.invoices]
            issues = validate_amendment(amendment, st.engagement, billed=st.totals.billed,
                                        last_invoiced_period_end=max(invoiced_ends) if invoiced_ends else None,
                                        last_posted_date=st.last_posted_date)
            st.crm_change_issues = issues
            if issues:
                set_details(st, "CRM change order refused: " + "; ".join(f"{i.field}: {i.reason}" for i in issues))
                return
            version = await self._delivery.amend(amendment)
            set_details(st, f"Contract version {version.version} from the CRM applied")

    @workflow.update(name="accept_milestone")
    async def accept_milestone(self, input: AcceptMilestoneInput) -> InvoiceSummary | None:
        """The client accepted a fixed-fee milestone: invoice it, once."""
        return await self._delivery.accept_milestone(input)

    @accept_milestone.validator
    def _validate_accept_milestone(self, input: AcceptMilestoneInput) -> None:
        self._require_delivery("accept a milestone")
        engagement = self._status.engagement
        if engagement.billing_model is not BillingModel.FIXED_FEE:
            reject_one("milestone_key", f"engagement is {engagement.billing_model.value}, not fixed fee")
        milestone = next((m for m in engagement.milestones if m.key == input.milestone_key), None)
        if milestone is None:
            known = ", ".join(m.key for m in engagement.milestones)
            reject_one("milestone_key", f"'{input.milestone_key}' is not a milestone of this engagement "
                                        f"(known: {known})")
        if milestone.accepted:
            reject_one("milestone_key", f"milestone '{milestone.name}' was already accepted")

    @workflow.update(name="replay_exceptions")
    async def replay_exceptions(self, input: ReplayExceptionsInput) -> PostingResult:
        """Post parked time entries again after their cause was fixed (posted at most once)."""
        return await self._delivery.replay(input)

    @replay_exceptions.validator
    def _validate_replay(self, input: ReplayExceptionsInput) -> None:
        self._require_delivery("replay time exceptions")
        open_ids = {e.psa_id for e in self._status.open_exceptions}
        unknown = [i for i in input.psa_ids if i not in open_ids]
        if unknown:
            reject_one("psa_ids", f"{', '.join(unknown)} not open exceptions of this engagement")
        if not open_ids:
            reject_one("psa_ids", "this engagement has no open time exceptions")

    @workflow.update(name="provide_customer_data")
    async def provide_customer_data(self, patch: CustomerPatch) -> str:
        """A steward supplies customer-master fields: written back to the CRM account, then the
        engagement re-validates and resumes."""
        given = patch.model_dump(exclude={"provided_by"}, exclude_none=True)
        customer = self._status.engagement.customer
        await workflow.execute_activity_method(
            EngagementActivities.write_customer_to_crm,
            WriteCustomerInput(account_id=customer.crm_account_id, patch=given),
            start_to_close_timeout=VENDOR_TIMEOUT, retry_policy=VENDOR_RETRY,
            summary=f"CRM: write {', '.join(sorted(given))} to account {customer.crm_account_id} "
                    f"(from {patch.provided_by})")
        self._status.engagement.customer = apply_customer_patch(customer, given)
        self._recheck = RecheckInput(requested_by=patch.provided_by, note=f"provided {', '.join(sorted(given))}")
        return f"accepted {', '.join(sorted(given))}; re-validating"

    @provide_customer_data.validator
    def _validate_customer_data(self, patch: CustomerPatch) -> None:
        pause = self._status.pause
        if self._status.stage is not EngagementStage.AWAITING_STEWARD or pause is None:
            reject_one("stage", f"the engagement is {self._status.stage.value}, not waiting for customer data")
        if pause.kind not in (PauseKind.CUSTOMER_MASTER_INCOMPLETE, PauseKind.ERP_REJECTED):
            reject_one("stage", f"the engagement waits for {pause.queue.value} ({pause.kind.value}), "
                                "not for customer data")
        reject(validate_customer_patch(patch.model_dump(exclude={"provided_by"}),
                                       self._status.engagement.customer, self._provisioning.subsidiaries))

    @workflow.update(name="amend_contract")
    async def amend_contract(self, amendment: Amendment) -> ContractVersion:
        """A change order: applied to the ERP and PSA; the contract is versioned."""
        async with self._amending:
            return await self._delivery.amend(amendment)

    @amend_contract.validator
    def _validate_amendment(self, amendment: Amendment) -> None:
        if self._status.stage is not EngagementStage.ACTIVE:
            reject_one("stage", f"only an Active engagement can be amended (it is {self._status.stage.value})")
        invoiced_ends = [i.period_end for i in self._status.invoices]
        reject(validate_amendment(amendment, self._status.engagement, billed=self._status.totals.billed,
                                  last_invoiced_period_end=max(invoiced_ends) if invoiced_ends else None,
                                  last_posted_date=self._status.last_posted_date))

    @workflow.update(name="cancel")
    async def cancel(self, input: CancelInput) -> str:
        """Stop future billing, invoice the work done, then close as usual (ending Cancelled)."""
        self._status.cancelled = input
        if self._status.stage is EngagementStage.ACTIVE:
            self._status.close_requested = CloseInput(requested_by=input.requested_by,
                                                      reason=f"cancelled: {input.reason}")
        return f"cancellation by {input.requested_by} accepted: {input.reason}"

    @cancel.validator
    def _validate_cancel(self, input: CancelInput) -> None:
        if not input.reason.strip():
            reject_one("reason", "say why the engagement is cancelled")
        if self._status.cancelled is not None:
            reject_one("stage", "the engagement is already being cancelled")
        if self._status.stage not in (EngagementStage.ACTIVE, EngagementStage.AWAITING_STEWARD):
            reject_one("stage", f"an engagement that is {self._status.stage.value} cannot be cancelled")

    @workflow.update(name="request_close")
    async def request_close(self, input: CloseInput) -> str:
        """Close now: post remaining time, issue the final invoice, collect, close the projects."""
        self._status.close_requested = input
        return f"closing requested by {input.requested_by}: {input.reason}"

    @request_close.validator
    def _validate_close(self, input: CloseInput) -> None:
        if self._status.stage is not EngagementStage.ACTIVE:
            reject_one("stage", f"only an Active engagement can be closed (it is {self._status.stage.value})")
        if not input.reason.strip():
            reject_one("reason", "say why the engagement is closing")

    def _require_delivery(self, what: str) -> None:
        if self._status.stage not in DELIVERY_STAGES or self._status.engagement is None:
            reject_one("stage", f"cannot {what} while the engagement is {self._status.stage.value}")

    # --- main -------------------------------------------------------------------------
    @workflow.run
    async def run(self, input: EngagementInput) -> EngagementSummary:
        if self._status.stage in SETUP_STAGES:
            try:
                await self._provisioning.run(input.opportunity_id)
            except EngagementCancelled as cancelled:
                return await self._cancelled_before_active(str(cancelled))
            set_stage(self._status, EngagementStage.ACTIVE,
                      f"Active: ERP project {self._status.erp_project_id}, "
                      f"PSA workspace {self._status.psa_workspace.workspace_id}")
            self._status.active_since = workflow.now()
            self._delivery.record_version("contract as closed-won", "crm")
        if await self._delivery.run_periods():
            await self._continue_as_new()
        return await self._delivery.collect_and_close()

    async def _cancelled_before_active(self, reason: str) -> EngagementSummary:
        """Nothing was provisioned (the engagement never left setup): tell the CRM and end."""
        await workflow.execute_activity_method(
            DeliveryActivities.write_crm_status,
            CrmStatusInput(opportunity_id=self._status.opportunity_id, status=EngagementStage.CANCELLED.value),
            start_to_close_timeout=VENDOR_TIMEOUT, retry_policy=VENDOR_RETRY,
            summary="CRM: status Cancelled (nothing was provisioned)")
        set_stage(self._status, EngagementStage.CANCELLED, f"Cancelled before provisioning: {reason}")
        return self._delivery.summary()

    async def _continue_as_new(self) -> None:
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(EngagementInput(opportunity_id=self._input.opportunity_id, source=self._input.source,
                                                 delivery=self._input.delivery, state=self._status))

    # --- steward plumbing -------------------------------------------------------------
    def _recheck_requested(self) -> bool:
        return self._recheck is not None

    def _take_recheck(self) -> RecheckInput | None:
        taken, self._recheck = self._recheck, None
        return taken
