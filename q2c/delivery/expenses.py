"""Activities for expenses: approved PSA expenses -> ERP expense reports, once; invoice lines.

The same shape as time (`q2c.delivery.activities.post_approved_time`): ONE activity per run
however many expenses it carries (paged reads, batched writes, a heartbeat per batch); read
-> compare with the ledger -> validate -> post (keyed `exp-<PSA id>`, so a retry never posts
twice) -> ledger -> PSA mark. What fails validation or is refused by the ERP goes to the same
exception queue as time under `expense:<PSA id>`, so a steward's replay (`replay_open`, or
`only_psa_ids`) and write-off (`DeliveryActivities.write_off_exceptions` with those ids) work
through the existing actions.

Wiring (the lead's part): `ExpenseActivities(crm=crm, erp=erp, psa=psa, ledger=ledger).all()`
next to `DeliveryActivities` in `q2c/worker.py` (the same connector objects); in
`DeliveryActivities.issue_invoice`, `lines, report_ids = await unbilled_expense_lines(
NetSuiteExpenses(self.erp), self.ledger, ...)` appended to the invoice's lines, then
`await mark_expenses_invoiced(self.ledger, report_ids, external_id)` once it is issued.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from q2c.delivery.batch import (
    next_watermark,
    periods_and_tasks,
    post_in_attempts,
    replay_targets,
    with_open_summary,
)
from q2c.delivery.retry import with_transient_retries
from q2c.domain.delivery import InvoiceLine
from q2c.domain.expenses import (
    ERP_REJECTED,
    PERIOD_CLOSED,
    PROJECT_CLOSED,
    Expense,
    ExpensePolicy,
    PostedExpense,
    check_expense,
    exception_key,
    expense_invoice_lines,
    psa_id_of,
)
from q2c.engagement.messages import OPEN_EXCEPTION_SAMPLE, PostingResult, TimeExceptionInfo
from q2c.ledger.expenses import PostedExpenses
from q2c.ledger.store import BUDGET_WRITE_OFF_PREFIX
from q2c.vendors.kantata.expenses import KantataExpenses
from q2c.vendors.netsuite.expenses import NetSuiteExpenses

if TYPE_CHECKING:
    from q2c.ledger.store import Ledger
    from q2c.vendors.kantata.client import KantataClient
    from q2c.vendors.netsuite.client import NetSuiteClient
    from q2c.vendors.salesforce.client import SalesforceClient

# The PSA expense watermark, kept as a cross-reference row like the time watermark.
EXPENSE_WATERMARK = "psa_expense_watermark"


class PostExpensesInput(BaseModel):
    opportunity_id: str
    workflow_id: str
    erp_project_id: str
    psa_workspace_id: str
    through: date  # post approved expenses dated up to and including this date
    currency: str  # the engagement's: expenses are converted to it and posted in it
    policy: ExpensePolicy = Field(default_factory=ExpensePolicy)
    only_psa_ids: list[str] | None = None  # a replay: `expense:<id>` queue ids (plain PSA ids are accepted too)
    replay_open: bool = False  # a replay of every open expense exception of the engagement
    batch_size: int = 50


def _key(value: str) -> str:
    return value if psa_id_of(value) is not None else exception_key(value)


def _differs(expense: Expense, posted: PostedExpense | None, billable: bool) -> bool:
    """Whether an approved expense must be posted: never posted, or posted with another date,
    amount, currency, category or billable flag (as posted)."""
    if posted is None:
        return True
    return (
        posted.date_incurred,
        posted.original_amount,
        posted.original_currency,
        posted.category,
        posted.billable,
    ) != (expense.date_incurred, expense.amount, expense.currency, expense.category, billable)


def _erp_reason(field: str | None, message: str | None) -> str:
    text = (message or "").lower()
    if "closed" in text and ("period" in text or field in ("tranDate", "postingPeriod")):
        return PERIOD_CLOSED
    if "closed" in text and "project" in text:
        return PROJECT_CLOSED
    return ERP_REJECTED


class ExpenseActivities:
    def __init__(
        self, crm: SalesforceClient | None, erp: NetSuiteClient, psa: KantataClient, ledger: Ledger | None = None
    ) -> None:
        self.crm = crm
        self.erp = erp
        self.psa = psa
        self.ledger = ledger
        self.erp_expenses = NetSuiteExpenses(erp)
        self.psa_expenses = KantataExpenses(psa)
        self._posted: PostedExpenses | None = None

    async def _store(self) -> PostedExpenses:
        if self._posted is None:
            assert self.ledger is not None
            self._posted = await asyncio.to_thread(PostedExpenses, self.ledger.engine)
        return self._posted

    async def _open_keys(self, opportunity_id: str) -> list[str]:
        keys = await asyncio.to_thread(self.ledger.open_exception_psa_ids, opportunity_id)
        return [k for k in keys if psa_id_of(k) is not None]

    # --- reading ------------------------------------------------------------------------
    async def _read(
        self, input: PostExpensesInput, only: list[str] | None
    ) -> tuple[list[Expense], datetime | None, dict[str, list[dict[str, str]]]]:
        """The approved expenses to post now, the PSA watermark to keep once they are posted
        (None: keep the old one: a replay, or a read the PSA changed under) and each expense's
        q2c references as read. As for time: read what changed since the watermark (or the
        replay's ids), leave out what the ledger says was posted unchanged."""
        workspace = input.psa_workspace_id
        if only is not None:
            ids = [psa_id_of(k) or k for k in only]
            read = await with_transient_retries(
                lambda: self.psa_expenses.read_approved_expenses(workspace, only_ids=ids)
            )
            activity.heartbeat(f"read {len(read.expenses)} approved expenses to replay ({read.pages} requests)")
            due, watermark = [e for e in read.expenses if e.date_incurred <= input.through], None
        else:
            value = await asyncio.to_thread(self.ledger.xref, EXPENSE_WATERMARK, "psa", str(workspace))
            since = datetime.fromisoformat(value) if value else None
            read = await with_transient_retries(
                lambda: self.psa_expenses.read_approved_expenses(workspace, updated_after=since)
            )
            activity.heartbeat(
                f"read {len(read.expenses)} approved expenses changed since {since or 'the start'}"
                f" ({read.pages} requests)"
            )
            due = [e for e in read.expenses if e.date_incurred <= input.through]
            later = [e for e in read.expenses if e.date_incurred > input.through]
            watermark = next_watermark(read.stable, read.server_time, read.updated_at, (e.psa_id for e in later))
        store = await self._store()
        posted = await asyncio.to_thread(store.by_psa_id, [e.psa_id for e in due])
        fresh = [e for e in due if _differs(e, posted.get(e.psa_id), e.billable and input.policy.billable)]
        return fresh, watermark, read.references

    async def _keep_watermark(self, input: PostExpensesInput, watermark: datetime | None) -> None:
        if watermark is not None:
            await asyncio.to_thread(
                self.ledger.record_xref,
                input.opportunity_id,
                EXPENSE_WATERMARK,
                "psa",
                str(input.psa_workspace_id),
                watermark.isoformat(),
            )

    # --- posting ------------------------------------------------------------------------
    async def _post_chunk(
        self,
        input: PostExpensesInput,
        valid: list[tuple[Expense, Decimal, Decimal, bool]],
        parked: list[TimeExceptionInfo],
        references: dict[str, list[dict[str, str]]],
    ) -> list[PostedExpense]:
        """Post one chunk and mark each posted expense in the PSA, retrying transient failures
        expense by expense; what is posted and recorded stays done even if the attempt fails
        (`batch.post_in_attempts`)."""
        store = await self._store()
        Item = tuple[Expense, Decimal, Decimal, bool]

        async def send(items: list[Item]) -> list:
            return await self.erp_expenses.post_expenses(
                project_id=input.erp_project_id, items=items, currency=input.currency, transient_as_results=True
            )

        def posted_of(item: Item, outcome) -> PostedExpense | None:
            expense, rate, amount, billable = item
            if not outcome.erp_expense_report_id:
                return None
            return PostedExpense(
                psa_id=expense.psa_id,
                erp_expense_report_id=outcome.erp_expense_report_id,
                category=expense.category,
                date_incurred=expense.date_incurred,
                original_amount=expense.amount,
                original_currency=expense.currency,
                exchange_rate=rate,
                amount=amount,
                currency=input.currency,
                billable=billable,
            )

        def rejection_of(item: Item, outcome) -> TimeExceptionInfo:
            return TimeExceptionInfo(
                psa_id=exception_key(item[0].psa_id),
                reason_code=_erp_reason(outcome.error_field, outcome.message),
                message=f"ERP rejected the expense report: {outcome.error_code}: {outcome.message}",
            )

        async def record(done: list[PostedExpense]) -> None:
            # the ledger first: it tells the next run what is posted, and invoices use it
            await asyncio.to_thread(store.record, done, input.opportunity_id)
            await asyncio.to_thread(self.ledger.resolve_exceptions, [exception_key(p.psa_id) for p in done])

        async def mark(done: PostedExpense) -> None:
            # the read's references spare the lookup once; a retried mark looks (it may have landed)
            tries = iter([references.pop(done.psa_id, None)])
            await with_transient_retries(
                lambda: self.psa_expenses.mark_expense_posted(
                    done.psa_id, done.erp_expense_report_id, known=next(tries, None)
                )
            )

        return await post_in_attempts(
            {e.psa_id: (e, rate, amount, billable) for e, rate, amount, billable in valid},
            send,
            posted_of,
            rejection_of,
            record,
            mark,
            parked,
            "expenses",
        )

    @activity.defn
    async def post_approved_expenses(self, input: PostExpensesInput) -> PostingResult:
        """Post the approved, unposted expenses dated up to `through` (or replay parked ones).

        `PostingResult` as for time: `examined`/`posted` count expenses (`posted_minutes`
        stays 0), exceptions carry the queue id `expense:<PSA id>`, and the open summary is
        the engagement's whole queue (time and expenses) from the ledger."""
        if self.ledger is None:
            raise ApplicationError("the ledger is required to post expenses", type="Misconfigured", non_retryable=True)
        only = [_key(i) for i in input.only_psa_ids] if input.only_psa_ids is not None else None
        if input.replay_open:
            only = await self._open_keys(input.opportunity_id)
        result = PostingResult()
        open_before: set[str] = set()
        if only is not None:
            open_before = set(await self._open_keys(input.opportunity_id))
            only, result.not_open = replay_targets(only, open_before)
            if not only:
                return await self._with_open_summary(input.opportunity_id, result)
        expenses, watermark, references = await self._read(input, only)
        if expenses:
            written_off = await asyncio.to_thread(
                self.ledger.written_off_among, [exception_key(e.psa_id) for e in expenses]
            )
            expenses = [e for e in expenses if exception_key(e.psa_id) not in written_off]
        if only is None and expenses:
            parked_now = set(await self._open_keys(input.opportunity_id))
            expenses = [e for e in expenses if exception_key(e.psa_id) not in parked_now]
        result.examined = len(expenses)
        if not expenses:
            await self._keep_watermark(input, watermark)
            return await self._with_open_summary(input.opportunity_id, result, open_before)
        periods, task_map = await periods_and_tasks(
            self.erp, self.psa, input.psa_workspace_id, [e.date_incurred for e in expenses]
        )
        parked: list[TimeExceptionInfo] = []
        for start in range(0, len(expenses), input.batch_size):
            chunk = expenses[start : start + input.batch_size]
            valid: list[tuple[Expense, Decimal, Decimal, bool]] = []
            for expense in chunk:
                rate = await with_transient_retries(
                    lambda e=expense: self.erp_expenses.exchange_rate(e.currency, input.currency, e.date_incurred)
                )
                check = check_expense(
                    expense,
                    currency=input.currency,
                    periods=periods,
                    rate=rate,
                    policy=input.policy,
                    tasks=task_map,
                )
                if check.ok:
                    assert check.exchange_rate is not None and check.amount is not None
                    billable = expense.billable and input.policy.billable
                    valid.append((expense, check.exchange_rate, check.amount, billable))
                else:
                    parked.append(
                        TimeExceptionInfo(
                            psa_id=exception_key(expense.psa_id), reason_code=check.reason_code, message=check.message
                        )
                    )
            posted = await self._post_chunk(input, valid, parked, references) if valid else []
            result.posted += len(posted)
            if posted:
                latest = max(p.date_incurred for p in posted)
                result.last_date = max(result.last_date, latest) if result.last_date else latest
            activity.heartbeat(f"{start + len(chunk)}/{len(expenses)} expenses examined, {result.posted} posted")
        for exc in parked:
            await asyncio.to_thread(
                self.ledger.upsert_exception,
                input.opportunity_id,
                input.workflow_id,
                exc.psa_id,
                exc.reason_code or ERP_REJECTED,
                exc.message or "",
            )
        result.exceptions_count = len(parked)
        result.exceptions = parked[:OPEN_EXCEPTION_SAMPLE]
        await self._keep_watermark(input, watermark)
        return await self._with_open_summary(input.opportunity_id, result, open_before)

    async def _with_open_summary(
        self, opportunity_id: str, result: PostingResult, open_before: set[str] | None = None
    ) -> PostingResult:
        """The engagement's whole queue (time and expenses) after this run; `open_before` holds
        only expense keys, so what it resolved is the same against the whole queue
        (`batch.with_open_summary`)."""
        return await with_open_summary(self.ledger, opportunity_id, result, open_before)

    def all(self) -> list:
        return [self.post_approved_expenses]


# --- invoices (called from DeliveryActivities.issue_invoice; not activities) -------------------


async def unbilled_expense_lines(
    erp_expenses: NetSuiteExpenses,
    ledger: Ledger | None,
    project_id: str,
    through: date,
    currency: str,
    policy: ExpensePolicy,
) -> tuple[list[InvoiceLine], list[str]]:
    """The invoice's expense lines for the project's billable, unbilled expenses dated up to
    `through`, and the ERP expense report ids they bill. The ERP says which are unbilled (one
    list call); what each holds comes from the ledger (recorded when posted) and from the ERP
    only for reports the ledger does not know. Nothing when the policy does not bill expenses."""
    if not policy.billable:
        return [], []
    ids = await erp_expenses.unbilled_expense_ids(project_id, through=through)
    if ids and ledger is not None:
        # written off by the PMO at a not-to-exceed cap: the ERP still lists them as unbilled
        store = await asyncio.to_thread(PostedExpenses, ledger.engine)
        off = await asyncio.to_thread(store.marked_with_prefix, ids, BUDGET_WRITE_OFF_PREFIX)
        ids = [i for i in ids if i not in off]
    if not ids:
        return [], []
    known: list[PostedExpense] = []
    if ledger is not None:
        store = await asyncio.to_thread(PostedExpenses, ledger.engine)
        known = [p for p in await asyncio.to_thread(store.for_reports, ids) if p.billable]
    missing = sorted(set(ids) - {p.erp_expense_report_id for p in known})
    fetched = await erp_expenses.expense_reports(missing, unbilled_only=True) if missing else []
    posted = sorted(known + fetched, key=lambda p: (p.date_incurred, p.psa_id))
    lines = expense_invoice_lines(posted, currency, policy)
    return lines, sorted({p.erp_expense_report_id for p in posted}, key=lambda i: (len(i), i))


async def mark_expenses_invoiced(ledger: Ledger | None, report_ids: list[str], invoice_external_id: str) -> int:
    """The ledger's note of which invoice billed these expense reports (after it is issued)."""
    if ledger is None or not report_ids:
        return 0
    store = await asyncio.to_thread(PostedExpenses, ledger.engine)
    return await asyncio.to_thread(store.mark_invoiced, report_ids, invoice_external_id)
