"""Demo data seeded on first start (only when the database is empty).

Fixed IDs others can rely on:
- subsidiary 1 "Q2C Consulting Inc." (US, USD, region NA), 2 "Q2C Consulting Ltd" (GB, GBP,
  region UK), 3 "Q2C Beratung GmbH" (DE, EUR, region DACH); the region is the custom field
  `custrecord_q2c_region`.
- currency 1 USD, 2 GBP, 3 EUR, 4 CAD, 5 AUD, 6 CHF (`symbol` is the ISO code).
- term 1 "Net 15", 2 "Net 30", 3 "Net 45", 4 "Net 60".
- customer 101 "Acme Analytics Inc." keyed by nothing (created by hand in the ERP, no
  externalId: matching a CRM account to it by name would be wrong), customer 102
  "Globex Legacy Ltd" (externalId "LEGACY-0042" from an earlier integration), and job 5001,
  a legacy project of Acme's.
- accountingPeriod 1..72: Jan 2025 ... Dec 2030 (see periods.py), closed before Nov 2026;
  seeded on their own, so an older database gains them on its next start.
- currencyRate 16001...: EUR and GBP to USD and back, effective 2025-01-01, 2026-01-01,
  2026-11-01, 2027-01-01 and 2027-07-01 (sandboxes/erp/expenses.py `RATES`), likewise
  seeded on their own.
"""

from __future__ import annotations

from decimal import Decimal

from sandboxes.erp.expenses import seed_rates
from sandboxes.erp.periods import seed_periods
from sandboxes.erp.store import RecordStore

SUBSIDIARIES = [
    (1, "Q2C Consulting Inc.", "US", 1, "NA"),
    (2, "Q2C Consulting Ltd", "GB", 2, "UK"),
    (3, "Q2C Beratung GmbH", "DE", 3, "DACH"),
]
CURRENCIES = [
    (1, "US Dollar", "USD", True, "1.00"),
    (2, "British Pound", "GBP", False, "1.27"),
    (3, "Euro", "EUR", False, "1.08"),
    (4, "Canadian Dollar", "CAD", False, "0.73"),
    (5, "Australian Dollar", "AUD", False, "0.66"),
    (6, "Swiss Franc", "CHF", False, "1.13"),
]
TERMS = [(1, "Net 15", 15), (2, "Net 30", 30), (3, "Net 45", 45), (4, "Net 60", 60)]

LEGACY_CUSTOMER_ID = 101
LEGACY_EID_CUSTOMER_ID = 102
LEGACY_JOB_ID = 5001


def _ref(i: int) -> dict:
    return {"id": str(i)}


def seed(store: RecordStore) -> bool:
    """Insert the demo data if the store is empty; return whether anything was inserted."""
    with store.lock:
        if not store.is_empty():
            seed_periods(store)
            seed_rates(store)
            return False
        for cid, name, symbol, base, rate in CURRENCIES:
            store.create(
                "currency",
                {
                    "name": name,
                    "symbol": symbol,
                    "isBaseCurrency": base,
                    "exchangeRate": Decimal(rate),
                    "currencyPrecision": 2,
                    "isInactive": False,
                },
                record_id=cid,
            )
        for tid, name, days in TERMS:
            store.create("term", {"name": name, "daysUntilNetDue": days, "isInactive": False}, record_id=tid)
        for sid, name, country, currency, region in SUBSIDIARIES:
            store.create(
                "subsidiary",
                {
                    "name": name,
                    "legalName": name,
                    "country": {"id": country},
                    "currency": _ref(currency),
                    "custrecord_q2c_region": region,
                    "isInactive": False,
                },
                record_id=sid,
            )
        store.create(
            "customer",
            {
                "companyName": "Acme Analytics Inc.",
                "entityId": "CUST-101",
                "subsidiary": _ref(1),
                "currency": _ref(1),
                "terms": _ref(2),
                "email": "ap@acme-analytics.example",
                "isInactive": False,
                "addressBook": {
                    "items": [
                        {
                            "defaultBilling": True,
                            "defaultShipping": True,
                            "addressBookAddress": {
                                "addr1": "1 Legacy Way",
                                "city": "Boston",
                                "state": "MA",
                                "zip": "02110",
                                "country": {"id": "US"},
                            },
                        }
                    ]
                },
            },
            record_id=LEGACY_CUSTOMER_ID,
        )
        store.create(
            "customer",
            {
                "companyName": "Globex Legacy Ltd",
                "entityId": "CUST-102",
                "subsidiary": _ref(2),
                "currency": _ref(2),
                "terms": _ref(3),
                "vatRegNumber": "GB123456789",
                "isInactive": False,
            },
            external_id="LEGACY-0042",
            record_id=LEGACY_EID_CUSTOMER_ID,
        )
        store.create(
            "job",
            {
                "companyName": "Acme Analytics - Data Platform Support",
                "entityId": "PRJ-5001",
                "parent": _ref(LEGACY_CUSTOMER_ID),
                "subsidiary": _ref(1),
                "currency": _ref(1),
                "startDate": "2023-01-01",
                "projectedEndDate": "2023-12-31",
                "jobBillingType": "TM",
                "custentity_contract_value": Decimal("120000.00"),
                "isInactive": False,
            },
            record_id=LEGACY_JOB_ID,
        )
        seed_periods(store)
        seed_rates(store)
        return True
