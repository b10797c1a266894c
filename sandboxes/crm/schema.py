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

from sandboxes.crm import ids
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
MAX_NUMBER_TEXT = 100  # a number sent as a string longer than this is not a number
MAX_DECIMAL_PLACES = 18
SYSTEM_FIELDS = ("Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp")


@dataclass(frozen=True)
class FieldDef:
    """One field as the org declares it: what validation enforces and what describe reports.

    `length` is the maximum text length (Salesforce answers STRING_TOO_LONG past it);
    `precision`/`scale` bound numbers (NUMBER_OUTSIDE_VALID_RANGE past `precision - scale`
    integer digits); `values` are the picklist values describe lists (`restricted` ones are
    also enforced, as a restricted picklist is)."""

    type: str  # id | string | textarea | picklist | currency | double | date | datetime | reference | boolean
    required: bool = False
    createable: bool = True
    updateable: bool = True
    external_id: bool = False
    restricted: tuple[str, ...] | None = None
    reference_to: str | None = None
    relationship: str | None = None  # e.g. AccountId -> "Account" for SOQL parent fields
    label: str | None = None
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    values: tuple[str, ...] | None = None
    calculated: bool = False

    @property
    def picklist_values(self) -> tuple[str, ...]:
        return self.restricted or self.values or ()


def _system() -> dict[str, FieldDef]:
    return {
        "Id": FieldDef("id", createable=False, updateable=False, external_id=True, length=18),
        "IsDeleted": FieldDef("boolean", createable=False, updateable=False, label="Deleted"),
        "CreatedDate": FieldDef("datetime", createable=False, updateable=False, label="Created Date"),
        "LastModifiedDate": FieldDef("datetime", createable=False, updateable=False, label="Last Modified Date"),
        "SystemModstamp": FieldDef("datetime", createable=False, updateable=False, label="System Modstamp"),
    }


def _text(length: int = 255, **kw: Any) -> FieldDef:
    return FieldDef("string", length=length, **kw)


def _money(**kw: Any) -> FieldDef:
    return FieldDef("currency", precision=18, scale=2, **kw)


def _number(precision: int = 18, scale: int = 0, **kw: Any) -> FieldDef:
    return FieldDef("double", precision=precision, scale=scale, **kw)


def _picklist(values: tuple[str, ...], *, restricted: bool = False, **kw: Any) -> FieldDef:
    return FieldDef("picklist", length=255, restricted=values if restricted else None, values=values, **kw)


_DATE = FieldDef("date")
_EXT = _text(255, external_id=True, label="External ID")  # sandbox-only: lets tests exercise upsert

REGIONS = ("NA", "UK", "DACH")
CURRENCIES = ("USD", "EUR", "GBP")
PAYMENT_TERMS = ("Net 15", "Net 30", "Net 45", "Net 60")
SERVICE_LINES = ("Data & Analytics", "ERP Implementation", "Advisory", "Cloud Migration", "Cybersecurity")

SCHEMAS: dict[str, dict[str, FieldDef]] = {
    "Account": {
        **_system(),
        "Name": _text(255, required=True, label="Account Name"),
        "Legal_Name__c": _text(255),
        "Tax_Id__c": _text(40, external_id=True, label="Tax ID"),
        "Region__c": _picklist(REGIONS),
        "CurrencyIsoCode": FieldDef("picklist", length=3, values=CURRENCIES, label="Account Currency"),
        "Payment_Terms__c": _picklist(PAYMENT_TERMS),
        "BillingStreet": FieldDef("textarea", length=255, label="Billing Street"),
        "BillingCity": _text(40, label="Billing City"),
        "BillingState": _text(80, label="Billing State/Province"),
        "BillingPostalCode": _text(20, label="Billing Zip/Postal Code"),
        "BillingCountry": _text(80, label="Billing Country"),
        "External_Id__c": _EXT,
    },
    "Opportunity": {
        **_system(),
        "Name": _text(120, required=True, label="Opportunity Name"),
        "AccountId": FieldDef(
            "reference", reference_to="Account", relationship="Account", length=18, label="Account ID"
        ),
        "StageName": FieldDef("picklist", required=True, restricted=OPPORTUNITY_STAGES, length=255, label="Stage"),
        "Amount": _money(),
        "CurrencyIsoCode": FieldDef("picklist", length=3, values=CURRENCIES, label="Opportunity Currency"),
        "CloseDate": FieldDef("date", required=True, label="Close Date"),
        "Description": FieldDef("textarea", length=32000),
        "Service_Line__c": _picklist(SERVICE_LINES),
        "Billing_Model__c": _picklist(BILLING_MODELS, restricted=True),
        "Start_Date__c": _DATE,
        "End_Date__c": _DATE,
        "Retainer_Amount__c": _money(),
        "ERP_Customer_Id__c": _text(40, label="ERP Customer ID"),
        "ERP_Project_Id__c": _text(40, label="ERP Project ID"),
        "PSA_Workspace_Id__c": _text(40, label="PSA Workspace ID"),
        "Q2C_Status__c": _text(40, label="Q2C Status"),
        "Last_Invoice_Number__c": _text(40),
        "Last_Invoice_Amount__c": _money(),
        "Last_Invoice_Status__c": _text(40),
        "Last_Invoice_Currency__c": _text(3),
        "Q2C_Contract_Version__c": _number(label="Q2C Contract Version"),
        "Amount_Paid__c": _money(),
        "Open_Balance__c": _money(),
        "Days_Overdue__c": _number(),
        "Unapplied_Credit__c": _money(),
        "Not_To_Exceed__c": _money(),
        "Expenses_Billable__c": _picklist(("Yes", "No"), restricted=True),
        "Expense_Markup_Percent__c": _number(5, 2),
        "Amount_Billed__c": _money(),
        "Amount_Credited__c": _money(),
        "Net_Billed__c": _money(),
        "Budget_Used_Percent__c": _number(),
        "Budget_Held__c": _money(),
        "Budget_Status__c": _text(255),
        "External_Id__c": _EXT,
        "IsClosed": FieldDef("boolean", createable=False, updateable=False, label="Closed", calculated=True),
        "IsWon": FieldDef("boolean", createable=False, updateable=False, label="Won", calculated=True),
    },
    "OpportunityLineItem": {
        **_system(),
        "OpportunityId": FieldDef(
            "reference",
            required=True,
            updateable=False,
            reference_to="Opportunity",
            relationship="Opportunity",
            length=18,
            label="Opportunity ID",
        ),
        "Name": _text(255, label="Opportunity Product Name"),
        "Line_Type__c": _picklist(LINE_TYPES, restricted=True),
        "Role__c": _text(80),
        "Quantity": _number(12, 2, required=True),
        "UnitPrice": _money(label="Sales Price"),
        "TotalPrice": _money(createable=False, updateable=False, label="Total Price"),
        "Effective_From__c": _DATE,
        "Milestone_Date__c": _DATE,
        "External_Id__c": _EXT,
    },
}

# Custom fields the sandbox org has only so tests can exercise Salesforce behaviour q2c itself
# does not use (upsert by an external ID); an admin never deploys them.
SANDBOX_ONLY_FIELDS: frozenset[tuple[str, str]] = frozenset((t, "External_Id__c") for t in SCHEMAS)

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
    "Amount_Billed__c": "invoiced on all the engagement's invoices, as issued (before credit memos)",
    "Amount_Credited__c": "credit memos applied to the engagement's invoices",
    "Net_Billed__c": "billed less credited",
    "Budget_Used_Percent__c": "net billed as a whole percent of the not-to-exceed amount (time and materials)",
    "Budget_Held__c": "posted but not invoiced because it would exceed the not-to-exceed amount, until the PMO decides",
    "Budget_Status__c": "ok, a warning threshold reached, or at cap with the amount held",
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
        value: Decimal | None = None
        if isinstance(raw, (int, Decimal)):
            value = Decimal(raw)
        elif isinstance(raw, str) and len(raw) <= MAX_NUMBER_TEXT:
            try:
                value = Decimal(raw)
            except InvalidOperation:
                raise _parse_error(raw, "double", name) from None
        if value is None or not value.is_finite():
            raise _parse_error(raw, "double", name)
        return _in_range(name, f, value)
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
    if kind == "reference":
        if not isinstance(raw, str) or not ids.is_valid_id(raw):
            raise SfError(
                400, "MALFORMED_ID", f"{f.label or name}: id value of incorrect type: {_shorten(raw)}", [name]
            )
        return raw
    if not isinstance(raw, str):
        if isinstance(raw, (int, Decimal)) and not isinstance(raw, bool) and kind in ("string", "picklist"):
            raw = str(raw)
        else:
            raise _parse_error(raw, "string", name)
    if f.length is not None and len(raw) > f.length:
        raise SfError(
            400,
            "STRING_TOO_LONG",
            f"{f.label or name}: data value too large: {raw[:40]}... (max length={f.length})",
            [name],
        )
    if f.restricted is not None and raw not in f.restricted:
        raise SfError(
            400,
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            f"{name}: bad value for restricted picklist field: {raw}",
            [name],
        )
    return raw


def _in_range(name: str, f: FieldDef, value: Decimal) -> Decimal:
    """Salesforce refuses a number with more integer digits than `precision - scale`. Decimal
    places beyond the scale are kept here (Salesforce rounds them), but not without bound."""
    integer_digits = value.adjusted() + 1 if value else 0
    allowed = (f.precision or 18) - (f.scale or 0)
    if integer_digits > allowed or -value.as_tuple().exponent > MAX_DECIMAL_PLACES:
        shown = format(value, ".6E") if integer_digits > 30 or integer_digits < -30 else str(value)
        raise SfError(
            400,
            "NUMBER_OUTSIDE_VALID_RANGE",
            f"{f.label or name}: value outside of valid range on numeric field: {shown}",
            [name],
        )
    return value


def _parse_error(raw: Any, kind: str, name: str) -> SfError:
    return SfError(
        400,
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {kind} from value {_shorten(raw)} for field {name}",
        [name],
    )


def _shorten(raw: Any, limit: int = 60) -> str:
    text = repr(raw) if not isinstance(raw, (dict, list)) else type(raw).__name__
    return text if len(text) <= limit else text[:limit] + "..."
