"""Pure mapping from Salesforce records (as the REST API returns them) to the canonical model.

Field facts (this org's schema, see sandbox/crm/schema.py):
- Account: Name, Legal_Name__c (falls back to Name), Tax_Id__c, Region__c (NA|UK|DACH),
  CurrencyIsoCode, Payment_Terms__c ("Net 30"...), Billing* address with ISO-2 country.
- Opportunity: Amount + CurrencyIsoCode (contract value), Billing_Model__c
  ("Time and Materials" | "Fixed Fee" | "Retainer"), Service_Line__c, Start/End_Date__c,
  Retainer_Amount__c (per month), StageName.
- OpportunityLineItem: Line_Type__c "Rate" (Role__c, UnitPrice = hourly rate,
  Quantity = estimated hours, Effective_From__c), "Milestone" (Name, TotalPrice,
  Milestone_Date__c; the line Id is the milestone key), "Retainer" (UnitPrice per period).
Money arrives as JSON numbers; the connector parses them straight to Decimal, and this
module never lets a float through.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from q2c.domain.customer import Address, Customer
from q2c.domain.engagement import BillingModel, Engagement, Milestone, RateCardEntry
from q2c.domain.money import Money

BILLING_MODELS: dict[str, BillingModel] = {
    "Time and Materials": BillingModel.TIME_AND_MATERIALS,
    "Fixed Fee": BillingModel.FIXED_FEE,
    "Retainer": BillingModel.RETAINER,
}
STAGE_CLOSED_WON = "Closed Won"


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
    )


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
