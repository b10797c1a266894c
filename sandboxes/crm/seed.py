"""Deterministic demo data for the CRM sandbox (IDs are stable across runs and machines).

Six deals are open in "Negotiation/Review" and are closed by `make up`
(`DEMO_CLOSE_OPPORTUNITY_IDS`); each exercises one path of the engagement workflow:
- Acme (NA/USD, T&M, Data & Analytics): the happy path with a rate card;
- Brightwater (UK/GBP, Fixed Fee, ERP Implementation): three milestones;
- Nordlicht (DACH/EUR, Retainer, Advisory): 8,500 per month for 12 months;
- Helix (NA/USD, T&M, Cloud Migration): the account has no Tax_Id__c -> steward queue;
- two accounts both named "Summit Partners" (NA/USD and UK/GBP): duplicates by name,
  told apart only by their IDs / tax IDs.
One more deal (Keystone, service line "Cybersecurity", for which no PSA template exists)
stays open and is not in the demo-close list.
"""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

from sandboxes.crm.ids import make_id
from sandboxes.crm.store import CrmStore

OPEN_STAGE = "Negotiation/Review"


def _acc(n: int) -> str:
    return make_id("001", n)


def _opp(n: int) -> str:
    return make_id("006", n)


def _oli(n: int) -> str:
    return make_id("00k", n)


ACME_ACCOUNT_ID = _acc(1)
BRIGHTWATER_ACCOUNT_ID = _acc(2)
NORDLICHT_ACCOUNT_ID = _acc(3)
HELIX_ACCOUNT_ID = _acc(4)
SUMMIT_NA_ACCOUNT_ID = _acc(5)
SUMMIT_UK_ACCOUNT_ID = _acc(6)
KEYSTONE_ACCOUNT_ID = _acc(7)

ACME_OPPORTUNITY_ID = _opp(1)
BRIGHTWATER_OPPORTUNITY_ID = _opp(2)
NORDLICHT_OPPORTUNITY_ID = _opp(3)
HELIX_OPPORTUNITY_ID = _opp(4)
SUMMIT_NA_OPPORTUNITY_ID = _opp(5)
SUMMIT_UK_OPPORTUNITY_ID = _opp(6)
KEYSTONE_CYBER_OPPORTUNITY_ID = _opp(7)  # Cybersecurity: no PSA template; not closed by demo

ACME_RATE_LINE_IDS = (_oli(1), _oli(2), _oli(3))
BRIGHTWATER_MILESTONE_LINE_IDS = (_oli(4), _oli(5), _oli(6))
NORDLICHT_RETAINER_LINE_ID = _oli(7)
HELIX_RATE_LINE_IDS = (_oli(8), _oli(9))
SUMMIT_NA_RATE_LINE_IDS = (_oli(10), _oli(11))
SUMMIT_UK_RETAINER_LINE_ID = _oli(12)
KEYSTONE_RATE_LINE_IDS = (_oli(13),)

DEMO_CLOSE_OPPORTUNITY_IDS: tuple[str, ...] = (
    ACME_OPPORTUNITY_ID,
    BRIGHTWATER_OPPORTUNITY_ID,
    NORDLICHT_OPPORTUNITY_ID,
    HELIX_OPPORTUNITY_ID,
    SUMMIT_NA_OPPORTUNITY_ID,
    SUMMIT_UK_OPPORTUNITY_ID,
)
ALL_OPPORTUNITY_IDS: tuple[str, ...] = DEMO_CLOSE_OPPORTUNITY_IDS + (KEYSTONE_CYBER_OPPORTUNITY_ID,)


def _account(
    name: str,
    legal: str,
    tax: str | None,
    region: str,
    currency: str,
    terms: str,
    street: str,
    city: str,
    state: str | None,
    postal: str,
    country: str,
) -> dict[str, Any]:
    return {
        "Name": name,
        "Legal_Name__c": legal,
        "Tax_Id__c": tax,
        "Region__c": region,
        "CurrencyIsoCode": currency,
        "Payment_Terms__c": terms,
        "BillingStreet": street,
        "BillingCity": city,
        "BillingState": state,
        "BillingPostalCode": postal,
        "BillingCountry": country,
    }


SEED_ACCOUNTS: list[tuple[str, dict[str, Any]]] = [
    (
        ACME_ACCOUNT_ID,
        _account(
            "Acme Analytics Inc.",
            "Acme Analytics, Inc.",
            "12-3456789",
            "NA",
            "USD",
            "Net 30",
            "500 Market Street, Suite 1200",
            "San Francisco",
            "CA",
            "94105",
            "US",
        ),
    ),
    (
        BRIGHTWATER_ACCOUNT_ID,
        _account(
            "Brightwater Retail Ltd",
            "Brightwater Retail Limited",
            "GB123456789",
            "UK",
            "GBP",
            "Net 45",
            "12 King Street",
            "Manchester",
            None,
            "M2 4LQ",
            "GB",
        ),
    ),
    (
        NORDLICHT_ACCOUNT_ID,
        _account(
            "Nordlicht Maschinenbau GmbH",
            "Nordlicht Maschinenbau GmbH",
            "DE123456789",
            "DACH",
            "EUR",
            "Net 30",
            "Industriestraße 12",
            "Stuttgart",
            "BW",
            "70565",
            "DE",
        ),
    ),
    (
        HELIX_ACCOUNT_ID,
        _account(
            "Helix Health Partners LLC",
            "Helix Health Partners, LLC",
            None,
            "NA",
            "USD",
            "Net 30",
            "200 Clarendon Street",
            "Boston",
            "MA",
            "02116",
            "US",
        ),
    ),
    (
        SUMMIT_NA_ACCOUNT_ID,
        _account(
            "Summit Partners",
            "Summit Partners, L.P.",
            "98-7654321",
            "NA",
            "USD",
            "Net 30",
            "1700 Lincoln Street",
            "Denver",
            "CO",
            "80203",
            "US",
        ),
    ),
    (
        SUMMIT_UK_ACCOUNT_ID,
        _account(
            "Summit Partners",
            "Summit Partners (UK) LLP",
            "GB987654321",
            "UK",
            "GBP",
            "Net 30",
            "1 Finsbury Avenue",
            "London",
            None,
            "EC2M 2PP",
            "GB",
        ),
    ),
    (
        KEYSTONE_ACCOUNT_ID,
        _account(
            "Keystone Logistics Corp",
            "Keystone Logistics Corporation",
            "45-6789012",
            "NA",
            "USD",
            "Net 30",
            "80 Pine Street",
            "New York",
            "NY",
            "10005",
            "US",
        ),
    ),
]


def _opportunity(
    name: str,
    account_id: str,
    amount: D,
    currency: str,
    service_line: str,
    billing_model: str,
    start: str,
    end: str,
    retainer: D | None = None,
) -> dict[str, Any]:
    return {
        "Name": name,
        "AccountId": account_id,
        "StageName": OPEN_STAGE,
        "Amount": amount,
        "CurrencyIsoCode": currency,
        "CloseDate": "2026-11-30",
        "Service_Line__c": service_line,
        "Billing_Model__c": billing_model,
        "Start_Date__c": start,
        "End_Date__c": end,
        "Retainer_Amount__c": retainer,
    }


SEED_OPPORTUNITIES: list[tuple[str, dict[str, Any]]] = [
    (
        ACME_OPPORTUNITY_ID,
        _opportunity(
            "Acme Data Platform Modernization",
            ACME_ACCOUNT_ID,
            D("194000.00"),
            "USD",
            "Data & Analytics",
            "Time and Materials",
            "2026-12-01",
            "2027-05-31",
        ),
    ),
    (
        BRIGHTWATER_OPPORTUNITY_ID,
        _opportunity(
            "Brightwater ERP Rollout",
            BRIGHTWATER_ACCOUNT_ID,
            D("80000.00"),
            "GBP",
            "ERP Implementation",
            "Fixed Fee",
            "2026-12-01",
            "2027-06-30",
        ),
    ),
    (
        NORDLICHT_OPPORTUNITY_ID,
        _opportunity(
            "Nordlicht Managed Advisory",
            NORDLICHT_ACCOUNT_ID,
            D("102000.00"),
            "EUR",
            "Advisory",
            "Retainer",
            "2027-01-01",
            "2027-12-31",
            retainer=D("8500.00"),
        ),
    ),
    (
        HELIX_OPPORTUNITY_ID,
        _opportunity(
            "Helix Cloud Migration",
            HELIX_ACCOUNT_ID,
            D("120000.00"),
            "USD",
            "Cloud Migration",
            "Time and Materials",
            "2026-12-07",
            "2027-04-30",
        ),
    ),
    (
        SUMMIT_NA_OPPORTUNITY_ID,
        _opportunity(
            "Summit Partners Analytics Roadmap",
            SUMMIT_NA_ACCOUNT_ID,
            D("65600.00"),
            "USD",
            "Data & Analytics",
            "Time and Materials",
            "2026-12-01",
            "2027-02-28",
        ),
    ),
    (
        SUMMIT_UK_OPPORTUNITY_ID,
        _opportunity(
            "Summit Partners Advisory Retainer",
            SUMMIT_UK_ACCOUNT_ID,
            D("36000.00"),
            "GBP",
            "Advisory",
            "Retainer",
            "2027-01-01",
            "2027-06-30",
            retainer=D("6000.00"),
        ),
    ),
    (
        KEYSTONE_CYBER_OPPORTUNITY_ID,
        _opportunity(
            "Keystone Security Assessment",
            KEYSTONE_ACCOUNT_ID,
            D("22000.00"),
            "USD",
            "Cybersecurity",
            "Time and Materials",
            "2026-12-14",
            "2027-02-26",
        ),
    ),
]


def _rate(opp: str, role: str, rate: D, hours: D, effective_from: str) -> dict[str, Any]:
    return {
        "OpportunityId": opp,
        "Name": f"{role} (T&M)",
        "Line_Type__c": "Rate",
        "Role__c": role,
        "Quantity": hours,
        "UnitPrice": rate,
        "Effective_From__c": effective_from,
    }


def _milestone(opp: str, name: str, amount: D, due: str) -> dict[str, Any]:
    return {
        "OpportunityId": opp,
        "Name": name,
        "Line_Type__c": "Milestone",
        "Quantity": D("1"),
        "UnitPrice": amount,
        "Milestone_Date__c": due,
    }


def _retainer(opp: str, monthly: D, months: int, start: str) -> dict[str, Any]:
    return {
        "OpportunityId": opp,
        "Name": "Monthly retainer",
        "Line_Type__c": "Retainer",
        "Quantity": D(months),
        "UnitPrice": monthly,
        "Effective_From__c": start,
    }


SEED_LINE_ITEMS: list[tuple[str, dict[str, Any]]] = [
    (ACME_RATE_LINE_IDS[0], _rate(ACME_OPPORTUNITY_ID, "Engagement Manager", D("250.00"), D("120"), "2026-12-01")),
    (ACME_RATE_LINE_IDS[1], _rate(ACME_OPPORTUNITY_ID, "Senior Consultant", D("185.00"), D("400"), "2026-12-01")),
    (ACME_RATE_LINE_IDS[2], _rate(ACME_OPPORTUNITY_ID, "Consultant", D("150.00"), D("600"), "2026-12-01")),
    (
        BRIGHTWATER_MILESTONE_LINE_IDS[0],
        _milestone(BRIGHTWATER_OPPORTUNITY_ID, "Discovery", D("20000.00"), "2027-01-15"),
    ),
    (BRIGHTWATER_MILESTONE_LINE_IDS[1], _milestone(BRIGHTWATER_OPPORTUNITY_ID, "Build", D("45000.00"), "2027-04-30")),
    (BRIGHTWATER_MILESTONE_LINE_IDS[2], _milestone(BRIGHTWATER_OPPORTUNITY_ID, "Go-live", D("15000.00"), "2027-06-30")),
    (NORDLICHT_RETAINER_LINE_ID, _retainer(NORDLICHT_OPPORTUNITY_ID, D("8500.00"), 12, "2027-01-01")),
    (HELIX_RATE_LINE_IDS[0], _rate(HELIX_OPPORTUNITY_ID, "Solution Architect", D("210.00"), D("200"), "2026-12-07")),
    (HELIX_RATE_LINE_IDS[1], _rate(HELIX_OPPORTUNITY_ID, "Senior Consultant", D("162.50"), D("480"), "2026-12-07")),
    (
        SUMMIT_NA_RATE_LINE_IDS[0],
        _rate(SUMMIT_NA_OPPORTUNITY_ID, "Senior Consultant", D("185.00"), D("160"), "2026-12-01"),
    ),
    (SUMMIT_NA_RATE_LINE_IDS[1], _rate(SUMMIT_NA_OPPORTUNITY_ID, "Consultant", D("150.00"), D("240"), "2026-12-01")),
    (SUMMIT_UK_RETAINER_LINE_ID, _retainer(SUMMIT_UK_OPPORTUNITY_ID, D("6000.00"), 6, "2027-01-01")),
    (
        KEYSTONE_RATE_LINE_IDS[0],
        _rate(KEYSTONE_CYBER_OPPORTUNITY_ID, "Security Consultant", D("220.00"), D("100"), "2026-12-14"),
    ),
]


def seed(store: CrmStore) -> bool:
    """Insert the demo records if the store is empty. Returns whether anything was inserted."""
    if store.count() > 0:
        return False
    for sobject, rows in (
        ("Account", SEED_ACCOUNTS),
        ("Opportunity", SEED_OPPORTUNITIES),
        ("OpportunityLineItem", SEED_LINE_ITEMS),
    ):
        for record_id, fields in rows:
            store.create(sobject, {k: v for k, v in fields.items() if v is not None}, record_id=record_id)
    return True
