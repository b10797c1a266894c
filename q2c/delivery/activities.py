"""Activities for delivery to cash: post approved time, invoice, refresh payments, close.

Each posting run is ONE activity however many entries it carries (paged reads, batched
writes, a heartbeat per batch), so the history does not grow with the number of entries.
Every write is keyed by an external ID (timeBill eid:psa-<entry>, invoice eid:inv-...), so a
retried activity, a worker restart or a replay never posts or invoices twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from temporalio import activity
from temporalio.exceptions import ApplicationError

from q2c.delivery.batch import (
    next_watermark,
    periods_and_tasks,
    post_in_attempts,
    replay_targets,
    with_open_summary,
)
from q2c.delivery.expenses import ExpenseActivities, mark_expenses_invoiced, unbilled_expense_lines
from q2c.delivery.inputs import (
    CloseSystemsInput,
    CrmStatusInput,
    IssueInvoiceInput,
    PostTimeInput,
    RefreshPaymentsInput,
    WriteOffExceptionsInput,
    WriteOffHeldInput,
)
from q2c.delivery.retry import with_transient_retries
from q2c.domain.billing import check_time_entry, invoice_total, posted_amount, time_invoice_lines
from q2c.domain.budget import held_total, split_at_room
from q2c.domain.delivery import Invoice, InvoiceLine, InvoiceStatus, PaymentStatus, PostedTime, TimeEntry
from q2c.domain.expenses import ExpensePolicy, exception_key
from q2c.domain.text import PERSON_MAX, REASON_MAX, clip
from q2c.engagement.heartbeats import heartbeating
from q2c.engagement.messages import (
    OPEN_EXCEPTION_SAMPLE,
    CreditMemoActivityInput,
    CreditMemoActivityResult,
    CreditNoteSummary,
    InvoiceSummary,
    PostingResult,
    TimeExceptionInfo,
)
from q2c.ledger.credits import CreditNotes, LedgerCreditNote
from q2c.ledger.store import BUDGET_WRITE_OFF_PREFIX
from q2c.vendors.salesforce.mapping import budget_fields

if TYPE_CHECKING:
    from q2c.ledger.store import Ledger
    from q2c.vendors.kantata.client import KantataClient
    from q2c.vendors.netsuite.client import NetSuiteClient
    from q2c.vendors.salesforce.client import SalesforceClient

PAGE_SIZE = 200
EXPENSE_KEY_PREFIX = exception_key("")  # expenses' queue ids: `expense:<PSA id>`


@dataclass
class _Split:
    """An invoice's content at the cap: billed now, and held (see `DeliveryActivities._split`)."""

    expense_lines: list[InvoiceLine] = field(default_factory=list)
    report_ids: list[str] = field(default_factory=list)
    held_reports: list[str] = field(default_factory=list)
    held_expenses: Decimal = Decimal(0)
    time: list[PostedTime] = field(default_factory=list)
    held_time: list[PostedTime] = field(default_factory=list)
    held_amount: Decimal = Decimal(0)
    held_items: int = 0


def _differs(entry: TimeEntry, posted: PostedTime | None, bill_time: bool) -> bool:
    """Whether the approved entry must be posted: never posted, or posted with other minutes,
    role, date or billable flag (as posted: without time billing nothing is billable)."""
    if posted is None:
        return True
    return (posted.minutes, posted.role, posted.date_performed, posted.billable) != (
        entry.minutes,
        entry.role,
        entry.date_performed,
        entry.billable and bill_time,
    )


def _erp_reason(error_field: str | None, message: str | None) -> str:
    text = (message or "").lower()
    if "closed" in text and (error_field in ("tranDate", "postingPeriod") or "period" in text):
        return "PERIOD_CLOSED"
    if "closed" in text and error_field in ("customer", "job"):
        return "PROJECT_CLOSED"
    return "ERP_REJECTED"


class DeliveryActivities:
    def __init__(
        self, crm: SalesforceClient, erp: NetSuiteClient, psa: KantataClient, ledger: Ledger | None = None
    ) -> None:
        self.crm = crm
        self.erp = erp
        self.psa = psa
        self.ledger = ledger
        # expenses ride with delivery: the same connectors and ledger, registered with these
        self.expenses = ExpenseActivities(crm=crm, erp=erp, psa=psa, ledger=ledger)

    async def _ledger(self, method: str, *args, **kwargs) -> None:
        if self.ledger is not None:
            await asyncio.to_thread(getattr(self.ledger, method), *args, **kwargs)

    # --- time ------------------------------------------------------------------------
    async def _read_approved(
        self, input: PostTimeInput
    ) -> tuple[list[TimeEntry], datetime | None, dict[str, list[dict[str, str]]]]:
        """The approved time to post now, the PSA watermark to keep once it is posted, and each
        entry's q2c references as read (so marking it posted needs no lookup).

        Kantata has no "not yet posted" filter (its reference lists none; an integration
        tracks what it synced), so what to post is found in two steps:
        1. the PSA: approved entries changed since this workspace's watermark
           (`KantataClient.read_approved_time`: `approved=true`, `updated_after`,
           `order=updated_at:asc`, pages of 200). A late approval, an approval withdrawn and
           given again, an entry edited in between: each moves the entry's `updated_at`, so
           each is read again. A replay reads its entries by id instead;
        2. the ledger: an entry posted before with the same minutes, role, date and billable
           flag is left out (never posted twice); one not posted, or posted with other
           values, is posted (the ERP's external ID `psa-<id>` updates its timeBill in place).

        Bound, for an engagement of any length: a run reads the entries changed in the PSA
        since the previous complete run began (less WATERMARK_MARGIN, for clocks and commits
        in flight) plus the approved entries dated after the previous `through` (read again
        until their period is posted), 200 per request; the first run reads the workspace's
        approved time once. Everything is read before anything is written, and nothing q2c
        writes changes the PSA list, so its pages cannot move under the reader.

        The watermark returned is None (keep the old one) for a replay and when the read was
        not stable (the PSA list changed while it was read), so nothing is ever skipped."""
        workspace = input.psa_workspace_id
        if input.only_psa_ids is not None:
            read = await with_transient_retries(
                lambda: self.psa.read_approved_time(workspace, only_ids=list(input.only_psa_ids or []))
            )
            activity.heartbeat(f"read {len(read.entries)} approved entries to replay ({read.pages} requests)")
            due, later, watermark = read.entries, [], None
        else:
            since = await asyncio.to_thread(self.ledger.time_watermark, workspace)
            read = await with_transient_retries(lambda: self.psa.read_approved_time(workspace, updated_after=since))
            activity.heartbeat(
                f"read {len(read.entries)} approved entries changed since {since or 'the start'}"
                f" ({read.pages} requests)"
            )
            due = [e for e in read.entries if e.date_performed <= input.through]
            later = [e for e in read.entries if e.date_performed > input.through]
            # entries dated after `through` wait for a later run: keep them inside its window
            watermark = next_watermark(read.stable, read.server_time, read.updated_at, (e.psa_id for e in later))
        if input.only_psa_ids is not None:
            due = [e for e in due if e.date_performed <= input.through]
        posted = await asyncio.to_thread(self.ledger.posted_time_by_psa_id, [e.psa_id for e in due])
        fresh = [e for e in due if _differs(e, posted.get(e.psa_id), input.bill_time)]
        return fresh, watermark, read.references

    async def _post_chunk(
        self,
        input: PostTimeInput,
        valid: list[tuple[TimeEntry, Decimal | None]],
        result: PostingResult,
        references: dict[str, list[dict[str, str]]],
    ) -> list[PostedTime]:
        """Post one chunk to the ERP and mark each posted entry in the PSA, retrying transient
        failures entry by entry; what is posted and marked stays done even if the attempt fails
        (`batch.post_in_attempts`). `references` (from the read) spare each mark its lookup; a
        mark retried after a transient failure looks again (its first try may have landed)."""

        async def send(items: list[tuple[TimeEntry, Decimal | None]]) -> list:
            return await self.erp.post_time_bills(
                project_id=input.erp_project_id, entries=items, currency=input.currency, transient_as_results=True
            )

        def posted_of(item: tuple[TimeEntry, Decimal | None], outcome) -> PostedTime | None:
            entry, rate = item
            if not outcome.erp_time_bill_id:
                return None
            return PostedTime(
                psa_id=entry.psa_id,
                erp_time_bill_id=outcome.erp_time_bill_id,
                role=entry.role,
                date_performed=entry.date_performed,
                minutes=entry.minutes,
                billable=entry.billable,
                rate=rate,
                currency=input.currency,
            )

        def rejection_of(item: tuple[TimeEntry, Decimal | None], outcome) -> TimeExceptionInfo:
            return TimeExceptionInfo(
                psa_id=item[0].psa_id,
                reason_code=_erp_reason(outcome.error_field, outcome.message),
                message=f"ERP rejected the time bill: {outcome.error_code}: {outcome.message}",
            )

        async def record(done: list[PostedTime]) -> None:
            # the ledger first: it is what tells the next run this entry is posted (and with which
            # values), and invoices are built from it; the PSA reference is for people and tools
            await self._ledger("record_posted_time", done, input.opportunity_id)
            await self._ledger("resolve_exceptions", [p.psa_id for p in done])

        async def mark(done: PostedTime) -> None:
            tries = iter([references.pop(done.psa_id, None)])
            await with_transient_retries(
                lambda: self.psa.mark_time_posted(done.psa_id, done.erp_time_bill_id, known=next(tries, None))
            )

        return await post_in_attempts(
            {e.psa_id: (e, rate) for e, rate in valid},
            send,
            posted_of,
            rejection_of,
            record,
            mark,
            result.exceptions,
            "time entries",
        )

    @activity.defn
    async def post_approved_time(self, input: PostTimeInput) -> PostingResult:
        """Post the approved, unposted time up to `through` (or replay parked entries). The
        result's lists are bounded samples; the engagement's open exceptions come back as a
        count, a count per reason and a sample, read from the ledger, which holds them all."""
        if self.ledger is None:
            raise ApplicationError("the ledger is required to post time", type="Misconfigured", non_retryable=True)
        only = input.only_psa_ids
        if input.replay_open:
            only = await asyncio.to_thread(self.ledger.open_exception_psa_ids, input.opportunity_id)
        if only is not None:  # expenses share the queue (`expense:<id>`); post_approved_expenses replays them
            only = [i for i in only if not i.startswith(EXPENSE_KEY_PREFIX)]
        result = PostingResult()
        open_before: set[str] = set()
        if only is not None:
            open_before = set(await asyncio.to_thread(self.ledger.open_exception_psa_ids, input.opportunity_id))
            only, result.not_open = replay_targets(only, open_before)
            if not only:
                return await self._with_open_summary(input.opportunity_id, result)
        entries, watermark, references = await self._read_approved(input.model_copy(update={"only_psa_ids": only}))
        # written off by a steward: never posted, never parked again
        if entries:
            written_off = await asyncio.to_thread(self.ledger.written_off_among, [e.psa_id for e in entries])
            entries = [e for e in entries if e.psa_id not in written_off]
        if only is None and entries:
            # already parked: they wait for a steward's replay (after the cause is fixed), not for
            # every period close to check them again (2,000 parked entries x 60 periods)
            parked_now = set(await asyncio.to_thread(self.ledger.open_exception_psa_ids, input.opportunity_id))
            entries = [e for e in entries if e.psa_id not in parked_now]
        result.examined = len(entries)
        if not entries:
            # absolute figures even with nothing to post: a retried attempt finds everything its
            # predecessor posted (the engagement's totals must not stay at their old value)
            result.total_entries, result.total_minutes, result.last_date = await asyncio.to_thread(
                self.ledger.posted_totals, input.opportunity_id
            )
            await self._keep_watermark(input, watermark)
            return await self._with_open_summary(input.opportunity_id, result)
        periods, task_map = await periods_and_tasks(
            self.erp, self.psa, input.psa_workspace_id, [e.date_performed for e in entries]
        )
        parked: list[TimeExceptionInfo] = []

        for start in range(0, len(entries), input.batch_size):
            chunk = entries[start : start + input.batch_size]
            valid: list[tuple[TimeEntry, Decimal | None]] = []
            for entry in chunk:
                check = check_time_entry(
                    entry,
                    tasks=task_map,
                    rate_card=input.rate_card,
                    periods=periods,
                    bill_time=input.bill_time,
                    currency=input.currency,
                )
                if check.ok:
                    posted_entry = entry if input.bill_time else entry.model_copy(update={"billable": False})
                    valid.append((posted_entry, check.rate))
                else:
                    parked.append(
                        TimeExceptionInfo(psa_id=entry.psa_id, reason_code=check.reason_code, message=check.message)
                    )
            chunk_result = PostingResult()
            posted = await self._post_chunk(input, valid, chunk_result, references) if valid else []
            parked += chunk_result.exceptions
            result.posted += len(posted)
            result.posted_minutes += sum(p.minutes for p in posted)
            if posted:
                latest = max(p.date_performed for p in posted)
                result.last_date = max(result.last_date, latest) if result.last_date else latest
            activity.heartbeat(f"{start + len(chunk)}/{len(entries)} examined, {result.posted} posted")

        for exc in parked:
            await self._ledger(
                "upsert_exception", input.opportunity_id, input.workflow_id, exc.psa_id, exc.reason_code, exc.message
            )
        result.exceptions_count = len(parked)
        result.exceptions = parked[:OPEN_EXCEPTION_SAMPLE]
        # absolute figures: an earlier attempt of this activity may have posted part of the batch
        result.total_entries, result.total_minutes, last_posted = await asyncio.to_thread(
            self.ledger.posted_totals, input.opportunity_id
        )
        result.last_date = max(filter(None, [result.last_date, last_posted]), default=None)
        await self._keep_watermark(input, watermark)
        return await self._with_open_summary(input.opportunity_id, result, open_before)

    async def _keep_watermark(self, input: PostTimeInput, watermark: datetime | None) -> None:
        """Once everything read is posted or parked: the next run reads what changed after it."""
        if watermark is not None:
            await asyncio.to_thread(
                self.ledger.record_time_watermark, input.opportunity_id, input.psa_workspace_id, watermark
            )

    async def _with_open_summary(
        self, opportunity_id: str, result: PostingResult, open_before: set[str] | None = None
    ) -> PostingResult:
        """The engagement's open exceptions after this run (`batch.with_open_summary`)."""
        return await with_open_summary(self.ledger, opportunity_id, result, open_before)

    @activity.defn
    async def write_off_exceptions(self, input: WriteOffExceptionsInput) -> PostingResult:
        """A steward's decision that parked time will never be billed: the exceptions close as
        written off in the ledger (who and why kept with them) and are never posted again."""
        if self.ledger is None:
            raise ApplicationError("the ledger is required", type="Misconfigured", non_retryable=True)
        wanted = list(dict.fromkeys(input.psa_ids)) or None
        closed = await asyncio.to_thread(
            self.ledger.write_off_exceptions, input.opportunity_id, wanted, input.reason, input.requested_by
        )
        result = PostingResult(
            written_off=len(closed), resolved=closed[:OPEN_EXCEPTION_SAMPLE], resolved_count=len(closed)
        )
        if wanted is not None:
            # an id closed by an earlier attempt of this activity is not "not open": it was ours
            mine = set(closed) | await asyncio.to_thread(self.ledger.written_off_among, wanted)
            result.not_open = sorted(set(wanted) - mine)[:OPEN_EXCEPTION_SAMPLE]
        return await self._with_open_summary(input.opportunity_id, result)

    # --- invoices --------------------------------------------------------------------
    async def _unbilled_time(self, erp_project_id: str, through: date) -> list[PostedTime]:
        """The ERP says which timeBills are unbilled (one list call); what each one holds comes
        from the ledger, which recorded it when we posted it, and from the ERP only for any the
        ledger does not know. Time a steward wrote off at the budget cap is left out (the ERP
        still lists it as unbilled; q2c never bills it)."""
        ids = await self.erp.unbilled_time_ids(erp_project_id, through=through)
        if self.ledger is not None and ids:
            written_off = await asyncio.to_thread(self.ledger.budget_written_off_bills, ids)
            ids = [i for i in ids if i not in written_off]
        known = await asyncio.to_thread(self.ledger.posted_time_for_bills, ids) if self.ledger else []
        missing = sorted(set(ids) - {p.erp_time_bill_id for p in known})
        fetched = await self.erp.time_bills(missing) if missing else []
        activity.heartbeat(f"{len(ids)} unbilled timeBills ({len(fetched)} read from the ERP)")
        return sorted(known + fetched, key=lambda p: (p.date_performed, p.psa_id))

    async def _billable_now(
        self, erp_project_id: str, through: date, currency: str, room: Decimal | None
    ) -> tuple[list[PostedTime], list[PostedTime]]:
        """Unbilled billable time, split at the not-to-exceed room (date order, whole entries):
        (to bill, held). room=None: everything is billed."""
        unbilled = [u for u in await self._unbilled_time(erp_project_id, through) if u.billable]
        return split_at_room(unbilled, lambda p: posted_amount(p, currency), room)

    async def _split(
        self,
        erp_project_id: str,
        through: date,
        currency: str,
        room: Decimal | None,
        policy: ExpensePolicy | None,
        bill_time: bool,
    ) -> _Split:
        """What an invoice bills now and what it holds at the cap. Expenses (at cost + markup)
        go first and all together: they fit the room or are held together (reimbursements are
        not split between invoices); time fills what is left, in date order, whole entries."""
        out = _Split()
        if policy is not None and policy.billable:
            out.expense_lines, out.report_ids = await unbilled_expense_lines(
                self.expenses.erp_expenses, self.ledger, erp_project_id, through, currency, policy
            )
            total = invoice_total(out.expense_lines)
            if room is not None and total > room:
                out.held_reports, out.held_expenses = out.report_ids, total
                out.expense_lines, out.report_ids = [], []
            elif room is not None:
                room -= total
        if bill_time:
            out.time, out.held_time = await self._billable_now(erp_project_id, through, currency, room)
        out.held_amount = held_total(
            [out.held_expenses, *(posted_amount(p, currency) for p in out.held_time)], currency
        )
        out.held_items = len(out.held_time) + len(out.held_reports)
        return out

    @activity.defn
    @heartbeating
    async def issue_invoice(self, input: IssueInvoiceInput) -> InvoiceSummary | None:
        """Create the period's invoice once (external ID), or return the one already issued.
        A period with nothing to bill creates nothing and returns None.

        The given lines (a milestone, a retainer, re-billed corrections) come first, then the
        contract's billable expenses (`expense_policy`: at cost, plus its markup), then unbilled
        time. `bill_up_to` (T&M not-to-exceed): expenses and time join only while the invoice
        stays within it (expenses together, time in date order, whole entries); what does not
        fit is held: it stays posted and unbilled in the ERP, and the summary says how much
        (`held_amount`, `held_items`). When nothing at all can be billed, no invoice is made and
        the summary carries only the hold (no `erp_id`)."""
        fixed = invoice_total(input.lines)
        room = None if input.bill_up_to is None else max(Decimal(0), input.bill_up_to - fixed)
        split = await self._split(
            input.erp_project_id, input.period_end, input.currency, room, input.expense_policy, input.bill_unbilled_time
        )
        lines = list(input.lines) + split.expense_lines + time_invoice_lines(split.time, input.currency)
        invoice = Invoice(
            external_id=input.external_id,
            period_start=input.period_start,
            period_end=input.period_end,
            lines=lines,
            total=invoice_total(lines),
            currency=input.currency,
            time_bill_ids=[u.erp_time_bill_id for u in split.time],
        )
        if not invoice.lines:
            if await self.erp.get_by_external_id("invoice", input.external_id) is None:
                if not split.held_items:
                    return None  # nothing to bill, and nothing was billed by an earlier attempt
                return InvoiceSummary(
                    external_id=input.external_id,
                    period_start=input.period_start,
                    period_end=input.period_end,
                    total=Decimal(0),
                    currency=input.currency,
                    held_amount=split.held_amount,
                    held_items=split.held_items,
                )
        issued = await self.erp.upsert_invoice(
            invoice, customer_id=input.erp_customer_id, project_id=input.erp_project_id
        )
        await self._ledger("record_invoice", issued, input.opportunity_id)
        if split.time:
            await self._ledger("mark_time_invoiced", [u.psa_id for u in split.time], input.external_id)
        await mark_expenses_invoiced(self.ledger, split.report_ids, input.external_id)
        await self.crm.write_invoice_reference(
            input.opportunity_id,
            number=issued.number,
            amount=issued.total,
            currency=issued.currency,
            status=InvoiceStatus.OPEN.value,
        )
        # collection status comes from refresh_payments, never from the moment of issue
        return InvoiceSummary(
            external_id=input.external_id,
            erp_id=issued.erp_id,
            number=issued.number,
            period_start=input.period_start,
            period_end=input.period_end,
            total=issued.total,
            currency=issued.currency,
            status=InvoiceStatus.OPEN,
            open_balance=issued.total,
            held_amount=split.held_amount,
            held_items=split.held_items,
        )

    @activity.defn
    async def write_off_held_time(self, input: WriteOffHeldInput) -> InvoiceSummary:
        """A steward's write-off of what is held at the not-to-exceed cap: the time entries (and
        expense reports) an invoice would hold now are marked in the ledger
        (`budget-write-off:<request>`), so no invoice ever bills them; they stay posted in the
        ERP (cost and utilisation). Returns what was written off as a summary with no ERP
        invoice (amount in `held_amount`)."""
        if self.ledger is None:
            raise ApplicationError("the ledger is required", type="Misconfigured", non_retryable=True)
        split = await self._split(
            input.erp_project_id, input.through, input.currency, input.room, input.expense_policy, True
        )
        marker = f"{BUDGET_WRITE_OFF_PREFIX}{input.marker}"[:128]
        await self._ledger("mark_time_invoiced", [p.psa_id for p in split.held_time], marker)
        await mark_expenses_invoiced(self.ledger, split.held_reports, marker)
        return InvoiceSummary(
            external_id=marker,
            period_start=min((p.date_performed for p in split.held_time), default=input.through),
            period_end=input.through,
            total=Decimal(0),
            currency=input.currency,
            held_amount=split.held_amount,
            held_items=split.held_items,
        )

    # --- payments --------------------------------------------------------------------
    @activity.defn
    @heartbeating
    async def refresh_payments(self, input: RefreshPaymentsInput) -> list[PaymentStatus]:
        """Collection status of EVERY invoice of the engagement as the ERP has it now, copied to
        the CRM in one update. The CRM's figures are totals over all the invoices, paid ones
        included, so Amount_Paid__c only grows as payments arrive (summing open invoices only made
        it fall when an invoice was paid off or a new one issued); days overdue is the worst open
        invoice; the last-invoice fields follow the latest invoice's ERP status (Paid In Full
        included); the customer's unapplied payments (an overpayment) show as a credit.
        Returns one status per invoice, for the workflow's own bookkeeping."""
        return await self._write_collection(input)

    async def _write_collection(self, input: RefreshPaymentsInput) -> list[PaymentStatus]:
        """Credit memos: the ERP's `amountRemaining` is already net of what they apply, so the
        open balance is net; what was paid is the rest of the invoice less its credits
        (total - credited - remaining), so a credit never shows as money received, whether or
        not the ERP counts applied credits in an invoice's `amountPaid`."""
        invoice_ids = list(dict.fromkeys(input.invoice_erp_ids))  # an invoice listed twice counts once
        if not invoice_ids and input.budget is None:
            return []
        statuses = await self.erp.invoice_payment_status(invoice_ids, as_of=input.as_of) if invoice_ids else []
        credited = await self.erp.credited_by_invoice(invoice_ids) if invoice_ids else {}
        statuses = [
            s.model_copy(update={"amount_paid": max(Decimal(0), s.total - credited[s.invoice_erp_id] - s.open_balance)})
            if credited.get(s.invoice_erp_id)
            else s
            for s in statuses
        ]
        for status in statuses:
            await self._ledger("update_payment", status)
        credit = await self.erp.customer_credit(input.erp_customer_id) if input.erp_customer_id else None

        def created_order(item: tuple[int, PaymentStatus]) -> tuple[int, int]:
            # the ERP's internal IDs grow with creation: the latest invoice is the one issued last,
            # the same one issue_invoice wrote to the CRM when it was issued
            index, s = item
            return (int(s.invoice_erp_id) if s.invoice_erp_id.isdigit() else -1, index)

        latest = max(enumerate(statuses), key=created_order)[1] if statuses else None
        await self.crm.write_collection_status(
            input.opportunity_id,
            amount_paid=sum((s.amount_paid for s in statuses), Decimal(0)),
            open_balance=sum((s.open_balance for s in statuses), Decimal(0)),
            days_overdue=max((s.days_overdue for s in statuses if s.open_balance > 0), default=0),
            unapplied_credit=credit,
            last_invoice_number=latest.invoice_number if latest else None,
            last_invoice_amount=latest.total if latest else None,
            last_invoice_currency=latest.currency if latest else None,
            last_invoice_status=latest.status.value if latest else None,
            extra_fields=budget_fields(
                billed=sum((s.total for s in statuses), Decimal(0)),
                credited=sum((credited.get(s.invoice_erp_id, Decimal(0)) for s in statuses), Decimal(0)),
                cap=input.budget.cap if input.budget else None,
                used_percent=input.budget.used_percent if input.budget else None,
                held=input.budget.held_amount if input.budget else None,
                status=input.budget.status_text() if input.budget else None,
            ),
        )
        return statuses

    # --- credit notes ----------------------------------------------------------------
    @activity.defn
    @heartbeating
    async def credit_invoice(self, input: CreditMemoActivityInput) -> CreditMemoActivityResult:
        """A steward's credit on an issued invoice: an ERP credit memo applied to it (keyed by
        the request's external ID, so a retry finds the memo instead of crediting again), the
        credit note in the ledger, then the CRM's collection totals written again, net of it.
        The ERP's refusal (more than the invoice still owes, a closed period) is raised as is:
        the workflow fails the steward's request with the ERP's message, nothing written."""
        memo = await self.erp.upsert_credit_memo(
            input.external_id,
            customer_id=input.erp_customer_id,
            project_id=input.erp_project_id,
            invoice_id=input.invoice_erp_id,
            invoice_number=input.invoice_number,
            amount=input.amount,
            currency=input.currency,
            on=input.credited_on,
            reason=input.reason,
        )
        note = CreditNoteSummary(
            external_id=input.external_id,
            erp_id=memo.erp_id,
            number=memo.number,
            invoice_external_id=input.invoice_external_id,
            invoice_number=input.invoice_number,
            amount=memo.applied.get(input.invoice_erp_id, memo.total),
            currency=memo.currency or input.currency,
            reason=input.reason,
            requested_by=input.requested_by,
            credited_on=memo.tran_date or input.credited_on,
        )
        if self.ledger is not None:
            row = LedgerCreditNote(
                external_id=note.external_id,
                erp_id=note.erp_id,
                number=note.number,
                opportunity_id=input.opportunity_id,
                invoice_external_id=input.invoice_external_id,
                invoice_erp_id=input.invoice_erp_id,
                amount=note.amount,
                currency=note.currency,
                reason=clip(input.reason, REASON_MAX),
                requested_by=clip(input.requested_by, PERSON_MAX),
                credited_on=note.credited_on,
            )
            await asyncio.to_thread(lambda: CreditNotes(self.ledger.engine).record(row))
        statuses = await self._write_collection(
            RefreshPaymentsInput(
                opportunity_id=input.opportunity_id,
                invoice_erp_ids=input.invoice_erp_ids or [input.invoice_erp_id],
                as_of=input.credited_on,
                erp_customer_id=input.erp_customer_id,
            )
        )
        mine = next((s for s in statuses if s.invoice_erp_id == input.invoice_erp_id), None)
        note.invoice_open_balance = mine.open_balance if mine else None
        return CreditMemoActivityResult(note=note, statuses=statuses)

    # --- closure ---------------------------------------------------------------------
    @activity.defn
    @heartbeating
    async def close_erp_project(self, input: CloseSystemsInput) -> None:
        if input.erp_project_id:
            await self.erp.close_project(input.erp_project_id)

    @activity.defn
    @heartbeating
    async def close_psa_workspace(self, input: CloseSystemsInput) -> None:
        if input.psa_workspace_id:
            await self.psa.close_workspace(input.psa_workspace_id)

    @activity.defn
    @heartbeating
    async def write_crm_status(self, input: CrmStatusInput) -> None:
        """Q2C_Status__c only (the stage, mirrored): every other reference field is left as it
        is, so a status change never blanks IDs, the contract version or collection figures."""
        await self.crm.write_back_provisioning(
            input.opportunity_id, erp_customer_id=None, erp_project_id=None, psa_workspace_id=None, status=input.status
        )

    def all(self) -> list:
        return [
            self.post_approved_time,
            self.write_off_exceptions,
            self.issue_invoice,
            self.write_off_held_time,
            self.refresh_payments,
            self.credit_invoice,
            self.close_erp_project,
            self.close_psa_workspace,
            self.write_crm_status,
            *self.expenses.all(),
        ]
