"""EngagementWorkflow: one engagement from closed-won to Closed.

Workflow id: ``engagement-<OpportunityId>``. Deterministic orchestration only; every call to
a system of record is an activity whose summary says what it does, so the Temporal UI reads
like the life of the engagement (docs/domain.md). Setup (validate, provision) is in
`workflows/provisioning.py`; delivery to cash (periods, time, invoices, payments, closure)
in `workflows/delivery.py`; the failure model and the door in `workflows/steps.py`. The
state travels across continue-as-new in `EngagementStatus`.

Every state-changing handler below has a validator (a fast answer, field by field, before
anything reaches the history) and then runs inside `steps.door`, where it checks its rules
again against the state it finds there: a change order queued behind another one, or behind
the period close, is judged on what they did.
"""

from __future__ import annotations

from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from q2c.delivery.activities import DeliveryActivities
    from q2c.delivery.inputs import CloseSystemsInput
    from q2c.delivery.workflow import Delivery, continue_as_new_versioning
    from q2c.domain.stage import EngagementStage
    from q2c.domain.stewardship import apply_customer_patch, validate_amendment, validate_customer_patch
    from q2c.domain.validation import FieldIssue
    from q2c.engagement.messages import (
        AcceptMilestoneInput,
        Amendment,
        BudgetHoldDecisionInput,
        BudgetHoldDecisionResult,
        CancelInput,
        CloseInput,
        ContractVersion,
        CreditInvoiceInput,
        CreditMemoActivityInput,
        CreditNoteSummary,
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
        RetryInput,
        StatusQueryInput,
        StewardAction,
        WaiveMilestoneInput,
        WriteOffInput,
        WriteOffResult,
        take_payment_statuses,
    )
    from q2c.engagement.rebill import rebill_issues, rebill_lines
    from q2c.engagement.rejections import reject, reject_one
    from q2c.engagement.steps import VENDOR_HEARTBEAT, VENDOR_RETRY, VENDOR_TIMEOUT, Abandoned, Steps
    from q2c.engagement.visibility import set_details, set_stage
    from q2c.provisioning.activities import EngagementActivities
    from q2c.provisioning.inputs import FetchEngagementInput, WriteBackInput, WriteCustomerInput
    from q2c.provisioning.workflow import EngagementCancelled, Provisioning
    from q2c.stewardship.change_orders import amendment_from_crm
    from q2c.vendors.netsuite.finance_mapping import credit_memo_external_id

DELIVERY_STAGES = {EngagementStage.ACTIVE, EngagementStage.COLLECTING}
RECENT_UPDATE_IDS = 50  # remembered across continue-as-new, so a retried request applies once


# Worker Versioning (when the worker has a deployment version): PINNED, and every
# continue-as-new starts its successor on the deployment's current build. One run lives one
# billing period, so an engagement meets a new build (or a rollback) at its next period
# boundary, never in the middle of a run's history; an engagement can run for years, so it is
# never pinned to one build for its life. Why not AUTO_UPGRADE: it would move every open run
# to the new build at its next workflow task, mid-period, making every deploy a replay of
# month-old histories on new code. PINNED is the versioned worker's default behaviour
# (q2c.worker.deployment_config), not declared here: a server refuses a behaviour from an
# unversioned worker, and `make up` and the tests run unversioned. See CONTRIBUTING.md.
@workflow.defn
class EngagementWorkflow:
    @workflow.init
    def __init__(self, input: EngagementInput) -> None:
        if input.state is not None:
            self._status = input.state
            self._status.runs += 1
        else:
            self._status = EngagementStatus(
                opportunity_id=input.opportunity_id,
                stage=EngagementStage.RECEIVED,
                details=f"Closed-won event received (source: {input.source})",
            )
        self._input = input
        self._recheck: RecheckInput | None = None
        self._steps = Steps(self._status)
        self._provisioning = Provisioning(self._status, self._steps, self._recheck_requested, self._take_recheck)
        self._delivery = Delivery(self._status, input.delivery, self._steps)
        # CRM notifications are coalesced: a burst of redeliveries reads the CRM once
        self._crm_signals = 0
        self._crm_read_upto = 0

    # --- queries, signals --------------------------------------------------------------
    @workflow.query(name="status")
    def status(self, _: StatusQueryInput | None = None) -> EngagementStatus:
        return self._status

    @workflow.signal(name="recheck")
    def recheck(self, input: RecheckInput) -> None:
        """A steward fixed the source system: read it again and re-validate."""
        self._recheck = input

    @workflow.signal(name="crm_changed")
    async def crm_changed(self, input: CrmChangedInput) -> None:
        """The CRM notified a change: a waiting engagement re-checks; an active one reads the
        opportunity and takes what changed as a change order through amend_contract's rules.
        Idempotent: an unchanged or redelivered message changes nothing (one CRM read)."""
        st = self._status
        if (
            st.stage is EngagementStage.AWAITING_STEWARD
            and st.pause is not None
            and st.pause.action is StewardAction.RECHECK
        ):
            self._recheck = RecheckInput(requested_by="crm", note=f"CRM changed ({input.source})")
            return
        if (
            st.active_since is None
            or st.collecting_since is not None
            or st.stage in (EngagementStage.CLOSED, EngagementStage.CANCELLED)
        ):
            return  # setup reads the CRM anyway; after the end date the contract no longer changes
        # (parked on a failed step: the door is held until the steward's retry, then this runs)
        self._crm_signals += 1
        mine = self._crm_signals
        async with self._steps.door:
            if self._crm_read_upto >= mine or st.stage is not EngagementStage.ACTIVE:
                return  # a read made after this notification arrived has already seen it
            self._crm_read_upto = self._crm_signals
            fresh = await self._steps.call(
                EngagementActivities.fetch_engagement,
                FetchEngagementInput(opportunity_id=st.opportunity_id),
                "CRM: read the amended opportunity (change order)",
                system="crm",
                operation="read opportunity",
            )
            amendment = amendment_from_crm(st.engagement, fresh)
            if amendment is None:
                return
            issues = self._amendment_issues(amendment)
            st.crm_change_issues = issues
            if issues:
                set_details(st, "CRM change order refused: " + "; ".join(f"{i.field}: {i.reason}" for i in issues))
                return
            version = await self._delivery.amend(amendment)
            set_details(st, f"Contract version {version.version} from the CRM applied")

    # --- updates: a validator for the early answer, the door for the real one ------------
    @workflow.update(name="retry")
    async def retry(self, input: RetryInput) -> str:
        """The cause of a parked step was fixed in the named system: run the step again."""
        pause = self._status.pause
        self._steps.retry(input)
        self._applied()
        return f"retrying {pause.system if pause else ''} {pause.operation if pause else ''}".strip()

    @retry.validator
    def _validate_retry(self, input: RetryInput) -> None:
        self._once()
        reject(self._steps.retry_issues())

    @workflow.update(name="accept_milestone")
    async def accept_milestone(self, input: AcceptMilestoneInput) -> InvoiceSummary | None:
        """The client accepted a fixed-fee milestone: invoice it, once."""
        async with self._steps.door:
            reject(self._delivery.milestone_issues(input.milestone_key))
            result = await self._delivery.accept_milestone(input)
            self._applied()
            return result

    @accept_milestone.validator
    def _validate_accept_milestone(self, input: AcceptMilestoneInput) -> None:
        self._once()
        self._require_unparked("accept a milestone", allow=PauseKind.MILESTONES_NOT_INVOICED)
        reject(self._delivery.milestone_issues(input.milestone_key))

    @workflow.update(name="waive_milestone")
    async def waive_milestone(self, input: WaiveMilestoneInput) -> str:
        """The PMO decided a milestone will not be invoiced (recorded with who and why)."""
        async with self._steps.door:
            reject(self._waive_issues(input))
            self._applied()
            return self._delivery.waive_milestone(input)

    @waive_milestone.validator
    def _validate_waive(self, input: WaiveMilestoneInput) -> None:
        self._once()
        self._require_unparked("waive a milestone", allow=PauseKind.MILESTONES_NOT_INVOICED)
        reject(self._waive_issues(input))

    def _waive_issues(self, input: WaiveMilestoneInput) -> list[FieldIssue]:
        issues = self._delivery.milestone_issues(input.milestone_key)
        if not input.reason.strip():
            issues.append(FieldIssue(field="reason", reason="say why the milestone is waived"))
        return issues

    @workflow.update(name="replay_exceptions")
    async def replay_exceptions(self, input: ReplayExceptionsInput) -> PostingResult:
        """Post parked time entries again after their cause was fixed (posted at most once)."""
        async with self._steps.door:
            reject(self._exception_issues(input.psa_ids))
            result = await self._delivery.replay(input)
            self._applied()
            return result

    @replay_exceptions.validator
    def _validate_replay(self, input: ReplayExceptionsInput) -> None:
        self._once()
        self._require_unparked("replay time exceptions", allow=PauseKind.TIME_EXCEPTIONS_OPEN)
        reject(self._exception_issues(input.psa_ids))

    @workflow.update(name="write_off_exceptions")
    async def write_off_exceptions(self, input: WriteOffInput) -> WriteOffResult:
        """Parked time that will never be billed: closed in the ledger with who decided and why."""
        async with self._steps.door:
            reject(self._write_off_issues(input))
            result = await self._delivery.write_off(input)
            self._applied()
            return result

    @write_off_exceptions.validator
    def _validate_write_off(self, input: WriteOffInput) -> None:
        self._once()
        self._require_unparked("write off time exceptions", allow=PauseKind.TIME_EXCEPTIONS_OPEN)
        reject(self._write_off_issues(input))

    def _write_off_issues(self, input: WriteOffInput) -> list[FieldIssue]:
        issues = self._exception_issues(input.psa_ids)
        if not input.reason.strip():
            issues.append(FieldIssue(field="reason", reason="say why this time will never be billed"))
        return issues

    def _exception_issues(self, psa_ids: list[str]) -> list[FieldIssue]:
        st = self._status
        if st.engagement is None or st.active_since is None:
            return [FieldIssue(field="stage", reason=f"the engagement is {st.stage.value}: it has no posted time")]
        if st.stage in (EngagementStage.CLOSED, EngagementStage.CANCELLED):
            return [FieldIssue(field="stage", reason=f"the engagement is {st.stage.value}")]
        if st.open_exception_count <= len(st.open_exceptions):  # the sample is the whole list: check ids here
            known = {x.psa_id for x in st.open_exceptions}
            unknown = [i for i in psa_ids if i not in known]
            if unknown:
                return [
                    FieldIssue(
                        field="psa_ids", reason=f"{', '.join(unknown[:20])} not open exceptions of this engagement"
                    )
                ]
        if not st.open_exception_count:
            return [FieldIssue(field="psa_ids", reason="this engagement has no open time exceptions")]
        return []

    @workflow.update(name="provide_customer_data")
    async def provide_customer_data(self, patch: CustomerPatch) -> str:
        """A steward supplies customer-master fields: written back to the CRM account, then the
        engagement re-validates and resumes."""
        async with self._steps.door:
            reject(self._customer_data_issues(patch))
            given = patch.model_dump(exclude={"provided_by"}, exclude_none=True)
            customer = self._status.engagement.customer
            # a CRM refusal fails this Update (the steward sees the CRM's message), not the engagement
            await workflow.execute_activity_method(
                EngagementActivities.write_customer_to_crm,
                WriteCustomerInput(account_id=customer.crm_account_id, patch=given),
                start_to_close_timeout=VENDOR_TIMEOUT,
                heartbeat_timeout=VENDOR_HEARTBEAT,
                retry_policy=VENDOR_RETRY,
                summary=f"CRM: write {', '.join(sorted(given))} to account {customer.crm_account_id} "
                f"(from {patch.provided_by})",
            )
            self._status.engagement.customer = apply_customer_patch(customer, given)
            self._recheck = RecheckInput(requested_by=patch.provided_by, note=f"provided {', '.join(sorted(given))}")
            self._applied()
            return f"accepted {', '.join(sorted(given))}; re-validating"

    @provide_customer_data.validator
    def _validate_customer_data(self, patch: CustomerPatch) -> None:
        self._once()
        reject(self._customer_data_issues(patch))

    def _customer_data_issues(self, patch: CustomerPatch) -> list[FieldIssue]:
        pause = self._status.pause
        if self._status.stage is not EngagementStage.AWAITING_STEWARD or pause is None:
            return [
                FieldIssue(
                    field="stage", reason=f"the engagement is {self._status.stage.value}, not waiting for customer data"
                )
            ]
        if pause.action is not StewardAction.RECHECK or self._status.engagement is None:
            return [
                FieldIssue(
                    field="stage",
                    reason=f"the engagement waits for {pause.queue.value} ({pause.kind.value}), not for customer data",
                )
            ]
        return validate_customer_patch(
            patch.model_dump(exclude={"provided_by"}), self._status.engagement.customer, self._provisioning.subsidiaries
        )

    @workflow.update(name="amend_contract")
    async def amend_contract(self, amendment: Amendment) -> ContractVersion:
        """A change order: applied to the ERP and PSA; the contract is versioned."""
        async with self._steps.door:
            if self._status.stage is not EngagementStage.ACTIVE:
                reject_one("stage", f"only an Active engagement can be amended (it is {self._status.stage.value})")
            reject(self._amendment_issues(amendment))
            version = await self._delivery.amend(amendment)
            self._applied()
            return version

    @amend_contract.validator
    def _validate_amendment(self, amendment: Amendment) -> None:
        self._once()
        if self._status.stage is not EngagementStage.ACTIVE:
            reject_one("stage", f"only an Active engagement can be amended (it is {self._status.stage.value})")
        reject(self._amendment_issues(amendment))

    def _amendment_issues(self, amendment: Amendment) -> list[FieldIssue]:
        st = self._status
        ends = [i.period_end for i in st.invoices]
        closed = self._delivery.closed_through()
        if closed is not None:
            ends.append(closed)
        return validate_amendment(
            amendment,
            st.engagement,
            billed=st.totals.billed,
            last_invoiced_period_end=max(ends) if ends else None,
            last_posted_date=st.last_posted_date,
        )

    @workflow.update(name="credit_invoice")
    async def credit_invoice(self, input: CreditInvoiceInput) -> CreditNoteSummary:
        """A steward credits all or part of an issued invoice (NetSuite corrects an issued
        invoice with a credit memo applied to it, never by editing it). The memo's external ID
        comes from this Update's ID, so the same request retried, redelivered or sent again
        after continue-as-new credits once. An ERP refusal fails this Update with the ERP's
        message (nothing was credited), not the engagement."""
        async with self._steps.door:
            reject(self._credit_issues(input))
            st = self._status
            inv = st.invoice_named(input.invoice.strip())
            info = workflow.current_update_info()
            external_id = credit_memo_external_id(info.id if info else str(workflow.uuid4()))
            done = next((c for c in st.credit_notes if c.external_id == external_id), None)
            if done is not None:
                return done
            try:
                result = await self._credit_in_erp(input, inv, external_id)
            except ActivityError as err:
                cause = err.cause
                message = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
                reject_one("amount" if "amount" in message.lower() else "erp", f"the ERP refused: {message[:500]}")
            note = result.note
            take_payment_statuses(st.invoices, result.statuses)
            inv.credited += note.amount
            st.totals.credited += note.amount
            st.totals.collected = sum((i.amount_paid for i in st.invoices), Decimal(0))
            st.credit_notes.append(note)
            if st.budget is not None:
                st.budget.consumed = st.totals.net_billed
            st.pending_rebill += rebill_lines(input, note, inv.currency)
            set_details(
                st,
                f"Credit memo {note.number or note.external_id}: {note.amount} {note.currency} on invoice "
                f"{inv.number or inv.external_id} ({note.reason})",
            )
            self._applied()
            return note

    async def _credit_in_erp(self, input: CreditInvoiceInput, inv: InvoiceSummary, external_id: str):
        st = self._status
        return await workflow.execute_activity_method(
            DeliveryActivities.credit_invoice,
            CreditMemoActivityInput(
                opportunity_id=st.opportunity_id,
                external_id=external_id,
                invoice_external_id=inv.external_id,
                invoice_erp_id=inv.erp_id,
                invoice_number=inv.number,
                erp_customer_id=st.erp_customer_id,
                erp_project_id=st.erp_project_id,
                amount=input.amount,
                currency=inv.currency,
                reason=input.reason.strip(),
                requested_by=input.requested_by,
                credited_on=self._delivery.calendar_today(),
                invoice_erp_ids=[i.erp_id for i in st.invoices if i.erp_id],
            ),
            start_to_close_timeout=VENDOR_TIMEOUT,
            heartbeat_timeout=VENDOR_HEARTBEAT,
            retry_policy=VENDOR_RETRY,
            summary=f"ERP: credit memo of {input.amount} {inv.currency} on invoice {inv.number or inv.external_id} "
            f"(by {input.requested_by}); net totals to the CRM",
        )

    @credit_invoice.validator
    def _validate_credit(self, input: CreditInvoiceInput) -> None:
        self._once()
        self._require_unparked("credit an invoice")
        reject(self._credit_issues(input))

    def _credit_issues(self, input: CreditInvoiceInput) -> list[FieldIssue]:
        """Judged on the state found (the validator's, then again inside the door): the invoice
        is this engagement's and issued, the amount positive and within what it still owes."""
        issues: list[FieldIssue] = []
        inv = self._status.invoice_named(input.invoice.strip())
        if inv is None:
            issues.append(
                FieldIssue(field="invoice", reason=f"{input.invoice[:100]} is not an invoice of this engagement")
            )
        elif not inv.erp_id:
            issues.append(
                FieldIssue(field="invoice", reason=f"invoice {inv.external_id} has not been issued in the ERP")
            )
        if input.amount <= 0:
            issues.append(FieldIssue(field="amount", reason="the amount to credit must be greater than 0"))
        elif inv is not None and input.amount > inv.open_balance:
            issues.append(
                FieldIssue(
                    field="amount",
                    reason=f"{input.amount} exceeds what invoice {inv.number or inv.external_id} still owes "
                    f"({inv.open_balance} {inv.currency} of {inv.total}, {inv.credited} credited, "
                    f"{inv.amount_paid} paid)",
                )
            )
        elif inv is not None and input.amount.as_tuple().exponent < -2:
            issues.append(FieldIssue(field="amount", reason="at most 2 decimal places"))
        if not input.reason.strip():
            issues.append(FieldIssue(field="reason", reason="say why the invoice is credited"))
        if inv is not None:
            issues += rebill_issues(input, inv.currency)
        return issues

    @workflow.update(name="decide_budget_hold")
    async def decide_budget_hold(self, input: BudgetHoldDecisionInput) -> BudgetHoldDecisionResult:
        """The PMO's decision on time held at the not-to-exceed cap: release (bill it now,
        beyond the cap) or write off (never bill it). Recorded with who and why. (Raising the
        cap is a change order: amend_contract with budget_cap or contract_value.)"""
        async with self._steps.door:
            reject(self._delivery.budget_issues(input))
            info = workflow.current_update_info()
            result = await self._delivery.decide_budget_hold(input, info.id if info else str(workflow.uuid4()))
            self._applied()
            return result

    @decide_budget_hold.validator
    def _validate_budget_decision(self, input: BudgetHoldDecisionInput) -> None:
        self._once()
        self._require_unparked("decide on held time", allow=PauseKind.BUDGET_HELD)
        reject(self._delivery.budget_issues(input))

    @workflow.update(name="cancel")
    async def cancel(self, input: CancelInput) -> str:
        """Stop future billing, invoice the work done, then close as usual (ending Cancelled)."""
        async with self._steps.door:
            reject(self._cancel_issues(input))
            self._status.cancelled = input
            if self._status.active_since is not None:
                self._status.close_requested = CloseInput(
                    requested_by=input.requested_by, reason=f"cancelled: {input.reason}"
                )
            self._applied()
            return f"cancellation by {input.requested_by} accepted: {input.reason}"

    @cancel.validator
    def _validate_cancel(self, input: CancelInput) -> None:
        self._once()
        reject(self._cancel_issues(input))

    def _cancel_issues(self, input: CancelInput) -> list[FieldIssue]:
        st = self._status
        if not input.reason.strip():
            return [FieldIssue(field="reason", reason="say why the engagement is cancelled")]
        if st.cancelled is not None:
            return [FieldIssue(field="stage", reason="the engagement is already being cancelled")]
        if (
            st.active_since is not None
            and st.stage is EngagementStage.AWAITING_STEWARD
            and st.pause is not None
            and st.pause.action is StewardAction.RETRY
        ):
            return [
                FieldIssue(
                    field="stage",
                    reason=f"a step is parked ({st.pause.message[:200]}): fix it and retry first, then cancel",
                )
            ]
        if st.stage not in (EngagementStage.ACTIVE, EngagementStage.AWAITING_STEWARD):
            return [FieldIssue(field="stage", reason=f"an engagement that is {st.stage.value} cannot be cancelled")]
        return []

    @workflow.update(name="request_close")
    async def request_close(self, input: CloseInput) -> str:
        """Close now: post remaining time, issue the final invoice, collect, close the projects."""
        async with self._steps.door:
            if self._status.stage is not EngagementStage.ACTIVE:
                reject_one("stage", f"only an Active engagement can be closed (it is {self._status.stage.value})")
            self._status.close_requested = input
            self._applied()
            return f"closing requested by {input.requested_by}: {input.reason}"

    @request_close.validator
    def _validate_close(self, input: CloseInput) -> None:
        self._once()
        if self._status.stage is not EngagementStage.ACTIVE:
            reject_one("stage", f"only an Active engagement can be closed (it is {self._status.stage.value})")
        if not input.reason.strip():
            reject_one("reason", "say why the engagement is closing")

    def _once(self) -> None:
        """Temporal answers a repeated update ID within a run with the first result; across
        continue-as-new it cannot know it, so the engagement remembers the latest IDs itself."""
        info = workflow.current_update_info()
        if info is not None and info.id in self._status.recent_update_ids:
            reject_one("update_id", f"request {info.id} was already applied to this engagement")

    def _applied(self) -> None:
        info = workflow.current_update_info()
        if info is not None:
            ids = self._status.recent_update_ids
            ids.append(info.id)
            del ids[:-RECENT_UPDATE_IDS]

    def _require_unparked(self, what: str, allow: PauseKind | None = None) -> None:
        """Delivery changes need a delivering engagement; while a step is parked, the steward's
        answer to the pause comes first (except the pause this action resolves)."""
        st = self._status
        if st.engagement is None or st.active_since is None:
            reject_one("stage", f"cannot {what} while the engagement is {st.stage.value}")
        if st.stage is EngagementStage.AWAITING_STEWARD and st.pause is not None and st.pause.kind is not allow:
            reject_one(
                "stage",
                f"cannot {what} while the engagement is parked ({st.pause.kind.value}: "
                f"{st.pause.message[:200]}); {st.pause.action.value} first",
            )
        if st.stage not in DELIVERY_STAGES and st.stage is not EngagementStage.AWAITING_STEWARD:
            reject_one("stage", f"cannot {what} while the engagement is {st.stage.value}")

    # --- main -------------------------------------------------------------------------
    @workflow.run
    async def run(self, input: EngagementInput) -> EngagementSummary:
        if self._status.active_since is None:
            try:
                await self._provisioning.run(input.opportunity_id)
            except (EngagementCancelled, Abandoned) as cancelled:
                return await self._finish(await self._cancelled_before_active(str(cancelled)))
            set_stage(
                self._status,
                EngagementStage.ACTIVE,
                f"Active: ERP project {self._status.erp_project_id}, "
                f"PSA workspace {self._status.psa_workspace.workspace_id}",
            )
            self._status.active_since = workflow.now()
            self._delivery.record_version("contract as closed-won", "crm")
            self._delivery.budget()  # T&M: the not-to-exceed position from day one
        if self._status.collecting_since is None and await self._delivery.run_periods():
            await self._continue_as_new()
        return await self._finish(await self._delivery.collect_and_close())

    async def _finish(self, summary: EngagementSummary) -> EngagementSummary:
        """No Update is left half-done when the engagement completes."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        return summary

    async def _cancelled_before_active(self, reason: str) -> EngagementSummary:
        """Cancelled during setup: close whatever was provisioned, and tell the CRM what was."""
        st = self._status
        closed: list[str] = []
        workspace_id = st.psa_workspace.workspace_id if st.psa_workspace else None
        if workspace_id is None and st.erp_project_id:
            # the PSA step may have failed after creating the workspace: find it by its reference
            workspace_id = await self._steps.call(
                EngagementActivities.find_psa_workspace,
                FetchEngagementInput(opportunity_id=st.opportunity_id),
                "PSA: find a workspace made for this opportunity (cancelled during setup)",
                system="psa",
                operation="find workspace",
            )
        ids = CloseSystemsInput(
            opportunity_id=st.opportunity_id, erp_project_id=st.erp_project_id, psa_workspace_id=workspace_id
        )
        closed += await self._delivery.close_projects(ids, " (cancelled during setup)")
        if st.erp_project_id:
            closed[0] += (
                f" (its billing schedule {st.erp_billing_schedule_id or '-'} bills nothing on a closed project)"
            )
        if st.erp_customer_id:
            closed.append(f"ERP customer {st.erp_customer_id} kept (customer master, shared by its engagements)")
        what = "; ".join(closed) if closed else "nothing was provisioned"
        await self._steps.call(
            EngagementActivities.write_back_crm,
            WriteBackInput(
                opportunity_id=st.opportunity_id,
                erp_customer_id=st.erp_customer_id,
                erp_project_id=st.erp_project_id,
                psa_workspace_id=workspace_id,
                status=EngagementStage.CANCELLED.value,
            ),
            f"CRM: status Cancelled; {what}",
            system="crm",
            operation="write status",
        )
        st.pause = None
        set_stage(st, EngagementStage.CANCELLED, f"Cancelled during setup ({reason}): {what}")
        return self._delivery.summary()

    async def _continue_as_new(self) -> None:
        """The period boundary: the next run starts with the state, on the current build."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            EngagementInput(
                opportunity_id=self._input.opportunity_id,
                source=self._input.source,
                delivery=self._input.delivery,
                state=self._status,
            ),
            initial_versioning_behavior=continue_as_new_versioning(),
        )

    # --- steward plumbing -------------------------------------------------------------
    def _recheck_requested(self) -> bool:
        return self._recheck is not None

    def _take_recheck(self) -> RecheckInput | None:
        taken, self._recheck = self._recheck, None
        return taken
