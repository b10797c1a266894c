"""Benchmark deals, created through the Salesforce REST sandbox as a salesperson would.

Every deal is time and materials with the same rate card (Engagement Manager 250,
Senior Consultant 185, Consultant 150 USD/h), one calendar month long, on an account of
its own with everything the customer-master check needs (region NA, tax ID, address,
currency, payment terms), service line Data & Analytics (a PSA template exists for it).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from q2c.vendors.salesforce.client import SalesforceClient

RATE_CARD: dict[str, Decimal] = {
    "Engagement Manager": Decimal(250),
    "Senior Consultant": Decimal(185),
    "Consultant": Decimal(150),
}
RATE_HOURS = {"Engagement Manager": 100, "Senior Consultant": 300, "Consultant": 200}
ACCOUNT_FIELDS = dict(
    Region__c="NA",
    Payment_Terms__c="Net 30",
    CurrencyIsoCode="USD",
    BillingStreet="500 Market St",
    BillingCity="San Francisco",
    BillingState="CA",
    BillingPostalCode="94105",
    BillingCountry="US",
    Tax_Id__c="12-3456789",
)


@dataclass(frozen=True)
class Deal:
    account_id: str
    opportunity_id: str
    name: str


async def open_tm_deal(
    crm: SalesforceClient,
    *,
    start: date,
    end: date,
    label: str,
    kind: str = "Month-end benchmark",
    account: str = "Month-End Client",
) -> Deal:
    """Account and a Negotiation/Review opportunity with rate lines, not yet won: the caller
    closes it (at once for the month-end spike, on its own clock for the activation benchmark)."""
    tag = uuid.uuid4().hex[:6]
    account_id = await crm.create_record("Account", {"Name": f"{account} {label} {tag}", **ACCOUNT_FIELDS})
    name = f"{kind} {label} {tag}"
    opportunity_id = await crm.create_record(
        "Opportunity",
        {
            "Name": name,
            "AccountId": account_id,
            "StageName": "Negotiation/Review",
            "CloseDate": start.isoformat(),
            "CurrencyIsoCode": "USD",
            "Service_Line__c": "Data & Analytics",
            "Billing_Model__c": "Time and Materials",
            "Start_Date__c": start.isoformat(),
            "End_Date__c": end.isoformat(),
            "Amount": 120000,
            # benchmarks measure throughput: no engagement reaches its not-to-exceed cap
            "Not_To_Exceed__c": 100_000_000,
        },
    )
    for role, rate in RATE_CARD.items():
        await crm.create_record(
            "OpportunityLineItem",
            {
                "OpportunityId": opportunity_id,
                "Name": role,
                "Line_Type__c": "Rate",
                "Role__c": role,
                "Quantity": RATE_HOURS[role],
                "UnitPrice": int(rate),
            },
        )
    return Deal(account_id=account_id, opportunity_id=opportunity_id, name=name)


async def create_tm_deal(crm: SalesforceClient, *, start: date, end: date, label: str) -> Deal:
    """Account, Negotiation/Review opportunity with rate lines, then Closed Won."""
    deal = await open_tm_deal(crm, start=start, end=end, label=label)
    await crm.set_opportunity_stage(deal.opportunity_id, "Closed Won")
    return deal


async def create_deals(
    crm: SalesforceClient, count: int, *, start: date, end: date, concurrency: int = 8
) -> list[Deal]:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Deal:
        async with gate:
            return await create_tm_deal(crm, start=start, end=end, label=f"#{i + 1:04d}")

    return list(await asyncio.gather(*(one(i) for i in range(count))))
