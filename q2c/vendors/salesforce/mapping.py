"""Pure mapping from Salesforce records (as the REST API returns them) to the canonical model.

Field facts (this org's schema, see sandbox/crm/schema.py):
- Account: Name, Legal_Name__c (falls back to Name), Tax_Id__c, Region__c (NA|UK|DACH),
  CurrencyIsoCode, Payment_Terms__c ("Net 30"...), Billing* address with ISO-2 country.
- Opportunity: Amount + CurrencyIsoCode (contract value), Billing_Model__c
  ("Time and Materials" | "Fixed Fee" | "Retainer"), Service_Line__c, Start/End_Date__c,
  Retainer_Amount__c (per month), StageName, Not_To_Exceed__c (T&M cap; blank: Amount),
  Expenses_Billable__c ("Yes" | "No" | blank: by billing model), Expense_Markup_Percent__c.
- OpportunityLineItem: Line_Type__c "Rate" (Role__c, UnitPrice = hourly rate,
  Quantity = estimated hours, Effective_From__c), "Milestone" (Name, TotalPrice,
  Milestone_Date__c; the line Id is the milestone key), "Retainer" (UnitPrice per period).
Money arrives as JSON numbers; the connector parses them straight to Decimal, and this
module never lets a float through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from q2c.domain.customer import Address, Customer
from q2c.domain.engagement import BillingModel, Engagement, Milestone, RateCardEntry
from q2c.domain.money import Money
from q2c.domain.validation import PAYMENT_TERMS

BILLING_MODELS: dict[str, BillingModel] = {
    "Time and Materials": BillingModel.TIME_AND_MATERIALS,
    "Fixed Fee": BillingModel.FIXED_FEE,
    "Retainer": BillingModel.RETAINER,
}
STAGE_CLOSED_WON = "Closed Won"
LINE_TYPES = ("Rate", "Milestone", "Retainer")  # OpportunityLineItem.Line_Type__c -> how to_engagement reads a line

# canonical customer field -> Salesforce Account field (read by account_to_customer, written
# by the connector's write_customer_master when a steward fixes the customer master)
ACCOUNT_FIELDS: dict[str, str] = {
    "legal_name": "Legal_Name__c",
    "tax_id": "Tax_Id__c",
    "region": "Region__c",
    "currency": "CurrencyIsoCode",
    "payment_terms": "Payment_Terms__c",
    "billing_street": "BillingStreet",
    "billing_city": "BillingCity",
    "billing_state": "BillingState",
    "billing_postal_code": "BillingPostalCode",
    "billing_country": "BillingCountry",
}
OPPORTUNITY_READ_FIELDS = (
    "Id",
    "Name",
    "AccountId",
    "StageName",
    "Amount",
    "CurrencyIsoCode",
    "Service_Line__c",
    "Billing_Model__c",
    "Start_Date__c",
    "End_Date__c",
    "Retainer_Amount__c",
    "Not_To_Exceed__c",
    "Expenses_Billable__c",
    "Expense_Markup_Percent__c",
)
EXPENSES_BILLABLE = {"Yes": True, "No": False}  # Expenses_Billable__c; blank: by billing model
# read-only reference copies of what the ERP and PSA own, written back by the connector
OPPORTUNITY_WRITE_FIELDS = (
    "ERP_Customer_Id__c",
    "ERP_Project_Id__c",
    "PSA_Workspace_Id__c",
    "Q2C_Status__c",
    "Q2C_Contract_Version__c",
    "Last_Invoice_Number__c",
    "Last_Invoice_Amount__c",
    "Last_Invoice_Currency__c",
    "Last_Invoice_Status__c",
    "Amount_Paid__c",
    "Open_Balance__c",
    "Days_Overdue__c",
    "Unapplied_Credit__c",
    "Amount_Billed__c",
    "Amount_Credited__c",
    "Net_Billed__c",
    "Budget_Used_Percent__c",
    "Budget_Held__c",
    "Budget_Status__c",
)
LINE_ITEM_FIELDS = (
    "Id",
    "Name",
    "Line_Type__c",
    "Role__c",
    "Quantity",
    "UnitPrice",
    "TotalPrice",
    "Effective_From__c",
    "Milestone_Date__c",
)
# The Closed Won Outbound Message's selected fields (what q2c/webhook reads from a notification;
# the definition is deploy/salesforce/force-app/main/default/workflows/Opportunity.workflow-meta.xml).
OUTBOUND_MESSAGE_FIELDS = ("AccountId", "Id", "IsClosed", "IsWon", "Name", "StageName")

# What q2c needs in an org, stated once: every field the connector reads or writes, per sObject
# (custom and standard; `CurrencyIsoCode` exists only with multi-currency enabled). The admin
# doctor checks an org's describe against it; the Salesforce DX source in deploy/salesforce
# creates the custom ones (a test keeps the three in step).
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "Account": ("Id", "Name", *ACCOUNT_FIELDS.values()),
    "Opportunity": OPPORTUNITY_READ_FIELDS + OPPORTUNITY_WRITE_FIELDS + ("IsClosed", "IsWon"),
    "OpportunityLineItem": LINE_ITEM_FIELDS + ("OpportunityId",),
}

# Picklist values q2c relies on, per (sObject, field): the stage that starts an engagement, the
# billing models and line types the mapping understands, and the payment terms a steward may
# write back (q2c.domain.validation.PAYMENT_TERMS; a restricted picklist without one of them
# refuses the steward's fix). Region__c and CurrencyIsoCode values depend on the ERP
# subsidiaries and the org's currencies, so they are not fixed here. Q2C_Status__c is a text
# field (q2c writes EngagementStage values), not a picklist.
REQUIRED_PICKLIST_VALUES: dict[tuple[str, str], tuple[str, ...]] = {
    ("Opportunity", "StageName"): (STAGE_CLOSED_WON,),
    ("Opportunity", "Billing_Model__c"): tuple(BILLING_MODELS),
    ("OpportunityLineItem", "Line_Type__c"): LINE_TYPES,
    ("Opportunity", "Expenses_Billable__c"): tuple(EXPENSES_BILLABLE),
    ("Account", "Payment_Terms__c"): PAYMENT_TERMS,
}


class CrmMappingError(ValueError):
    """The CRM record cannot be expressed in the canonical model (names the field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def to_decimal(value: Any, field: str = "value") -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or isinstance(value, float):
        raise CrmMappingError(field, f"money/quantity must not be a float or bool ({value!r})")
    try:
        return Decimal(str(value)) if not isinstance(value, Decimal) else value
    except ArithmeticError:
        raise CrmMappingError(field, f"not a number: {value!r}") from None


def to_date(value: Any, field: str = "value") -> date | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise CrmMappingError(field, f"not a date: {value!r}") from None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def account_to_customer(account: dict[str, Any]) -> Customer:
    name = _text(account.get("Name")) or ""
    return Customer(
        crm_account_id=account["Id"],
        name=name,
        legal_name=_text(account.get("Legal_Name__c")) or name,
        region=_text(account.get("Region__c")),
        tax_id=_text(account.get("Tax_Id__c")),
        billing_address=Address(
            street=_text(account.get("BillingStreet")),
            city=_text(account.get("BillingCity")),
            state=_text(account.get("BillingState")),
            postal_code=_text(account.get("BillingPostalCode")),
            country=_text(account.get("BillingCountry")),
        ),
        currency=_text(account.get("CurrencyIsoCode")),
        payment_terms=_text(account.get("Payment_Terms__c")),
    )


def billing_model(value: Any) -> BillingModel:
    model = BILLING_MODELS.get(_text(value) or "")
    if model is None:
        raise CrmMappingError(
            "Billing_Model__c", f"unknown billing model {value!r} (expected one of {', '.join(BILLING_MODELS)})"
        )
    return model


def line_to_rate(line: dict[str, Any]) -> RateCardEntry:
    role = _text(line.get("Role__c")) or _text(line.get("Name"))
    if role is None:
        raise CrmMappingError("Role__c", f"rate line {line.get('Id')} has no role")
    rate = to_decimal(line.get("UnitPrice"), "UnitPrice")
    if rate is None:
        raise CrmMappingError("UnitPrice", f"rate line {line.get('Id')} has no rate")
    return RateCardEntry(
        role=role,
        rate=rate,
        effective_from=to_date(line.get("Effective_From__c"), "Effective_From__c"),
        estimated_hours=to_decimal(line.get("Quantity"), "Quantity") or Decimal("0"),
    )


def line_to_milestone(line: dict[str, Any]) -> Milestone:
    amount = to_decimal(line.get("TotalPrice"), "TotalPrice")
    if amount is None:
        unit = to_decimal(line.get("UnitPrice"), "UnitPrice")
        qty = to_decimal(line.get("Quantity"), "Quantity") or Decimal("1")
        if unit is None:
            raise CrmMappingError("UnitPrice", f"milestone line {line.get('Id')} has no amount")
        amount = unit * qty
    return Milestone(
        key=line["Id"],
        name=_text(line.get("Name")) or line["Id"],
        amount=amount,
        due_date=to_date(line.get("Milestone_Date__c"), "Milestone_Date__c"),
    )


def to_engagement(opportunity: dict[str, Any], account: dict[str, Any], lines: list[dict[str, Any]]) -> Engagement:
    """Opportunity + its Account + its line items -> Engagement."""
    customer = account_to_customer(account)
    currency = _text(opportunity.get("CurrencyIsoCode")) or customer.currency
    if currency is None:
        raise CrmMappingError("CurrencyIsoCode", "the opportunity has no currency")
    amount = to_decimal(opportunity.get("Amount"), "Amount") or Decimal("0")
    by_type: dict[str, list[dict[str, Any]]] = {"Rate": [], "Milestone": [], "Retainer": []}
    for line in lines:
        by_type.setdefault(_text(line.get("Line_Type__c")) or "", []).append(line)
    retainer = to_decimal(opportunity.get("Retainer_Amount__c"), "Retainer_Amount__c")
    if retainer is None and by_type["Retainer"]:
        retainer = to_decimal(by_type["Retainer"][0].get("UnitPrice"), "UnitPrice")
    return Engagement(
        opportunity_id=opportunity["Id"],
        opportunity_name=_text(opportunity.get("Name")) or opportunity["Id"],
        customer=customer,
        service_line=_text(opportunity.get("Service_Line__c")),
        region=customer.region,
        billing_model=billing_model(opportunity.get("Billing_Model__c")),
        contract_value=Money(amount=amount, currency=currency),
        start_date=to_date(opportunity.get("Start_Date__c"), "Start_Date__c"),
        end_date=to_date(opportunity.get("End_Date__c"), "End_Date__c"),
        rate_card=[line_to_rate(line) for line in by_type["Rate"]],
        milestones=[line_to_milestone(line) for line in by_type["Milestone"]],
        retainer_amount=retainer,
        stage_name=_text(opportunity.get("StageName")),
        budget_cap=to_decimal(opportunity.get("Not_To_Exceed__c"), "Not_To_Exceed__c"),
        expenses_billable=expenses_billable(opportunity.get("Expenses_Billable__c")),
        expense_markup_percent=to_decimal(opportunity.get("Expense_Markup_Percent__c"), "Expense_Markup_Percent__c")
        or Decimal(0),
    )


def expenses_billable(value: Any) -> bool | None:
    text = _text(value)
    if text is None:
        return None
    if text not in EXPENSES_BILLABLE:
        raise CrmMappingError("Expenses_Billable__c", f"'{text}' is not one of {', '.join(EXPENSES_BILLABLE)}")
    return EXPENSES_BILLABLE[text]


def budget_fields(
    *,
    billed: Decimal,
    credited: Decimal,
    cap: Decimal | None,
    used_percent: Decimal | None,
    held: Decimal | None,
    status: str | None,
) -> dict[str, Any]:
    """The Opportunity's billing figures as q2c writes them (one update, with collection):
    gross billed, credited, net; and for T&M the budget position against the cap."""
    fields: dict[str, Any] = {
        "Amount_Billed__c": billed,
        "Amount_Credited__c": credited,
        "Net_Billed__c": billed - credited,
    }
    if cap is not None:
        fields.update(
            {
                "Budget_Used_Percent__c": used_percent,
                "Budget_Held__c": held or Decimal(0),
                "Budget_Status__c": status or "",  # BudgetState.status_text: under 100 characters
            }
        )
    return fields


def parse_limit_info(header: str | None) -> dict[str, tuple[int, int]]:
    """`Sforce-Limit-Info: api-usage=18/15000` -> {"api-usage": (18, 15000)}."""
    out: dict[str, tuple[int, int]] = {}
    if not header:
        return out
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        used, _, limit = value.partition("/")
        if used.strip().isdigit() and limit.strip().isdigit():
            out[name.strip()] = (int(used), int(limit))
    return out


def soql_quote(value: str) -> str:
    """A SOQL string literal with quotes and backslashes escaped."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


# --- org metadata (Versions, Limits, Describe Global, sObject Describe) -----------------------


@dataclass(frozen=True)
class ApiVersion:
    """One entry of the Versions resource (`GET /services/data/`)."""

    version: str  # "60.0"
    label: str  # "Spring '24"
    url: str  # "/services/data/v60.0"


@dataclass(frozen=True)
class OrgLimit:
    """One entry of the Limits resource: `{"Max": n, "Remaining": n}`."""

    name: str
    max: int
    remaining: int

    @property
    def used(self) -> int:
        return self.max - self.remaining


@dataclass(frozen=True)
class GlobalSObject:
    """One object of Describe Global."""

    name: str
    label: str
    custom: bool
    key_prefix: str | None
    queryable: bool
    createable: bool
    updateable: bool


@dataclass(frozen=True)
class PicklistValue:
    value: str
    label: str
    active: bool
    default: bool = False


@dataclass(frozen=True)
class FieldDescribe:
    """One field of an sObject Describe."""

    name: str
    type: str  # Salesforce's field type: string, picklist, currency, double, date, reference, ...
    label: str
    length: int
    custom: bool
    external_id: bool
    nillable: bool
    createable: bool
    updateable: bool
    restricted_picklist: bool = False
    precision: int = 0
    scale: int = 0
    reference_to: tuple[str, ...] = ()
    picklist_values: tuple[PicklistValue, ...] = ()

    @property
    def active_values(self) -> tuple[str, ...]:
        return tuple(v.value for v in self.picklist_values if v.active)


@dataclass(frozen=True)
class SObjectDescribe:
    """An sObject Describe: the object's properties and its fields, in describe order."""

    name: str
    label: str
    custom: bool
    key_prefix: str | None
    queryable: bool
    createable: bool
    updateable: bool
    fields: tuple[FieldDescribe, ...] = ()

    def field(self, name: str) -> FieldDescribe | None:
        """The field of that API name (names are case-insensitive in Salesforce)."""
        wanted = name.lower()
        return next((f for f in self.fields if f.name.lower() == wanted), None)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


@dataclass(frozen=True)
class OrgGap:
    """Something q2c needs that the org lacks: a field, or a picklist value on a field."""

    sobject: str
    field: str
    missing: str  # "object" | "field" | "picklist value" | "writable field"
    value: str | None = None

    def __str__(self) -> str:
        if self.missing == "object":
            return f"{self.sobject}: the object is not available"
        if self.missing == "picklist value":
            return f"{self.sobject}.{self.field}: picklist value '{self.value}' is missing or inactive"
        if self.missing == "writable field":
            return f"{self.sobject}.{self.field}: the field is read-only for the integration user"
        return f"{self.sobject}.{self.field}: the field does not exist (or is not visible to the integration user)"


def to_api_versions(body: Any) -> list[ApiVersion]:
    return [ApiVersion(version=str(v["version"]), label=str(v.get("label", "")), url=str(v["url"])) for v in body]


def to_limits(body: Mapping[str, Any]) -> dict[str, OrgLimit]:
    return {
        name: OrgLimit(name=name, max=int(v["Max"]), remaining=int(v["Remaining"]))
        for name, v in body.items()
        if isinstance(v, Mapping) and "Max" in v and "Remaining" in v
    }


def to_global_sobjects(body: Mapping[str, Any]) -> list[GlobalSObject]:
    return [
        GlobalSObject(
            name=o["name"],
            label=o.get("label", o["name"]),
            custom=bool(o.get("custom")),
            key_prefix=o.get("keyPrefix"),
            queryable=bool(o.get("queryable")),
            createable=bool(o.get("createable")),
            updateable=bool(o.get("updateable")),
        )
        for o in body.get("sobjects", [])
    ]


def to_field_describe(f: Mapping[str, Any]) -> FieldDescribe:
    return FieldDescribe(
        name=f["name"],
        type=f["type"],
        label=f.get("label", f["name"]),
        length=int(f.get("length") or 0),
        custom=bool(f.get("custom")),
        external_id=bool(f.get("externalId")),
        nillable=bool(f.get("nillable")),
        createable=bool(f.get("createable")),
        updateable=bool(f.get("updateable")),
        restricted_picklist=bool(f.get("restrictedPicklist")),
        precision=int(f.get("precision") or 0),
        scale=int(f.get("scale") or 0),
        reference_to=tuple(f.get("referenceTo") or ()),
        picklist_values=tuple(
            PicklistValue(
                value=str(p["value"]),
                label=str(p.get("label", p["value"])),
                active=bool(p.get("active")),
                default=bool(p.get("defaultValue")),
            )
            for p in f.get("picklistValues") or ()
        ),
    )


def to_sobject_describe(body: Mapping[str, Any]) -> SObjectDescribe:
    return SObjectDescribe(
        name=body["name"],
        label=body.get("label", body["name"]),
        custom=bool(body.get("custom")),
        key_prefix=body.get("keyPrefix"),
        queryable=bool(body.get("queryable")),
        createable=bool(body.get("createable")),
        updateable=bool(body.get("updateable")),
        fields=tuple(to_field_describe(f) for f in body.get("fields", [])),
    )


WRITTEN_FIELDS: dict[str, tuple[str, ...]] = {
    "Account": tuple(ACCOUNT_FIELDS.values()),
    "Opportunity": OPPORTUNITY_WRITE_FIELDS,
}


def org_gaps(describes: Mapping[str, SObjectDescribe | None]) -> list[OrgGap]:
    """What the org lacks against REQUIRED_FIELDS, REQUIRED_PICKLIST_VALUES and the fields the
    connector writes (`describes`: sObject name -> its describe, None when the object is not
    available). Empty when q2c can run against the org."""
    gaps: list[OrgGap] = []
    for sobject, needed in REQUIRED_FIELDS.items():
        described = describes.get(sobject)
        if described is None:
            gaps.append(OrgGap(sobject, "", "object"))
            continue
        for name in needed:
            f = described.field(name)
            if f is None:
                gaps.append(OrgGap(sobject, name, "field"))
            elif name in WRITTEN_FIELDS.get(sobject, ()) and not f.updateable:
                gaps.append(OrgGap(sobject, name, "writable field"))
    for (sobject, name), values in REQUIRED_PICKLIST_VALUES.items():
        described = describes.get(sobject)
        f = described.field(name) if described is not None else None
        if f is None or f.type not in ("picklist", "multipicklist"):
            continue  # missing: already reported; a text field takes any value
        active = set(f.active_values)
        gaps.extend(OrgGap(sobject, name, "picklist value", v) for v in values if v not in active)
    return gaps
