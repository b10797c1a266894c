"""The sObject schema the sandbox enforces: which fields exist per type and how they are typed.

Salesforce rejects writes to fields the object does not have (`INVALID_FIELD`), to read-only
fields (`INVALID_FIELD_FOR_INSERT_UPDATE`), with a missing required field
(`REQUIRED_FIELD_MISSING`, naming it in `fields`) and with a bad value for a restricted
picklist (`INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST`). Numbers are kept as Decimal.
External-ID fields (usable in `PATCH /sobjects/{Type}/{Field}/{value}`) are not unique here,
so an upsert can match several records and answer 300.

The Opportunity's q2c reference fields (what q2c writes, and what each means) are listed in
`Q2C_REFERENCE_FIELDS` below.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from sandboxes.crm.errors import SfError

OPPORTUNITY_STAGES = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
)
CLOSED_WON = "Closed Won"
BILLING_MODELS = ("Time and Materials", "Fixed Fee", "Retainer")
LINE_TYPES = ("Rate", "Milestone", "Retainer")
SYSTEM_FIELDS = ("Id", "CreatedDate", "LastModifiedDate", "SystemModstamp")


@dataclass(frozen=True)
class FieldDef:
    type: str  # id | string | picklist | currency | double | date | datetime | reference | boolean
    required: bool = False
    createable: bool = True
    updateable: bool = True
    external_id: bool = False
    restricted: tuple[str, ...] | None = None
    reference_to: str | None = None
    relationship: str | None = None  # e.g. AccountId -> "Account" for SOQL parent fields


def _system() -> dict[str, FieldDef]:
    return {
        "Id": FieldDef("id", createable=False, updateable=False, external_id=True),
        "CreatedDate": FieldDef("datetime", createable=False, updateable=False),
        "LastModifiedDate": FieldDef("datetime", createable=False, updateable=False),
        "SystemModstamp": FieldDef("datetime", createable=False, updateable=False),
    }


_S = FieldDef("string")
_CUR = FieldDef("currency")
_DATE = FieldDef("date")
_EXT = FieldDef("string", external_id=True)

SCHEMAS: dict[str, dict[str, FieldDef]] = {
    "Account": {
        **_system(),
        "Name": FieldDef("string", required=True),
        "Legal_Name__c": _S,
        "Tax_Id__c": FieldDef("string", external_id=True),
        "Region__c": FieldDef("picklist"),
        "CurrencyIsoCode": FieldDef("picklist"),
        "Payment_Terms__c": FieldDef("picklist"),
        "BillingStreet": _S,
        "BillingCity": _S,
        "BillingState": _S,
        "BillingPostalCode": _S,
        "BillingCountry": _S,
        "External_Id__c": _EXT,
    },
    "Opportunity": {
        **_system(),
        "Name": FieldDef("string", required=True),
        "AccountId": FieldDef("reference", reference_to="Account", relationship="Account"),
        "StageName": FieldDef("picklist", required=True, restricted=OPPORTUNITY_STAGES),
        "Amount": _CUR,
        "CurrencyIsoCode": FieldDef("picklist"),
        "CloseDate": FieldDef("date", required=True),
        "Description": _S,
        "Service_Line__c": FieldDef("picklist"),
        "Billing_Model__c": FieldDef("picklist", restricted=BILLING_MODELS),
        "Start_Date__c": _DATE,
        "End_Date__c": _DATE,
        "Retainer_Amount__c": _CUR,
        "ERP_Customer_Id__c": _S,
        "ERP_Project_Id__c": _S,
        "PSA_Workspace_Id__c": _S,
        "Q2C_Status__c": _S,
        "Last_Invoice_Number__c": _S,
        "Last_Invoice_Amount__c": _CUR,
        "Last_Invoice_Status__c": _S,
        "Last_Invoice_Currency__c": _S,
        "Q2C_Contract_Version__c": FieldDef("double"),
        "Amount_Paid__c": _CUR,
        "Open_Balance__c": _CUR,
        "Days_Overdue__c": FieldDef("double"),
        "Unapplied_Credit__c": _CUR,
        "External_Id__c": _EXT,
        "IsClosed": FieldDef("boolean", createable=False, updateable=False),
        "IsWon": FieldDef("boolean", createable=False, updateable=False),
    },
    "OpportunityLineItem": {
        **_system(),
        "OpportunityId": FieldDef(
            "reference", required=True, updateable=False, reference_to="Opportunity", relationship="Opportunity"
        ),
        "Name": _S,
        "Line_Type__c": FieldDef("picklist", restricted=LINE_TYPES),
        "Role__c": _S,
        "Quantity": FieldDef("double", required=True),
        "UnitPrice": _CUR,
        "TotalPrice": FieldDef("currency", createable=False, updateable=False),
        "Effective_From__c": _DATE,
        "Milestone_Date__c": _DATE,
        "External_Id__c": _EXT,
    },
}

# The Opportunity fields q2c writes: read-only reference copies of what the ERP and PSA own
# (integration never writes CRM-owned data back the other way). Collection figures are totals
# over EVERY invoice of the engagement as the ERP has them, refreshed by each payment check.
Q2C_REFERENCE_FIELDS: dict[str, str] = {
    "ERP_Customer_Id__c": "NetSuite internal ID of the customer (keyed by the CRM account ID)",
    "ERP_Project_Id__c": "NetSuite internal ID of the project (job) for this opportunity",
    "PSA_Workspace_Id__c": "Kantata workspace ID",
    "Q2C_Status__c": "the engagement's stage in q2c (Active, Collecting, Closed, ...)",
    "Q2C_Contract_Version__c": "the contract version q2c works to: 1 from activation, +1 per change order",
    "Last_Invoice_Number__c": "ERP number (tranId) of the latest invoice",
    "Last_Invoice_Amount__c": "total of the latest invoice",
    "Last_Invoice_Currency__c": "ISO currency of the latest invoice",
    "Last_Invoice_Status__c": "the ERP's status of the latest invoice: open | partially_paid | paid_in_full",
    "Amount_Paid__c": "paid on all the engagement's invoices (applied payments; only grows as payments arrive)",
    "Open_Balance__c": "still owed on all the engagement's invoices",
    "Days_Overdue__c": "days past due of the most overdue open invoice (0 when none is overdue)",
    "Unapplied_Credit__c": (
        "the ERP customer's unapplied payments: money received beyond what it was "
        "applied to (e.g. an overpayment), a credit on the account until applied "
        "or refunded; an account's credit shows on each of its q2c opportunities"
    ),
}

# Relationship name -> (reference field, parent type), per child type.
RELATIONSHIPS: dict[str, dict[str, tuple[str, str]]] = {
    t: {f.relationship: (name, f.reference_to) for name, f in fields.items() if f.relationship}
    for t, fields in SCHEMAS.items()
}


def schema_for(sobject: str) -> dict[str, FieldDef]:
    schema = SCHEMAS.get(sobject)
    if schema is None:
        raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
    return schema


def computed_fields(sobject: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Formula/roll-up fields derived from stored values."""
    if sobject == "Opportunity":
        stage = fields.get("StageName")
        return {"IsClosed": stage in ("Closed Won", "Closed Lost"), "IsWon": stage == CLOSED_WON}
    if sobject == "OpportunityLineItem":
        qty, price = fields.get("Quantity"), fields.get("UnitPrice")
        total = qty * price if qty is not None and price is not None else None
        return {"TotalPrice": total}
    return {}


def validate_write(sobject: str, values: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """Check field names, writability and types; return the values coerced for storage."""
    schema = schema_for(sobject)
    unknown = [k for k in values if k not in schema and k != "attributes"]
    if unknown:
        raise SfError(400, "INVALID_FIELD", f"No such column '{unknown[0]}' on sobject of type {sobject}", unknown)
    readonly = [
        k for k in values if k != "attributes" and not (schema[k].createable if creating else schema[k].updateable)
    ]
    if readonly:
        raise SfError(
            400,
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            f"Unable to create/update fields: {', '.join(readonly)}. Please check the "
            "security settings of this field and verify that it is read/write for your "
            "profile or permission set.",
            readonly,
        )
    out: dict[str, Any] = {}
    for name, raw in values.items():
        if name == "attributes":
            continue
        out[name] = _coerce(sobject, name, schema[name], raw)
    if creating:
        missing = [n for n, f in schema.items() if f.required and out.get(n) in (None, "")]
    else:
        missing = [n for n, v in out.items() if schema[n].required and v in (None, "")]
    if missing:
        raise SfError(400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing)
    return out


def _coerce(sobject: str, name: str, f: FieldDef, raw: Any) -> Any:
    if raw is None:
        return None
    kind = f.type
    if kind in ("currency", "double"):
        if isinstance(raw, bool):
            raise _parse_error(raw, "double", name)
        if isinstance(raw, (int, Decimal)):
            return Decimal(raw)
        if isinstance(raw, str):
            try:
                value = Decimal(raw)
            except InvalidOperation:
                raise _parse_error(raw, "double", name) from None
            if value.is_finite():
                return value
        raise _parse_error(raw, "double", name)
    if kind == "boolean":
        if isinstance(raw, bool):
            return raw
        raise _parse_error(raw, "boolean", name)
    if kind == "date":
        if isinstance(raw, str):
            try:
                return date.fromisoformat(raw).isoformat()
            except ValueError:
                pass
        raise _parse_error(raw, "date", name)
    if not isinstance(raw, str):
        if isinstance(raw, (int, Decimal)) and not isinstance(raw, bool) and kind in ("string", "picklist"):
            raw = str(raw)
        else:
            raise _parse_error(raw, "string", name)
    if f.restricted is not None and raw not in f.restricted:
        raise SfError(
            400,
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            f"{name}: bad value for restricted picklist field: {raw}",
            [name],
        )
    return raw


def _parse_error(raw: Any, kind: str, name: str) -> SfError:
    return SfError(
        400, "JSON_PARSER_ERROR", f"Cannot deserialize instance of {kind} from value {raw!r} for field {name}", [name]
    )
