"""Stored record -> NetSuite REST JSON: `links`, `id`, and references as
`{"links": [...], "id": "1", "refName": "..."}` (what a GET answers).

Sublists are rendered inline (as NetSuite does with `expandSubResources=true`).
`defaultAddress` is derived from the default billing address, as NetSuite derives it.
"""

from __future__ import annotations

from sandboxes.erp.store import RecordStore

RECORD_PATH = "/services/rest/record/v1"
REF_FIELDS = {
    "subsidiary": "subsidiary",
    "currency": "currency",
    "terms": "term",
    "parent": "customer",
    "project": "job",
}
# Per record type overrides (a timeBill's `customer` is the project, i.e. a job).
RECORD_REF_FIELDS = {
    "timeBill": {"customer": "job", "invoice": "invoice", "postingPeriod": "accountingPeriod"},
    "invoice": {"entity": "customer", "job": "job", "postingPeriod": "accountingPeriod"},
    "customerPayment": {"customer": "customer", "postingPeriod": "accountingPeriod"},
}
SUBLISTS = ("milestone", "item", "apply")
REF_NAME_FIELD = {
    "subsidiary": "name",
    "currency": "name",
    "term": "name",
    "customer": "companyName",
    "job": "companyName",
    "billingSchedule": "name",
    "accountingPeriod": "periodName",
    "invoice": "tranId",
}
COUNTRIES = {
    "US": "United States",
    "GB": "United Kingdom",
    "DE": "Germany",
    "FR": "France",
    "CA": "Canada",
    "AU": "Australia",
    "IE": "Ireland",
    "NL": "Netherlands",
    "CH": "Switzerland",
    "AT": "Austria",
    "ES": "Spain",
    "IT": "Italy",
    "SE": "Sweden",
}


def record_url(base: str, record_type: str, record_id: str | int) -> str:
    return f"{base.rstrip('/')}{RECORD_PATH}/{record_type}/{record_id}"


def self_links(href: str) -> list[dict]:
    return [{"rel": "self", "href": href}]


def _country(value: dict | str) -> dict:
    code = value.get("id") if isinstance(value, dict) else value
    return {"id": code, "refName": COUNTRIES.get(code, code)}


def _default_address(record: dict) -> str | None:
    items = (record.get("addressBook") or {}).get("items") or []
    line = next((i for i in items if i.get("defaultBilling")), items[0] if items else None)
    if not line:
        return None
    a = line.get("addressBookAddress") or {}
    code = (a.get("country") or {}).get("id")
    parts = [
        a.get("addressee"),
        a.get("addr1"),
        a.get("addr2"),
        " ".join(p for p in (a.get("city"), a.get("state"), a.get("zip")) if p),
        COUNTRIES.get(code, code),
    ]
    return "\n".join(p for p in parts if p)


def render(record_type: str, record: dict, store: RecordStore, base: str) -> dict:
    out: dict = {"links": self_links(record_url(base, record_type, record["id"]))}
    refs = {**REF_FIELDS, **RECORD_REF_FIELDS.get(record_type, {})}
    for key, value in record.items():
        target = refs.get(key)
        if target and isinstance(value, dict):
            ref = store.get(target, value["id"])
            out[key] = {
                "links": self_links(record_url(base, target, value["id"])),
                "id": value["id"],
                "refName": ref.get(REF_NAME_FIELD[target]) if ref else None,
            }
        elif key == "country":
            out[key] = _country(value)
        elif key == "addressBook":
            items = []
            for line in value.get("items", []):
                addr = dict(line.get("addressBookAddress") or {})
                if "country" in addr:
                    addr["country"] = _country(addr["country"])
                items.append({**line, "addressBookAddress": addr})
            out[key] = {"links": [], "items": items, "totalResults": len(items)}
        elif key in SUBLISTS and isinstance(value, dict):
            items = value.get("items", [])
            out[key] = {"links": [], "items": items, "totalResults": len(items)}
        else:
            out[key] = value
    if record_type == "customer":
        address = _default_address(record)
        if address:
            out["defaultAddress"] = address
    return out
