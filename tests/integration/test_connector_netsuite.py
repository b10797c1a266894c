"""NetSuite connector against the sandbox over real HTTP, and its pure mapping functions."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from datetime import date, timedelta
from decimal import Decimal

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from q2c.delivery.retry import with_transient_retries
from q2c.domain.customer import Address, Customer
from q2c.domain.engagement import BillingModel, Engagement, Milestone
from q2c.domain.money import Money
from q2c.domain.project import Subsidiary
from q2c.vendors.http import AUTH_TYPE, RATE_LIMITED_TYPE, REJECTED_TYPE, RETRYABLE_TYPE
from q2c.vendors.netsuite.client import NetSuiteClient
from q2c.vendors.netsuite.mapping import (
    MappingError,
    billing_schedule_payload,
    customer_payload,
    dumps_exact,
    id_from_location,
    loads_exact,
    project_payload,
    quote_q,
    service_months,
)
from tests.fixtures.erp import erp_settings

US = Subsidiary(subsidiary_id="1", name="Q2C Consulting Inc.", region="NA", country="US", currency="USD")
UK = Subsidiary(subsidiary_id="2", name="Q2C Consulting Ltd", region="UK", country="GB", currency="GBP")


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def customer(crm_id: str | None = None, **kw) -> Customer:
    base = dict(
        crm_account_id=crm_id or uid("001"),
        name="Acme Analytics",
        legal_name="Acme Analytics Inc.",
        region="NA",
        tax_id="US-12-3456789",
        currency="USD",
        payment_terms="Net 30",
        billing_address=Address(street="500 Main St", city="Austin", state="TX", postal_code="78701", country="US"),
    )
    base.update(kw)
    return Customer(**base)


def engagement(model: BillingModel, cust: Customer | None = None, **kw) -> Engagement:
    base = dict(
        opportunity_id=uid("006"),
        opportunity_name="Acme Data Platform",
        customer=cust or customer(),
        service_line="Data Engineering",
        region="NA",
        billing_model=model,
        contract_value=Money(amount=Decimal("120000.00"), currency="USD"),
        start_date=date(2025, 1, 1),
        end_date=date(2025, 12, 31),
    )
    base.update(kw)
    return Engagement(**base)


# --- mapping (pure) -----------------------------------------------------------------------------


def test_service_months():
    assert service_months(date(2025, 1, 1), date(2025, 12, 31)) == 12
    assert service_months(date(2025, 1, 15), date(2025, 2, 14)) == 1
    assert service_months(date(2025, 1, 15), date(2025, 2, 15)) == 2
    assert service_months(date(2025, 3, 1), date(2025, 3, 1)) == 1
    with pytest.raises(MappingError):
        service_months(date(2025, 3, 2), date(2025, 3, 1))


def test_exact_json_and_helpers():
    text = dumps_exact({"a": Decimal("0.10"), "b": [Decimal("1E+2"), 3, None, True], "c": date(2025, 1, 2)})
    assert text == '{"a":0.10,"b":[100,3,null,true],"c":"2025-01-02"}'
    assert loads_exact(text)["a"] == Decimal("0.10")
    with pytest.raises(TypeError):
        dumps_exact({"x": 0.1})
    assert id_from_location("http://h/services/rest/record/v1/customer/107") == "107"
    assert id_from_location(None) is None and id_from_location("http://h/x/abc") is None
    assert quote_q('Say "hi"') == '"Say \\"hi\\""'


def test_payload_mapping():
    c = customer("001X")
    assert customer_payload(c, US, "1", "2") == {
        "companyName": "Acme Analytics Inc.",
        "subsidiary": {"id": "1"},
        "currency": {"id": "1"},
        "terms": {"id": "2"},
        "vatRegNumber": "US-12-3456789",
        "addressBook": {
            "items": [
                {
                    "defaultBilling": True,
                    "defaultShipping": True,
                    "label": "Billing",
                    "addressBookAddress": {
                        "addr1": "500 Main St",
                        "city": "Austin",
                        "state": "TX",
                        "zip": "78701",
                        "country": {"id": "US"},
                    },
                }
            ]
        },
    }
    assert (
        customer_payload(customer(legal_name=None, billing_address=Address(), tax_id=None), US, "1", None)[
            "companyName"
        ]
        == "Acme Analytics"
    )
    e = engagement(BillingModel.TIME_AND_MATERIALS)
    p = project_payload(e, "103", US, "1")
    assert p["jobBillingType"] == "TM" and p["custentity_contract_value"] == Decimal("120000.00")
    assert (p["startDate"], p["projectedEndDate"], p["parent"]) == ("2025-01-01", "2025-12-31", {"id": "103"})
    assert billing_schedule_payload(e, "5002")["scheduleType"] == "TIME_AND_MATERIALS"
    r = billing_schedule_payload(engagement(BillingModel.RETAINER, retainer_amount=Decimal("10000.00")), "5002")
    assert (r["scheduleType"], r["recurrenceAmount"], r["recurrenceCount"]) == (
        "FIXED_BID_INTERVAL",
        Decimal("10000.00"),
        12,
    )
    with pytest.raises(MappingError) as err:
        billing_schedule_payload(engagement(BillingModel.FIXED_FEE), "5002")
    assert err.value.field == "milestones"
    with pytest.raises(MappingError):
        billing_schedule_payload(engagement(BillingModel.RETAINER), "5002")


# --- auth -----------------------------------------------------------------------------------------


async def test_token_fetch_and_refresh_after_revoke(erp_isolated):
    calls = []
    async with NetSuiteClient(erp_settings(erp_isolated.url), timeout=10, audit=calls.append) as client:
        assert len(await client.list_subsidiaries()) == 3
        assert client.token_fetches == 1
        erp_isolated.revoke_tokens()
        assert (await client.get_record("term", "2"))["name"] == "Net 30"
        assert client.token_fetches == 2
    assert any(c.status == 401 and c.error_code == "UNAUTHORIZED" for c in calls)
    assert {c.system for c in calls} == {"erp"} and any(c.operation == "token" for c in calls)


@pytest.mark.parametrize(
    "overrides, error",
    [
        ({"client_id": "not-our-integration"}, "invalid_client"),
        ({"certificate_id": "not-a-mapped-certificate"}, "invalid_grant"),
        ({"scopes": ("suite_analytics",)}, "invalid_scope"),
    ],
)
async def test_bad_credentials_are_non_retryable(erp_sandbox, overrides, error):
    async with NetSuiteClient(erp_settings(erp_sandbox.url, **overrides), timeout=10) as client:
        with pytest.raises(ApplicationError) as err:
            await client.list_subsidiaries()
    assert err.value.type == AUTH_TYPE and err.value.non_retryable
    assert error in err.value.message


@pytest.mark.parametrize(
    "overrides, variable",
    [
        ({"private_key_file": "/nonexistent/q2c/key.pem"}, "Q2C_ERP_PRIVATE_KEY_FILE"),
        ({"private_key": "not a pem"}, "Q2C_ERP_PRIVATE_KEY"),
        ({"certificate_id": ""}, "Q2C_ERP_CERTIFICATE_ID"),
        ({"jwt_alg": "ES256"}, "Q2C_ERP_PRIVATE_KEY_FILE"),  # the demo key is RSA
        ({"jwt_alg": "HS256"}, "Q2C_ERP_JWT_ALG"),
    ],
)
async def test_a_missing_or_unusable_key_is_a_configuration_error_naming_the_variable(erp_sandbox, overrides, variable):
    settings = dataclasses.replace(erp_settings(erp_sandbox.url), **overrides)
    async with NetSuiteClient(settings, timeout=10) as client:
        with pytest.raises(ApplicationError) as err:
            await client.check_auth()
    assert err.value.type == AUTH_TYPE and err.value.non_retryable
    assert "configuration error" in err.value.message and variable in err.value.message
    assert err.value.details[0]["errors"][0]["fields"] == [variable]


async def test_token_is_reused_until_shortly_before_it_expires(erp_isolated):
    async with NetSuiteClient(erp_settings(erp_isolated.url), timeout=10) as client:
        await asyncio.gather(*(client.get_record("term", "2") for _ in range(6)))
        assert client.token_fetches == 1  # concurrent first calls share one token
        client._token_expires_at = 0  # NetSuite's 3600 s have (nearly) run out
        await client.get_record("term", "2")
        assert client.token_fetches == 2


# --- q2c doctor pre-flight ----------------------------------------------------------------------------


async def test_check_auth_and_setup_records(erp_client):
    await erp_client.check_auth()
    subsidiaries = await erp_client.setup_records("subsidiary")
    assert [(s["id"], s["name"], s["currency"]["refName"]) for s in subsidiaries] == [
        ("1", "Q2C Consulting Inc.", "US Dollar"),
        ("2", "Q2C Consulting Ltd", "British Pound"),
        ("3", "Q2C Beratung GmbH", "Euro"),
    ]
    currencies = await erp_client.setup_records("currency", limit=3)
    assert [c["symbol"] for c in currencies] == ["USD", "GBP", "EUR"]
    assert [t["name"] for t in await erp_client.setup_records("term")] == ["Net 15", "Net 30", "Net 45", "Net 60"]
    with pytest.raises(ValueError):
        await erp_client.setup_records("customer")


# --- reads ------------------------------------------------------------------------------------------


async def test_list_subsidiaries(erp_client):
    subs = await erp_client.list_subsidiaries()
    assert subs == [
        US,
        UK,
        Subsidiary(subsidiary_id="3", name="Q2C Beratung GmbH", region="DACH", country="DE", currency="EUR"),
    ]


async def test_find_ids_pages_and_get_by_external_id(erp_client):
    assert await erp_client.find_ids("subsidiary", page_size=1) == ["1", "2", "3"]
    assert await erp_client.find_ids("customer", 'companyName IS "Acme Analytics Inc."') == ["101"]
    assert await erp_client.get_by_external_id("customer", uid("none")) is None
    legacy = await erp_client.get_by_external_id("customer", "LEGACY-0042")
    assert legacy["id"] == "102" and legacy["companyName"] == "Globex Legacy Ltd"
    assert await erp_client.currency_id("EUR") == "3" and await erp_client.terms_id("Net 60") == "4"


# --- provisioning -------------------------------------------------------------------------------------


async def test_upsert_customer_is_idempotent_and_keyed_by_crm_id(erp_client, erp_sandbox):
    c = customer()
    first = await erp_client.upsert_customer(c, US)
    again = await erp_client.upsert_customer(c.model_copy(update={"tax_id": "US-99"}), US)
    assert first == again and first not in ("101", "102")  # never the hand-made Acme customer
    record = erp_sandbox.record_by_eid("customer", c.crm_account_id)
    assert record["id"] == first and record["vatRegNumber"] == "US-99"
    assert record["companyName"] == "Acme Analytics Inc." and record["terms"]["refName"] == "Net 30"
    assert record["currency"]["id"] == "1" and record["subsidiary"]["id"] == "1"
    assert record["defaultAddress"] == "500 Main St\nAustin TX 78701\nUnited States"
    assert len([r for r in erp_sandbox.records("customer") if r.get("externalId") == c.crm_account_id]) == 1


async def test_same_name_different_crm_ids_are_two_customers(erp_client):
    a = await erp_client.upsert_customer(customer(name="Twin Co", legal_name="Twin Co"), US)
    b = await erp_client.upsert_customer(customer(name="Twin Co", legal_name="Twin Co"), US)
    assert a != b


async def test_time_and_materials_provisioning(erp_client, erp_sandbox):
    e = engagement(BillingModel.TIME_AND_MATERIALS)
    cust = await erp_client.upsert_customer(e.customer, US)
    job = await erp_client.upsert_project(e, cust, US)
    assert await erp_client.upsert_project(e, cust, US) == job
    bs = await erp_client.upsert_billing_schedule(e, job)
    assert await erp_client.upsert_billing_schedule(e, job) == bs
    project = erp_sandbox.record_by_eid("job", e.opportunity_id)
    assert {
        k: project[k]
        for k in (
            "id",
            "companyName",
            "jobBillingType",
            "startDate",
            "projectedEndDate",
            "custentity_contract_value",
            "custentity_q2c_service_line",
        )
    } == {
        "id": job,
        "companyName": "Acme Data Platform",
        "jobBillingType": "TM",
        "startDate": "2025-01-01",
        "projectedEndDate": "2025-12-31",
        "custentity_contract_value": Decimal("120000.00"),
        "custentity_q2c_service_line": "Data Engineering",
    }
    assert project["parent"]["id"] == cust
    schedule = erp_sandbox.record_by_eid("billingSchedule", f"bs-{e.opportunity_id}")
    assert (schedule["id"], schedule["scheduleType"], schedule["frequency"], schedule["project"]["id"]) == (
        bs,
        "TIME_AND_MATERIALS",
        "MONTHLY",
        job,
    )


async def test_fixed_fee_provisioning_exact_milestones(erp_client, erp_sandbox):
    milestones = [
        Milestone(key="00k1", name="Discovery", amount=Decimal("30000.10"), due_date=date(2025, 3, 31)),
        Milestone(key="00k2", name="Build", amount=Decimal("60000.20")),
        Milestone(key="00k3", name="Go-live", amount=Decimal("29999.70"), due_date=date(2025, 12, 15)),
    ]
    e = engagement(BillingModel.FIXED_FEE, milestones=milestones)
    cust = await erp_client.upsert_customer(e.customer, US)
    job = await erp_client.upsert_project(e, cust, US)
    await erp_client.upsert_billing_schedule(e, job)
    schedule = erp_sandbox.record_by_eid("billingSchedule", f"bs-{e.opportunity_id}")
    assert schedule["scheduleType"] == "FIXED_BID_MILESTONE"
    assert schedule["milestone"]["items"] == [
        {
            "custcol_q2c_milestone_key": "00k1",
            "name": "Discovery",
            "amount": Decimal("30000.10"),
            "milestoneDate": "2025-03-31",
        },
        {"custcol_q2c_milestone_key": "00k2", "name": "Build", "amount": Decimal("60000.20")},
        {
            "custcol_q2c_milestone_key": "00k3",
            "name": "Go-live",
            "amount": Decimal("29999.70"),
            "milestoneDate": "2025-12-15",
        },
    ]
    assert sum(m["amount"] for m in schedule["milestone"]["items"]) == Decimal("120000.00")

    over = e.model_copy(
        update={"milestones": [*milestones, Milestone(key="00k4", name="Extra", amount=Decimal("0.01"))]}
    )
    with pytest.raises(ApplicationError) as err:
        await erp_client.upsert_billing_schedule(over, job)
    assert err.value.non_retryable and err.value.type == REJECTED_TYPE
    assert "milestone" in err.value.message and "exceeds" in err.value.message


async def test_retainer_provisioning(erp_client, erp_sandbox):
    e = engagement(
        BillingModel.RETAINER,
        retainer_amount=Decimal("10000.00"),
        start_date=date(2025, 7, 1),
        end_date=date(2026, 6, 30),
    )
    cust = await erp_client.upsert_customer(e.customer, US)
    job = await erp_client.upsert_project(e, cust, US)
    await erp_client.upsert_billing_schedule(e, job)
    schedule = erp_sandbox.record_by_eid("billingSchedule", f"bs-{e.opportunity_id}")
    assert (
        schedule["scheduleType"],
        schedule["frequency"],
        schedule["recurrenceAmount"],
        schedule["recurrenceCount"],
    ) == ("FIXED_BID_INTERVAL", "MONTHLY", Decimal("10000.00"), 12)
    assert erp_sandbox.record_by_eid("job", e.opportunity_id)["jobBillingType"] == "RETAINER"


# --- errors surfaced by the connector ------------------------------------------------------------------


async def test_validation_errors_name_the_field(erp_client):
    with pytest.raises(ApplicationError) as err:  # GBP customer in the US (USD) subsidiary
        await erp_client.upsert_customer(customer(currency="GBP"), US)
    assert err.value.non_retryable and err.value.type == REJECTED_TYPE
    details = err.value.details[0]
    assert details["status"] == 400
    assert details["errors"][0]["code"] == "INVALID_FLD_VALUE" and details["errors"][0]["fields"] == ["currency"]
    assert "(fields: currency)" in err.value.message

    with pytest.raises(ApplicationError) as err:
        await erp_client.upsert_customer(customer(name=" ", legal_name=None), US)
    assert err.value.non_retryable and "legal_name" in err.value.message

    e = engagement(BillingModel.TIME_AND_MATERIALS)
    with pytest.raises(ApplicationError) as err:
        await erp_client.upsert_project(e, "424242", US)
    assert err.value.non_retryable and err.value.details[0]["errors"][0]["fields"] == ["parent"]

    with pytest.raises(ApplicationError) as err:
        await erp_client.upsert_customer(customer(payment_terms="Net 7"), US)
    assert err.value.non_retryable and "payment_terms" in err.value.message


async def test_concurrency_limit_is_retryable_with_retry_after(erp_isolated):
    erp_isolated.set_faults(latency_ms=300, concurrency_limit=5, retry_after_seconds=3)
    async with NetSuiteClient(erp_settings(erp_isolated.url, max_in_flight=None), timeout=10, read_retries=0) as client:
        await client._auth_header()  # token first (the token endpoint is not rate limited)
        started = time.monotonic()
        results = await asyncio.gather(
            *(client.get_by_external_id("customer", "LEGACY-0042") for _ in range(12)), return_exceptions=True
        )
        elapsed = time.monotonic() - started
    # 5 answered, 7 refused: those wait the vendor's 3 s once and go again (5 at most get in);
    # a second refusal is the caller's to retry, with the vendor's wait
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 2 and len(results) - len(errors) == 10 and elapsed >= 3
    for e in errors:
        assert isinstance(e, ApplicationError) and e.type == RATE_LIMITED_TYPE and not e.non_retryable
        assert e.next_retry_delay == timedelta(seconds=3)
        assert "CONCURRENCY_LIMIT_EXCEEDED" in e.message


async def test_reads_retry_through_the_concurrency_limit(erp_isolated):
    # the connector retries nothing in place (one retry layer): a batch's reads go through the
    # limit with the batch's retries (q2c.delivery.retry), the activity's with Temporal's
    erp_isolated.set_faults(latency_ms=100, concurrency_limit=5, retry_after_seconds=0)
    async with NetSuiteClient(erp_settings(erp_isolated.url, max_in_flight=None), timeout=10) as client:
        await client._auth_header()
        results = await asyncio.gather(
            *(with_transient_retries(lambda: client.get_by_external_id("customer", "LEGACY-0042")) for _ in range(12))
        )
    assert all(r["externalId"] == "LEGACY-0042" for r in results)
    counters = httpx.get(f"{erp_isolated.url}/__sandbox/faults", timeout=10).json()["counters"]
    assert counters["concurrency_rejections"] > 0  # the limit was hit, and the reads went through anyway


async def test_client_queues_under_the_account_limit_instead_of_collecting_429s(erp_isolated):
    erp_isolated.set_faults(latency_ms=100, concurrency_limit=5)
    async with NetSuiteClient(erp_settings(erp_isolated.url, max_in_flight=4), timeout=10, read_retries=0) as client:
        await client._auth_header()
        results = await asyncio.gather(*(client.get_by_external_id("customer", "LEGACY-0042") for _ in range(12)))
    assert len(results) == 12
    counters = httpx.get(f"{erp_isolated.url}/__sandbox/faults", timeout=10).json()["counters"]
    assert counters["concurrency_rejections"] == 0


async def test_injected_5xx_is_retryable(erp_isolated):
    erp_isolated.set_faults(error_rate=1.0)
    async with NetSuiteClient(erp_settings(erp_isolated.url), timeout=10) as client:
        with pytest.raises(ApplicationError) as err:
            await client.upsert_customer(customer(), US)
    assert err.value.type == RETRYABLE_TYPE and not err.value.non_retryable
    assert "SERVICE_UNAVAILABLE" in err.value.message
