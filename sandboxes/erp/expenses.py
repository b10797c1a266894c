"""Expenses in the ERP sandbox: `expenseReport`, the invoice's `expCost` sublist, `currencyRate`.

expenseReport (NetSuite "Expense Report": an employee's expenses, each line billable to a
customer or project when `isBillable`; q2c writes one report per PSA expense, external ID
`exp-<PSA expense id>`, so `PUT expenseReport/eid:exp-<id>` posts it exactly once)
- body: `tranDate` (required; the report posts to the open period containing it, else 400
  INVALID_FLD_VALUE on `tranDate`), `entity` (the employee; optional in the sandbox and
  free-form, `{"refName": "..."}`), `memo`, `expenseReportCurrency` (a currency; default: the
  currency of the first line's project, else the base currency USD);
- `expense` sublist, at least one line: `category` (`{"refName": "Travel"}` or text, required),
  `expenseDate` (required), `foreignAmount` (> 0, in the line's `currency`), `currency`
  (default: the report's), `exchangeRate` (report currency per unit of the line's currency;
  required, > 0, when the line's currency is another one; 1 otherwise), `amount` (in the
  report's currency: foreignAmount x exchangeRate rounded half-up once to the report
  currency's precision; computed when omitted, else it must be that figure, 400 on
  `expense.items[i].amount`), `isBillable` (default false), `customer` (the project, a job:
  required for a billable line, open, and in the report's currency), `memo`, `receipt`
  (true when a receipt is attached);
- system-managed: `line` (1, 2, ... per line), `isBilled` and `invoice` per line (set when an
  invoice bills the line), `tranId` ("ER10001"), `total`, `status`, `postingPeriod`; and two
  sandbox-only body fields that stand in for the SuiteQL a real integration would run over
  the lines: `custbody_job` (the project every line bills to, when they share one) and
  `custbody_unbilled` (true while a billable line is not yet billed), so that
  `GET expenseReport?q=custbody_job ANY_OF [5002] AND custbody_unbilled IS true AND tranDate
  ON_OR_BEFORE "2027-01-31"` lists a project's unbilled expenses in one call;
- a report with a billed line cannot be changed: the same upsert again is a 204 no-op,
  anything else 400 USER_ERROR on `expense`.

invoice `expCost` sublist (NetSuite's Billable Expenses subtab): lines `{"doc": {"id": report},
"line": 1, "apply": true, "amount"?, "memo"?}`; `apply: false` lines are skipped (NetSuite
lists every billable expense and flags the applied ones). Each applied line must be a
billable line of that report, billable to the invoice's project, in the invoice's currency,
listed once, and not billed by another invoice (400 INVALID_FLD_VALUE on
`expCost.items[i].doc`: "... has already been billed on invoice INV10002"); `amount` defaults
to, and must equal, the report line's `amount`. The invoice's `total` adds them; on create
each line becomes billed (`isBilled`, `invoice`). An invoice may carry only expCost lines.

currencyRate (NetSuite "Currency Exchange Rates", read-only here): `baseCurrency`,
`transactionCurrency`, `exchangeRate` (units of the base currency per unit of the transaction
currency), `effectiveDate`. Seeded for EUR/GBP to USD and back at a few dates
(`seed_rates`); `GET currencyRate?q=baseCurrency ANY_OF [1] AND transactionCurrency ANY_OF [3]
AND effectiveDate ON_OR_BEFORE "2027-01-15"` finds the rates in force on a day (the latest
effective one applies).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from sandboxes.erp.computed import _period, _start
from sandboxes.erp.errors import NetSuiteError, invalid, missing
from sandboxes.erp.fields import _bool, _date, _items, _ref_to, _required_date, _text, amount, job_is_open
from sandboxes.erp.store import RecordStore

REPORT_PREFIX = "ER"
FIRST_REPORT_NUMBER = 10001
APPROVED_STATUS = "Approved by Accounting"
BASE_CURRENCY_ID = "1"

# (effective date, transaction currency id, base currency id, rate): EUR (3) and GBP (2)
# against USD (1), and back; the reverse rates are stated to 6 places as NetSuite keeps them.
RATES: list[tuple[str, int, int, str]] = []
_PAIRS = {
    "2025-01-01": ("1.0420", "1.2510"),
    "2026-01-01": ("1.0850", "1.2690"),
    "2026-11-01": ("1.0912", "1.2745"),
    "2027-01-01": ("1.1034", "1.2801"),
    "2027-07-01": ("1.0975", "1.2655"),
}
for _day, (_eur, _gbp) in _PAIRS.items():
    for _currency_id, _rate in ((3, _eur), (2, _gbp)):
        RATES.append((_day, _currency_id, 1, _rate))
        RATES.append((_day, 1, _currency_id, str((Decimal(1) / Decimal(_rate)).quantize(Decimal("0.000001")))))


def seed_rates(store: RecordStore) -> bool:
    """The currencyRate records, unless there are some already (idempotent, like the periods)."""
    with store.lock:
        if store.all("currencyRate"):
            return False
        for day, transaction, base, rate in RATES:
            store.create(
                "currencyRate",
                {
                    "baseCurrency": {"id": str(base)},
                    "transactionCurrency": {"id": str(transaction)},
                    "exchangeRate": Decimal(rate),
                    "effectiveDate": day,
                },
            )
        return True


def _places(currency: dict) -> Decimal:
    return Decimal(1).scaleb(-int(currency.get("currencyPrecision", 2)))


def _report_number(store: RecordStore) -> str:
    numbers = [
        int(r["tranId"][len(REPORT_PREFIX) :])
        for r in store.all("expenseReport")
        if str(r.get("tranId", "")).startswith(REPORT_PREFIX) and r["tranId"][len(REPORT_PREFIX) :].isdigit()
    ]
    return f"{REPORT_PREFIX}{max(numbers, default=FIRST_REPORT_NUMBER - 1) + 1}"


def _category(line: dict, path: str) -> dict:
    value = line.get("category")
    if isinstance(value, dict):
        value = value.get("refName") or value.get("name")
    if value is None or (isinstance(value, str) and not value.strip()):
        raise missing(path + ".category", "Category")
    if not isinstance(value, str):
        raise invalid(path + ".category", value, 'Expected {"refName": "<category>"}')
    if len(value) > 100:
        raise invalid(path + ".category", value[:40], "At most 100 characters")
    return {"refName": value.strip()}


def expense_report(out: dict, store: RecordStore, existing: dict | None, *, strict: bool = True) -> dict:
    """Validate an expense report (see the module doc); returns the fields to store."""
    _start("expenseReport", out, existing)
    on = _required_date(out, "tranDate", "Date")
    entity = out.get("entity")
    if entity in (None, "", {}):
        out.pop("entity", None)
    elif not isinstance(entity, dict):
        raise invalid("entity", entity, 'Expected {"refName": "<employee>"}')
    raw = out.get("expense")
    lines = _items(raw, "expense") if raw not in (None, "") else []
    if not lines:
        raise missing("expense", "Expenses (an expense report needs at least one line)")
    report_currency = _ref_to(out, "expenseReportCurrency", "Currency", "currency", store)
    if report_currency is None:
        first = lines[0] if isinstance(lines[0], dict) else {}
        holder = {"customer": first.get("customer")}
        job = _ref_to(holder, "customer", "Customer:Project", "job", store) if holder["customer"] else None
        report_currency = store.get("currency", job["currency"]["id"] if job else BASE_CURRENCY_ID)
        out["expenseReportCurrency"] = {"id": report_currency["id"]}
    places = _places(report_currency)
    before = {int(line.get("line", 0)): line for line in ((existing or {}).get("expense") or {}).get("items", [])}
    clean: list[dict] = []
    jobs: set[str] = set()
    total = Decimal(0)
    for i, line in enumerate(lines):
        path = f"expense.items[{i}]"
        if not isinstance(line, dict):
            raise invalid(path, line)
        item: dict = {"line": i + 1, "category": _category(line, path)}
        holder = {"expenseDate": line.get("expenseDate")}
        try:
            day = _date(holder, "expenseDate")
        except NetSuiteError:
            raise invalid(path + ".expenseDate", line.get("expenseDate"), "Expected a date YYYY-MM-DD") from None
        if day is None:
            raise missing(path + ".expenseDate", "Date")
        item["expenseDate"] = day.isoformat()
        if line.get("foreignAmount") in (None, ""):
            raise missing(path + ".foreignAmount", "Foreign Amount")
        foreign = amount(line["foreignAmount"], path + ".foreignAmount", positive=True)
        holder = {"currency": line.get("currency")}
        currency = _ref_to(holder, "currency", "Currency", "currency", store) or report_currency
        item["currency"] = {"id": currency["id"]}
        if line.get("exchangeRate") in (None, ""):
            if currency["id"] != report_currency["id"]:
                raise missing(
                    path + ".exchangeRate",
                    f"Exchange Rate ({currency['symbol']} to {report_currency['symbol']})",
                )
            rate = Decimal(1)
        else:
            rate = amount(line["exchangeRate"], path + ".exchangeRate", positive=True)
            if currency["id"] == report_currency["id"] and rate != 1:
                raise invalid(path + ".exchangeRate", rate, "A line in the report's currency has the rate 1")
        expected = (foreign * rate).quantize(places, rounding=ROUND_HALF_UP)
        if line.get("amount") not in (None, "") and amount(line["amount"], path + ".amount") != expected:
            raise invalid(
                path + ".amount",
                line["amount"],
                f"The amount must be foreignAmount x exchangeRate rounded half-up to "
                f"{report_currency['symbol']} precision ({expected})",
            )
        item.update(foreignAmount=foreign, exchangeRate=rate, amount=expected)
        holder_b = {"isBillable": line.get("isBillable")}
        billable = _bool(holder_b, "isBillable", False)
        item["isBillable"] = billable
        holder = {"customer": line.get("customer")}
        job = _ref_to(holder, "customer", "Customer:Project", "job", store, required=billable)
        if job is not None:
            if strict and not job_is_open(job):
                raise invalid(
                    path + ".customer",
                    job["id"],
                    f"The project {job.get('companyName')} is closed; expenses cannot be charged to a closed project",
                )
            if billable and job["currency"]["id"] != report_currency["id"]:
                raise invalid(
                    path + ".customer",
                    job["id"],
                    f"A billable expense is in the project's currency "
                    f"({store.get('currency', job['currency']['id'])['symbol']})",
                )
            item["customer"] = {"id": job["id"]}
            jobs.add(job["id"])
        memo_holder = {"memo": line.get("memo")}
        memo = _text(memo_holder, "memo", "memo", max_len=4000)
        if memo:
            item["memo"] = memo
        receipt = _bool({"receipt": line.get("receipt")}, "receipt", False)
        item["receipt"] = receipt
        old = before.get(i + 1) or {}
        item["isBilled"] = bool(old.get("isBilled")) and billable
        if item["isBilled"] and old.get("invoice"):
            item["invoice"] = old["invoice"]
        for key, value in line.items():
            if key.startswith("custcol_"):
                item[key] = value
        clean.append(item)
        total += expected
    out["expense"] = {"items": clean}
    out["total"] = total
    out["status"] = APPROVED_STATUS
    if len(jobs) == 1:
        out["custbody_job"] = {"id": jobs.pop()}
    out["custbody_unbilled"] = any(i["isBillable"] and not i["isBilled"] for i in clean)
    _text(out, "memo", "memo", max_len=4000)
    if strict and "tranId" not in out:
        out["tranId"] = _report_number(store)
    _period(out, store, on, strict)
    return out


def billed_lines(report: dict) -> list[dict]:
    return [line for line in (report.get("expense") or {}).get("items", []) if line.get("isBilled")]


def locked(existing: dict, store: RecordStore) -> NetSuiteError | None:
    """Why an expense report may no longer change (a line is billed), else None."""
    billed = billed_lines(existing)
    if not billed:
        return None
    inv = store.get("invoice", (billed[0].get("invoice") or {}).get("id", "")) or {}
    return NetSuiteError(
        400,
        "USER_ERROR",
        f"Expense report {existing.get('tranId')} has expenses billed on invoice {inv.get('tranId')}; "
        "billed expenses cannot be changed.",
        "expense",
    )


def exp_cost_lines(
    value: object, job: dict, currency: dict, store: RecordStore, invoice_id: str | None, strict: bool
) -> tuple[list[dict], Decimal]:
    """The invoice's applied `expCost` lines, checked (see the module doc), and their total."""
    if value in (None, ""):
        return [], Decimal(0)
    items = _items(value, "expCost")
    clean: list[dict] = []
    seen: set[tuple[str, int]] = set()
    total = Decimal(0)
    for i, line in enumerate(items):
        path = f"expCost.items[{i}]"
        if not isinstance(line, dict):
            raise invalid(path, line)
        apply = line.get("apply", True)
        if not isinstance(apply, bool):
            raise invalid(path + ".apply", apply, "Expected true or false")
        if not apply:
            continue
        doc = line.get("doc")
        if isinstance(doc, (str, int)) and not isinstance(doc, bool):
            doc = {"id": str(doc)}
        if not isinstance(doc, dict) or doc.get("id") in (None, ""):
            raise missing(path + ".doc", "Expense Report")
        report = store.get("expenseReport", str(doc["id"]))
        if report is None:
            raise invalid(path + ".doc", doc["id"])
        number = line.get("line", 1)
        if isinstance(number, str) and number.isdigit():
            number = int(number)
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise invalid(path + ".line", number, "Expected a line number of the expense report")
        exp = next((x for x in report["expense"]["items"] if x["line"] == number), None)
        if exp is None:
            raise invalid(path + ".line", number, f"Expense report {report.get('tranId')} has no line {number}")
        key = (report["id"], number)
        if key in seen:
            raise invalid(path + ".doc", report["id"], "The expense is listed twice")
        seen.add(key)
        if not exp.get("isBillable"):
            raise invalid(path + ".doc", report["id"], "The expense is not billable")
        if (exp.get("customer") or {}).get("id") != job["id"]:
            raise invalid(path + ".doc", report["id"], f"The expense is not billable to project {job['id']}")
        if report["expenseReportCurrency"]["id"] != currency["id"]:
            raise invalid(
                path + ".doc", report["id"], f"The expense is not in the invoice's currency ({currency['symbol']})"
            )
        billed_on = (exp.get("invoice") or {}).get("id")
        if strict and exp.get("isBilled") and billed_on != invoice_id:
            other = store.get("invoice", billed_on) or {}
            raise invalid(
                path + ".doc",
                report["id"],
                f"The billable expense has already been billed on invoice {other.get('tranId', billed_on)}",
            )
        value_due = Decimal(str(exp["amount"]))
        if line.get("amount") not in (None, "") and amount(line["amount"], path + ".amount") != value_due:
            raise invalid(path + ".amount", line["amount"], f"The expense's amount is {value_due}")
        item = {
            "doc": {"id": report["id"]},
            "line": number,
            "apply": True,
            "amount": value_due,
            "category": exp["category"],
            "expenseDate": exp["expenseDate"],
        }
        memo = line.get("memo")
        if memo not in (None, ""):
            if not isinstance(memo, str):
                raise invalid(path + ".memo", memo, "Expected a string")
            item["memo"] = memo[:4000]
        clean.append(item)
        total += value_due
    return clean, total


def mark_billed(invoice_id: int, lines: list[dict], store: RecordStore) -> None:
    """On an invoice's create: each expense line it applies is billed (called under the lock)."""
    by_report: dict[str, set[int]] = {}
    for line in lines:
        by_report.setdefault(line["doc"]["id"], set()).add(int(line["line"]))
    for report_id, numbers in by_report.items():
        report = store.get("expenseReport", report_id)
        if report is None:
            continue
        items = []
        for item in report["expense"]["items"]:
            if item["line"] in numbers and not item.get("isBilled"):
                item = {**item, "isBilled": True, "invoice": {"id": str(invoice_id)}}
            items.append(item)
        fields = {k: v for k, v in report.items() if k not in ("id", "externalId")}
        fields["expense"] = {"items": items}
        fields["custbody_unbilled"] = any(i.get("isBillable") and not i.get("isBilled") for i in items)
        store.replace("expenseReport", int(report["id"]), fields, report.get("externalId"))
