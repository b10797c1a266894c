"""EngagementWorkflow: one engagement from closed-won to Closed.

Workflow id: ``engagement-<OpportunityId>``. Deterministic orchestration only; every call to
a system of record is an activity whose summary says what it does, so the Temporal UI reads
like the life of the engagement in DOMAIN.md. Setup (validate, provision) is in
`workflows/provisioning.py`; delivery to cash (periods, time, invoices, payments, closure)
in `workflows/delivery.py`. The state travels across continue-as-new in `EngagementStatus`.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.engagement import BillingModel
    from domain.stage import EngagementStage
    from workflows.delivery import Delivery
    from workflows.models import (
        AcceptMilestoneInput,
        CloseInput,
        EngagementInput,
        EngagementStatus,
        EngagementSummary,
        InvoiceSummary,
        PostingResult,
        RecheckInput,
        ReplayExceptionsInput,
        StatusQueryInput,
    )
    from workflows.provisioning import Provisioning
    from workflows.visibility import set_stage

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

    # --- queries, signals, updates ----------------------------------------------------
    @workflow.query(name="status")
    def status(self, _: StatusQueryInput | None = None) -> EngagementStatus:
        return self._status

    @workflow.signal(name="recheck")
    def recheck(self, input: RecheckInput) -> None:
        """A steward fixed the source system: read it again and re-validate."""
        self._recheck = input

    @workflow.update(name="accept_milestone")
    async def accept_milestone(self, input: AcceptMilestoneInput) -> InvoiceSummary | None:
        """The client accepted a fixed-fee milestone: invoice it, once."""
        return await self._delivery.accept_milestone(input)

    @accept_milestone.validator
    def _validate_accept_milestone(self, input: AcceptMilestoneInput) -> None:
        self._require_delivery("accept a milestone")
        engagement = self._status.engagement
        if engagement.billing_model is not BillingModel.FIXED_FEE:
            raise ValueError(f"milestone_key: engagement is {engagement.billing_model.value}, not fixed fee")
        milestone = next((m for m in engagement.milestones if m.key == input.milestone_key), None)
        if milestone is None:
            known = ", ".join(m.key for m in engagement.milestones)
            raise ValueError(f"milestone_key: '{input.milestone_key}' is not a milestone of this engagement "
                             f"(known: {known})")
        if milestone.accepted:
            raise ValueError(f"milestone_key: milestone '{milestone.name}' was already accepted")

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
            raise ValueError(f"psa_ids: {', '.join(unknown)} not open exceptions of this engagement")
        if not open_ids:
            raise ValueError("psa_ids: this engagement has no open time exceptions")

    @workflow.update(name="request_close")
    async def request_close(self, input: CloseInput) -> str:
        """Close now: post remaining time, issue the final invoice, collect, close the projects."""
        self._status.close_requested = input
        return f"closing requested by {input.requested_by}: {input.reason}"

    @request_close.validator
    def _validate_close(self, input: CloseInput) -> None:
        if self._status.stage is not EngagementStage.ACTIVE:
            raise ValueError(f"stage: only an Active engagement can be closed (it is {self._status.stage.value})")
        if not input.reason.strip():
            raise ValueError("reason: say why the engagement is closing")

    def _require_delivery(self, what: str) -> None:
        if self._status.stage not in DELIVERY_STAGES or self._status.engagement is None:
            raise ValueError(f"stage: cannot {what} while the engagement is {self._status.stage.value}")

    # --- main -------------------------------------------------------------------------
    @workflow.run
    async def run(self, input: EngagementInput) -> EngagementSummary:
        if self._status.stage in SETUP_STAGES:
            await self._provisioning.run(input.opportunity_id)
            set_stage(self._status, EngagementStage.ACTIVE,
                      f"Active: ERP project {self._status.erp_project_id}, "
                      f"PSA workspace {self._status.psa_workspace.workspace_id}")
            self._status.active_since = workflow.now()
        if await self._delivery.run_periods():
            await self._continue_as_new()
        return await self._delivery.collect_and_close()

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
