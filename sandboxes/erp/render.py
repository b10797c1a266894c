"""Stored record -> NetSuite REST JSON: `links`, `id`, and references as
`{"links": [...], "id": "1", "refName": "..."}` (what a GET answers).

Sublists (`item`, `apply`, `milestone`, `addressBook`) are, as NetSuite's "Format of Sublists
and Subrecords" says, not expanded by default: a GET answers only the body fields, each
sublist as a link `{"links": [{"rel": "self", "href": ".../invoice/9001/item"}]}`. With
`expandSubResources=true` a sublist is `{"links": [...], "items": [...], "totalResults": n}`.
`fields=a,b` answers only those fields (and `links`, `id`).
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
    "expenseReport": {"expenseReportCurrency": "currency", "postingPeriod": "accountingPeriod", "custbody_job": "job"},
    "currencyRate": {"baseCurrency": "currency", "transactionCurrency": "currency"},
}
SUBLISTS = ("milestone", "item", "apply", "addressBook", "expense", "expCost")
REF_NAME_FIELD = {
    "subsidiary": "name",
    "currency": "name",
    "term": "name",
    "customer": "companyName",
    "job": "companyName",
    "billingSchedule": "name",
    "accountingPeriod": "periodName",
    "invoice": "tranId",
    "expenseReport": "tranId",
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


def sublist_items(key: str, value: dict) -> list[dict]:
    """A stored sublist's lines as a GET shows them."""
    if key != "addressBook":
        return list(value.get("items", []))
    items = []
    for line in value.get("items", []):
        addr = dict(line.get("addressBookAddress") or {})
        if "country" in addr:
            addr["country"] = _country(addr["country"])
        items.append({**line, "addressBookAddress": addr})
    return items


def render(
    record_type: str,
    record: dict,
    store: RecordStore,
    base: str,
    *,
    expand: bool = True,
    fields: set[str] | None = None,
) -> dict:
    """The record as GET answers it; `expand=False` is NetSuite's default (sublists as links)."""
    url = record_url(base, record_type, record["id"])
    out: dict = {"links": self_links(url)}
    refs = {**REF_FIELDS, **RECORD_REF_FIELDS.get(record_type, {})}
    for key, value in record.items():
        if fields is not None and key not in fields and key != "id":
            continue
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
        elif key in SUBLISTS and isinstance(value, dict):
            links = self_links(f"{url}/{key}")
            if expand:
                items = sublist_items(key, value)
                out[key] = {"links": links, "items": items, "totalResults": len(items)}
            else:
                out[key] = {"links": links}
        else:
            out[key] = value
    if record_type == "customer" and (fields is None or "defaultAddress" in fields):
        address = _default_address(record)
        if address:
            out["defaultAddress"] = address
    return out
