"""Pure mapping for delivery to cash: PSA time -> NetSuite `timeBill`, canonical `Invoice`
<-> NetSuite `invoice`, `accountingPeriod` -> `AccountingPeriod`, invoice -> `PaymentStatus`.

NetSuite facts used here (see sandbox/erp/finance.py for the sandbox's rules):
- `timeBill.customer` is the project (job); `hours` is a duration written "H:MM" (minutes
  stay exact; the minutes are also sent in `custcol_minutes`); `rate` is per hour in the
  project's currency; `custcol_amount` is the entry's billable amount by q2c's one rule
  (`q2c.domain.money.entry_amount`: exact hours x rate, rounded half-up once to the minor unit),
  which the ERP checks against its own hours x rate; external ID `psa-<PSA time entry id>`.
- an `invoice` has `entity` (customer), `job`, `tranDate`, `item` lines
  `{description, quantity, rate, amount}` (a time line adds `custcol_time_bills`, the
  timeBills whose amounts it sums), the timeBills it bills in `custbody_time_bills`;
  the ERP assigns `tranId` (the invoice number) and keeps `total`, `amountPaid`,
  `amountRemaining`, `status` ("Open" | "Paid In Full") and `dueDate`.
- a `customerPayment` has `customer`, `payment` (the amount received), `tranDate`, `currency`
  and the `apply` sublist `{doc: {id: invoice}, amount}`; NetSuite keeps `applied` (total of
  the apply lines) and `unapplied` (`payment` - `applied`). A payment larger than what it
  applies to is accepted: the unapplied amount stays on the customer's account as a credit
  until it is applied or refunded. The record API finds those payments with
  `q=customer ANY_OF [<id>] AND unapplied GREATER 0`.
- a `creditMemo` ("a transaction that decreases the amount a customer owes you", NetSuite
  help: Credit Memo) corrects an issued invoice, which NetSuite no longer lets anyone edit.
  Oracle's REST docs ("Transforming Records") create it from the invoice with
  `POST invoice/{id}/!transform/creditMemo` and an `apply` sublist whose `doc` is the invoice;
  q2c writes the same record by external ID (`PUT creditMemo/eid:cm-...`, an upsert, so a
  retry finds the memo it made): `entity`, `createdFrom` (the invoice), `job`, `tranDate`,
  `item` lines and `apply` `{doc, apply: true, amount}`. Applying it lowers the invoice's
  `amountRemaining`; the memo keeps `total`, `applied`, `unapplied` and its own `tranId`.
  The record API finds an invoice's memos with `q=createdFrom ANY_OF [<ids>]`.
- billable expenses go on an invoice in its `expCost` sublist (NetSuite's Billable Expenses
  subtab), not as `item` lines: one line per expense report line it bills, `{doc: {id: report},
  line, apply: true, memo}`, the amount being the report line's (the ERP fills it in and
  refuses another figure). q2c groups them per category: the line's `expense_ids` are the
  reports, its description goes in each expCost line's `memo`, so `invoice_from_record` gives
  the same lines back. A markup is an ordinary `item` line (quantity = cost, rate = percent/100).
  See `q2c/vendors/netsuite/expenses.py` for the expense report itself.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

from pydantic import BaseModel, Field

from q2c.domain.delivery import (
    AccountingPeriod,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    PaymentStatus,
    PostedTime,
    TimeEntry,
)
from q2c.domain.money import entry_amount, is_currency
from q2c.vendors.netsuite.mapping import quote_q, ref

TIME_BILL_PREFIX = "psa-"
CREDIT_MEMO_PREFIX = "cm-"
_DURATION = re.compile(r"^(\d+):([0-5]\d)$")


class TimeBillResult(BaseModel):
    """The outcome of posting one PSA time entry: a timeBill ID, or the ERP's rejection."""

    psa_id: str
    erp_time_bill_id: str | None = None
    error_code: str | None = None
    error_field: str | None = None
    message: str | None = None
    retryable: bool = False  # a transient failure (429, 5xx, timeout): post it again later

    @property
    def ok(self) -> bool:
        return self.erp_time_bill_id is not None


class UnappliedPayment(BaseModel):
    """A customer payment with an amount not applied to any invoice (a credit on the account)."""

    payment_id: str
    received_on: date | None = None
    payment: Decimal  # what the customer paid
    applied: Decimal  # of it, applied to invoices
    unapplied: Decimal  # the rest: the customer's credit
    currency: str
    applied_to: list[str] = Field(default_factory=list)  # internal IDs of the invoices it was applied to


def dec(value: object) -> Decimal:
    """A JSON number read exactly (int or Decimal) as Decimal."""
    if isinstance(value, float):
        raise TypeError("float amount from NetSuite JSON")
    return Decimal(str(value if value is not None else 0))


def ref_id(value: object) -> str | None:
    if isinstance(value, dict):
        return str(value["id"]) if value.get("id") is not None else None
    return str(value) if value is not None else None


def time_bill_external_id(psa_id: str) -> str:
    return f"{TIME_BILL_PREFIX}{psa_id}"


def duration(minutes: int) -> str:
    return f"{minutes // 60}:{minutes % 60:02d}"


def record_minutes(record: dict) -> int:
    if record.get("custcol_minutes") is not None:
        return int(record["custcol_minutes"])
    hours = record.get("hours")
    match = _DURATION.match(hours) if isinstance(hours, str) else None
    if match:
        return int(match.group(1)) * 60 + int(match.group(2))
    return int(dec(hours) * 60)


def time_bill_payload(entry: TimeEntry, rate: Decimal | None, project_id: str, currency: str) -> dict:
    payload: dict = {
        "customer": ref(project_id),
        "tranDate": entry.date_performed.isoformat(),
        "hours": duration(entry.minutes),
        "custcol_minutes": entry.minutes,
        "isBillable": entry.billable,
        "employee": {"refName": entry.person_name or entry.person},
        "custcol_psa_user": entry.person,
        "custcol_role": entry.role,
        "custcol_psa_task": entry.task_id,
        "custcol_currency": currency,
    }
    if entry.person_name:
        payload["custcol_psa_user_name"] = entry.person_name
    if rate is not None:
        payload["rate"] = rate
        if entry.billable and is_currency(currency):
            # our figure for the entry, by the one rule; the ERP computes hours x rate itself
            # and refuses a timeBill whose amount differs, so the two can never disagree
            payload["custcol_amount"] = entry_amount(entry.minutes, rate, currency)
    if entry.notes:
        payload["memo"] = entry.notes[:4000]
    return payload


def unbilled_time_query(project_id: str, through: date) -> str:
    return (
        f"customer ANY_OF [{project_id}] AND isBillable IS true AND isBilled IS false "
        f"AND tranDate ON_OR_BEFORE {quote_q(through.isoformat())}"
    )


def posted_time_from_record(record: dict) -> PostedTime:
    eid = str(record.get("externalId") or "")
    return PostedTime(
        psa_id=eid[len(TIME_BILL_PREFIX) :] if eid.startswith(TIME_BILL_PREFIX) else eid or str(record["id"]),
        erp_time_bill_id=str(record["id"]),
        role=record.get("custcol_role") or "",
        date_performed=date.fromisoformat(record["tranDate"]),
        minutes=record_minutes(record),
        billable=bool(record.get("isBillable")),
        rate=dec(record["rate"]) if record.get("rate") is not None else None,
        currency=record.get("custcol_currency") or "",
        amount=dec(record["custcol_amount"]) if record.get("custcol_amount") is not None else None,
    )


def period_from_record(record: dict) -> AccountingPeriod:
    return AccountingPeriod(
        period_id=str(record["id"]),
        name=record["periodName"],
        start_date=date.fromisoformat(record["startDate"]),
        end_date=date.fromisoformat(record["endDate"]),
        closed=bool(record.get("closed")),
    )


def invoice_line_payload(line: InvoiceLine) -> dict:
    """An `item` line; a time line also names the timeBills it bills (`custcol_time_bills`), as
    its amount is theirs summed (each entry rounded once), not quantity x rate."""
    payload: dict = {
        "description": line.description,
        "quantity": line.quantity,
        "rate": line.rate,
        "amount": line.amount,
    }
    if line.time_bill_ids:
        payload["custcol_time_bills"] = list(line.time_bill_ids)
    return payload


def expense_cost_payload(line: InvoiceLine) -> list[dict]:
    """An expense line as `expCost` lines: each expense report it bills (line 1: q2c posts one
    expense per report), applied, with the line's description as the memo."""
    return [
        {"doc": ref(report_id), "line": 1, "apply": True, "memo": line.description} for report_id in line.expense_ids
    ]


def invoice_payload(invoice: Invoice, customer_id: str, project_id: str, currency_id: str) -> dict:
    items = [invoice_line_payload(line) for line in invoice.lines if not line.expense_ids]
    expenses = [cost for line in invoice.lines if line.expense_ids for cost in expense_cost_payload(line)]
    payload = {
        "entity": ref(customer_id),
        "job": ref(project_id),
        "tranDate": invoice.period_end.isoformat(),
        "currency": ref(currency_id),
        "item": {"items": items},
        "custbody_time_bills": list(invoice.time_bill_ids),
        "custbody_period_start": invoice.period_start.isoformat(),
        "custbody_period_end": invoice.period_end.isoformat(),
        "memo": f"Services {invoice.period_start.isoformat()} to {invoice.period_end.isoformat()}",
    }
    if expenses:
        payload["expCost"] = {"items": expenses}
    return payload


def expense_lines_from_record(record: dict) -> list[InvoiceLine]:
    """The invoice's applied `expCost` lines, grouped back into q2c's lines by their memo (the
    line's description), in the order they appear; each line bills the sum of its expenses."""
    groups: dict[str, list[dict]] = {}
    for cost in (record.get("expCost") or {}).get("items", []):
        if not cost.get("apply", True):
            continue
        category = cost.get("category")
        label = cost.get("memo") or f"Expenses: {category.get('refName') if isinstance(category, dict) else category}"
        groups.setdefault(label, []).append(cost)
    lines = []
    for label, costs in groups.items():
        total = sum((dec(c.get("amount")) for c in costs), Decimal(0))
        lines.append(
            InvoiceLine(
                description=label,
                quantity=Decimal(1),
                rate=total,
                amount=total,
                expense_ids=[str(ref_id(c.get("doc"))) for c in costs],
            )
        )
    return lines


def invoice_status(total: Decimal, paid: Decimal, remaining: Decimal) -> InvoiceStatus:
    if remaining <= 0:
        return InvoiceStatus.PAID_IN_FULL
    return InvoiceStatus.PARTIALLY_PAID if paid > 0 else InvoiceStatus.OPEN


def invoice_from_record(record: dict, currency: str, requested: Invoice | None = None) -> Invoice:
    """The invoice as the ERP holds it (`requested` fills in what the ERP does not keep)."""
    lines = [
        InvoiceLine(
            description=line.get("description") or "",
            quantity=dec(line["quantity"]),
            rate=dec(line["rate"]),
            amount=dec(line["amount"]),
            time_bill_ids=[str(i) for i in line.get("custcol_time_bills") or []],
        )
        for line in (record.get("item") or {}).get("items", [])
    ] + expense_lines_from_record(record)
    total = dec(record.get("total"))
    paid = dec(record.get("amountPaid"))
    remaining = dec(record.get("amountRemaining", total - paid))
    start = record.get("custbody_period_start")
    end = record.get("custbody_period_end")
    return Invoice(
        external_id=str(record.get("externalId") or (requested.external_id if requested else record["id"])),
        erp_id=str(record["id"]),
        number=record.get("tranId"),
        period_start=date.fromisoformat(start)
        if start
        else (requested.period_start if requested else date.fromisoformat(record["tranDate"])),
        period_end=date.fromisoformat(end)
        if end
        else (requested.period_end if requested else date.fromisoformat(record["tranDate"])),
        lines=lines,
        total=total,
        currency=currency,
        status=invoice_status(total, paid, remaining),
        time_bill_ids=[str(i) for i in record.get("custbody_time_bills") or []],
    )


def payment_status_from_record(record: dict, currency: str, as_of: date) -> PaymentStatus:
    total = dec(record.get("total"))
    paid = dec(record.get("amountPaid"))
    remaining = dec(record.get("amountRemaining", total - paid))
    due = date.fromisoformat(record["dueDate"]) if record.get("dueDate") else None
    overdue = max(0, (as_of - due).days) if due is not None and remaining > 0 else 0
    return PaymentStatus(
        invoice_erp_id=str(record["id"]),
        invoice_number=record.get("tranId"),
        total=total,
        amount_paid=paid,
        open_balance=remaining,
        currency=currency,
        due_date=due,
        days_overdue=overdue,
        status=invoice_status(total, paid, remaining),
    )


def unapplied_payments_query(customer_id: str) -> str:
    """The customer's payments that still carry an unapplied amount (one filtered list call,
    so the reads do not grow with every payment the customer ever made)."""
    return f"customer ANY_OF [{customer_id}] AND unapplied GREATER 0"


def unapplied_payment_from_record(record: dict, currency: str) -> UnappliedPayment:
    """A `customerPayment` as the ERP has it; `unapplied` is derived from `payment` and the
    apply lines if the ERP did not send it."""
    payment = dec(record.get("payment"))
    lines = [line for line in (record.get("apply") or {}).get("items", []) if line.get("apply", True)]
    applied = (
        dec(record["applied"])
        if record.get("applied") is not None
        else sum((dec(line.get("amount")) for line in lines), Decimal(0))
    )
    unapplied = dec(record["unapplied"]) if record.get("unapplied") is not None else payment - applied
    on = record.get("tranDate")
    return UnappliedPayment(
        payment_id=str(record["id"]),
        received_on=date.fromisoformat(on) if on else None,
        payment=payment,
        applied=applied,
        unapplied=unapplied,
        currency=currency,
        applied_to=[str(ref_id(line.get("doc"))) for line in lines if ref_id(line.get("doc"))],
    )


class CreditMemoResult(BaseModel):
    """A credit memo as the ERP holds it: what it credits, and to which invoices it applies."""

    external_id: str
    erp_id: str
    number: str | None = None
    total: Decimal
    applied: dict[str, Decimal] = Field(default_factory=dict)  # invoice internal ID -> amount applied
    currency: str
    created_from: str | None = None  # the invoice's internal ID
    tran_date: date | None = None
    memo: str = ""


def credit_memo_external_id(update_id: str) -> str:
    """The memo's external ID from the request that asked for it (the Update ID): the same
    request, retried or redelivered, names the same memo, so it is created once."""
    return f"{CREDIT_MEMO_PREFIX}{update_id.removeprefix('q2c-')[:40]}"


def credit_memo_payload(
    *,
    customer_id: str,
    project_id: str | None,
    invoice_id: str,
    invoice_number: str | None,
    amount: Decimal,
    currency_id: str,
    on: date,
    reason: str,
) -> dict:
    """One line for the credited amount, applied in full to the invoice it was created from."""
    label = f"Credit on invoice {invoice_number or invoice_id}: {reason}"
    payload: dict = {
        "entity": ref(customer_id),
        "createdFrom": ref(invoice_id),
        "tranDate": on.isoformat(),
        "currency": ref(currency_id),
        "item": {"items": [{"description": label[:4000], "quantity": Decimal(1), "rate": amount, "amount": amount}]},
        "apply": {"items": [{"doc": ref(invoice_id), "apply": True, "amount": amount}]},
        "memo": label[:999],
    }
    if project_id:
        payload["job"] = ref(project_id)
    return payload


def credit_memos_query(invoice_ids: list[str]) -> str:
    return f"createdFrom ANY_OF [{', '.join(invoice_ids)}]"


def credit_memo_from_record(record: dict, currency: str) -> CreditMemoResult:
    applied: dict[str, Decimal] = {}
    for line in (record.get("apply") or {}).get("items", []):
        doc = ref_id(line.get("doc"))
        if doc and line.get("apply", True):
            applied[doc] = applied.get(doc, Decimal(0)) + dec(line.get("amount"))
    on = record.get("tranDate")
    return CreditMemoResult(
        external_id=str(record.get("externalId") or ""),
        erp_id=str(record["id"]),
        number=record.get("tranId"),
        total=dec(record.get("total")),
        applied=applied,
        currency=currency,
        created_from=ref_id(record.get("createdFrom")),
        tran_date=date.fromisoformat(on) if on else None,
        memo=record.get("memo") or "",
    )
