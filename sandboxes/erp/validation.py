"""Field validation per record type, failing the way NetSuite does (400 + o:errorDetails).

Each validator takes the request fields (for PATCH: merged over the stored record) and
returns the normalized fields to store: references as {"id": "N"}, sublists as
{"items": [...]}, amounts as Decimal, dates as "YYYY-MM-DD".

References may be given as {"id": "N"} or {"externalId": "X"} (both NetSuite forms).
A reference to a record that does not exist is INVALID_FLD_VALUE on that field.

Rules (what NetSuite enforces, reduced to what q2c touches):
- customer: companyName and subsidiary required; currency defaults to, and must equal,
  the subsidiary's currency; terms must exist if given; address country ISO 3166 alpha-2.
- text longer than its field (fields.MAX_LENGTHS: companyName 83, addr1 150, phone 32...) is
  refused with NetSuite's 400 USER_ERROR "The field companyName contained more than the
  maximum number ( 83 ) of characters allowed.", never stored shortened.
- job (project): companyName (project name), parent (an existing customer) required;
  subsidiary and currency default to, and must equal, the customer's; startDate <=
  projectedEndDate; jobBillingType in TM | FF | RETAINER; custentity_contract_value >= 0.
- billingSchedule: name, project (existing job), scheduleType in TIME_AND_MATERIALS |
  FIXED_BID_MILESTONE | FIXED_BID_INTERVAL, compatible with the job's billing type;
  milestone lines {name, amount > 0, milestoneDate} whose total may not exceed the job's
  custentity_contract_value; an interval needs recurrenceAmount > 0 and recurrenceCount >= 1.
- job status: `entityStatus` (see JOB_STATUSES; default IN_PROGRESS, kept by an upsert that
  does not name it); `PATCH job/{id} {"entityStatus": {"id": "CLOSED"}}` closes a project.
- finance records (timeBill, invoice, customerPayment) and accountingPeriod: see
  sandboxes/erp/finance.py and sandboxes/erp/periods.py; field helpers in sandboxes/erp/fields.py.
- expenseReport, the invoice's expCost sublist and currencyRate (read-only): see
  sandboxes/erp/expenses.py.
"""

from __future__ import annotations

import re
from decimal import Decimal

from sandboxes.erp import finance
from sandboxes.erp.errors import NetSuiteError, invalid, missing
from sandboxes.erp.fields import (  # noqa: F401
    MAX_LENGTHS,
    REF_TARGETS,
    _date,
    _enum,
    _items,
    _ref,
    _text,
    amount,
    job_is_open,
    too_long,
)
from sandboxes.erp.store import RecordStore

READ_ONLY_TYPES = ("subsidiary", "currency", "term", "accountingPeriod", "currencyRate")
WRITABLE_TYPES = (
    "customer",
    "job",
    "billingSchedule",
    "timeBill",
    "invoice",
    "customerPayment",
    "creditMemo",
    "expenseReport",
)
RECORD_TYPES = READ_ONLY_TYPES + WRITABLE_TYPES

# Fields a request may carry but that are never stored from the request.
SYSTEM_FIELDS = {"id", "links", "externalId", "dateCreated", "lastModifiedDate", "defaultAddress", "refName"}
ALLOWED = {
    "customer": {
        "companyName",
        "entityId",
        "subsidiary",
        "currency",
        "terms",
        "vatRegNumber",
        "email",
        "phone",
        "isInactive",
        "addressBook",
        "comments",
    },
    "job": {
        "companyName",
        "entityId",
        "parent",
        "subsidiary",
        "currency",
        "startDate",
        "projectedEndDate",
        "jobBillingType",
        "custentity_contract_value",
        "isInactive",
        "comments",
        "entityStatus",
    },
    "billingSchedule": {
        "name",
        "project",
        "scheduleType",
        "frequency",
        "milestone",
        "recurrenceAmount",
        "recurrenceCount",
        "isInactive",
        "comments",
    },
    "timeBill": {"customer", "employee", "tranDate", "hours", "isBillable", "rate", "memo", "postingPeriod"},
    "invoice": {
        "entity",
        "job",
        "tranDate",
        "dueDate",
        "currency",
        "item",
        "expCost",
        "memo",
        "otherRefNum",
        "postingPeriod",
    },
    "customerPayment": {"customer", "payment", "tranDate", "currency", "apply", "memo", "postingPeriod"},
    "creditMemo": {"entity", "createdFrom", "job", "tranDate", "currency", "item", "apply", "memo", "otherRefNum"},
    "expenseReport": {"entity", "tranDate", "memo", "expenseReportCurrency", "expense", "postingPeriod"},
}
CUSTOM_PREFIX = {
    "customer": "custentity_",
    "job": "custentity_",
    "billingSchedule": "custrecord_",
    "timeBill": "custcol_",
    "invoice": "custbody_",
    "customerPayment": "custbody_",
    "creditMemo": "custbody_",
    "expenseReport": "custbody_",
}
# Project (job) statuses, modelled on NetSuite's default project status list (internal IDs
# 1..5 are accepted as aliases of the text IDs the sandbox stores and renders).
JOB_STATUSES = {
    "CLOSED": "Closed",
    "IN_PROGRESS": "In Progress",
    "NOT_AWARDED": "Not Awarded",
    "PENDING": "Pending",
    "AWARDED": "Awarded",
}
JOB_STATUS_ALIASES = {"1": "CLOSED", "2": "IN_PROGRESS", "3": "NOT_AWARDED", "4": "PENDING", "5": "AWARDED"}
JOB_BILLING_TYPES = ("TM", "FF", "RETAINER")
SCHEDULE_TYPES = ("TIME_AND_MATERIALS", "FIXED_BID_MILESTONE", "FIXED_BID_INTERVAL")
SCHEDULE_FOR_BILLING_TYPE = {"TM": "TIME_AND_MATERIALS", "FF": "FIXED_BID_MILESTONE", "RETAINER": "FIXED_BID_INTERVAL"}
FREQUENCIES = ("DAILY", "WEEKLY", "BIWEEKLY", "MONTHLY", "QUARTERLY", "ANNUALLY")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def check_fields(record_type: str, body: dict) -> None:
    allowed = ALLOWED[record_type] | SYSTEM_FIELDS
    for name in body:
        if name not in allowed and not name.startswith(CUSTOM_PREFIX[record_type]):
            raise NetSuiteError(
                400,
                "USER_ERROR",
                f"Field '{name}' for record '{record_type}' was not found. "
                "Reason: NOT_FOUND - Field is not defined on this record.",
                name,
            )


def validate(record_type: str, fields: dict, store: RecordStore, existing: dict | None = None) -> dict:
    """Normalized fields to store. `existing` is the stored record being replaced (upsert or
    PATCH), whose system-managed fields (billing state, invoice number, payments) carry over."""

    out = {k: v for k, v in fields.items() if k not in SYSTEM_FIELDS}
    if "isInactive" in out and not isinstance(out["isInactive"], bool):
        raise invalid("isInactive", out["isInactive"], "Expected true or false")
    if record_type == "job":
        if existing is not None and out.get("entityStatus") in (None, ""):
            out["entityStatus"] = existing.get("entityStatus")
        return _job(out, store)
    if record_type in finance.VALIDATORS:
        return finance.VALIDATORS[record_type](out, store, existing)
    return {"customer": _customer, "billingSchedule": _billing_schedule}[record_type](out, store)


# --- record types ---------------------------------------------------------------------


def _customer(out: dict, store: RecordStore) -> dict:
    limits = MAX_LENGTHS["customer"]
    _text(out, "companyName", "Company Name", required=True, max_len=limits["companyName"])
    sub = _ref(out, "subsidiary", "Primary Subsidiary", store, required=True)
    currency = _ref(out, "currency", "Currency", store)
    if currency is None:
        out["currency"] = {"id": sub["currency"]["id"]}
    elif currency["id"] != sub["currency"]["id"]:
        expected = store.get("currency", sub["currency"]["id"])
        raise invalid(
            "currency",
            currency["symbol"],
            f"The currency must be the base currency of subsidiary {sub['name']} ({expected['symbol']})",
        )
    _ref(out, "terms", "Terms", store)
    _text(out, "vatRegNumber", "Tax Reg. Number", max_len=limits["vatRegNumber"])
    for name in ("entityId", "email", "phone", "comments"):
        _text(out, name, name, max_len=limits[name])
    if "addressBook" in out:
        lines = []
        for i, line in enumerate(_items(out["addressBook"], "addressBook")):
            path = f"addressBook.items[{i}].addressBookAddress.country"
            addr = dict(line.get("addressBookAddress") or {}) if isinstance(line, dict) else {}
            country = addr.get("country")
            code = country.get("id") if isinstance(country, dict) else country
            if not code:
                raise missing(path, "Country")
            if not isinstance(code, str) or not _COUNTRY.match(code):
                raise invalid(path, code, "Expected an ISO 3166-1 alpha-2 country code")
            addr["country"] = {"id": code}
            for name, limit in MAX_LENGTHS["address"].items():
                value = addr.get(name)
                if value is not None and not isinstance(value, str):
                    raise invalid(f"addressBook.items[{i}].addressBookAddress.{name}", value, "Expected a string")
                if isinstance(value, str) and len(value) > limit:
                    raise too_long(f"addressBook.items[{i}].addressBookAddress.{name}", name, limit)
            lines.append(
                {
                    "defaultBilling": bool(line.get("defaultBilling", i == 0)),
                    "defaultShipping": bool(line.get("defaultShipping", i == 0)),
                    "label": line.get("label") or addr.get("addr1") or code,
                    "addressBookAddress": addr,
                }
            )
        out["addressBook"] = {"items": lines}
    return out


def _job(out: dict, store: RecordStore) -> dict:
    _text(out, "companyName", "Project Name", required=True, max_len=MAX_LENGTHS["job"]["companyName"])
    parent = _ref(out, "parent", "Customer", store, required=True)
    for name, label in (("subsidiary", "Subsidiary"), ("currency", "Currency")):
        given = _ref(out, name, label, store)
        expected = parent[name]["id"]
        if given is None:
            out[name] = {"id": expected}
        elif given["id"] != expected:
            raise invalid(name, given["id"], f"The project's {name} must be the customer's ({expected})")
    start = _date(out, "startDate")
    end = _date(out, "projectedEndDate")
    if start and end and start > end:
        raise invalid("projectedEndDate", end.isoformat(), "The projected end date must not be before the start date")
    _enum(out, "jobBillingType", "Billing Type", JOB_BILLING_TYPES, required=True)
    if out.get("custentity_contract_value") is not None:
        out["custentity_contract_value"] = amount(out["custentity_contract_value"], "custentity_contract_value")
    for name in ("entityId", "comments"):
        _text(out, name, name, max_len=MAX_LENGTHS["job"][name])
    status = out.get("entityStatus")
    key = status.get("id") if isinstance(status, dict) else status
    key = JOB_STATUS_ALIASES.get(str(key), key) if key not in (None, "") else "IN_PROGRESS"
    if key not in JOB_STATUSES:
        raise invalid("entityStatus", key, f"Allowed: {', '.join(JOB_STATUSES)}")
    out["entityStatus"] = {"id": key, "refName": JOB_STATUSES[key]}
    return out


def _billing_schedule(out: dict, store: RecordStore) -> dict:
    _text(out, "name", "Name", required=True, max_len=100)
    job = _ref(out, "project", "Project", store, required=True)
    kind = _enum(out, "scheduleType", "Schedule Type", SCHEDULE_TYPES, required=True)
    expected = SCHEDULE_FOR_BILLING_TYPE[job["jobBillingType"]]
    if kind != expected:
        raise invalid(
            "scheduleType",
            kind,
            f"Project {job['id']} has billing type {job['jobBillingType']}, which takes a {expected} schedule",
        )
    _enum(out, "frequency", "Frequency", FREQUENCIES, required=kind == "FIXED_BID_INTERVAL")
    if kind == "TIME_AND_MATERIALS":
        out.setdefault("frequency", "MONTHLY")
    if kind == "FIXED_BID_MILESTONE":
        raw = out.get("milestone")
        if not raw:
            raise missing("milestone", "Milestones")
        lines, total = [], Decimal(0)
        for i, line in enumerate(_items(raw, "milestone")):
            path = f"milestone.items[{i}]"
            if not isinstance(line, dict):
                raise invalid(path, line)
            if not isinstance(line.get("name"), str) or not line["name"].strip():
                raise missing(path + ".name", "Milestone Name")
            value = amount(line.get("amount"), path + ".amount", positive=True)
            clean = {k: v for k, v in line.items() if k.startswith("custcol_")}
            clean.update(name=line["name"], amount=value)
            if line.get("milestoneDate"):
                holder = {"milestoneDate": line["milestoneDate"]}
                try:
                    _date(holder, "milestoneDate")
                except NetSuiteError as err:
                    raise invalid(path + ".milestoneDate", line["milestoneDate"], "Expected a date YYYY-MM-DD") from err
                clean["milestoneDate"] = holder["milestoneDate"]
            lines.append(clean)
            total += value
        contract = job.get("custentity_contract_value")
        if contract is None:
            raise invalid(
                "project",
                job["id"],
                "The project has no contract value (custentity_contract_value) to bill milestones against",
            )
        if total > Decimal(str(contract)):
            raise invalid(
                "milestone", total, f"The milestones total {total} exceeds the project's contract value {contract}"
            )
        out["milestone"] = {"items": lines}
    else:
        out.pop("milestone", None)
    if kind == "FIXED_BID_INTERVAL":
        if out.get("recurrenceAmount") is None:
            raise missing("recurrenceAmount", "Recurrence Amount")
        out["recurrenceAmount"] = amount(out["recurrenceAmount"], "recurrenceAmount", positive=True)
        count = out.get("recurrenceCount")
        if count is None:
            raise missing("recurrenceCount", "Number of Recurrences")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise invalid("recurrenceCount", count, "Expected a whole number of at least 1")
    else:
        out.pop("recurrenceAmount", None)
        out.pop("recurrenceCount", None)
    return out
