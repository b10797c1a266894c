"""SalesforceClient against the real sandbox over HTTP, plus the pure mapping functions."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from q2c.domain.engagement import BillingModel
from q2c.domain.money import Money
from q2c.vendors.http import AUTH_TYPE, NOT_FOUND_TYPE, RATE_LIMITED_TYPE, REJECTED_TYPE, RETRYABLE_TYPE
from q2c.vendors.salesforce.client import SalesforceClient
from q2c.vendors.salesforce.mapping import (
    ACCOUNT_FIELDS,
    BILLING_MODELS,
    LINE_ITEM_FIELDS,
    OUTBOUND_MESSAGE_FIELDS,
    REQUIRED_FIELDS,
    REQUIRED_PICKLIST_VALUES,
    ApiVersion,
    CrmMappingError,
    GlobalSObject,
    OrgLimit,
    SObjectDescribe,
    account_to_customer,
    billing_model,
    org_gaps,
    parse_limit_info,
    soql_quote,
    to_decimal,
    to_engagement,
)
from sandboxes.crm import seed as S
from sandboxes.crm.schema import Q2C_REFERENCE_FIELDS
from tests.fixtures.crm import crm_settings


@pytest.fixture(scope="module")
def sf(make_crm_sandbox):
    """This module's own sandbox (tests here write to it)."""
    return make_crm_sandbox()


@pytest.fixture
async def client(sf):
    c = SalesforceClient(sf.settings)
    try:
        yield c
    finally:
        await c.aclose()


@pytest.fixture
def faults(sf):
    def put(**config):
        httpx.put(f"{sf.url}/__sandbox/faults", json=config).raise_for_status()

    yield put
    put()


# --- get_engagement per billing model -------------------------------------------------------


async def test_time_and_materials_engagement(crm_client):
    # the shared session sandbox/fixture, read-only
    e = await crm_client.get_engagement(S.ACME_OPPORTUNITY_ID)
    assert e.opportunity_id == S.ACME_OPPORTUNITY_ID
    assert e.opportunity_name == "Acme Data Platform Modernization"
    assert e.billing_model is BillingModel.TIME_AND_MATERIALS
    assert e.contract_value == Money(amount=Decimal("194000.00"), currency="USD")
    assert e.service_line == "Data & Analytics" and e.region == "NA"
    assert e.stage_name == "Negotiation/Review"
    assert (e.start_date, e.end_date) == (date(2026, 12, 1), date(2027, 5, 31))
    assert [(r.role, r.rate, r.estimated_hours, r.effective_from) for r in e.rate_card] == [
        ("Engagement Manager", Decimal("250.00"), Decimal("120"), date(2026, 12, 1)),
        ("Senior Consultant", Decimal("185.00"), Decimal("400"), date(2026, 12, 1)),
        ("Consultant", Decimal("150.00"), Decimal("600"), date(2026, 12, 1)),
    ]
    assert all(isinstance(r.rate, Decimal) for r in e.rate_card)
    assert e.milestones == [] and e.retainer_amount is None
    c = e.customer
    assert c.crm_account_id == S.ACME_ACCOUNT_ID and c.name == "Acme Analytics Inc."
    assert c.legal_name == "Acme Analytics, Inc." and c.tax_id == "12-3456789"
    assert (c.currency, c.payment_terms, c.region) == ("USD", "Net 30", "NA")
    assert c.billing_address.city == "San Francisco" and c.billing_address.country == "US"
    assert crm_client.api_usage is not None and crm_client.api_usage[1] == 15000


async def test_fixed_fee_engagement(client):
    e = await client.get_engagement(S.BRIGHTWATER_OPPORTUNITY_ID)
    assert e.billing_model is BillingModel.FIXED_FEE
    assert e.contract_value == Money(amount=Decimal("80000.00"), currency="GBP")
    assert [(m.key, m.name, m.amount, m.due_date) for m in e.milestones] == [
        (S.BRIGHTWATER_MILESTONE_LINE_IDS[0], "Discovery", Decimal("20000.00"), date(2027, 1, 15)),
        (S.BRIGHTWATER_MILESTONE_LINE_IDS[1], "Build", Decimal("45000.00"), date(2027, 4, 30)),
        (S.BRIGHTWATER_MILESTONE_LINE_IDS[2], "Go-live", Decimal("15000.00"), date(2027, 6, 30)),
    ]
    assert sum(m.amount for m in e.milestones) == e.contract_value.amount
    assert e.rate_card == [] and e.customer.payment_terms == "Net 45"
    assert e.customer.billing_address.state is None and e.customer.tax_id == "GB123456789"


async def test_retainer_engagement(client):
    e = await client.get_engagement(S.NORDLICHT_OPPORTUNITY_ID)
    assert e.billing_model is BillingModel.RETAINER
    assert e.retainer_amount == Decimal("8500.00")
    assert e.contract_value == Money(amount=Decimal("102000.00"), currency="EUR")
    assert e.customer.region == "DACH" and e.customer.currency == "EUR"


async def test_missing_tax_id_and_duplicate_names_come_through(client):
    helix = await client.get_engagement(S.HELIX_OPPORTUNITY_ID)
    assert helix.customer.tax_id is None
    assert [r.rate for r in helix.rate_card] == [Decimal("210.00"), Decimal("162.50")]
    na = await client.get_engagement(S.SUMMIT_NA_OPPORTUNITY_ID)
    uk = await client.get_engagement(S.SUMMIT_UK_OPPORTUNITY_ID)
    assert na.customer.name == uk.customer.name == "Summit Partners"
    assert na.customer.crm_account_id != uk.customer.crm_account_id
    assert (na.currency, uk.currency) == ("USD", "GBP")
    assert uk.billing_model is BillingModel.RETAINER and uk.retainer_amount == Decimal("6000.00")


async def test_unknown_opportunity_is_not_found(client):
    with pytest.raises(ApplicationError) as info:
        await client.get_engagement("0065e00000000ZZAAA")
    assert info.value.type == NOT_FOUND_TYPE and info.value.non_retryable
    assert "NOT_FOUND" in str(info.value)


# --- auth -------------------------------------------------------------------------------------


async def test_revoked_token_is_refreshed_once(sf, client):
    await client.get_record("Account", S.ACME_ACCOUNT_ID)
    assert client.token_fetches == 1
    httpx.post(f"{sf.url}/__sandbox/tokens/revoke").raise_for_status()
    account = await client.get_record("Account", S.ACME_ACCOUNT_ID)
    assert account["Name"] == "Acme Analytics Inc." and client.token_fetches == 2


async def test_bad_credentials_are_non_retryable(sf):
    settings = crm_settings(sf.url)
    bad = SalesforceClient(type(settings)(**{**settings.__dict__, "client_secret": "wrong"}))
    try:
        with pytest.raises(ApplicationError) as info:
            await bad.get_record("Account", S.ACME_ACCOUNT_ID)
    finally:
        await bad.aclose()
    assert info.value.type == AUTH_TYPE and info.value.non_retryable
    assert "invalid_client" in str(info.value)


# --- error classification -----------------------------------------------------------------------


async def test_429_is_retryable_rate_limited(client, faults):
    faults(rate_429=1.0, path_prefix="/services/data", retry_after_seconds=7)
    with pytest.raises(ApplicationError) as info:
        await client.get_record("Account", S.ACME_ACCOUNT_ID)
    err = info.value
    assert err.type == RATE_LIMITED_TYPE and not err.non_retryable
    assert err.next_retry_delay is not None and err.next_retry_delay.total_seconds() == 7
    assert "REQUEST_LIMIT_EXCEEDED" in str(err)


async def test_5xx_is_retryable(client, faults):
    faults(error_rate=1.0, path_prefix="/services/data")
    with pytest.raises(ApplicationError) as info:
        await client.query("SELECT Id FROM Account")
    assert info.value.type == RETRYABLE_TYPE and not info.value.non_retryable
    assert "SERVICE_UNAVAILABLE" in str(info.value)


async def test_transport_failure_is_retryable():
    from sandboxes.common.server import free_port

    c = SalesforceClient(crm_settings(f"http://127.0.0.1:{free_port()}"), timeout=2)
    try:
        with pytest.raises(ApplicationError) as info:
            await c.get_record("Account", S.ACME_ACCOUNT_ID)
    finally:
        await c.aclose()
    assert info.value.type == RETRYABLE_TYPE and not info.value.non_retryable


async def test_daily_limit_is_rate_limited_not_rejected(sf, client):
    usage = httpx.get(f"{sf.url}/__sandbox/api-usage").json()
    httpx.put(f"{sf.url}/__sandbox/api-usage", json={"used": usage["limit"]})
    try:
        with pytest.raises(ApplicationError) as info:
            await client.get_record("Account", S.ACME_ACCOUNT_ID)
    finally:
        httpx.put(f"{sf.url}/__sandbox/api-usage", json={"used": usage["used"]})
    assert info.value.type == RATE_LIMITED_TYPE and not info.value.non_retryable
    assert client.api_usage == (usage["limit"], usage["limit"])


async def test_validation_errors_are_non_retryable_and_name_the_field(client):
    with pytest.raises(ApplicationError) as info:
        await client.update_record("Opportunity", S.KEYSTONE_CYBER_OPPORTUNITY_ID, {"Bogus__c": "x"})
    err = info.value
    assert err.type == REJECTED_TYPE and err.non_retryable
    assert "INVALID_FIELD" in str(err) and "Bogus__c" in str(err)
    assert err.details[0]["errors"][0]["fields"] == ["Bogus__c"]
    with pytest.raises(ApplicationError) as info:
        await client.create_record("Account", {"Region__c": "NA"})
    assert info.value.non_retryable and "REQUIRED_FIELD_MISSING" in str(info.value)
    assert "(fields: Name)" in str(info.value)


# --- writes and queries ---------------------------------------------------------------------------


async def test_write_back_provisioning_and_stage(client):
    opp = S.KEYSTONE_CYBER_OPPORTUNITY_ID
    await client.write_back_provisioning(
        opp, erp_customer_id="C-101", erp_project_id="J-202", psa_workspace_id="7001", status="Provisioned"
    )
    await client.set_opportunity_stage(opp, "Closed Won")
    await client.update_opportunity(opp, {"Last_Invoice_Amount__c": Decimal("1234.56")})
    record = await client.get_record("Opportunity", opp)
    assert (
        record["ERP_Customer_Id__c"],
        record["ERP_Project_Id__c"],
        record["PSA_Workspace_Id__c"],
        record["Q2C_Status__c"],
        record["StageName"],
    ) == ("C-101", "J-202", "7001", "Provisioned", "Closed Won")
    assert record["Last_Invoice_Amount__c"] == Decimal("1234.56")
    # None leaves a field as it is
    await client.write_back_provisioning(
        opp, erp_customer_id=None, erp_project_id=None, psa_workspace_id=None, status="Active"
    )
    record = await client.get_record("Opportunity", opp, fields=["ERP_Project_Id__c", "Q2C_Status__c"])
    assert (record["ERP_Project_Id__c"], record["Q2C_Status__c"]) == ("J-202", "Active")
    assert opp in await client.closed_won_opportunity_ids()
    assert opp not in await client.closed_won_opportunity_ids(unprovisioned_only=True)


async def test_contract_version_is_written_when_given(client):
    opp = S.KEYSTONE_CYBER_OPPORTUNITY_ID
    await client.write_back_provisioning(
        opp,
        erp_customer_id="C-101",
        erp_project_id="J-202",
        psa_workspace_id="7001",
        status="Active",
        contract_version=1,
    )
    assert (await client.get_record("Opportunity", opp))["Q2C_Contract_Version__c"] == 1
    await client.write_back_provisioning(
        opp, erp_customer_id=None, erp_project_id=None, psa_workspace_id=None, status="Collecting"
    )
    record = await client.get_record("Opportunity", opp)
    assert (record["Q2C_Contract_Version__c"], record["Q2C_Status__c"]) == (1, "Collecting")


async def test_collection_status_writes_totals_credit_and_latest_invoice_together(client):
    opp = S.KEYSTONE_CYBER_OPPORTUNITY_ID
    await client.write_invoice_reference(
        opp, number="INV10077", amount=Decimal("300.00"), currency="USD", status="open"
    )
    await client.write_collection_status(
        opp,
        amount_paid=Decimal("1800.00"),
        open_balance=Decimal("0.00"),
        days_overdue=0,
        unapplied_credit=Decimal("200.00"),
        last_invoice_number="INV10077",
        last_invoice_amount=Decimal("300.00"),
        last_invoice_currency="USD",
        last_invoice_status="paid_in_full",
    )
    record = await client.get_record("Opportunity", opp)
    assert (
        record["Amount_Paid__c"],
        record["Open_Balance__c"],
        record["Days_Overdue__c"],
        record["Unapplied_Credit__c"],
        record["Last_Invoice_Number__c"],
        record["Last_Invoice_Amount__c"],
        record["Last_Invoice_Status__c"],
    ) == (Decimal("1800.00"), Decimal("0.00"), 0, Decimal("200.00"), "INV10077", Decimal("300.00"), "paid_in_full")
    # the optional fields left out stay as they are
    await client.write_collection_status(opp, amount_paid=Decimal("1800.00"), open_balance=Decimal("0"), days_overdue=0)
    record = await client.get_record("Opportunity", opp)
    assert (record["Unapplied_Credit__c"], record["Last_Invoice_Status__c"]) == (Decimal("200.00"), "paid_in_full")


async def test_update_account(client):
    await client.update_account(S.HELIX_ACCOUNT_ID, {"Tax_Id__c": "36-1112223"})
    e = await client.get_engagement(S.HELIX_OPPORTUNITY_ID)
    assert e.customer.tax_id == "36-1112223"


async def test_upsert_created_updated_and_ambiguous(client):
    new_id, created = await client.upsert_by_external_id(
        "Account", "External_Id__c", "Q2C-1 &x", {"Name": "Slash & Co"}
    )
    assert created is True and new_id.startswith("001")
    same_id, created = await client.upsert_by_external_id("Account", "External_Id__c", "Q2C-1 &x", {"Region__c": "UK"})
    assert (same_id, created) == (new_id, False)
    a = await client.create_record("Account", {"Name": "Twin 1", "External_Id__c": "TWIN"})
    b = await client.create_record("Account", {"Name": "Twin 2", "External_Id__c": "TWIN"})
    with pytest.raises(ApplicationError) as info:
        await client.upsert_by_external_id("Account", "External_Id__c", "TWIN", {"Name": "?"})
    assert info.value.non_retryable and info.value.type == REJECTED_TYPE
    assert a in str(info.value) and b in str(info.value) and "MULTIPLE_CHOICES" in str(info.value)


async def test_query_follows_next_records_url(client):
    records = await client.query("SELECT Id, UnitPrice FROM OpportunityLineItem ORDER BY Id", batch_size=3)
    assert [r["Id"] for r in records][:3] == list(S.ACME_RATE_LINE_IDS)
    assert len(records) >= len(S.SEED_LINE_ITEMS)
    assert isinstance(records[0]["UnitPrice"], Decimal)


async def test_audit_hook_sees_every_call(sf):
    seen = []
    c = SalesforceClient(sf.settings, audit=seen.append)
    try:
        await c.get_engagement(S.NORDLICHT_OPPORTUNITY_ID)
    finally:
        await c.aclose()
    assert [r.operation for r in seen] == ["oauth token", "get Opportunity", "get Account", "query"]
    assert all(r.system == "crm" and r.outcome == "ok" for r in seen)


# --- org metadata for the admin doctor ----------------------------------------------------------


async def test_api_versions_list_the_connectors_version(client):
    versions = await client.api_versions()
    assert ApiVersion(version="60.0", label="Spring '24", url="/services/data/v60.0") in versions
    assert [v.version for v in versions] == sorted((v.version for v in versions), key=float)


async def test_limits_are_typed_and_agree_with_the_header(sf, client):
    limits = await client.limits()
    daily = limits["DailyApiRequests"]
    used, limit = client.api_usage
    assert isinstance(daily, OrgLimit) and (daily.max, daily.remaining, daily.used) == (limit, limit - used, used)
    assert limits["DataStorageMB"].remaining <= limits["DataStorageMB"].max


async def test_describe_global_and_describe_give_fields_types_and_picklists(client):
    objects = {o.name: o for o in await client.describe_global()}
    assert set(REQUIRED_FIELDS) <= set(objects)
    assert objects["Opportunity"] == GlobalSObject(
        name="Opportunity",
        label="Opportunity",
        custom=False,
        key_prefix="006",
        queryable=True,
        createable=True,
        updateable=True,
    )
    opportunity = await client.describe("Opportunity")
    assert isinstance(opportunity, SObjectDescribe) and opportunity.key_prefix == "006"
    stage = opportunity.field("StageName")
    assert stage.type == "picklist" and "Closed Won" in stage.active_values and stage.restricted_picklist
    model = opportunity.field("billing_model__c")  # API names are case-insensitive
    assert (model.name, model.custom, model.active_values) == (
        "Billing_Model__c",
        True,
        ("Time and Materials", "Fixed Fee", "Retainer"),
    )
    paid = opportunity.field("Amount_Paid__c")
    assert (paid.type, paid.precision, paid.scale, paid.updateable) == ("currency", 18, 2, True)
    assert opportunity.field("AccountId").reference_to == ("Account",)
    assert opportunity.field("IsWon").updateable is False
    assert org_gaps({s: await client.describe(s) for s in REQUIRED_FIELDS}) == []


async def test_describe_of_an_unknown_object_is_not_found(client):
    with pytest.raises(ApplicationError) as info:
        await client.describe("Widget__c")
    assert info.value.type == NOT_FOUND_TYPE and "NOT_FOUND" in str(info.value)


def test_required_fields_cover_every_field_the_connector_reads_or_writes():
    """Stated once, but derived from use: the query's line fields, the account fields a steward
    writes, the opportunity reference fields, and what the webhook reads from the message."""
    assert set(LINE_ITEM_FIELDS) <= set(REQUIRED_FIELDS["OpportunityLineItem"])
    assert set(ACCOUNT_FIELDS.values()) <= set(REQUIRED_FIELDS["Account"])
    assert set(Q2C_REFERENCE_FIELDS) <= set(REQUIRED_FIELDS["Opportunity"])
    assert set(OUTBOUND_MESSAGE_FIELDS) <= set(REQUIRED_FIELDS["Opportunity"])
    assert REQUIRED_PICKLIST_VALUES[("Opportunity", "StageName")] == ("Closed Won",)
    assert set(REQUIRED_PICKLIST_VALUES[("Opportunity", "Billing_Model__c")]) == set(BILLING_MODELS)
    for sobject, fields in REQUIRED_FIELDS.items():
        assert len(fields) == len(set(fields)), sobject


async def test_everything_the_mapping_reads_is_required(client):
    """Reading a real engagement touches only required fields: strip the records to
    REQUIRED_FIELDS and the mapping still gives the same engagement."""
    full = await client.get_engagement(S.ACME_OPPORTUNITY_ID)
    opp = await client.get_record("Opportunity", S.ACME_OPPORTUNITY_ID)
    acc = await client.get_record("Account", S.ACME_ACCOUNT_ID)
    lines = await client.query(
        f"SELECT {', '.join(LINE_ITEM_FIELDS)} FROM OpportunityLineItem "
        f"WHERE OpportunityId = '{S.ACME_OPPORTUNITY_ID}' ORDER BY Id"
    )

    def keep(record: dict, sobject: str) -> dict:
        return {k: v for k, v in record.items() if k in REQUIRED_FIELDS[sobject]}

    stripped = to_engagement(
        keep(opp, "Opportunity"), keep(acc, "Account"), [keep(x, "OpportunityLineItem") for x in lines]
    )
    assert stripped == full


# --- pure mapping -------------------------------------------------------------------------------


def _opp(**over):
    base = {
        "Id": "006X",
        "Name": "Deal",
        "StageName": "Closed Won",
        "Amount": Decimal("10.10"),
        "CurrencyIsoCode": "USD",
        "Billing_Model__c": "Fixed Fee",
        "AccountId": "001X",
    }
    return {**base, **over}


def test_mapping_legal_name_falls_back_to_name():
    c = account_to_customer({"Id": "001X", "Name": "Plain Co", "Legal_Name__c": "  "})
    assert c.legal_name == "Plain Co" and c.tax_id is None and c.billing_address.country is None


def test_mapping_rejects_floats_and_unknown_billing_models():
    with pytest.raises(CrmMappingError) as info:
        to_decimal(10.1, "Amount")
    assert info.value.field == "Amount"
    with pytest.raises(CrmMappingError) as info:
        billing_model("Outcome Based")
    assert info.value.field == "Billing_Model__c"
    assert to_decimal(20000) == Decimal("20000")


def test_mapping_milestone_amount_from_unit_price_and_currency_fallback():
    e = to_engagement(
        _opp(CurrencyIsoCode=None, Amount=None),
        {"Id": "001X", "Name": "A", "CurrencyIsoCode": "GBP"},
        [
            {
                "Id": "00kA",
                "Name": "M1",
                "Line_Type__c": "Milestone",
                "Quantity": 2,
                "UnitPrice": Decimal("0.05"),
                "TotalPrice": None,
            }
        ],
    )
    assert e.contract_value == Money(amount=Decimal("0"), currency="GBP")
    assert e.milestones[0].amount == Decimal("0.10") and e.milestones[0].key == "00kA"


def test_mapping_retainer_amount_falls_back_to_retainer_line():
    e = to_engagement(
        _opp(Billing_Model__c="Retainer"),
        {"Id": "001X", "Name": "A"},
        [{"Id": "00kR", "Line_Type__c": "Retainer", "Quantity": 12, "UnitPrice": Decimal("999.99")}],
    )
    assert e.retainer_amount == Decimal("999.99")


def test_limit_info_and_soql_quote():
    assert parse_limit_info("api-usage=18/15000") == {"api-usage": (18, 15000)}
    assert parse_limit_info("api-usage=1/5, per-app-api-usage=2/10(appName=x)") == {"api-usage": (1, 5)}
    assert parse_limit_info(None) == {}
    assert soql_quote("O'Brien \\ Co") == "'O\\'Brien \\\\ Co'"


async def test_soql_quote_round_trips_through_the_sandbox(client):
    new_id = await client.create_record("Account", {"Name": "O'Brien \\ Partners"})
    found = await client.query(
        f"SELECT Id FROM Account WHERE Name = {soql_quote(chr(79) + chr(39) + 'Brien ' + chr(92) + ' Partners')}"
    )
    assert [r["Id"] for r in found] == [new_id]


# --- bounded load on the org (issue 15) --------------------------------------------------------


async def test_in_flight_cap_keeps_requests_under_the_orgs_concurrency_limit(sf, faults):
    """A client capped at 2 never has more than 2 requests in flight, so an org limit is never hit.

    The sandbox's limit is 3, one above the cap: the server counts a request until its response
    has gone out, the client frees its slot when the response arrives, and on a busy machine the
    next request can get there in between (with the limit at 2 that race failed now and then)."""
    import asyncio
    import dataclasses

    faults(concurrency_limit=3, latency_ms=150, path_prefix="/services/data")
    c = SalesforceClient(dataclasses.replace(sf.settings, max_in_flight=2))
    try:
        records = await asyncio.gather(*(c.get_record("Account", S.ACME_ACCOUNT_ID) for _ in range(8)))
    finally:
        await c.aclose()
    assert len(records) == 8 and c.max_in_flight_seen == 2
    counters = httpx.get(f"{sf.url}/__sandbox/faults").json()["counters"]
    assert counters["concurrency_rejections"] == 0


async def test_api_usage_over_the_threshold_pauses_with_a_retryable_delay(sf):
    """Sforce-Limit-Info at 95% of the daily limit: the answer is returned, then nothing is sent
    for the pause; each call raises a retryable error whose next_retry_delay Temporal honours."""
    import dataclasses

    usage = httpx.get(f"{sf.url}/__sandbox/api-usage").json()
    httpx.put(f"{sf.url}/__sandbox/api-usage", json={"used": int(usage["limit"] * 0.95)})
    c = SalesforceClient(dataclasses.replace(sf.settings, api_usage_backoff=0.9, api_backoff_seconds=120))
    try:
        record = await c.get_record("Account", S.ACME_ACCOUNT_ID)  # crosses the threshold: still answered
        assert record["Id"].startswith(S.ACME_ACCOUNT_ID[:15])
        used = httpx.get(f"{sf.url}/__sandbox/api-usage").json()["used"]
        with pytest.raises(ApplicationError) as info:
            await c.get_record("Account", S.ACME_ACCOUNT_ID)
        assert httpx.get(f"{sf.url}/__sandbox/api-usage").json()["used"] == used  # nothing was sent
    finally:
        await c.aclose()
        httpx.put(f"{sf.url}/__sandbox/api-usage", json={"used": usage["used"]})
    err = info.value
    assert err.type == RATE_LIMITED_TYPE and not err.non_retryable
    assert 100 <= err.next_retry_delay.total_seconds() <= 120
    assert "Q2C_CRM_API_USAGE_BACKOFF" in str(err)


async def test_reads_are_not_retried_in_place(sf, faults):
    """One retry layer: a failed read is the activity's to retry (one request, not four)."""
    faults(error_rate=1.0, path_prefix="/services/data")
    c = SalesforceClient(sf.settings)
    try:
        with pytest.raises(ApplicationError) as info:
            await c.get_record("Account", S.ACME_ACCOUNT_ID)
    finally:
        await c.aclose()
    assert info.value.type == RETRYABLE_TYPE
    assert httpx.get(f"{sf.url}/__sandbox/faults").json()["counters"]["injected_errors"] == 1
