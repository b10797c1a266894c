"""Pure mapping between q2c's canonical model and NetSuite REST records (no I/O).

NetSuite facts used here:
- references are `{"id": "<internal id>"}`; sublists are `{"items": [...]}`;
- customer: `companyName` (max 83 chars), `subsidiary`, `currency` (the subsidiary's base
  currency), `terms`, `vatRegNumber` (tax ID), `addressBook` lines whose
  `addressBookAddress` holds `addr1/city/state/zip/country`;
- text longer than a field takes is refused by NetSuite ("The field companyname contained more
  than the maximum number ( 83 ) of characters allowed."). The limits of every field written
  here are stated once in q2c/domain/validation.py (ERP_FIELD_LIMITS) and checked while the
  engagement is validated, so a value that does not fit pauses for a steward; nothing here
  ever cuts a value (a value that still does not fit is a MappingError, not a shorter write);
- a customer found by its external ID (linked, or created by an earlier run) is updated with
  CUSTOMER_OWNED_FIELDS only: NetSuite's upsert (`PUT .../customer/eid:X`) and update (PATCH)
  leave every field the request omits as it is ("Any omitted fields are considered
  unchanged", NetSuite Help: Updating a Record Instance; Using the Upsert Operation), so a
  hand-entered `entityId`, `email`, `phone` or `comments` survives the link;
- project = `job`: `companyName` is the project name, `parent` the customer, `startDate`,
  `projectedEndDate`, `jobBillingType` (TM | FF | RETAINER), the contract value in the
  custom field `custentity_contract_value`;
- `billingSchedule`: `scheduleType` TIME_AND_MATERIALS | FIXED_BID_MILESTONE |
  FIXED_BID_INTERVAL, `frequency`, `milestone` lines `{name, amount, milestoneDate}`, or
  `recurrenceAmount` + `recurrenceCount`;
- amounts are JSON numbers: written from Decimal and read back as Decimal, never float
  (`dumps_exact` / `loads_exact`).
"""

from __future__ import annotations

from datetime import date

from temporalio.exceptions import ApplicationError

from q2c.domain.customer import Customer
from q2c.domain.engagement import BillingModel, Engagement
from q2c.domain.project import Subsidiary
from q2c.domain.validation import ERP_FIELD_LIMITS, erp_name, length_issue
from q2c.vendors.exact_json import dumps_exact, loads_exact  # noqa: F401 (re-exported)
from q2c.vendors.http import REJECTED_TYPE

RECORD_PATH = "/services/rest/record/v1"
TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"
COMPANY_NAME_MAX = ERP_FIELD_LIMITS["customer.legal_name"].limit
SCHEDULE_NAME_MAX = 100

# The customer fields q2c owns and writes (create and update alike); every other field of an
# ERP customer (entityId, email, phone, comments, isInactive, custom fields...) belongs to the
# people who keep the ERP and is never sent, so never changed.
CUSTOMER_OWNED_FIELDS = ("companyName", "subsidiary", "currency", "terms", "vatRegNumber", "addressBook")
# The project (job) fields q2c owns; `entityStatus` is set only by closure (`close_project`).
PROJECT_OWNED_FIELDS = (
    "companyName",
    "parent",
    "subsidiary",
    "currency",
    "jobBillingType",
    "custentity_contract_value",
    "startDate",
    "projectedEndDate",
    "custentity_q2c_service_line",
)

JOB_BILLING_TYPE = {
    BillingModel.TIME_AND_MATERIALS: "TM",
    BillingModel.FIXED_FEE: "FF",
    BillingModel.RETAINER: "RETAINER",
}
SCHEDULE_TYPE = {
    BillingModel.TIME_AND_MATERIALS: "TIME_AND_MATERIALS",
    BillingModel.FIXED_FEE: "FIXED_BID_MILESTONE",
    BillingModel.RETAINER: "FIXED_BID_INTERVAL",
}


class MappingError(ValueError):
    """The canonical data cannot be expressed as a valid NetSuite record (a data problem)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def mapping_error(operation: str, err: MappingError) -> ApplicationError:
    """A MappingError as the non-retryable ApplicationError a workflow sees."""
    return ApplicationError(
        f"erp {operation}: {err} (fields: {err.field})",
        {
            "system": "erp",
            "operation": operation,
            "errors": [{"code": "MAPPING", "message": str(err), "fields": [err.field]}],
        },
        type=REJECTED_TYPE,
        non_retryable=True,
    )


# --- exact JSON: see domain/exact_json.py (re-exported for callers of this module) ---


# --- helpers ----------------------------------------------------------------------------


def ref(record_id: str | int) -> dict:
    return {"id": str(record_id)}


def id_from_location(location: str | None) -> str | None:
    """`.../record/v1/customer/107` -> "107"."""
    if not location:
        return None
    tail = location.rstrip("/").rsplit("/", 1)[-1]
    return tail if tail.isdigit() else None


def quote_q(value: str) -> str:
    """A string literal for the `q` query syntax."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def service_months(start: date, end: date) -> int:
    """Monthly service periods starting within [start, end] (end inclusive).

    2025-01-01..2025-12-31 -> 12; 2025-01-15..2025-02-14 -> 1; 2025-01-15..2025-02-15 -> 2.
    """
    if end < start:
        raise MappingError("end_date", f"end date {end} is before start date {start}")
    months = (end.year - start.year) * 12 + (end.month - start.month)
    if end.day >= start.day:
        months += 1
    return max(months, 1)


def subsidiary_from_record(record: dict, currency_code: str) -> Subsidiary:
    country = record.get("country")
    return Subsidiary(
        subsidiary_id=str(record["id"]),
        name=record.get("name") or "",
        region=record.get("custrecord_q2c_region") or "",
        country=(country.get("id") if isinstance(country, dict) else country) or "",
        currency=currency_code,
    )


# --- payloads ---------------------------------------------------------------------------


def _fits(field: str, value: str | None) -> None:
    """Refuse (never cut) a value longer than its ERP field; validation pauses before this."""
    issue = length_issue(field, value)
    if issue is not None:
        raise MappingError(issue.field, issue.reason)


def customer_payload(customer: Customer, subsidiary: Subsidiary, currency_id: str, terms_id: str | None) -> dict:
    """The customer fields q2c owns (CUSTOMER_OWNED_FIELDS), for create and update alike."""
    name = erp_name(customer)
    if not name:
        raise MappingError("legal_name", f"customer {customer.crm_account_id} has no name")
    a = customer.billing_address
    for field, value in (
        ("customer.legal_name", name),
        ("customer.tax_id", customer.tax_id),
        ("customer.billing_address.street", a.street),
        ("customer.billing_address.city", a.city),
        ("customer.billing_address.state", a.state),
        ("customer.billing_address.postal_code", a.postal_code),
    ):
        _fits(field, value)
    payload: dict = {
        "companyName": name,
        "subsidiary": ref(subsidiary.subsidiary_id),
        "currency": ref(currency_id),
    }
    if terms_id:
        payload["terms"] = ref(terms_id)
    if customer.tax_id:
        payload["vatRegNumber"] = customer.tax_id
    if any((a.street, a.city, a.state, a.postal_code, a.country)):
        address = {
            "addr1": a.street,
            "city": a.city,
            "state": a.state,
            "zip": a.postal_code,
            "country": ref(a.country) if a.country else None,
        }
        payload["addressBook"] = {
            "items": [
                {
                    "defaultBilling": True,
                    "defaultShipping": True,
                    "label": "Billing",
                    "addressBookAddress": {k: v for k, v in address.items() if v is not None},
                }
            ]
        }
    assert set(payload) <= set(CUSTOMER_OWNED_FIELDS)
    return payload


def project_payload(engagement: Engagement, customer_id: str, subsidiary: Subsidiary, currency_id: str) -> dict:
    """The project (job) fields q2c owns (PROJECT_OWNED_FIELDS)."""
    _fits("opportunity.name", engagement.opportunity_name)
    payload: dict = {
        "companyName": engagement.opportunity_name,
        "parent": ref(customer_id),
        "subsidiary": ref(subsidiary.subsidiary_id),
        "currency": ref(currency_id),
        "jobBillingType": JOB_BILLING_TYPE[engagement.billing_model],
        "custentity_contract_value": engagement.contract_value.amount,
    }
    if engagement.start_date:
        payload["startDate"] = engagement.start_date.isoformat()
    if engagement.end_date:
        payload["projectedEndDate"] = engagement.end_date.isoformat()
    if engagement.service_line:
        payload["custentity_q2c_service_line"] = engagement.service_line
    assert set(payload) <= set(PROJECT_OWNED_FIELDS)
    return payload


def billing_schedule_payload(engagement: Engagement, project_id: str) -> dict:
    model = engagement.billing_model
    _fits("opportunity.name", engagement.opportunity_name)  # so the schedule name fits its 100 too
    payload: dict = {
        "name": f"{engagement.opportunity_name} billing",
        "project": ref(project_id),
        "scheduleType": SCHEDULE_TYPE[model],
    }
    if model is BillingModel.TIME_AND_MATERIALS:
        payload["frequency"] = "MONTHLY"
    elif model is BillingModel.FIXED_FEE:
        if not engagement.milestones:
            raise MappingError(
                "milestones", f"fixed-fee engagement {engagement.opportunity_id} has no milestones to bill"
            )
        lines = []
        for m in engagement.milestones:
            line: dict = {"name": m.name, "amount": m.amount, "custcol_q2c_milestone_key": m.key}
            if m.due_date:
                line["milestoneDate"] = m.due_date.isoformat()
            lines.append(line)
        payload["milestone"] = {"items": lines}
    else:
        if engagement.retainer_amount is None:
            raise MappingError(
                "retainer_amount", f"retainer engagement {engagement.opportunity_id} has no retainer amount"
            )
        if not engagement.start_date or not engagement.end_date:
            raise MappingError(
                "end_date" if engagement.start_date else "start_date",
                f"retainer engagement {engagement.opportunity_id} needs start and "
                "end dates to count its service periods",
            )
        payload["frequency"] = "MONTHLY"
        payload["recurrenceAmount"] = engagement.retainer_amount
        payload["recurrenceCount"] = service_months(engagement.start_date, engagement.end_date)
    return payload
