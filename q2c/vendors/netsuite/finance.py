"""NetSuite delivery-to-cash calls (mixed into `NetSuiteClient`): accounting periods, time
posting, unbilled time, invoices, payment status, a customer's unapplied payments (credit),
project closure.

Request budget and the account-wide concurrency limit (5 in-flight requests on small
accounts, shared by every integration): every fan-out here runs under its own semaphore
(default 3), so one q2c call never takes the whole account. The record API's list
endpoint answers IDs only, so reads are one filtered list (`q`) plus one GET per record;
the filter keeps that to the records actually needed (SuiteQL would do it in one call, but
is not offered by the sandbox).

Idempotency: every write is keyed by an external ID (`timeBill` `psa-<entry id>`, invoice
`inv-...`), so a retried batch never posts twice; an invoice that exists is returned as the
ERP has it and never changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import date
from decimal import Decimal
from typing import TypeVar

from temporalio.exceptions import ApplicationError

from q2c.domain.delivery import AccountingPeriod, Invoice, PaymentStatus, PostedTime, TimeEntry
from q2c.vendors.http import REJECTED_TYPE
from q2c.vendors.netsuite.finance_mapping import (
    CreditMemoResult,
    TimeBillResult,
    UnappliedPayment,
    credit_memo_from_record,
    credit_memo_payload,
    credit_memos_query,
    invoice_from_record,
    invoice_payload,
    payment_status_from_record,
    period_from_record,
    posted_time_from_record,
    quote_q,
    ref_id,
    time_bill_external_id,
    time_bill_payload,
    unapplied_payment_from_record,
    unapplied_payments_query,
    unbilled_time_query,
)
from q2c.vendors.netsuite.mapping import RECORD_PATH, MappingError, dumps_exact, mapping_error

T = TypeVar("T")
READ_CONCURRENCY = 3
CLOSED_STATUS = {"entityStatus": {"id": "CLOSED"}}
SANDBOX_PAYMENTS_PATH = "/__sandbox/payments"


async def _bounded(limit: int, jobs: list[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run the jobs at most `limit` at a time, in order; every job finishes before the first
    failure is raised (no request is left running behind the caller's back)."""
    gate = asyncio.Semaphore(max(1, limit))

    async def run(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    results = await asyncio.gather(*(run(j) for j in jobs), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results  # type: ignore[return-value]


def _rejection(psa_id: str, err: ApplicationError) -> TimeBillResult:
    details = err.details[0] if err.details and isinstance(err.details[0], dict) else {}
    first = (details.get("errors") or [{}])[0]
    fields = first.get("fields") or []
    return TimeBillResult(
        psa_id=psa_id,
        error_code=first.get("code") or "REJECTED",
        error_field=fields[0] if fields else None,
        message=first.get("message") or err.message,
    )


class NetSuiteFinanceMixin:
    """Needs NetSuiteClient's request/_upsert/get_record/find_ids/currency lookups."""

    async def list_accounting_periods(
        self, *, ending_on_or_after: date | None = None, starting_on_or_before: date | None = None
    ) -> list[AccountingPeriod]:
        """Every accounting period (or those overlapping a date range), in date order.

        The record API lists IDs only, so each period is one more GET: callers narrow the
        range to the dates they actually need."""
        clauses = []
        if ending_on_or_after:
            clauses.append(f"endDate ON_OR_AFTER {quote_q(ending_on_or_after.isoformat())}")
        if starting_on_or_before:
            clauses.append(f"startDate ON_OR_BEFORE {quote_q(starting_on_or_before.isoformat())}")
        q = " AND ".join(clauses) or None
        ids = await self.find_ids("accountingPeriod", q)
        records = await _bounded(READ_CONCURRENCY, [(lambda i=i: self.get_record("accountingPeriod", i)) for i in ids])
        periods = [period_from_record(r) for r in records if not r.get("isQuarter") and not r.get("isYear")]
        return sorted(periods, key=lambda p: p.start_date)

    async def post_time_bills(
        self,
        *,
        project_id: str,
        entries: list[tuple[TimeEntry, Decimal | None]],
        currency: str,
        max_concurrency: int = 3,
        transient_as_results: bool = False,
    ) -> list[TimeBillResult]:
        """Upsert one timeBill per entry (`PUT timeBill/eid:psa-<id>`), at most
        `max_concurrency` at a time. A data rejection (4xx) is returned as a result with the
        vendor's code, field and message; retryable failures (429, 5xx, timeouts) and auth
        failures are raised, after every other request of the batch has finished — or, with
        `transient_as_results`, returned as results marked `retryable` so the caller keeps
        what succeeded."""

        async def post(entry: TimeEntry, rate: Decimal | None) -> TimeBillResult:
            payload = time_bill_payload(entry, rate, project_id, currency)
            try:
                bill_id = await self._upsert("timeBill", time_bill_external_id(entry.psa_id), payload, "post_time_bill")
            except ApplicationError as err:
                if err.type == REJECTED_TYPE and err.non_retryable:
                    return _rejection(entry.psa_id, err)
                if transient_as_results and not err.non_retryable:
                    # the caller keeps what succeeded and posts this one again
                    return TimeBillResult(psa_id=entry.psa_id, error_code=err.type, message=err.message, retryable=True)
                raise
            return TimeBillResult(psa_id=entry.psa_id, erp_time_bill_id=bill_id)

        return await _bounded(max_concurrency, [(lambda e=e, r=r: post(e, r)) for e, r in entries])

    async def unbilled_time_ids(self, project_id: str, *, through: date) -> list[str]:
        """IDs of the project's billable, not yet billed timeBills dated on or before `through`
        (one filtered list call)."""
        return await self.find_ids("timeBill", unbilled_time_query(project_id, through))

    async def time_bills(self, ids: list[str]) -> list[PostedTime]:
        """The given timeBills, one GET each (bounded concurrency)."""
        records = await _bounded(READ_CONCURRENCY, [(lambda i=i: self.get_record("timeBill", i)) for i in ids])
        return sorted((posted_time_from_record(r) for r in records), key=lambda p: (p.date_performed, p.psa_id))

    async def list_unbilled_time(self, project_id: str, *, through: date) -> list[PostedTime]:
        """Billable, not yet billed timeBills of the project dated on or before `through`:
        one filtered list call (`q`), then one GET per timeBill."""
        ids = await self.find_ids("timeBill", unbilled_time_query(project_id, through))
        records = await _bounded(READ_CONCURRENCY, [(lambda i=i: self.get_record("timeBill", i)) for i in ids])
        posted = [posted_time_from_record(r) for r in records]
        return sorted(posted, key=lambda p: (p.date_performed, p.psa_id))

    async def _invoice_model(self, record: dict, requested: Invoice | None = None) -> Invoice:
        currency = await self.currency_code(ref_id(record.get("currency")))
        return invoice_from_record(record, currency, requested)

    async def upsert_invoice(self, invoice: Invoice, *, customer_id: str, project_id: str) -> Invoice:
        """The invoice keyed by `invoice.external_id`: returned as the ERP has it if it exists
        (an issued invoice is never changed), else created with its lines and timeBills.
        The result carries the ERP's ID, number (`tranId`), total and status."""
        existing = await self.get_by_external_id("invoice", invoice.external_id, expand=True)
        if existing is not None:
            return await self._invoice_model(existing, invoice)
        operation = "upsert_invoice"
        try:
            currency_id = await self.currency_id(invoice.currency)
        except MappingError as err:
            raise mapping_error(operation, err) from err
        payload = invoice_payload(invoice, customer_id, project_id, currency_id)
        invoice_id = await self._upsert("invoice", invoice.external_id, payload, operation)
        return await self._invoice_model(await self.get_record("invoice", invoice_id, expand=True), invoice)

    async def invoice_payment_status(self, invoice_ids: list[str], *, as_of: date) -> list[PaymentStatus]:
        """Collection status of each invoice (internal IDs), days overdue counted from the
        invoice's due date to `as_of` while a balance is open."""
        records = await _bounded(READ_CONCURRENCY, [(lambda i=i: self.get_record("invoice", i)) for i in invoice_ids])
        result = []
        for record in records:
            currency = await self.currency_code(ref_id(record.get("currency")))
            result.append(payment_status_from_record(record, currency, as_of))
        return result

    async def unapplied_payments(self, customer_id: str) -> list[UnappliedPayment]:
        """The customer's payments that carry an amount applied to no invoice (an overpayment,
        or money received before its invoice): one filtered `customerPayment` list call, then
        one GET per such payment. NetSuite keeps that amount on the payment (`unapplied`), a
        credit on the customer's account, not on any invoice."""
        ids = await self.find_ids("customerPayment", unapplied_payments_query(customer_id))
        # the `apply` sublist names the invoices the payment went to: only expanded on request
        records = await _bounded(
            READ_CONCURRENCY, [(lambda i=i: self.get_record("customerPayment", i, expand=True)) for i in ids]
        )
        result = []
        for record in records:
            currency = await self.currency_code(ref_id(record.get("currency")))
            result.append(unapplied_payment_from_record(record, currency))
        return sorted(result, key=lambda p: (p.received_on or date.min, p.payment_id))

    async def customer_credit(self, customer_id: str) -> Decimal:
        """The customer's unapplied payments in total (in the customer's currency, the only one
        its payments can be in)."""
        return sum((p.unapplied for p in await self.unapplied_payments(customer_id)), Decimal(0))

    async def upsert_credit_memo(
        self,
        external_id: str,
        *,
        customer_id: str,
        project_id: str | None,
        invoice_id: str,
        invoice_number: str | None,
        amount: Decimal,
        currency: str,
        on: date,
        reason: str,
    ) -> CreditMemoResult:
        """Credit `amount` of an issued invoice (NetSuite: an issued invoice is corrected by a
        credit memo applied to it, never edited). Keyed by `external_id`: a memo that exists is
        returned as the ERP has it, never written again, so a retried request credits once.
        An amount beyond what the invoice still owes is the ERP's 400 (raised, non-retryable)."""
        operation = "credit_invoice"
        existing = await self.get_by_external_id("creditMemo", external_id, expand=True)
        if existing is None:
            try:
                currency_id = await self.currency_id(currency)
            except MappingError as err:
                raise mapping_error(operation, err) from err
            payload = credit_memo_payload(
                customer_id=customer_id,
                project_id=project_id,
                invoice_id=invoice_id,
                invoice_number=invoice_number,
                amount=amount,
                currency_id=currency_id,
                on=on,
                reason=reason,
            )
            memo_id = await self._upsert("creditMemo", external_id, payload, operation)
            existing = await self.get_record("creditMemo", memo_id, expand=True)
        return credit_memo_from_record(existing, await self.currency_code(ref_id(existing.get("currency"))))

    async def credited_by_invoice(self, invoice_ids: list[str]) -> dict[str, Decimal]:
        """What credit memos created from these invoices apply to each of them (q2c's and any
        a user made in the ERP): one filtered list call, then one GET per memo."""
        if not invoice_ids:
            return {}
        ids = await self.find_ids("creditMemo", credit_memos_query(invoice_ids))
        records = await _bounded(
            READ_CONCURRENCY, [(lambda i=i: self.get_record("creditMemo", i, expand=True)) for i in ids]
        )
        wanted, credited = set(invoice_ids), {}
        for record in records:
            for invoice_id, value in credit_memo_from_record(record, "").applied.items():
                if invoice_id in wanted:
                    credited[invoice_id] = credited.get(invoice_id, Decimal(0)) + value
        return credited

    async def close_project(self, project_id: str) -> None:
        """Set the job's status to Closed (`PATCH job/{id}`); closing a closed job is a no-op."""
        await self.request(
            "PATCH",
            f"{RECORD_PATH}/job/{project_id}",
            operation="close_project",
            content=dumps_exact(CLOSED_STATUS).encode(),
            headers={"Content-Type": "application/json"},
        )

    async def record_payment(self, invoice_id: str, amount: Decimal | None, on: date) -> None:
        """Sandbox only (demo/tests): the customer pays `amount` (default: the open balance)
        against the invoice; an amount beyond the open balance is left unapplied (a credit)."""
        body: dict = {"invoice_id": invoice_id, "date": on.isoformat()}
        if amount is not None:
            body["amount"] = amount
        await self.request(
            "POST",
            SANDBOX_PAYMENTS_PATH,
            operation="record_payment",
            content=dumps_exact(body).encode(),
            headers={"Content-Type": "application/json"},
            ok_statuses=(200,),
        )
