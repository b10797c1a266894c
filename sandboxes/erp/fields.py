"""Field checks shared by the ERP sandbox's record validators (NetSuite's own error shapes)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from sandboxes.erp.errors import NetSuiteError, invalid, missing
from sandboxes.erp.store import RecordStore

REF_TARGETS = {
    "subsidiary": "subsidiary",
    "currency": "currency",
    "terms": "term",
    "parent": "customer",
    "project": "job",
}


# Text field lengths NetSuite enforces on what q2c and people write (customer import field
# limits: entityId 80, companyName 83, email 64, comments 4000, address addressee/attention 83,
# addr1/addr2 150; phone 32 as NetSuite's REST refusal states it; city 50, state 30, zip 36;
# Tax Reg. Number 20). Project (job) names are entity names too: companyName 83.
MAX_LENGTHS = {
    "customer": {"companyName": 83, "entityId": 80, "email": 64, "phone": 32, "comments": 4000, "vatRegNumber": 20},
    "job": {"companyName": 83, "entityId": 80, "comments": 4000},
    "address": {
        "addressee": 83,
        "attention": 83,
        "addr1": 150,
        "addr2": 150,
        "addr3": 150,
        "addrPhone": 32,
        "city": 50,
        "state": 30,
        "zip": 36,
    },
}


def too_long(path: str, name: str, limit: int) -> NetSuiteError:
    """NetSuite's refusal of an over-long text value (it never stores a shortened one)."""
    return NetSuiteError(
        400,
        "USER_ERROR",
        f"The field {name} contained more than the maximum number ( {limit} ) of characters allowed.",
        path,
    )


def _text(out: dict, name: str, label: str, *, required: bool = False, max_len: int = 300) -> str | None:
    value = out.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise missing(name, label)
        out.pop(name, None)
        return None
    if not isinstance(value, str):
        raise invalid(name, value, "Expected a string")
    if len(value) > max_len:
        raise too_long(name, name, max_len)
    return value


def _ref(out: dict, name: str, label: str, store: RecordStore, *, required: bool = False) -> dict | None:
    """A master-data reference (`REF_TARGETS` names its record type): {"id"} or {"externalId"}."""
    return _ref_to(out, name, label, REF_TARGETS[name], store, required=required, bare_ids=False)


def amount(value: Any, path: str, *, positive: bool = False) -> Decimal:
    if isinstance(value, bool) or isinstance(value, float):
        raise invalid(path, value, "Expected an exact decimal number")
    try:
        result = Decimal(str(value)) if isinstance(value, (int, str)) else value
        if not isinstance(result, Decimal) or not result.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        raise invalid(path, value, "Expected a number") from None
    if result < 0 or (positive and result == 0):
        raise invalid(path, value, "Must be greater than zero" if positive else "Must not be negative")
    return result


def _date(out: dict, name: str) -> date | None:
    value = out.get(name)
    if value in (None, ""):
        out.pop(name, None)
        return None
    try:
        parsed = date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise invalid(name, value, "Expected a date YYYY-MM-DD")
    out[name] = parsed.isoformat()
    return parsed


def _items(value: Any, path: str) -> list:
    if isinstance(value, dict) and isinstance(value.get("items"), list):
        return value["items"]
    if isinstance(value, list):
        return value
    raise invalid(path, value, 'Expected a sublist {"items": [...]}')


def _enum(out: dict, name: str, label: str, allowed: tuple[str, ...], *, required: bool) -> str | None:
    value = out.get(name)
    if value in (None, ""):
        if required:
            raise missing(name, label)
        out.pop(name, None)
        return None
    if isinstance(value, dict):  # NetSuite select fields may come as {"id": "TM"}
        value = value.get("id")
    if value not in allowed:
        raise invalid(name, value, f"Allowed: {', '.join(allowed)}")
    out[name] = value
    return value


def job_is_open(job: dict) -> bool:
    return (job.get("entityStatus") or {}).get("id", "IN_PROGRESS") != "CLOSED"


def _ref_to(
    out: dict,
    name: str,
    label: str,
    target_type: str,
    store: RecordStore,
    *,
    required: bool = False,
    bare_ids: bool = True,
) -> dict | None:
    """A reference to a `target_type` record, stored as {"id"}; `bare_ids`: a plain id is taken
    too (finance records), otherwise only {"id"} or {"externalId"} (master data)."""
    value = out.get(name)
    if value in (None, "", {}):
        if required:
            raise missing(name, label)
        out.pop(name, None)
        return None
    if bare_ids and isinstance(value, (str, int)) and not isinstance(value, bool):
        value = {"id": str(value)}
    if isinstance(value, dict) and value.get("id") not in (None, ""):
        target, shown = store.get(target_type, str(value["id"])), value["id"]
    elif isinstance(value, dict) and value.get("externalId"):
        target, shown = store.get_by_eid(target_type, str(value["externalId"])), f"eid:{value['externalId']}"
    else:
        raise invalid(name, value, 'Expected a reference like {"id": "1"}')
    if target is None:
        raise invalid(name, shown)
    out[name] = {"id": target["id"]}
    return target


def _required_date(out: dict, name: str, label: str) -> date:
    value = _date(out, name)
    if value is None:
        raise missing(name, label)
    return value


def _bool(out: dict, name: str, default: bool) -> bool:
    value = out.get(name, default)
    if value is None:
        value = default
    if not isinstance(value, bool):
        raise invalid(name, value, "Expected true or false")
    out[name] = value
    return value
