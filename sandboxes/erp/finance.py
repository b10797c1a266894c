"""Finance records: `timeBill`, `invoice`, `customerPayment` (validation and side effects).

Validators take the request fields (for PATCH: merged over the stored record) plus the
stored record being replaced (`existing`, or None) and return the fields to store.
`postingPeriod` is always derived from `tranDate` (a given value is ignored) and must be an
open period: a closed one is 400 INVALID_FLD_VALUE on `tranDate` ("The accounting period
Jan 2026 is closed ..."), as NetSuite refuses postings to closed periods.

timeBill (one PSA time entry; external ID `psa-<entry id>` by q2c's convention)
- `customer`: the project (NetSuite puts the job in `customer`); it must exist and not be
  closed (`entityStatus` CLOSED -> 400 INVALID_FLD_VALUE on `customer`).
- `hours`: NetSuite duration, written and rendered as "H:MM" (e.g. "1:30"); a decimal number
  of hours is accepted on input when it is a whole number of minutes. `custcol_minutes` (int)
  holds the exact minutes; when both are given they must agree.
- `isBillable` (default false); a billable entry needs `rate` > 0 (per hour, exact decimal).
- `custcol_amount`: a billable entry's amount, computed by the sandbox as hours x rate with the
  hours exact (minutes / 60), rounded half-up once to the currency's precision; a given value
  must equal it (else 400 INVALID_FLD_VALUE on `custcol_amount`); none for non-billable time.
- `employee` is free-form for the sandbox ({"refName": ...}); `custcol_psa_user`,
  `custcol_role`, `custcol_psa_task` are text; `custcol_currency` (ISO code) defaults to,
  and must equal, the project's currency.
- system-managed: `isBilled` (false until an invoice bills it) and `invoice` (ref).
- replacing a billed timeBill: identical values -> 204 no-op; changed -> 400 USER_ERROR on
  `isBilled` ("billed time cannot be changed").

invoice
- `entity` (customer), `job` (a project of that customer), `tranDate`, `currency` (defaults
  to, and must equal, the customer's), `dueDate` (tranDate + the customer's terms days when
  not given), `item` sublist `{"items": [{"description", "quantity", "rate", "amount"}]}`
  with at least one line and every amount == quantity x rate rounded half-up to the
  currency's precision (else 400 on `item.items[i].amount`). A time line instead names the
  timeBills it bills (`custcol_time_bills`, each also in `custbody_time_bills`, all at the
  line's rate): its amount must be the sum of their `custcol_amount` (time is billed entry by
  entry) and its quantity their hours, rounded half-up at the precision given.
- `custbody_time_bills`: internal IDs of timeBills this invoice bills; each must be a
  billable timeBill of the job not billed by another invoice (400 otherwise); on create they
  become `isBilled: true` with `invoice` set.
- system-managed: `tranId` ("INV10001", sequential), `total` (sum of line amounts),
  `amountPaid`, `amountRemaining`, `status` ("Open" | "Paid In Full"), `terms`, `subsidiary`.
- an issued invoice cannot be changed: an identical upsert is a 204 no-op, anything else 400.
- `expCost`: the billable expenses it bills (expense report lines), added to `total` and
  marked billed on create; see sandboxes/erp/expenses.py. An invoice may have only those.

customerPayment
- `customer`, `payment` (> 0), `tranDate`, `currency` (the customer's), `apply`
  `{"items": [{"doc": {"id": invoiceId}, "amount"}]}` (may be empty); each invoice must be
  the customer's and the amounts applied to it may not exceed its `amountRemaining` (400);
  the applied total may not exceed `payment`. On create the invoices' `amountPaid`,
  `amountRemaining` and `status` are updated. A payment cannot be changed afterwards.
- system-managed: `applied` (the total of the apply lines) and `unapplied` (`payment` -
  `applied`). As in NetSuite, a payment larger than what it applies to is accepted and its
  unapplied amount stays on the customer's account as a credit until applied or refunded;
  `GET customerPayment?q=customer ANY_OF [id] AND unapplied GREATER 0` lists those payments.
  `overpayment_fields` builds such a payment for one invoice (the sandbox's payment route).

creditMemo (NetSuite "Credit Memo": a transaction that decreases what the customer owes,
e.g. reversing part of an issued invoice, which itself can no longer change; Oracle's REST
docs create one from the invoice, `POST invoice/{id}/!transform/creditMemo` with an `apply`
sublist naming the invoice in `doc`; the record also upserts by `PUT creditMemo/eid:{id}`)
- `entity` (customer), `createdFrom` (the invoice credited, the customer's), `job` (defaults
  to the invoice's), `tranDate`, `currency` (the customer's), `item` lines as on an invoice
  (amount == quantity x rate), at least one; `apply` `{"items": [{"doc": {"id": invoiceId},
  "apply": true, "amount"}]}`; without an apply sublist the whole total is applied to
  `createdFrom`, as the transform does. The amounts applied to an invoice may not exceed its
  `amountRemaining` (400 INVALID_FLD_VALUE on `apply.items[i].amount`: NetSuite refuses to
  apply more than is due), and in total not the memo's total.
- system-managed: `tranId` ("CM10001", sequential), `total`, `applied`, `unapplied`
  (`total` - `applied`, a credit on the account), `status` ("Fully Applied" | "Open"),
  `subsidiary`. On create each invoice applied to loses the amount from `amountRemaining`
  (its `amountPaid`, the payments, is unchanged) and is "Paid In Full" at 0. A credit memo
  cannot be changed afterwards: the same upsert again is a 204 no-op, anything else 400.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext

from sandboxes.erp import expenses
from sandboxes.erp.computed import CARRIED, DERIVED, _period, _start
from sandboxes.erp.errors import NetSuiteError, invalid, missing
from sandboxes.erp.fields import _bool, _date, _items, _ref_to, _required_date, _text, amount, job_is_open
from sandboxes.erp.store import RecordStore

TRAN_ID_PREFIX = "INV"
FIRST_TRAN_NUMBER = 10001
PAID_IN_FULL, OPEN = "Paid In Full", "Open"
VOIDED = "Voided"  # set only by a user voiding it (sandbox admin route), never by the API
CREDIT_PREFIX = "CM"
FULLY_APPLIED = "Fully Applied"
_DURATION = re.compile(r"^(\d{1,4}):([0-5]\d)$")

# Not compared when deciding whether a write changes anything.
_BOOKKEEPING = {"id", "externalId", "links", "dateCreated", "lastModifiedDate"}


# --- helpers ------------------------------------------------------------------------------


def duration(minutes: int) -> str:
    return f"{minutes // 60}:{minutes % 60:02d}"


def _minutes(out: dict) -> int:
    given = out.get("custcol_minutes")
    hours = out.get("hours")
    from_minutes = from_hours = None
    if given not in (None, ""):
        if isinstance(given, bool) or not isinstance(given, int) or given <= 0:
            raise invalid("custcol_minutes", given, "Expected a whole number of minutes > 0")
        from_minutes = given
    if hours not in (None, ""):
        match = _DURATION.match(hours) if isinstance(hours, str) else None
        if match:
            from_hours = int(match.group(1)) * 60 + int(match.group(2))
        else:
            value = amount(hours, "hours", positive=True)
            exact = value * 60
            if exact != exact.to_integral_value():
                raise invalid("hours", hours, "Not a whole number of minutes; give a duration H:MM")
            from_hours = int(exact)
        if from_hours <= 0:
            raise invalid("hours", hours, "Must be greater than zero")
    if from_minutes is None and from_hours is None:
        raise missing("hours", "Duration")
    if from_minutes is not None and from_hours is not None and from_minutes != from_hours:
        raise invalid("hours", hours, f"Does not match custcol_minutes ({from_minutes})")
    minutes = from_minutes if from_minutes is not None else from_hours
    out["hours"] = duration(minutes)
    out["custcol_minutes"] = minutes
    return minutes


def _currency(out: dict, store: RecordStore, expected_id: str, owner: str) -> dict:
    given = _ref_to(out, "currency", "Currency", "currency", store)
    expected = store.get("currency", expected_id)
    if given is not None and given["id"] != expected_id:
        raise invalid(
            "currency", given.get("symbol"), f"The currency must be the {owner}'s currency ({expected['symbol']})"
        )
    out["currency"] = {"id": expected_id}
    return expected


def _money_places(currency: dict) -> Decimal:
    return Decimal(1).scaleb(-int(currency.get("currencyPrecision", 2)))


def remaining_balance(invoice: dict) -> Decimal:
    return Decimal(str(invoice.get("amountRemaining", 0)))


# --- validators ---------------------------------------------------------------------------


def time_bill(out: dict, store: RecordStore, existing: dict | None, *, strict: bool = True) -> dict:
    _start("timeBill", out, existing)
    job = _ref_to(out, "customer", "Customer:Project", "job", store, required=True)
    if strict and not job_is_open(job):
        raise invalid(
            "customer",
            job["id"],
            f"The project {job.get('companyName')} is closed; time cannot be recorded against a closed project",
        )
    on = _required_date(out, "tranDate", "Date")
    _minutes(out)
    billable = _bool(out, "isBillable", False)
    if billable and out.get("rate") in (None, ""):
        raise missing("rate", "Rate (billable time needs a rate)")
    if out.get("rate") not in (None, ""):
        out["rate"] = amount(out["rate"], "rate", positive=billable)
    else:
        out.pop("rate", None)
    for name in ("custcol_role", "custcol_psa_user", "custcol_psa_user_name", "custcol_psa_task", "memo"):
        _text(out, name, name)
    currency = store.get("currency", job["currency"]["id"])
    given = out.get("custcol_currency")
    if given not in (None, "") and given != currency["symbol"]:
        raise invalid("custcol_currency", given, f"Rates are in the project's currency ({currency['symbol']})")
    out["custcol_currency"] = currency["symbol"]
    _time_amount(out, currency, billable)
    out.setdefault("isBilled", False)
    _period(out, store, on, strict)
    return out


def time_amount(minutes: int, rate: Decimal, currency: dict) -> Decimal:
    """What a timeBill bills: hours x rate, the hours exact (minutes / 60, never rounded first),
    rounded half-up once to the currency's precision."""
    places = int(currency.get("currencyPrecision", 2))
    with localcontext() as ctx:
        ctx.prec = 100  # wide enough that the product is exact
        numerator, denominator = (Decimal(minutes) * rate).scaleb(places).as_integer_ratio()
    units, remainder = divmod(numerator, denominator * 60)
    if 2 * remainder >= denominator * 60:
        units += 1
    return Decimal(units).scaleb(-places).quantize(_money_places(currency))


def _time_amount(out: dict, currency: dict, billable: bool) -> None:
    """`custcol_amount`: the billable amount, computed here; a client may send its own figure,
    which must be the same (else 400 on `custcol_amount`). Non-billable time has none."""
    given = out.pop("custcol_amount", None)
    if not billable or out.get("rate") is None:
        if given not in (None, ""):
            raise invalid("custcol_amount", given, "Non-billable time has no amount")
        return
    expected = time_amount(out["custcol_minutes"], out["rate"], currency)
    if given not in (None, "") and amount(given, "custcol_amount") != expected:
        raise invalid(
            "custcol_amount",
            given,
            f"The amount must be hours x rate rounded half-up to {currency['symbol']} precision ({expected})",
        )
    out["custcol_amount"] = expected


def _time_line(
    path: str, line: dict, quantity: Decimal, rate: Decimal, value: Decimal, billed: object, store: RecordStore
) -> None:
    """A time line (`custcol_time_bills`): it bills those timeBills (each also listed in the
    invoice's `custbody_time_bills`), all at the line's rate; its amount is the sum of their
    amounts (each rounded once, as NetSuite bills time entry by entry) and its quantity their
    hours, rounded half-up at the precision given."""
    ids = line.get("custcol_time_bills")
    if not isinstance(ids, list) or not ids:
        raise invalid(path + ".custcol_time_bills", ids, "Expected a list of timeBill internal IDs")
    if isinstance(billed, dict):
        billed = billed.get("items") or []
    wanted = {str(i.get("id") if isinstance(i, dict) else i) for i in billed} if isinstance(billed, list) else set()
    minutes, total = 0, Decimal(0)
    for raw in ids:
        bill = store.get("timeBill", str(raw))
        if bill is None or str(raw) not in wanted:
            raise invalid(path + ".custcol_time_bills", raw, "Not a timeBill this invoice bills")
        if bill.get("rate") is None or Decimal(str(bill["rate"])) != rate:
            raise invalid(path + ".rate", rate, f"timeBill {raw} is at rate {bill.get('rate')}")
        minutes += int(bill["custcol_minutes"])
        total += Decimal(str(bill.get("custcol_amount", 0)))
    if value != total:
        raise invalid(path + ".amount", value, f"The amount must be the sum of the timeBills' amounts ({total})")
    exponent = quantity.as_tuple().exponent
    places = Decimal(1).scaleb(min(0, exponent if isinstance(exponent, int) else 0))
    hours = (Decimal(minutes) / 60).quantize(places, rounding=ROUND_HALF_UP)
    if quantity != hours:
        raise invalid(path + ".quantity", quantity, f"The timeBills' hours are {hours}")


def next_tran_id(store: RecordStore) -> str:
    numbers = [
        int(r["tranId"][len(TRAN_ID_PREFIX) :])
        for r in store.all("invoice")
        if str(r.get("tranId", "")).startswith(TRAN_ID_PREFIX)
    ]
    return f"{TRAN_ID_PREFIX}{max(numbers, default=FIRST_TRAN_NUMBER - 1) + 1}"


def invoice(out: dict, store: RecordStore, existing: dict | None, *, strict: bool = True) -> dict:
    _start("invoice", out, existing)
    customer = _ref_to(out, "entity", "Customer", "customer", store, required=True)
    job = _ref_to(out, "job", "Project", "job", store, required=True)
    if job["parent"]["id"] != customer["id"]:
        raise invalid("job", job["id"], f"The project does not belong to customer {customer['id']}")
    on = _required_date(out, "tranDate", "Date")
    currency = _currency(out, store, customer["currency"]["id"], "customer")
    out["subsidiary"] = customer["subsidiary"]
    if customer.get("terms"):
        out["terms"] = customer["terms"]
    if _date(out, "dueDate") is None:
        days = store.get("term", customer["terms"]["id"])["daysUntilNetDue"] if customer.get("terms") else 0
        out["dueDate"] = (on + timedelta(days=int(days))).isoformat()
    places = _money_places(currency)
    raw = out.get("item")
    lines = _items(raw, "item") if raw not in (None, "") else []
    # billable expenses (the expCost sublist, see sandboxes/erp/expenses.py)
    exp_lines, exp_total = expenses.exp_cost_lines(
        out.get("expCost"), job, currency, store, existing["id"] if existing else None, strict
    )
    if not lines and not exp_lines:
        raise missing("item", "Items (an invoice needs at least one line)")
    if exp_lines:
        out["expCost"] = {"items": exp_lines}
    else:
        out.pop("expCost", None)
    clean_lines, total = [], exp_total
    for i, line in enumerate(lines):
        path = f"item.items[{i}]"
        if not isinstance(line, dict):
            raise invalid(path, line)
        quantity = amount(line.get("quantity"), path + ".quantity", positive=True)
        rate = amount(line.get("rate"), path + ".rate")
        value = amount(line.get("amount"), path + ".amount")
        if line.get("custcol_time_bills") not in (None, []):
            _time_line(path, line, quantity, rate, value, out.get("custbody_time_bills") or [], store)
        else:
            expected = (quantity * rate).quantize(places, rounding=ROUND_HALF_UP)
            if value != expected:
                raise invalid(
                    path + ".amount",
                    value,
                    f"The amount must be quantity x rate rounded half-up "
                    f"to {currency['symbol']} precision ({expected})",
                )
        clean = {k: v for k, v in line.items() if k.startswith("custcol_")}
        clean.update(description=str(line.get("description") or ""), quantity=quantity, rate=rate, amount=value)
        clean_lines.append(clean)
        total += value
    out["item"] = {"items": clean_lines}
    out["custbody_time_bills"] = _time_bills(
        out.get("custbody_time_bills"), job, store, existing["id"] if existing else None, strict
    )
    out["total"] = total
    paid = Decimal(str(out.get("amountPaid", 0)))
    out["amountPaid"] = paid
    out["amountRemaining"] = total - paid
    out["status"] = PAID_IN_FULL if total - paid == 0 else OPEN
    if strict and "tranId" not in out:
        out["tranId"] = next_tran_id(store)
    for name in ("memo", "otherRefNum"):
        _text(out, name, name)
    _period(out, store, on, strict)
    return out


def _time_bills(value: object, job: dict, store: RecordStore, invoice_id: str | None, strict: bool) -> list[str]:
    if value in (None, ""):
        return []
    ids = value.get("items") if isinstance(value, dict) else value
    if not isinstance(ids, list):
        raise invalid("custbody_time_bills", value, "Expected a list of timeBill internal IDs")
    result: list[str] = []
    for raw in ids:
        tb_id = str(raw.get("id") if isinstance(raw, dict) else raw)
        bill = store.get("timeBill", tb_id)
        if bill is None or tb_id in result:
            raise invalid("custbody_time_bills", tb_id, "Not a timeBill, or listed twice")
        if bill["customer"]["id"] != job["id"]:
            raise invalid("custbody_time_bills", tb_id, f"The time entry is not booked to project {job['id']}")
        if not bill.get("isBillable"):
            raise invalid("custbody_time_bills", tb_id, "The time entry is not billable")
        billed_on = (bill.get("invoice") or {}).get("id")
        if strict and bill.get("isBilled") and billed_on != invoice_id:
            other = store.get("invoice", billed_on) or {}
            raise invalid(
                "custbody_time_bills",
                tb_id,
                f"The time entry has already been billed on invoice {other.get('tranId', billed_on)}",
            )
        result.append(tb_id)
    return result


def _apply_lines(
    lines: list, customer: dict, store: RecordStore, *, strict: bool, credit: bool
) -> tuple[list[dict], Decimal]:
    """The `apply` sublist of a customer payment or a credit memo, checked the same way for
    both: each line names an invoice of this customer, and (strict) the amounts applied to one
    invoice never exceed what it still owes. A credit memo also skips lines marked
    `apply: false` (NetSuite lists every open invoice and flags the applied ones) and cannot be
    applied to a voided invoice. Returns the clean lines and the total applied."""
    per_invoice: dict[str, Decimal] = defaultdict(Decimal)
    clean: list[dict] = []
    for i, line in enumerate(lines):
        path = f"apply.items[{i}]"
        if credit and (not isinstance(line, dict) or line.get("apply") is False):
            continue
        holder = {"doc": line.get("doc") if isinstance(line, dict) else None}
        inv = _ref_to(holder, "doc", "Invoice", "invoice", store, required=True)
        if inv["entity"]["id"] != customer["id"]:
            raise invalid(path + ".doc", inv["id"], f"The invoice is not customer {customer['id']}'s")
        value = amount(line.get("amount"), path + ".amount", positive=True)
        per_invoice[inv["id"]] += value
        if credit and strict and inv.get("status") == VOIDED:
            raise invalid(path + ".doc", inv["id"], f"Invoice {inv.get('tranId')} is voided")
        if strict and per_invoice[inv["id"]] > remaining_balance(inv):
            raise invalid(
                path + ".amount",
                value,
                f"The amount applied exceeds the amount remaining on invoice {inv.get('tranId')} "
                f"({remaining_balance(inv)})",
            )
        clean.append({"doc": holder["doc"], "apply": True, "amount": value})
    return clean, sum(per_invoice.values(), Decimal(0))


def customer_payment(out: dict, store: RecordStore, existing: dict | None, *, strict: bool = True) -> dict:
    _start("customerPayment", out, existing)
    customer = _ref_to(out, "customer", "Customer", "customer", store, required=True)
    if out.get("payment") in (None, ""):
        raise missing("payment", "Payment Amount")
    payment = amount(out["payment"], "payment", positive=True)
    out["payment"] = payment
    on = _required_date(out, "tranDate", "Date")
    _currency(out, store, customer["currency"]["id"], "customer")
    out["subsidiary"] = customer["subsidiary"]
    raw = out.get("apply")
    lines = _items(raw, "apply") if raw not in (None, "") else []
    clean, applied = _apply_lines(lines, customer, store, strict=strict, credit=False)
    if applied > payment:
        raise invalid("payment", payment, f"The amounts applied ({applied}) exceed the payment")
    out["apply"] = {"items": clean}
    out["applied"] = applied
    out["unapplied"] = payment - applied
    _text(out, "memo", "memo")
    _period(out, store, on, strict)
    return out


def overpayment_fields(inv: dict, payment: Decimal, on: str, memo: str) -> dict:
    """customerPayment fields for a customer paying `payment` against one invoice: what the
    invoice still owes is applied, anything beyond it is left unapplied (a credit), the way
    NetSuite records a payment that exceeds the amounts it applies to. A payment against an
    invoice already paid in full applies nothing."""
    applied = min(payment, remaining_balance(inv))
    lines = [{"doc": {"id": inv["id"]}, "amount": applied}] if applied > 0 else []
    return {"customer": inv["entity"], "payment": payment, "tranDate": on, "apply": {"items": lines}, "memo": memo}


def credited_amount(store: RecordStore, invoice_id: str) -> Decimal:
    """What credit memos have applied to the invoice (their apply lines naming it)."""
    total = Decimal(0)
    for memo in store.all("creditMemo"):
        for line in (memo.get("apply") or {}).get("items", []):
            if str(line["doc"]["id"]) == str(invoice_id):
                total += Decimal(str(line["amount"]))
    return total


def _next_credit_number(store: RecordStore) -> str:
    numbers = [
        int(r["tranId"][len(CREDIT_PREFIX) :])
        for r in store.all("creditMemo")
        if str(r.get("tranId", "")).startswith(CREDIT_PREFIX) and r["tranId"][len(CREDIT_PREFIX) :].isdigit()
    ]
    return f"{CREDIT_PREFIX}{max(numbers, default=FIRST_TRAN_NUMBER - 1) + 1}"


def credit_memo(out: dict, store: RecordStore, existing: dict | None, *, strict: bool = True) -> dict:
    """A credit memo against an issued invoice (see the module doc): lines as on an invoice,
    applied to the invoice it was created from unless an `apply` sublist says otherwise."""
    _start("creditMemo", out, existing)
    customer = _ref_to(out, "entity", "Customer", "customer", store, required=True)
    source = _ref_to(out, "createdFrom", "Created From", "invoice", store, required=True)
    if source["entity"]["id"] != customer["id"]:
        raise invalid("createdFrom", source["id"], f"The invoice is not customer {customer['id']}'s")
    if out.get("job") in (None, "", {}):
        out["job"] = source.get("job")
    job = _ref_to(out, "job", "Project", "job", store)
    if job is not None and job["parent"]["id"] != customer["id"]:
        raise invalid("job", job["id"], f"The project does not belong to customer {customer['id']}")
    on = _required_date(out, "tranDate", "Date")
    currency = _currency(out, store, customer["currency"]["id"], "customer")
    out["subsidiary"] = customer["subsidiary"]
    places = _money_places(currency)
    raw = out.get("item")
    lines = _items(raw, "item") if raw not in (None, "") else []
    if not lines:
        raise missing("item", "Items (a credit memo needs at least one line)")
    clean_lines, total = [], Decimal(0)
    for i, line in enumerate(lines):
        path = f"item.items[{i}]"
        if not isinstance(line, dict):
            raise invalid(path, line)
        quantity = amount(line.get("quantity"), path + ".quantity", positive=True)
        rate = amount(line.get("rate"), path + ".rate", positive=True)
        value = amount(line.get("amount"), path + ".amount", positive=True)
        expected = (quantity * rate).quantize(places, rounding=ROUND_HALF_UP)
        if value != expected:
            raise invalid(path + ".amount", value, f"The amount must be quantity x rate rounded half-up ({expected})")
        clean = {k: v for k, v in line.items() if k.startswith("custcol_")}
        clean.update(description=str(line.get("description") or ""), quantity=quantity, rate=rate, amount=value)
        clean_lines.append(clean)
        total += value
    out["item"] = {"items": clean_lines}
    out["total"] = total
    raw_apply = out.get("apply")
    applies = _items(raw_apply, "apply") if raw_apply not in (None, "") else []
    if not applies:
        applies = [{"doc": {"id": source["id"]}, "apply": True, "amount": total}]
    clean_apply, applied = _apply_lines(applies, customer, store, strict=strict, credit=True)
    if applied > total:
        raise invalid("apply", applied, f"The amounts applied ({applied}) exceed the credit memo's total ({total})")
    out["apply"] = {"items": clean_apply}
    out["applied"] = applied
    out["unapplied"] = total - applied
    out["status"] = FULLY_APPLIED if total == applied else OPEN
    if strict and "tranId" not in out:
        out["tranId"] = _next_credit_number(store)
    for name in ("memo", "otherRefNum"):
        _text(out, name, name)
    _period(out, store, on, strict)
    return out


VALIDATORS = {
    "timeBill": time_bill,
    "invoice": invoice,
    "customerPayment": customer_payment,
    "creditMemo": credit_memo,
    "expenseReport": expenses.expense_report,
}


# --- writes -------------------------------------------------------------------------------


def unchanged_or_locked(record_type: str, existing: dict, candidate: dict, store: RecordStore) -> bool:
    """Before replacing `existing` with `candidate` fields: True if nothing would change (the
    write is a no-op); raise if the record may no longer change; False to go ahead."""
    if record_type not in VALIDATORS:
        return False
    fields = {k: v for k, v in candidate.items() if k not in ("id", "externalId", "links")}
    try:
        normalized = VALIDATORS[record_type](fields, store, existing, strict=False)
    except NetSuiteError:
        normalized = None
    # an external ID given and different is a change too (NetSuite lets a PATCH rename it)
    renamed = "externalId" in candidate and candidate["externalId"] != existing.get("externalId")
    if (
        normalized is not None
        and not renamed
        and _comparable(record_type, normalized) == _comparable(record_type, existing)
    ):
        return True
    if record_type == "timeBill" and existing.get("isBilled"):
        billed_on = store.get("invoice", existing["invoice"]["id"]) if existing.get("invoice") else None
        tran = (billed_on or {}).get("tranId")
        raise NetSuiteError(
            400,
            "USER_ERROR",
            f"This time entry has been billed (invoice {tran}); billed time cannot be changed.",
            "isBilled",
        )
    if record_type == "invoice":
        raise NetSuiteError(
            400, "USER_ERROR", f"Invoice {existing.get('tranId')} has been issued and cannot be changed.", None
        )
    if record_type == "customerPayment":
        raise NetSuiteError(400, "USER_ERROR", "A recorded customer payment cannot be changed.", None)
    if record_type == "expenseReport":
        refusal = expenses.locked(existing, store)
        if refusal is not None:
            raise refusal
    if record_type == "creditMemo":
        raise NetSuiteError(
            400, "USER_ERROR", f"Credit memo {existing.get('tranId')} has been applied and cannot be changed.", None
        )
    return False


def _comparable(record_type: str, record: dict) -> dict:
    skip = _BOOKKEEPING | set(CARRIED[record_type]) | set(DERIVED[record_type])
    return {k: v for k, v in record.items() if k not in skip and v is not None}


def _update(store: RecordStore, record_type: str, record: dict, **changes: object) -> None:
    fields = {k: v for k, v in record.items() if k not in ("id", "externalId")}
    fields.update(changes)
    store.replace(record_type, int(record["id"]), fields, record.get("externalId"))


def after_write(record_type: str, record_id: int, fields: dict, store: RecordStore, *, created: bool) -> None:
    """Side effects on other records (called under the store lock)."""
    if record_type == "invoice":
        for tb_id in fields.get("custbody_time_bills", []):
            bill = store.get("timeBill", tb_id)
            if bill and not bill.get("isBilled"):
                _update(store, "timeBill", bill, isBilled=True, invoice={"id": str(record_id)})
        expenses.mark_billed(record_id, (fields.get("expCost") or {}).get("items", []), store)
    elif record_type == "customerPayment" and created:
        for line in fields["apply"]["items"]:
            inv = store.get("invoice", line["doc"]["id"])
            paid = Decimal(str(inv.get("amountPaid", 0))) + line["amount"]
            remaining = Decimal(str(inv["total"])) - paid - credited_amount(store, inv["id"])
            _update(
                store,
                "invoice",
                inv,
                amountPaid=paid,
                amountRemaining=remaining,
                status=PAID_IN_FULL if remaining == 0 else OPEN,
            )
    elif record_type == "creditMemo" and created:
        # the memo is stored already: what it applies is in credited_amount
        for line in fields["apply"]["items"]:
            inv = store.get("invoice", line["doc"]["id"])
            paid = Decimal(str(inv.get("amountPaid", 0)))
            remaining = Decimal(str(inv["total"])) - paid - credited_amount(store, inv["id"])
            _update(store, "invoice", inv, amountRemaining=remaining, status=PAID_IN_FULL if remaining == 0 else OPEN)
