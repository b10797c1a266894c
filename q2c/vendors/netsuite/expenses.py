"""NetSuite (ERP) expenses: exchange rates, expense reports, unbilled expenses. Built on
`NetSuiteClient` (its token, concurrency cap, retries classification and audit).

NetSuite facts this relies on (the sandbox's rules are in sandboxes/erp/expenses.py):
- an `expenseReport` holds an employee's expenses in its `expense` sublist; a line has
  `category`, `expenseDate`, `foreignAmount` in the line's `currency`, `exchangeRate`, `amount`
  (in the report's `expenseReportCurrency`), `isBillable` and `customer` (the project, a job,
  the expense is billable to), `memo`, `receipt`. q2c posts ONE report per PSA expense, keyed
  by external ID `exp-<PSA expense id>` (`PUT expenseReport/eid:exp-<id>`, an upsert), so a
  retried batch, a worker restart or a replay never posts an expense twice. The report is in
  the engagement's currency; the line carries the original amount and currency, the rate and
  the converted amount (`q2c.domain.expenses.convert`), which the ERP checks against its own
  foreignAmount x exchangeRate;
- `currencyRate` records (`baseCurrency`, `transactionCurrency`, `exchangeRate` = units of the
  base currency per unit of the transaction currency, `effectiveDate`) give the rate in force
  on a day: the latest effective on or before it. The list call filters by currencies and
  date (first within the 31 days before the day, else any earlier date), then one GET per
  candidate; the answers are cached per (from, to, day) for the life of this object;
- an invoice bills expenses in its `expCost` sublist (see finance_mapping.invoice_payload);
  a billed line is `isBilled`, and the ERP refuses to bill it again. The project's unbilled
  billable expenses are one filtered list call (`custbody_job ANY_OF [<project>] AND
  custbody_unbilled IS true AND tranDate ON_OR_BEFORE "<through>"`; the sandbox's stand-in
  for the SuiteQL a production integration would run over the expense lines), then one GET
  per report.

Wired from the worker's existing client: `NetSuiteExpenses(NetSuiteClient(settings.erp))`.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from pydantic import BaseModel
from temporalio.exceptions import ApplicationError

from q2c.domain.expenses import Expense, PostedExpense
from q2c.vendors.http import REJECTED_TYPE
from q2c.vendors.netsuite.client import NetSuiteClient
from q2c.vendors.netsuite.finance import READ_CONCURRENCY, _bounded
from q2c.vendors.netsuite.finance_mapping import dec, ref_id
from q2c.vendors.netsuite.mapping import MappingError, mapping_error, quote_q, ref

EXPENSE_REPORT_PREFIX = "exp-"
RATE_WINDOW_DAYS = 31


class ExpensePostResult(BaseModel):
    """The outcome of posting one expense: an expense report ID, or the ERP's rejection."""

    psa_id: str
    erp_expense_report_id: str | None = None
    error_code: str | None = None
    error_field: str | None = None
    message: str | None = None
    retryable: bool = False  # a transient failure (429, 5xx, timeout): post it again later

    @property
    def ok(self) -> bool:
        return self.erp_expense_report_id is not None


def expense_report_external_id(psa_id: str) -> str:
    return f"{EXPENSE_REPORT_PREFIX}{psa_id}"


def expense_report_payload(
    expense: Expense,
    *,
    project_id: str,
    report_currency_id: str,
    line_currency_id: str,
    exchange_rate: Decimal,
    amount: Decimal,
    billable: bool,
) -> dict:
    """One report, one line: the original amount and currency, the rate and the converted
    amount, billable to the project when `billable` (the expense's flag and the contract's)."""
    line: dict = {
        "category": {"refName": expense.category[:100]},
        "expenseDate": expense.date_incurred.isoformat(),
        "foreignAmount": expense.amount,
        "currency": ref(line_currency_id),
        "exchangeRate": exchange_rate,
        "amount": amount,
        "isBillable": billable,
        "customer": ref(project_id),
        "receipt": expense.has_receipt,
        "custcol_psa_expense": expense.psa_id,
        "custcol_psa_user": expense.person,
    }
    memo = " - ".join(p for p in (expense.vendor, expense.notes) if p)
    if memo:
        line["memo"] = memo[:4000]
    payload: dict = {
        "tranDate": expense.date_incurred.isoformat(),
        "expenseReportCurrency": ref(report_currency_id),
        "memo": f"PSA expense {expense.psa_id}: {expense.category}"[:4000],
        "expense": {"items": [line]},
    }
    if expense.person_name or expense.person:
        payload["entity"] = {"refName": expense.person_name or expense.person}
    return payload


def unbilled_expenses_query(project_id: str, through: date) -> str:
    return (
        f"custbody_job ANY_OF [{project_id}] AND custbody_unbilled IS true "
        f"AND tranDate ON_OR_BEFORE {quote_q(through.isoformat())}"
    )


def posted_expenses_from_record(record: dict, codes: dict[str, str], *, unbilled_only: bool) -> list[PostedExpense]:
    """The report's lines as PostedExpense (billable and not yet billed ones when
    `unbilled_only`); `codes` maps currency internal IDs to ISO codes."""
    eid = str(record.get("externalId") or "")
    psa_id = eid[len(EXPENSE_REPORT_PREFIX) :] if eid.startswith(EXPENSE_REPORT_PREFIX) else eid or str(record["id"])
    currency = codes.get(str(ref_id(record.get("expenseReportCurrency"))), "")
    out = []
    for line in (record.get("expense") or {}).get("items", []):
        if unbilled_only and (not line.get("isBillable") or line.get("isBilled")):
            continue
        category = line.get("category")
        out.append(
            PostedExpense(
                psa_id=str(line.get("custcol_psa_expense") or psa_id),
                erp_expense_report_id=str(record["id"]),
                category=(category.get("refName") if isinstance(category, dict) else category) or "",
                date_incurred=date.fromisoformat(line.get("expenseDate") or record["tranDate"]),
                original_amount=dec(line.get("foreignAmount", line.get("amount"))),
                original_currency=codes.get(str(ref_id(line.get("currency"))), currency),
                exchange_rate=dec(line.get("exchangeRate", 1)),
                amount=dec(line.get("amount")),
                currency=currency,
                billable=bool(line.get("isBillable")),
            )
        )
    return out


def _rejection(psa_id: str, err: ApplicationError) -> ExpensePostResult:
    details = err.details[0] if err.details and isinstance(err.details[0], dict) else {}
    first = (details.get("errors") or [{}])[0]
    fields = first.get("fields") or []
    return ExpensePostResult(
        psa_id=psa_id,
        error_code=first.get("code") or "REJECTED",
        error_field=fields[0] if fields else None,
        message=first.get("message") or err.message,
    )


class NetSuiteExpenses:
    """Expense calls over an existing `NetSuiteClient`."""

    def __init__(self, client: NetSuiteClient) -> None:
        self.client = client
        self._rates: dict[tuple[str, str, date], Decimal | None] = {}

    async def exchange_rate(self, from_currency: str, to_currency: str, on: date) -> Decimal | None:
        """Units of `to_currency` per unit of `from_currency` in force on `on` (the ERP's
        `currencyRate` with the latest effective date on or before it), 1 for the same
        currency, None when the ERP has no rate (or does not know a currency) for that day."""
        if from_currency == to_currency:
            return Decimal(1)
        key = (from_currency, to_currency, on)
        if key in self._rates:
            return self._rates[key]
        try:
            base_id = await self.client.currency_id(to_currency)
            transaction_id = await self.client.currency_id(from_currency)
        except MappingError:
            self._rates[key] = None
            return None
        pair = f"baseCurrency ANY_OF [{base_id}] AND transactionCurrency ANY_OF [{transaction_id}]"
        until = f"effectiveDate ON_OR_BEFORE {quote_q(on.isoformat())}"
        since = f"effectiveDate ON_OR_AFTER {quote_q((on - timedelta(days=RATE_WINDOW_DAYS)).isoformat())}"
        ids = await self.client.find_ids("currencyRate", f"{pair} AND {until} AND {since}")
        if not ids:
            ids = await self.client.find_ids("currencyRate", f"{pair} AND {until}")
        records = await _bounded(
            READ_CONCURRENCY, [(lambda i=i: self.client.get_record("currencyRate", i)) for i in ids]
        )
        best = max(records, key=lambda r: (str(r.get("effectiveDate") or ""), int(r["id"])), default=None)
        rate = dec(best["exchangeRate"]) if best is not None and best.get("exchangeRate") is not None else None
        self._rates[key] = rate
        return rate

    async def post_expenses(
        self,
        *,
        project_id: str,
        items: list[tuple[Expense, Decimal, Decimal, bool]],
        currency: str,
        max_concurrency: int = 3,
        transient_as_results: bool = False,
    ) -> list[ExpensePostResult]:
        """Upsert one expense report per expense (`PUT expenseReport/eid:exp-<psa id>`), at most
        `max_concurrency` at a time. `items` are (expense, exchange rate, converted amount in
        `currency`, billable). As `post_time_bills`: a data rejection (4xx) is a result with
        the ERP's code, field and message; transient failures are raised after the rest of the
        batch has finished, or with `transient_as_results` returned as `retryable` results."""
        operation = "post_expense_report"
        try:
            report_currency = await self.client.currency_id(currency)
        except MappingError as err:
            raise mapping_error(operation, err) from err

        async def post(expense: Expense, rate: Decimal, amount: Decimal, billable: bool) -> ExpensePostResult:
            try:
                line_currency = await self.client.currency_id(expense.currency)
            except MappingError as err:
                return ExpensePostResult(psa_id=expense.psa_id, error_code="CURRENCY", message=str(err))
            payload = expense_report_payload(
                expense,
                project_id=project_id,
                report_currency_id=report_currency,
                line_currency_id=line_currency,
                exchange_rate=rate,
                amount=amount,
                billable=billable,
            )
            try:
                report_id = await self.client._upsert(
                    "expenseReport", expense_report_external_id(expense.psa_id), payload, operation
                )
            except ApplicationError as err:
                if err.type == REJECTED_TYPE and err.non_retryable:
                    return _rejection(expense.psa_id, err)
                if transient_as_results and not err.non_retryable:
                    return ExpensePostResult(
                        psa_id=expense.psa_id, error_code=err.type, message=err.message, retryable=True
                    )
                raise
            return ExpensePostResult(psa_id=expense.psa_id, erp_expense_report_id=report_id)

        return await _bounded(max_concurrency, [(lambda i=i: post(*i)) for i in items])

    async def unbilled_expense_ids(self, project_id: str, *, through: date) -> list[str]:
        """IDs of the project's expense reports with a billable line not yet billed, dated on or
        before `through` (one filtered list call)."""
        return await self.client.find_ids("expenseReport", unbilled_expenses_query(project_id, through))

    async def expense_reports(self, ids: list[str], *, unbilled_only: bool = False) -> list[PostedExpense]:
        """The given reports' lines (one GET each, sublists expanded), by (date, PSA id)."""
        records = await _bounded(
            READ_CONCURRENCY, [(lambda i=i: self.client.get_record("expenseReport", i, expand=True)) for i in ids]
        )
        codes: dict[str, str] = {}
        for record in records:
            wanted = [ref_id(record.get("expenseReportCurrency"))]
            wanted += [ref_id(x.get("currency")) for x in (record.get("expense") or {}).get("items", [])]
            for cid in filter(None, wanted):
                if cid not in codes:
                    codes[cid] = await self.client.currency_code(cid)
        posted = [p for r in records for p in posted_expenses_from_record(r, codes, unbilled_only=unbilled_only)]
        return sorted(posted, key=lambda p: (p.date_incurred, p.psa_id))

    async def unbilled_expenses(self, project_id: str, *, through: date) -> list[PostedExpense]:
        """The project's billable, not yet billed expenses dated on or before `through`."""
        ids = await self.unbilled_expense_ids(project_id, through=through)
        return await self.expense_reports(ids, unbilled_only=True) if ids else []
