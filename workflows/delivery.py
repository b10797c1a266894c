"""Delivery to cash inside EngagementWorkflow: billing periods, time posting, invoices,
payments and closure. Deterministic code only; every call is an activity.

One run of the workflow covers one billing period: at the period's end the approved time is
posted (one batched activity), the period is invoiced by its billing model, payments are
refreshed, and the workflow continues as new with its state, so a years-long engagement's
history stays small.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.delivery import DeliveryActivities
    from activities.engagement import EngagementActivities
    from activities.models import (
        ApplyAmendmentInput,
        CloseSystemsInput,
        CrmStatusInput,
        IssueInvoiceInput,
        PostTimeInput,
        RefreshPaymentsInput,
    )
    from domain.billing import BillingPeriod, billing_periods, line_amount
    from domain.delivery import InvoiceLine, InvoiceStatus
    from domain.engagement import BillingModel, Engagement
    from domain.stewardship import apply_amendment
    from domain.stage import EngagementStage
    from workflows.models import (
        AcceptMilestoneInput,
        Amendment,
        ContractVersion,
        DeliveryConfig,
        EngagementInput,
        EngagementStatus,
        EngagementSummary,
        InvoiceSummary,
        PostingResult,
        ReplayExceptionsInput,
    )
    from workflows.provisioning import call
    from workflows.visibility import set_details, set_open_exceptions, set_stage

POSTING_TIMEOUT = timedelta(minutes=30)
POSTING_HEARTBEAT = timedelta(minutes=2)
COLLECTING_HISTORY_LIMIT = 1500
FAR_FUTURE = date(9999, 12, 31)


class Delivery:
    def __init__(self, status: EngagementStatus, config: DeliveryConfig) -> None:
        self.status = status
        self.config = config
        self._posting = asyncio.Lock()
        self._invoicing = asyncio.Lock()
        self._unbilled_after_final = False

    @property
    def engagement(self) -> Engagement:
        assert self.status.engagement is not None
        return self.status.engagement

    @property
    def opp(self) -> str:
        return self.status.opportunity_id

    # --- calendar ---------------------------------------------------------------------
    def periods(self) -> list[BillingPeriod]:
        e = self.engagement
        return billing_periods(e.start_date, e.end_date)

    def fire_time(self, period: BillingPeriod) -> datetime:
        """When a period closes: midnight UTC after its last day, or on the demo's fast calendar."""
        if self.config.period_seconds:
            assert self.status.active_since is not None
            return self.status.active_since + timedelta(seconds=self.config.period_seconds * (period.index + 1))
        return datetime.combine(period.end + timedelta(days=1), time(0), tzinfo=timezone.utc)

    def calendar_today(self) -> date:
        """Today on the engagement's calendar (the demo's fast calendar maps to period ends)."""
        if not self.config.period_seconds:
            return workflow.now().date()
        periods = self.periods()
        closed = self.status.next_period_index
        return periods[closed - 1].end if closed > 0 else self.engagement.start_date

    # --- main loop --------------------------------------------------------------------
    async def run_periods(self) -> bool:
        """Wait for and close the next billing period. True: continue as new afterwards;
        False: the engagement is past its end date or closing was requested."""
        periods = self.periods()
        index = self.status.next_period_index
        if index >= len(periods) or self.status.close_requested:
            return False
        period = periods[index]
        await self._wait_for_period_end(period)
        if self.status.close_requested:
            return False
        await self._close_period(period)
        self.status.next_period_index = index + 1
        return self.status.next_period_index < len(periods) and not self.status.close_requested

    async def _wait_for_period_end(self, period: BillingPeriod) -> None:
        fire_at = self.fire_time(period)
        set_details(self.status, f"Delivering: billing period {period.start} to {period.end} "
                                 f"closes at {fire_at.isoformat()}")
        next_poll = workflow.now() + timedelta(seconds=self.config.payment_poll_seconds)
        while not self.status.close_requested:
            now = workflow.now()
            if now >= fire_at:
                return
            polling = self._open_invoices()
            deadline = min(fire_at, next_poll) if polling else fire_at
            try:
                await workflow.wait_condition(
                    lambda: self.status.close_requested is not None, timeout=deadline - now,
                    timeout_summary=("payment check" if polling and next_poll < fire_at
                                     else f"billing period {period.start:%Y-%m} ends"))
            except asyncio.TimeoutError:
                pass
            if polling and workflow.now() >= next_poll:
                await self.refresh_payments()
                next_poll = workflow.now() + timedelta(seconds=self.config.payment_poll_seconds)

    async def _close_period(self, period: BillingPeriod) -> None:
        e = self.engagement
        set_details(self.status, f"Closing billing period {period.start} to {period.end}: posting approved time")
        await self.post_time(through=period.end)
        set_details(self.status, f"Closing billing period {period.start} to {period.end}: invoicing")
        if e.billing_model is BillingModel.TIME_AND_MATERIALS:
            await self.issue(f"inv-{self.opp}-p{period.index:03d}", period.start, period.end, bill_time=True)
        elif e.billing_model is BillingModel.RETAINER:
            await self.issue(f"inv-{self.opp}-p{period.index:03d}", period.start, period.end,
                             lines=[self._retainer_line(period)])
        if self._open_invoices():
            await self.refresh_payments()

    def _retainer_line(self, period: BillingPeriod) -> InvoiceLine:
        amount = self.engagement.retainer_amount or Decimal(0)
        return InvoiceLine(description=f"Retainer {period.start:%b %Y}", quantity=Decimal(1), rate=amount,
                           amount=line_amount(Decimal(1), amount, self.engagement.currency))

    # --- time -------------------------------------------------------------------------
    async def post_time(self, *, through: date, only: list[str] | None = None) -> PostingResult:
        async with self._posting:
            e = self.engagement
            st = self.status
            result: PostingResult = await call(
                DeliveryActivities.post_approved_time,
                PostTimeInput(opportunity_id=self.opp, workflow_id=workflow.info().workflow_id,
                              erp_project_id=st.erp_project_id, psa_workspace_id=st.psa_workspace.workspace_id,
                              through=through, rate_card=e.rate_card,
                              bill_time=e.billing_model is BillingModel.TIME_AND_MATERIALS,
                              currency=e.currency, only_psa_ids=only,
                              open_exception_ids=[x.psa_id for x in st.open_exceptions],
                              batch_size=self.config.posting_batch_size),
                ("PSA->ERP: post approved time" + (f" (replay of {len(only)} entries)" if only else "")
                 + f" dated up to {through}"),
                timeout=POSTING_TIMEOUT, heartbeat=POSTING_HEARTBEAT)
            if result.total_entries is not None:
                st.totals.posted_entries, st.totals.posted_minutes = result.total_entries, result.total_minutes
            else:
                st.totals.posted_minutes += result.posted_minutes
                st.totals.posted_entries += result.posted
            if result.last_date and (st.last_posted_date is None or result.last_date > st.last_posted_date):
                st.last_posted_date = result.last_date
            self._apply_exceptions(result)
            if result.posted and st.stage is EngagementStage.COLLECTING:
                self._unbilled_after_final = True
            return result

    def _apply_exceptions(self, result: PostingResult) -> None:
        parked = {x.psa_id: x for x in self.status.open_exceptions}
        for psa_id in result.resolved:
            parked.pop(psa_id, None)
        for exc in result.exceptions:
            parked[exc.psa_id] = exc
        self.status.open_exceptions = sorted(parked.values(), key=lambda x: x.psa_id)
        set_open_exceptions(len(self.status.open_exceptions))

    async def replay(self, input: ReplayExceptionsInput) -> PostingResult:
        ids = input.psa_ids or [x.psa_id for x in self.status.open_exceptions]
        return await self.post_time(through=FAR_FUTURE, only=ids)

    # --- invoices ---------------------------------------------------------------------
    async def issue(self, external_id: str, start: date, end: date, *, bill_time: bool = False,
                    lines: list[InvoiceLine] | None = None) -> InvoiceSummary | None:
        async with self._invoicing:
            st = self.status
            existing = st.invoice(external_id)
            if existing is not None:
                return existing
            summary: InvoiceSummary | None = await call(
                DeliveryActivities.issue_invoice,
                IssueInvoiceInput(opportunity_id=self.opp, external_id=external_id, erp_customer_id=st.erp_customer_id,
                                  erp_project_id=st.erp_project_id, period_start=start, period_end=end,
                                  currency=self.engagement.currency, bill_unbilled_time=bill_time, lines=lines or []),
                f"ERP: invoice {external_id} ({start} to {end}); number and amount to the CRM",
                timeout=POSTING_TIMEOUT, heartbeat=POSTING_HEARTBEAT)
            if summary is not None:
                st.invoices.append(summary)
                st.totals.billed += summary.total
                st.totals.currency = summary.currency
            return summary

    async def accept_milestone(self, input: AcceptMilestoneInput) -> InvoiceSummary | None:
        milestone = next(m for m in self.engagement.milestones if m.key == input.milestone_key)
        milestone.accepted = True
        on = input.accepted_on or self.calendar_today()
        line = InvoiceLine(description=f"Milestone: {milestone.name}", quantity=Decimal(1), rate=milestone.amount,
                           amount=line_amount(Decimal(1), milestone.amount, self.engagement.currency))
        summary = await self.issue(f"inv-{self.opp}-ms-{milestone.key}", on, on, lines=[line])
        milestone.invoiced = summary is not None
        return summary

    # --- change orders ----------------------------------------------------------------
    def record_version(self, reason: str, requested_by: str) -> ContractVersion:
        e = self.engagement
        version = ContractVersion(version=len(self.status.contract_versions) + 1, contract_value=e.contract_value.amount,
                                  end_date=e.end_date, rate_card=[r.model_dump(mode="json") for r in e.rate_card],
                                  milestones=[m.model_dump(mode="json") for m in e.milestones], reason=reason,
                                  requested_by=requested_by, at=workflow.now())
        self.status.contract_versions.append(version)
        return version

    async def amend(self, amendment: Amendment) -> ContractVersion:
        st = self.status
        number = len(st.contract_versions) + 1
        changed = apply_amendment(self.engagement, amendment, version=number)
        await call(EngagementActivities.apply_amendment,
                   ApplyAmendmentInput(opportunity_id=self.opp, engagement=changed, erp_customer_id=st.erp_customer_id,
                                       erp_project_id=st.erp_project_id, subsidiary=st.subsidiary,
                                       psa_workspace_id=st.psa_workspace.workspace_id, version=number),
                   f"Change order v{number}: ERP project and billing schedule, PSA budget and dates, CRM version")
        # milestone flags (accepted/invoiced) may have changed while the activity ran
        flags = {m.key: (m.accepted, m.invoiced) for m in self.engagement.milestones}
        for m in changed.milestones:
            m.accepted, m.invoiced = flags.get(m.key, (m.accepted, m.invoiced))
        st.engagement = changed
        return self.record_version(amendment.reason, amendment.requested_by)

    # --- payments ---------------------------------------------------------------------
    def _open_invoices(self) -> list[InvoiceSummary]:
        return [i for i in self.status.invoices if i.status is not InvoiceStatus.PAID_IN_FULL]

    async def refresh_payments(self) -> None:
        open_invoices = self._open_invoices()
        if not open_invoices:
            return
        statuses = await call(
            DeliveryActivities.refresh_payments,
            RefreshPaymentsInput(opportunity_id=self.opp, erp_customer_id=self.status.erp_customer_id,
                                 invoice_erp_ids=[i.erp_id for i in self.status.invoices if i.erp_id],
                                 as_of=self.calendar_today()),
            f"ERP->CRM: payment status of {len(open_invoices)} open invoice(s)")
        by_id = {s.invoice_erp_id: s for s in statuses}
        for inv in open_invoices:
            s = by_id.get(inv.erp_id)
            if s is not None:
                inv.status, inv.amount_paid, inv.open_balance, inv.days_overdue = (
                    s.status, s.amount_paid, s.open_balance, s.days_overdue)
        self.status.totals.collected = sum((i.amount_paid for i in self.status.invoices), Decimal(0))

    # --- closure ----------------------------------------------------------------------
    async def collect_and_close(self) -> EngagementSummary:
        st = self.status
        e = self.engagement
        if st.stage is not EngagementStage.COLLECTING:
            set_stage(st, EngagementStage.COLLECTING, "Final posting and invoice")
            last_day = e.end_date if not st.close_requested else max(self.calendar_today(), e.start_date)
            await self.post_time(through=last_day)
            periods = self.periods()
            if st.close_requested and st.next_period_index < len(periods):
                # closing early: bill the period in progress as the final one
                current = periods[st.next_period_index]
                if e.billing_model is BillingModel.RETAINER:
                    await self.issue(f"inv-{self.opp}-p{current.index:03d}", current.start, current.end,
                                     lines=[self._retainer_line(current)])
            self._unbilled_after_final = e.billing_model is BillingModel.TIME_AND_MATERIALS
        while True:
            if self._unbilled_after_final:
                self._unbilled_after_final = False
                st.final_invoices += 1
                await self.issue(f"inv-{self.opp}-final{st.final_invoices:02d}", e.start_date,
                                 max(e.end_date, self.calendar_today()), bill_time=True)
            await self.refresh_payments()
            if not self._open_invoices() and not st.open_exceptions:
                break
            balance = sum((i.open_balance for i in self._open_invoices()), Decimal(0))
            set_details(st, f"Collecting: {balance} {e.currency} open on {len(self._open_invoices())} invoice(s); "
                            f"{len(st.open_exceptions)} time exception(s) to clear")
            if workflow.info().get_current_history_length() > COLLECTING_HISTORY_LIMIT \
                    or workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._carry())
            try:
                await workflow.wait_condition(lambda: self._unbilled_after_final,
                                              timeout=timedelta(seconds=self.config.payment_poll_seconds),
                                              timeout_summary="payment check")
            except asyncio.TimeoutError:
                pass
        await self._close_systems()
        return self.summary()

    def _carry(self) -> EngagementInput:
        return EngagementInput(opportunity_id=self.opp, source="continue-as-new", delivery=self.config,
                               state=self.status)

    async def _close_systems(self) -> None:
        st = self.status
        ids = CloseSystemsInput(opportunity_id=self.opp, erp_project_id=st.erp_project_id,
                                psa_workspace_id=st.psa_workspace.workspace_id)
        set_details(st, "Everything posted, invoiced and paid: closing the ERP project and the PSA workspace")
        await call(DeliveryActivities.close_erp_project, ids, f"ERP: close project {st.erp_project_id}")
        await call(DeliveryActivities.close_psa_workspace, ids, f"PSA: close workspace {ids.psa_workspace_id}")
        final = EngagementStage.CANCELLED if st.cancelled else EngagementStage.CLOSED
        await call(DeliveryActivities.write_crm_status,
                   CrmStatusInput(opportunity_id=self.opp, status=final.value),
                   f"CRM: status {final.value} on opportunity {self.opp}")
        summary = self.summary()
        set_stage(st, final, f"{final.value}: {summary.hours} h posted, billed {summary.billed}, "
                             f"collected {summary.collected}" + (f" ({st.cancelled.reason})" if st.cancelled else ""))

    def summary(self) -> EngagementSummary:
        billed: dict[str, Decimal] = {}
        collected: dict[str, Decimal] = {}
        for inv in self.status.invoices:
            billed[inv.currency] = billed.get(inv.currency, Decimal(0)) + inv.total
            collected[inv.currency] = collected.get(inv.currency, Decimal(0)) + inv.amount_paid
        return EngagementSummary(opportunity_id=self.opp, stage=self.status.stage,
                                 hours=(Decimal(self.status.totals.posted_minutes) / Decimal(60)).quantize(
                                     Decimal("0.01")),
                                 billed=billed, collected=collected, invoices=len(self.status.invoices))
