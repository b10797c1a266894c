"""Delivery to cash inside EngagementWorkflow: billing periods, time posting, invoices,
payments and closure. Deterministic code only; every call is an activity.

One run of the workflow covers one billing period: at the period's end the approved time is
posted (one batched activity), the period is invoiced by its billing model, payments are
refreshed, and the workflow continues as new with its state, so a years-long engagement's
history stays small.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from q2c.delivery.activities import DeliveryActivities
    from q2c.delivery.expenses import ExpenseActivities, PostExpensesInput
    from q2c.delivery.inputs import (
        CloseSystemsInput,
        IssueInvoiceInput,
        PostTimeInput,
        RefreshPaymentsInput,
        WriteOffExceptionsInput,
        WriteOffHeldInput,
    )
    from q2c.domain.billing import BillingPeriod, billing_periods, line_amount
    from q2c.domain.budget import (
        DECISIONS_KEPT,
        WARNINGS_KEPT,
        BudgetDecision,
        BudgetState,
        BudgetWarning,
        budget_cap,
        crossed,
        keep_latest,
    )
    from q2c.domain.delivery import InvoiceLine, InvoiceStatus
    from q2c.domain.engagement import BillingModel, Engagement
    from q2c.domain.expenses import ExpensePolicy, exception_key
    from q2c.domain.stage import EngagementStage
    from q2c.domain.stewardship import apply_amendment
    from q2c.domain.validation import FieldIssue
    from q2c.engagement.messages import (
        OPEN_EXCEPTION_SAMPLE,
        AcceptMilestoneInput,
        Amendment,
        BudgetHoldDecisionInput,
        BudgetHoldDecisionResult,
        ContractVersion,
        DeliveryConfig,
        EngagementInput,
        EngagementStatus,
        EngagementSummary,
        InvoiceSummary,
        PauseKind,
        PauseReason,
        PostingResult,
        ReplayExceptionsInput,
        StewardAction,
        StewardQueue,
        WaiveMilestoneInput,
        WriteOffInput,
        WriteOffResult,
        take_payment_statuses,
    )
    from q2c.engagement.steps import Steps
    from q2c.engagement.visibility import set_budget_status, set_details, set_open_exceptions, set_stage
    from q2c.provisioning.activities import EngagementActivities
    from q2c.provisioning.inputs import ApplyAmendmentInput

POSTING_TIMEOUT = timedelta(minutes=30)
POSTING_HEARTBEAT = timedelta(minutes=2)
COLLECTING_HISTORY_LIMIT = 1500
FAR_FUTURE = date(9999, 12, 31)
DEMO_MONTH_DAYS = 30
# workflow.patched IDs (see CONTRIBUTING.md, "Changing workflow code"): each one names a change
# that runs only in executions started on code that has it; histories recorded before it replay
# without it. Retire one only when no open engagement can still replay a run without its marker.
PERIOD_MEMO_PATCH = "period-memo"  # 0.1.0+: the memo says the billing period and when it closes
# 0.2.0: T&M not-to-exceed (warnings, time held at the cap, decisions), re-billed lines after a
# credit note. A run recorded before it bills as it did; its successor (continue-as-new) adopts it.
BUDGET_PATCH = "budget-control"
# 0.2.0: approved PSA expenses posted to the ERP at each period close and at the final posting
EXPENSES_PATCH = "expenses"


def merge_postings(results: list[PostingResult]) -> PostingResult:
    """One answer for a replay of time and expenses: counts added, the queue as the last saw it."""
    if len(results) == 1:
        return results[0]
    out = results[-1].model_copy(deep=True)
    first = results[0]
    out.examined += first.examined
    out.posted += first.posted
    out.posted_minutes += first.posted_minutes
    out.exceptions_count += first.exceptions_count
    out.exceptions = (first.exceptions + out.exceptions)[:OPEN_EXCEPTION_SAMPLE]
    out.resolved_count += first.resolved_count
    out.resolved = (first.resolved + out.resolved)[:OPEN_EXCEPTION_SAMPLE]
    out.not_open = sorted(set(first.not_open) | set(out.not_open))[:OPEN_EXCEPTION_SAMPLE]
    out.total_entries, out.total_minutes = first.total_entries, first.total_minutes
    return out


def continue_as_new_versioning():
    """Worker Versioning: a run is pinned to the build that started it; its successor starts on
    the deployment's current build (a rollout, or a rollback), so an engagement moves to new
    code at its period boundary. Unversioned workers (no deployment version): the default."""
    if workflow.info().get_current_deployment_version() is None:
        return None
    return workflow.ContinueAsNewVersioningBehavior.AUTO_UPGRADE


class Delivery:
    """Delivery to cash. Every state-changing step runs inside `steps.door` (its callers take
    it: the period close here, the Updates and the CRM signal in EngagementWorkflow), so the
    methods below assume they hold it and never take it themselves."""

    def __init__(self, status: EngagementStatus, config: DeliveryConfig, steps: Steps) -> None:
        self.status = status
        self.config = config
        self.steps = steps
        self._calendar_changed = False

    @property
    def engagement(self) -> Engagement:
        assert self.status.engagement is not None
        return self.status.engagement

    @property
    def opp(self) -> str:
        return self.status.opportunity_id

    # --- calendar ---------------------------------------------------------------------
    def periods(self) -> list[BillingPeriod]:
        """The billing periods as the contract stands now (recomputed after every wait and
        every amendment: an end date moved in the last period moves the last period)."""
        e = self.engagement
        return billing_periods(e.start_date, e.end_date)

    def current_period(self) -> BillingPeriod | None:
        """The next period to close, or None when the contract has no more (or closing was asked)."""
        if self.status.close_requested:
            return None
        periods = self.periods()
        index = self.status.next_period_index
        return periods[index] if index < len(periods) else None

    def fire_time(self, period: BillingPeriod) -> datetime:
        """When a period closes: midnight UTC after its last day, or on the demo's fast calendar."""
        if self.config.period_seconds:
            assert self.status.active_since is not None
            return self.status.active_since + timedelta(seconds=self.config.period_seconds * (period.index + 1))
        return datetime.combine(period.end + timedelta(days=1), time(0), tzinfo=UTC)

    def grace(self) -> timedelta:
        if self.config.period_seconds:
            return timedelta(seconds=self.config.period_seconds * self.config.grace_days / DEMO_MONTH_DAYS)
        return timedelta(days=self.config.grace_days)

    def calendar_today(self) -> date:
        """Today on the engagement's calendar (the demo's fast calendar maps to period ends)."""
        if not self.config.period_seconds:
            return workflow.now().date()
        periods = self.periods()
        closed = min(self.status.next_period_index, len(periods))
        return periods[closed - 1].end if closed > 0 else self.engagement.start_date

    def closed_through(self) -> date | None:
        """The end of the last billing period closed (posted and invoiced by its model)."""
        index = self.status.next_period_index
        if index <= 0:
            return None
        periods = self.periods()
        if index - 1 < len(periods):
            return periods[index - 1].end
        return self.engagement.end_date

    def contract_changed(self) -> None:
        """An amendment was applied: whoever waits on the calendar looks again."""
        self._calendar_changed = True

    # --- main loop --------------------------------------------------------------------
    async def run_periods(self) -> bool:
        """Wait for the current period's end and close it. True: continue as new afterwards;
        False: the engagement is past its end date or closing was requested."""
        while True:
            period = self.current_period()
            if period is None:
                return False
            if workflow.now() < self.fire_time(period):
                await self._wait_for_period_end(period)
                continue  # the contract may have moved the period: look again
            async with self.steps.door:
                period = self.current_period()  # again, inside the door: an amendment may have queued first
                if period is None:
                    return False
                if workflow.now() < self.fire_time(period):
                    continue
                await self._close_period(period)
                self.status.next_period_index = period.index + 1
            return self.current_period() is not None

    async def _wait_for_period_end(self, period: BillingPeriod) -> None:
        fire_at = self.fire_time(period)
        set_details(
            self.status, f"Delivering: billing period {period.start} to {period.end} closes at {fire_at.isoformat()}"
        )
        if workflow.patched(PERIOD_MEMO_PATCH):
            self._publish_period(period, fire_at)
        self._calendar_changed = False
        await self._wait_polling_payments(
            fire_at,
            f"billing period {period.start:%Y-%m} ends",
            wake=lambda: self.status.close_requested is not None or self._calendar_changed,
        )

    def _publish_period(self, period: BillingPeriod, fire_at: datetime) -> None:
        """The billing period in progress, when it closes and the contract version, in the
        memo: the Temporal UI's list, `describe` and visibility listings show them for every
        engagement at once, with no query (a query needs a running worker and one call per
        engagement). Upserted when a wait begins: once a period, again after a change order."""
        st = self.status
        workflow.upsert_memo(
            {
                "billing_period": f"{period.start} to {period.end}",
                "period_index": period.index,
                "period_closes_at": fire_at.isoformat(),
                "contract_version": st.contract_version,
            }
        )

    async def _wait_polling_payments(self, until: datetime, summary: str, wake) -> None:
        """Sleep until `until` (or `wake()`), reading payments on the poll interval meanwhile."""
        next_poll = workflow.now() + timedelta(seconds=self.config.payment_poll_seconds)
        while not wake():
            now = workflow.now()
            if now >= until:
                return
            polling = bool(self._open_invoices())
            deadline = min(until, next_poll) if polling else until
            try:
                await workflow.wait_condition(
                    wake,
                    timeout=deadline - now,
                    timeout_summary=("payment check" if polling and next_poll < until else summary),
                )
            except TimeoutError:
                pass
            if polling and workflow.now() >= next_poll:
                async with self.steps.door:
                    await self.refresh_payments()
                next_poll = workflow.now() + timedelta(seconds=self.config.payment_poll_seconds)

    async def _close_period(self, period: BillingPeriod) -> None:
        e = self.engagement
        set_details(self.status, f"Closing billing period {period.start} to {period.end}: posting approved time")
        await self.post_time(through=period.end)
        if workflow.patched(EXPENSES_PATCH):
            await self.post_expenses(through=period.end)
        set_details(self.status, f"Closing billing period {period.start} to {period.end}: invoicing")
        if e.billing_model is BillingModel.TIME_AND_MATERIALS:
            await self.issue(f"inv-{self.opp}-p{period.index:03d}", period.start, period.end, bill_time=True)
        elif e.billing_model is BillingModel.RETAINER:
            await self.issue(
                f"inv-{self.opp}-p{period.index:03d}", period.start, period.end, lines=[self._retainer_line(period)]
            )
        if self._open_invoices():
            await self.refresh_payments()

    def _retainer_line(self, period: BillingPeriod) -> InvoiceLine:
        amount = self.engagement.retainer_amount or Decimal(0)
        return InvoiceLine(
            description=f"Retainer {period.start:%b %Y}",
            quantity=Decimal(1),
            rate=amount,
            amount=line_amount(Decimal(1), amount, self.engagement.currency),
        )

    # --- time -------------------------------------------------------------------------
    async def post_time(
        self, *, through: date, only: list[str] | None = None, replay_open: bool = False
    ) -> PostingResult:
        e = self.engagement
        st = self.status
        what = (
            "replay of every open exception"
            if replay_open
            else f"replay of {len(only)} entries"
            if only is not None
            else None
        )
        result: PostingResult = await self.steps.call(
            DeliveryActivities.post_approved_time,
            PostTimeInput(
                opportunity_id=self.opp,
                workflow_id=workflow.info().workflow_id,
                erp_project_id=st.erp_project_id,
                psa_workspace_id=st.psa_workspace.workspace_id,
                through=through,
                rate_card=e.rate_card,
                bill_time=e.billing_model is BillingModel.TIME_AND_MATERIALS,
                currency=e.currency,
                only_psa_ids=only,
                replay_open=replay_open,
                batch_size=self.config.posting_batch_size,
            ),
            "PSA->ERP: post approved time" + (f" ({what})" if what else "") + f" dated up to {through}",
            system="erp",
            operation="post time",
            timeout=POSTING_TIMEOUT,
            heartbeat=POSTING_HEARTBEAT,
        )
        if result.total_entries is not None:
            st.totals.posted_entries, st.totals.posted_minutes = result.total_entries, result.total_minutes or 0
        if result.last_date and (st.last_posted_date is None or result.last_date > st.last_posted_date):
            st.last_posted_date = result.last_date
        self._apply_open_summary(result)
        if result.posted and st.collecting_since is not None and e.billing_model is BillingModel.TIME_AND_MATERIALS:
            st.unbilled_after_final = True
        return result

    def _apply_open_summary(self, result: PostingResult) -> None:
        if result.open_count is None:
            return
        st = self.status
        st.open_exception_count = result.open_count
        st.open_exceptions_by_reason = dict(result.open_by_reason)
        st.open_exceptions = list(result.open_sample)
        set_open_exceptions(result.open_count)

    async def replay(self, input: ReplayExceptionsInput) -> PostingResult:
        if not workflow.patched(EXPENSES_PATCH):
            if input.psa_ids:
                return await self.post_time(through=FAR_FUTURE, only=list(input.psa_ids))
            return await self.post_time(through=FAR_FUTURE, replay_open=True)
        # time and expenses share the exception queue; expenses are `expense:<id>`
        prefix = exception_key("")
        expense_ids = [i for i in input.psa_ids if i.startswith(prefix)]
        time_ids = [i for i in input.psa_ids if not i.startswith(prefix)]
        results: list[PostingResult] = []
        if not input.psa_ids or time_ids:
            results.append(
                await self.post_time(through=FAR_FUTURE, only=time_ids or None, replay_open=not input.psa_ids)
            )
        if not input.psa_ids or expense_ids:
            results.append(
                await self.post_expenses(through=FAR_FUTURE, only=expense_ids or None, replay_open=not input.psa_ids)
            )
        return merge_postings(results)

    # --- expenses ---------------------------------------------------------------------
    def expense_policy(self) -> ExpensePolicy:
        """The contract's expense terms: billable to the client (T&M unless the CRM says
        otherwise; fixed fee and retainer only when it says so), at cost plus its markup."""
        e = self.engagement
        return ExpensePolicy(billable=e.bills_expenses, markup_percent=e.expense_markup_percent)

    async def post_expenses(
        self, *, through: date, only: list[str] | None = None, replay_open: bool = False
    ) -> PostingResult:
        """Approved PSA expenses -> ERP expense reports (once, keyed exp-<PSA id>), converted to
        the engagement's currency at the ERP's rate for their date; parked ones join the queue."""
        e = self.engagement
        st = self.status
        what = "replay of open expense exceptions" if replay_open else f"replay of {len(only)}" if only else None
        result: PostingResult = await self.steps.call(
            ExpenseActivities.post_approved_expenses,
            PostExpensesInput(
                opportunity_id=self.opp,
                workflow_id=workflow.info().workflow_id,
                erp_project_id=st.erp_project_id,
                psa_workspace_id=st.psa_workspace.workspace_id,
                through=through,
                currency=e.currency,
                policy=self.expense_policy(),
                only_psa_ids=only,
                replay_open=replay_open,
                batch_size=self.config.posting_batch_size,
            ),
            "PSA->ERP: post approved expenses" + (f" ({what})" if what else "") + f" dated up to {through}",
            system="erp",
            operation="post expenses",
            timeout=POSTING_TIMEOUT,
            heartbeat=POSTING_HEARTBEAT,
        )
        st.totals.posted_expenses += result.posted
        self._apply_open_summary(result)
        if result.posted and st.collecting_since is not None and e.bills_expenses:
            st.unbilled_after_final = True
        return result

    async def write_off(self, input: WriteOffInput) -> WriteOffResult:
        result: PostingResult = await self.steps.call(
            DeliveryActivities.write_off_exceptions,
            WriteOffExceptionsInput(
                opportunity_id=self.opp,
                psa_ids=input.psa_ids,
                reason=input.reason.strip(),
                requested_by=input.requested_by,
            ),
            f"Ledger: write off {len(input.psa_ids) or 'every open'} time exception(s) "
            f"({input.requested_by}: {input.reason.strip()[:80]})",
            system="q2c",
            operation="write off time",
        )
        self._apply_open_summary(result)
        self.status.written_off_entries += result.written_off
        set_details(
            self.status,
            f"{result.written_off} time exception(s) written off by {input.requested_by}: {input.reason.strip()}",
        )
        return WriteOffResult(
            written_off=result.written_off,
            psa_ids=result.resolved,
            not_open=result.not_open,
            open_remaining=self.status.open_exception_count,
        )

    # --- invoices ---------------------------------------------------------------------
    async def issue(
        self,
        external_id: str,
        start: date,
        end: date,
        *,
        bill_time: bool = False,
        lines: list[InvoiceLine] | None = None,
    ) -> InvoiceSummary | None:
        """Issue one invoice (keyed by `external_id`, so a retry or replay finds it). It also
        carries any corrected lines a steward asked to re-bill after a credit note. On a T&M
        contract under budget control, time is billed only within the room left under the cap;
        the rest is held (see q2c/domain/budget.py)."""
        st = self.status
        existing = st.invoice(external_id)
        if existing is not None:
            return existing
        budget = self.budget() if bill_time else None
        rebill = list(st.pending_rebill)
        room = budget.room if budget is not None and self.config.budget.hold_at_cap else None
        summary: InvoiceSummary | None = await self.steps.call(
            DeliveryActivities.issue_invoice,
            IssueInvoiceInput(
                opportunity_id=self.opp,
                external_id=external_id,
                erp_customer_id=st.erp_customer_id,
                erp_project_id=st.erp_project_id,
                period_start=start,
                period_end=end,
                currency=self.engagement.currency,
                bill_unbilled_time=bill_time,
                lines=(lines or []) + rebill,
                bill_up_to=room,
                expense_policy=self.expense_policy(),
            ),
            f"ERP: invoice {external_id} ({start} to {end}); number and amount to the CRM"
            + (f" (within the {room} {self.engagement.currency} left under the cap)" if room is not None else ""),
            system="erp",
            operation=f"invoice {external_id}",
            timeout=POSTING_TIMEOUT,
            heartbeat=POSTING_HEARTBEAT,
        )
        invoiced = summary if summary is not None and summary.erp_id else None
        if invoiced is not None:
            st.invoices.append(invoiced)
            st.totals.billed += invoiced.total
            st.totals.currency = invoiced.currency
            if rebill:
                del st.pending_rebill[: len(rebill)]
        if budget is not None:
            await self._after_budgeted_invoice(budget, summary, end)
        return invoiced

    # --- budget control (T&M not-to-exceed) ---------------------------------------------
    def budget(self) -> BudgetState | None:
        """The engagement's budget position, started the first time it is needed on code that
        has budget control (an engagement recorded before it keeps billing as it did)."""
        st = self.status
        if st.budget is not None:
            return st.budget
        cap = budget_cap(self.engagement)
        if cap is None or not workflow.patched(BUDGET_PATCH):
            return None
        st.budget = BudgetState(cap=cap, currency=self.engagement.currency, consumed=st.totals.net_billed)
        return st.budget

    async def _after_budgeted_invoice(self, b: BudgetState, summary: InvoiceSummary | None, end: date) -> None:
        """Take the invoice's effect on the budget: consumed, held, thresholds reached. A new
        warning or a change in what is held is told to the CRM at once (with the totals)."""
        st = self.status
        held_before = b.held_amount
        b.consumed = st.totals.net_billed
        b.held_amount = summary.held_amount if summary is not None else Decimal(0)
        b.held_items = summary.held_items if summary is not None else 0
        b.held_through = end if b.held_amount > 0 else None
        reached = crossed(self.config.budget, b)
        for threshold in reached:
            b.warned.append(threshold)
            b.warnings.append(
                BudgetWarning(
                    threshold=threshold,
                    cap=b.cap,
                    consumed=b.consumed,
                    at=workflow.now(),
                    invoice=summary.external_id if summary is not None else None,
                )
            )
            workflow.metric_meter().create_counter(
                "q2c_budget_warnings", "T&M engagements reaching a not-to-exceed threshold"
            ).add(1, {"threshold": str(threshold)})
        keep_latest(b.warnings, WARNINGS_KEPT)
        if not reached and b.held_amount == held_before:
            return
        set_budget_status("held" if b.held_amount > 0 else "warning" if b.warned else "ok")
        if b.held_amount > 0:
            set_details(
                st,
                f"Budget: {b.held_amount} {b.currency} of approved time held at the not-to-exceed cap "
                f"({b.held_items} entries, through {end}): the PMO raises the cap by a change order, "
                "releases it or writes it off",
            )
        elif reached:
            set_details(st, f"Budget warning: {max(reached)}% of the not-to-exceed cap reached ({b.status_text()})")
        await self.refresh_payments(force=True)

    def budget_issues(self, input: BudgetHoldDecisionInput) -> list[FieldIssue]:
        b = self.status.budget
        issues: list[FieldIssue] = []
        if input.action not in ("release", "write_off"):
            issues.append(FieldIssue(field="action", reason=f"'{input.action[:40]}' is not release or write_off"))
        if b is None or b.held_amount <= 0:
            issues.append(FieldIssue(field="budget", reason="no time is held at the not-to-exceed cap"))
        if not input.reason.strip():
            issues.append(FieldIssue(field="reason", reason="say why (the decision is recorded with the engagement)"))
        return issues

    def _decided(self, action: str, amount: Decimal, items: int, by: str, reason: str) -> None:
        b = self.status.budget
        assert b is not None
        b.decisions.append(
            BudgetDecision(action=action, amount=amount, items=items, requested_by=by, reason=reason, at=workflow.now())
        )
        keep_latest(b.decisions, DECISIONS_KEPT)

    def _held_through(self, b: BudgetState) -> date:
        """The date the held time runs to: the invoice that held it, else the last period closed."""
        return b.held_through or self.closed_through() or self.calendar_today()

    async def bill_held(self, action: str, by: str, reason: str) -> InvoiceSummary | None:
        """Invoice the time held at the cap now (a release, or a change order that made room):
        an invoice of its own, keyed by the budget's count of them, within the room left."""
        b = self.status.budget
        assert b is not None
        held, items = b.held_amount, b.held_items
        through = self._held_through(b)
        number = b.invoices + 1
        summary = await self.issue(
            f"inv-{self.opp}-bh{number:02d}", self.engagement.start_date, through, bill_time=True
        )
        if summary is not None:
            b.invoices = number
        billed = summary.total if summary is not None else Decimal(0)
        self._decided(action, billed, max(0, items - b.held_items), by, reason)
        set_details(
            self.status,
            f"Budget: {billed} {b.currency} of the {held} {b.currency} held invoiced ({action} by {by}: {reason})"
            + (f"; {b.held_amount} {b.currency} still held" if b.held_amount > 0 else ""),
        )
        return summary

    async def decide_budget_hold(self, input: BudgetHoldDecisionInput, request_id: str) -> BudgetHoldDecisionResult:
        b = self.status.budget
        assert b is not None
        reason = input.reason.strip()
        if input.action == "release":
            b.released += b.held_amount
            amount, items = b.held_amount, b.held_items
            summary = await self.bill_held("release", input.requested_by, reason)
            return BudgetHoldDecisionResult(action="release", amount=amount, items=items, invoice=summary, budget=b)
        through = self._held_through(b)
        written: InvoiceSummary = await self.steps.call(
            DeliveryActivities.write_off_held_time,
            WriteOffHeldInput(
                opportunity_id=self.opp,
                erp_project_id=self.status.erp_project_id,
                through=through,
                room=b.room,
                currency=b.currency,
                marker=request_id,
            ),
            f"Ledger: write off {b.held_amount} {b.currency} of time held at the cap "
            f"({input.requested_by}: {reason[:80]})",
            system="q2c",
            operation="write off held time",
        )
        self._decided("write_off", written.held_amount, written.held_items, input.requested_by, reason)
        b.held_amount, b.held_items, b.held_through = Decimal(0), 0, None
        set_budget_status("warning" if b.warned else "ok")
        set_details(
            self.status,
            f"Budget: {written.held_amount} {b.currency} of held time ({written.held_items} entries) written off "
            f"by {input.requested_by}: {reason}",
        )
        await self.refresh_payments(force=True)
        return BudgetHoldDecisionResult(
            action="write_off", amount=written.held_amount, items=written.held_items, budget=b
        )

    async def cap_changed(self, requested_by: str, reason: str) -> None:
        """After a change order: the cap follows the contract; thresholds above the new use
        are armed again; time held at the old cap is invoiced now if there is room for it."""
        b = self.status.budget
        cap = budget_cap(self.engagement)
        if b is None or cap is None or cap == b.cap:
            return
        b.cap = cap
        b.warned = [t for t in b.warned if b.used_percent >= t]
        if b.held_amount > 0 and b.room > 0:
            await self.bill_held("change_order", requested_by, reason)
        else:
            await self.refresh_payments(force=True)

    def milestone_issues(self, key: str, *, waiving: bool = False) -> list[FieldIssue]:
        """Whether a milestone can be accepted (or waived) now, against the state as it is."""
        st = self.status
        e = st.engagement
        if e is None or st.active_since is None or st.stage in (EngagementStage.CLOSED, EngagementStage.CANCELLED):
            return [FieldIssue(field="stage", reason=f"the engagement is {st.stage.value}")]
        if e.billing_model is not BillingModel.FIXED_FEE:
            return [FieldIssue(field="milestone_key", reason=f"engagement is {e.billing_model.value}, not fixed fee")]
        milestone = next((m for m in e.milestones if m.key == key), None)
        if milestone is None:
            known = ", ".join(m.key for m in e.milestones)
            return [
                FieldIssue(
                    field="milestone_key", reason=f"'{key}' is not a milestone of this engagement (known: {known})"
                )
            ]
        if milestone.invoiced:
            return [
                FieldIssue(
                    field="milestone_key", reason=f"milestone '{milestone.name}' was already accepted and invoiced"
                )
            ]
        if milestone.waived:
            return [
                FieldIssue(
                    field="milestone_key",
                    reason=f"milestone '{milestone.name}' was waived by "
                    f"{milestone.waived_by}: {milestone.waived_reason}",
                )
            ]
        return []

    async def accept_milestone(self, input: AcceptMilestoneInput) -> InvoiceSummary | None:
        """Invoice the accepted milestone; it counts as accepted and invoiced only once the
        invoice exists (a failed invoice parks, and a retry issues it under the same ID)."""
        milestone = next(m for m in self.engagement.milestones if m.key == input.milestone_key)
        on = input.accepted_on or self.calendar_today()
        line = InvoiceLine(
            description=f"Milestone: {milestone.name}",
            quantity=Decimal(1),
            rate=milestone.amount,
            amount=line_amount(Decimal(1), milestone.amount, self.engagement.currency),
        )
        summary = await self.issue(f"inv-{self.opp}-ms-{milestone.key}", on, on, lines=[line])
        # the amendment path may have replaced the milestone object meanwhile: mark the current one
        current = next((m for m in self.engagement.milestones if m.key == input.milestone_key), milestone)
        current.accepted = True
        current.invoiced = summary is not None
        if summary is not None and workflow.patched(BUDGET_PATCH):
            await self.refresh_payments()  # the CRM's billed and open figures include it now
        return summary

    def waive_milestone(self, input: WaiveMilestoneInput) -> str:
        milestone = next(m for m in self.engagement.milestones if m.key == input.milestone_key)
        milestone.waived, milestone.waived_by, milestone.waived_reason = True, input.requested_by, input.reason.strip()
        set_details(
            self.status,
            f"Milestone '{milestone.name}' ({milestone.amount} {self.engagement.currency}) "
            f"waived by {input.requested_by}: {input.reason.strip()}",
        )
        return f"milestone '{milestone.name}' waived by {input.requested_by}: {input.reason.strip()}"

    def open_milestones(self) -> list:
        e = self.engagement
        if e.billing_model is not BillingModel.FIXED_FEE:
            return []
        return [m for m in e.milestones if m.open]

    # --- change orders ----------------------------------------------------------------
    def record_version(self, reason: str, requested_by: str, changes: dict | None = None) -> ContractVersion:
        e = self.engagement
        st = self.status
        number = st.contract_version + 1 if st.contract_version else len(st.contract_versions) + 1
        first = number == 1
        version = ContractVersion(
            version=number,
            contract_value=e.contract_value.amount,
            end_date=e.end_date,
            changes=changes or {},
            rate_card=[r.model_dump(mode="json") for r in e.rate_card] if first else [],
            milestones=[m.model_dump(mode="json") for m in e.milestones] if first else [],
            reason=reason,
            requested_by=requested_by,
            at=workflow.now(),
        )
        st.contract_versions.append(version)
        st.contract_version = number
        return version

    async def amend(self, amendment: Amendment) -> ContractVersion:
        st = self.status
        number = (st.contract_version or len(st.contract_versions)) + 1
        changed = apply_amendment(self.engagement, amendment, version=number)
        await self.steps.call(
            EngagementActivities.apply_amendment,
            ApplyAmendmentInput(
                opportunity_id=self.opp,
                engagement=changed,
                erp_customer_id=st.erp_customer_id,
                erp_project_id=st.erp_project_id,
                subsidiary=st.subsidiary,
                psa_workspace_id=st.psa_workspace.workspace_id,
                version=number,
            ),
            f"Change order v{number}: ERP project and billing schedule, PSA budget and dates, CRM version",
            system="erp",
            operation=f"change order v{number}",
        )
        # milestone flags (accepted/invoiced/waived) may have changed while the activity ran
        flags = {
            m.key: (m.accepted, m.invoiced, m.waived, m.waived_by, m.waived_reason) for m in self.engagement.milestones
        }
        for m in changed.milestones:
            if m.key in flags:
                m.accepted, m.invoiced, m.waived, m.waived_by, m.waived_reason = flags[m.key]
        st.engagement = changed
        self.contract_changed()
        version = self.record_version(
            amendment.reason, amendment.requested_by, amendment.model_dump(mode="json", exclude_defaults=True)
        )
        await self.cap_changed(amendment.requested_by, f"change order v{version.version}: {amendment.reason}")
        return version

    # --- payments ---------------------------------------------------------------------
    def _open_invoices(self) -> list[InvoiceSummary]:
        return [i for i in self.status.invoices if i.status is not InvoiceStatus.PAID_IN_FULL]

    async def refresh_payments(self, *, force: bool = False) -> None:
        """Collection status of every invoice from the ERP, and the totals (and the budget
        position) to the CRM. `force`: also when nothing is open (the budget position moved)."""
        open_invoices = self._open_invoices()
        if not open_invoices and not force:
            return
        statuses = await self.steps.call(
            DeliveryActivities.refresh_payments,
            RefreshPaymentsInput(
                opportunity_id=self.opp,
                erp_customer_id=self.status.erp_customer_id,
                invoice_erp_ids=[i.erp_id for i in self.status.invoices if i.erp_id],
                as_of=self.calendar_today(),
                budget=self.status.budget,
            ),
            f"ERP->CRM: payment status of {len(self.status.invoices)} invoice(s), {len(open_invoices)} open"
            + (f"; budget {self.status.budget.status_text()}" if self.status.budget is not None else ""),
            system="erp",
            operation="read payments",
        )
        take_payment_statuses(self.status.invoices, statuses)
        self.status.totals.collected = sum((i.amount_paid for i in self.status.invoices), Decimal(0))

    # --- closure ----------------------------------------------------------------------
    async def collect_and_close(self) -> EngagementSummary:
        """After the end date (or a close request): a grace window for late approvals, the final
        posting and invoice, then nothing closes while a milestone is neither invoiced nor
        waived or parked time is neither posted nor written off; then payments; then closure."""
        st = self.status
        e = self.engagement
        if st.collecting_since is None:
            async with self.steps.door:
                st.collecting_since = workflow.now()
                st.grace_until = workflow.now() + self.grace()
                set_stage(
                    st,
                    EngagementStage.COLLECTING,
                    f"Contract ended: final posting now, late approvals collected until {st.grace_until.isoformat()}",
                )
                await self.steps.mirror_stage()
                periods = self.periods()
                if st.close_requested and st.next_period_index < len(periods):
                    # closing early: bill the period in progress as the final one
                    current = periods[st.next_period_index]
                    if e.billing_model is BillingModel.RETAINER:
                        await self.issue(
                            f"inv-{self.opp}-p{current.index:03d}",
                            current.start,
                            current.end,
                            lines=[self._retainer_line(current)],
                        )
                await self._final_posting()
        if not st.final_posting_done:
            assert st.grace_until is not None
            await self._wait_polling_payments(
                st.grace_until, "grace window for late approvals ends", wake=lambda: False
            )
            async with self.steps.door:
                await self._final_posting()
                st.final_posting_done = True
        if not st.cancelled:
            await self._await_milestones()
        while True:
            if st.unbilled_after_final:
                async with self.steps.door:
                    if st.unbilled_after_final:
                        st.unbilled_after_final = False
                        await self._final_invoice()
            if st.pending_rebill:
                async with self.steps.door:
                    if st.pending_rebill:
                        await self._rebill_invoice()
            if st.open_exception_count:
                await self._await_exceptions()
                continue
            if st.budget is not None and st.budget.held_amount > 0:
                await self._await_budget_decision()
                continue
            async with self.steps.door:
                await self.refresh_payments()
            if (
                not self._open_invoices()
                and not st.open_exception_count
                and not st.unbilled_after_final
                and not st.pending_rebill
            ):
                break
            balance = sum((i.open_balance for i in self._open_invoices()), Decimal(0))
            set_details(st, f"Collecting: {balance} {e.currency} open on {len(self._open_invoices())} invoice(s)")
            if (
                workflow.info().get_current_history_length() > COLLECTING_HISTORY_LIMIT
                or workflow.info().is_continue_as_new_suggested()
                # a new build became current: collecting can last months, move to it now
                or workflow.info().is_target_worker_deployment_version_changed()
            ):
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._carry(), initial_versioning_behavior=continue_as_new_versioning())
            try:
                await workflow.wait_condition(
                    lambda: st.unbilled_after_final or st.open_exception_count > 0 or bool(st.pending_rebill),
                    timeout=timedelta(seconds=self.config.payment_poll_seconds),
                    timeout_summary="payment check",
                )
            except TimeoutError:
                pass
        async with self.steps.door:
            await self._close_systems()
        return self.summary()

    async def _final_posting(self) -> None:
        """Post what is approved up to the last day, and bill it (time and materials). Runs when
        the contract ends and again when the grace window closes, for approvals that came late."""
        st = self.status
        e = self.engagement
        last_day = e.end_date if not st.close_requested else max(self.calendar_today(), e.start_date)
        set_details(st, f"Final posting of approved time dated up to {last_day}")
        await self.post_time(through=last_day)
        expenses = workflow.patched(EXPENSES_PATCH)
        if expenses:
            await self.post_expenses(through=last_day)
        if e.billing_model is BillingModel.TIME_AND_MATERIALS or (expenses and e.bills_expenses):
            st.unbilled_after_final = False
            await self._final_invoice()
        await self.refresh_payments()
        balance = sum((i.open_balance for i in self._open_invoices()), Decimal(0))
        set_details(
            st,
            f"Collecting: {balance} {e.currency} open on {len(self._open_invoices())} invoice(s)"
            + (
                f"; late approvals collected until {st.grace_until.isoformat()}"
                if not st.final_posting_done and st.grace_until
                else ""
            ),
        )

    async def _final_invoice(self) -> None:
        st = self.status
        e = self.engagement
        number = st.final_invoices + 1
        summary = await self.issue(
            f"inv-{self.opp}-final{number:02d}",
            e.start_date,
            max(e.end_date, self.calendar_today()),
            bill_time=e.billing_model is BillingModel.TIME_AND_MATERIALS,
        )
        if summary is not None:
            st.final_invoices = number

    async def _rebill_invoice(self) -> None:
        """Corrected lines after a credit note when no other invoice is left to carry them."""
        number = sum(1 for i in self.status.invoices if i.external_id.startswith(f"inv-{self.opp}-rb")) + 1
        today = self.calendar_today()
        await self.issue(f"inv-{self.opp}-rb{number:02d}", today, today)

    async def _await_budget_decision(self) -> None:
        """A T&M engagement never closes with time held at the cap undecided: the PMO releases
        it (billed beyond the cap, recorded) or writes it off (decide_budget_hold)."""
        b = self.status.budget
        assert b is not None
        await self.steps.park(
            PauseReason(
                kind=PauseKind.BUDGET_HELD,
                queue=StewardQueue.PMO,
                action=StewardAction.DECIDE_BUDGET_HOLD,
                system="q2c",
                operation="close engagement",
                fields=[
                    FieldIssue(
                        field="budget.held",
                        reason=f"{b.held_amount} {b.currency} ({b.held_items} entries) beyond the {b.money(b.cap)} cap",
                    )
                ],
                message=f"The contract ended with {b.held_amount} {b.currency} of approved time held at the "
                f"not-to-exceed cap of {b.money(b.cap)}: release it (bill it, beyond the cap) or write it "
                "off, with a reason.",
            ),
            until=lambda: b.held_amount <= 0,
        )

    async def _await_milestones(self) -> None:
        """A fixed-fee engagement never closes with a milestone neither invoiced nor waived:
        the PMO decides (accept_milestone or waive_milestone)."""
        open_ms = self.open_milestones()
        if not open_ms:
            return
        currency = self.engagement.currency
        listed = "; ".join(f"{m.key} '{m.name}' {m.amount} {currency}" for m in open_ms)
        total = sum((m.amount for m in open_ms), Decimal(0))
        await self.steps.park(
            PauseReason(
                kind=PauseKind.MILESTONES_NOT_INVOICED,
                queue=StewardQueue.PMO,
                action=StewardAction.ACCEPT_OR_WAIVE,
                system="q2c",
                operation="close engagement",
                fields=[
                    FieldIssue(
                        field=f"milestones.{m.key}",
                        reason=f"'{m.name}' ({m.amount} {currency}) is neither invoiced nor waived",
                    )
                    for m in open_ms
                ],
                message=f"The end date passed with {len(open_ms)} milestone(s) worth {total} {currency} neither "
                f"invoiced nor waived: {listed}. Accept (invoice) or waive each one.",
            ),
            until=lambda: not self.open_milestones(),
        )

    async def _await_exceptions(self) -> None:
        """Parked time keeps the engagement open only while someone decides: finance replays it
        (after fixing the cause) or writes it off with a reason."""
        st = self.status
        reasons = ", ".join(f"{code} {n}" for code, n in sorted(st.open_exceptions_by_reason.items()))
        await self.steps.park(
            PauseReason(
                kind=PauseKind.TIME_EXCEPTIONS_OPEN,
                queue=StewardQueue.FINANCE_OPS,
                action=StewardAction.REPLAY_OR_WRITE_OFF,
                system="q2c",
                operation="close engagement",
                fields=[FieldIssue(field="time_exceptions", reason=f"{st.open_exception_count} open ({reasons})")],
                message=f"{st.open_exception_count} approved time entr{'y' if st.open_exception_count == 1 else 'ies'} "
                f"could not be posted after the grace window ({reasons}): fix the cause and replay, or write "
                "off with a reason.",
            ),
            until=lambda: st.open_exception_count == 0 or st.unbilled_after_final,
        )

    def _carry(self) -> EngagementInput:
        return EngagementInput(
            opportunity_id=self.opp, source="continue-as-new", delivery=self.config, state=self.status
        )

    async def close_projects(self, ids: CloseSystemsInput, why: str = "") -> list[str]:
        """Close the ERP project and the PSA workspace that exist; returns what was closed."""
        closed: list[str] = []
        if ids.erp_project_id:
            await self.steps.call(
                DeliveryActivities.close_erp_project,
                ids,
                f"ERP: close project {ids.erp_project_id}{why}",
                system="erp",
                operation="close project",
            )
            closed.append(f"ERP project {ids.erp_project_id} closed")
        if ids.psa_workspace_id:
            await self.steps.call(
                DeliveryActivities.close_psa_workspace,
                ids,
                f"PSA: close workspace {ids.psa_workspace_id}{why}",
                system="psa",
                operation="close workspace",
            )
            closed.append(f"PSA workspace {ids.psa_workspace_id} closed")
        return closed

    async def _close_systems(self) -> None:
        st = self.status
        ids = CloseSystemsInput(
            opportunity_id=self.opp, erp_project_id=st.erp_project_id, psa_workspace_id=st.psa_workspace.workspace_id
        )
        set_details(st, "Everything posted, invoiced and paid: closing the ERP project and the PSA workspace")
        await self.close_projects(ids)
        final = EngagementStage.CANCELLED if st.cancelled else EngagementStage.CLOSED
        summary = self.summary()
        set_stage(
            st,
            final,
            f"{final.value}: {summary.hours} h posted, billed {summary.billed}, "
            f"collected {summary.collected}" + (f" ({st.cancelled.reason})" if st.cancelled else ""),
        )
        await self.steps.mirror_stage()

    def summary(self) -> EngagementSummary:
        billed: dict[str, Decimal] = {}
        collected: dict[str, Decimal] = {}
        for inv in self.status.invoices:
            billed[inv.currency] = billed.get(inv.currency, Decimal(0)) + inv.total
            collected[inv.currency] = collected.get(inv.currency, Decimal(0)) + inv.amount_paid
        return EngagementSummary(
            opportunity_id=self.opp,
            stage=self.status.stage,
            hours=(Decimal(self.status.totals.posted_minutes) / Decimal(60)).quantize(Decimal("0.01")),
            billed=billed,
            collected=collected,
            invoices=len(self.status.invoices),
        )
