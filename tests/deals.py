"""Create fresh, realistic deals in the CRM sandbox through the Salesforce REST API.

Every test gets its own account and opportunity, so tests sharing a sandbox never collide.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from q2c.vendors.salesforce.client import SalesforceClient

REGIONS = {
    "NA": dict(
        CurrencyIsoCode="USD",
        BillingStreet="500 Market St",
        BillingCity="San Francisco",
        BillingState="CA",
        BillingPostalCode="94105",
        BillingCountry="US",
    ),
    "UK": dict(
        CurrencyIsoCode="GBP",
        BillingStreet="1 Poultry",
        BillingCity="London",
        BillingPostalCode="EC2R 8EJ",
        BillingCountry="GB",
    ),
    "DACH": dict(
        CurrencyIsoCode="EUR",
        BillingStreet="Friedrichstrasse 68",
        BillingCity="Berlin",
        BillingPostalCode="10117",
        BillingCountry="DE",
    ),
}


@dataclass(frozen=True)
class Deal:
    account_id: str
    opportunity_id: str
    name: str


async def create_account(
    crm: SalesforceClient, *, name: str | None = None, region: str = "NA", tax_id: str | None = "12-3456789"
) -> str:
    fields = {
        "Name": name or f"Test Customer {uuid.uuid4().hex[:8]}",
        "Region__c": region,
        "Payment_Terms__c": "Net 30",
        **REGIONS[region],
    }
    if tax_id:
        fields["Tax_Id__c"] = tax_id
    return await crm.create_record("Account", fields)


async def create_deal(
    crm: SalesforceClient,
    *,
    billing_model: str = "Time and Materials",
    region: str = "NA",
    tax_id: str | None = "12-3456789",
    account_name: str | None = None,
    account_id: str | None = None,
    service_line: str = "Data & Analytics",
    stage: str = "Closed Won",
    start: str = "2026-12-01",
    end: str = "2027-05-31",
    rate_lines: list[tuple[str, int, str, str | None]] | None = None,
    retainer_months: int = 6,
    not_to_exceed: int | None = 100_000_000,
) -> Deal:
    """An account (unless given) and an opportunity with lines for its billing model."""
    currency = REGIONS[region]["CurrencyIsoCode"]
    account_id = account_id or await create_account(crm, name=account_name, region=region, tax_id=tax_id)
    name = f"{billing_model} deal {uuid.uuid4().hex[:6]}"
    opp = {
        "Name": name,
        "AccountId": account_id,
        "StageName": "Negotiation/Review",
        "CloseDate": "2026-11-20",
        "CurrencyIsoCode": currency,
        "Service_Line__c": service_line,
        "Billing_Model__c": billing_model,
        "Start_Date__c": start,
        "End_Date__c": end,
    }
    effective: dict[int, str] = {}
    if billing_model == "Time and Materials":
        opp["Amount"] = 120000
        # billing tests generate years of time: a generous not-to-exceed lets them see every hour
        # billed; the budget-control tests set their own cap (not_to_exceed=None: the Amount)
        if not_to_exceed is not None:
            opp["Not_To_Exceed__c"] = not_to_exceed
        lines = [
            ("Rate", "Engagement Manager", 100, 250),
            ("Rate", "Senior Consultant", 300, 185),
            ("Rate", "Consultant", 200, 150),
        ]
        if rate_lines:  # (role, hours, rate, effective_from)
            lines = [("Rate", role, hours, rate) for role, hours, rate, _ in rate_lines]
            effective = {i: eff for i, (_, _, _, eff) in enumerate(rate_lines) if eff}
    elif billing_model == "Fixed Fee":
        opp["Amount"] = 80000
        lines = [("Milestone", None, 1, 20000), ("Milestone", None, 1, 45000), ("Milestone", None, 1, 15000)]
    else:
        opp["Amount"] = 8500 * retainer_months
        opp["Retainer_Amount__c"] = 8500
        lines = [("Retainer", None, retainer_months, 8500)]
    opportunity_id = await crm.create_record("Opportunity", opp)
    for i, (kind, role, qty, price) in enumerate(lines):
        line = {
            "OpportunityId": opportunity_id,
            "Name": role or f"{kind} {i + 1}",
            "Line_Type__c": kind,
            "Quantity": qty,
            "UnitPrice": price,
        }
        if role:
            line["Role__c"] = role
        if kind == "Milestone":
            line["Milestone_Date__c"] = f"2027-0{i + 1}-28"
        if i in effective:
            line["Effective_From__c"] = effective[i]
        await crm.create_record("OpportunityLineItem", line)
    if stage != "Negotiation/Review":
        await crm.set_opportunity_stage(opportunity_id, stage)
    return Deal(account_id=account_id, opportunity_id=opportunity_id, name=name)
