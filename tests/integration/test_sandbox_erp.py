"""NetSuite sandbox over real HTTP: auth, record API, validation, query, faults, seeding."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import httpx
import pytest

from sandboxes.erp.jsonio import loads_exact

R = "/services/rest/record/v1"


def uid(prefix: str = "T") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def http(erp_sandbox):
    with httpx.Client(
        base_url=erp_sandbox.url, timeout=10, headers={"Authorization": f"Bearer {erp_sandbox.token()}"}
    ) as client:
        yield client


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert body["status"] == response.status_code
    assert body["type"].startswith("https://www.rfc-editor.org/")
    return body["o:errorDetails"][0]


def make_customer(http, crm_id: str, **fields) -> str:
    body = {"companyName": f"Customer {crm_id}", "subsidiary": {"id": "1"}, **fields}
    r = http.put(f"{R}/customer/eid:{crm_id}", json=body)
    assert r.status_code == 204, r.text
    return r.headers["Location"].rsplit("/", 1)[-1]


def make_job(http, opp_id: str, customer_id: str, billing_type: str = "FF", contract: str = "10000.00") -> str:
    r = http.put(
        f"{R}/job/eid:{opp_id}",
        content=(
            '{"companyName":"Project %s","parent":{"id":"%s"},"jobBillingType":"%s",'
            '"startDate":"2025-01-01","projectedEndDate":"2025-12-31",'
            '"custentity_contract_value":%s}' % (opp_id, customer_id, billing_type, contract)
        ),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 204, r.text
    return r.headers["Location"].rsplit("/", 1)[-1]


# --- auth ---------------------------------------------------------------------------------


def test_token_endpoint_and_bearer(erp_sandbox):
    url = f"{erp_sandbox.url}/services/rest/auth/oauth2/v1/token"
    good = httpx.post(
        url,
        data={
            "grant_type": "client_credentials",
            "client_id": "q2c-demo-erp-client",
            "client_secret": "q2c-demo-erp-secret",
        },
    )
    assert good.status_code == 200
    assert good.json()["token_type"] == "bearer" and good.json()["expires_in"] == 3600
    bad = httpx.post(url, data={"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"})
    assert bad.status_code == 401 and bad.json() == {"error": "invalid_client"}
    grant = httpx.post(url, data={"grant_type": "password"})
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"

    for headers in ({}, {"Authorization": "Bearer nope"}):
        r = httpx.get(f"{erp_sandbox.url}{R}/customer/101", headers=headers)
        assert r.status_code == 401
        assert error_of(r)["o:errorCode"] == "INVALID_LOGIN"
    ok = httpx.get(
        f"{erp_sandbox.url}{R}/customer/101", headers={"Authorization": f"Bearer {good.json()['access_token']}"}
    )
    assert ok.status_code == 200


def test_revoked_and_expired_tokens_are_rejected(erp_isolated, tmp_path):
    token = erp_isolated.token()
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{erp_isolated.url}{R}/term/1", headers=headers).status_code == 200
    assert erp_isolated.revoke_tokens() >= 1
    assert httpx.get(f"{erp_isolated.url}{R}/term/1", headers=headers).status_code == 401

    from sandboxes.common.server import ServerThread
    from sandboxes.erp.app import create_app

    server = ServerThread(create_app(f"sqlite:///{tmp_path}/exp.db", token_ttl_seconds=0)).start()
    try:
        t = httpx.post(
            f"{server.url}/services/rest/auth/oauth2/v1/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "q2c-demo-erp-client",
                "client_secret": "q2c-demo-erp-secret",
            },
        ).json()["access_token"]
        r = httpx.get(f"{server.url}{R}/term/1", headers={"Authorization": f"Bearer {t}"})
        assert r.status_code == 401 and error_of(r)["o:errorCode"] == "INVALID_LOGIN"
    finally:
        server.stop()


# --- reference data and seed --------------------------------------------------------------


def test_seeded_reference_data(http):
    subs = {i: http.get(f"{R}/subsidiary/{i}").json() for i in ("1", "2", "3")}
    assert [
        (s["name"], s["country"]["id"], s["currency"]["id"], s["custrecord_q2c_region"]) for s in subs.values()
    ] == [
        ("Q2C Consulting Inc.", "US", "1", "NA"),
        ("Q2C Consulting Ltd", "GB", "2", "UK"),
        ("Q2C Beratung GmbH", "DE", "3", "DACH"),
    ]
    assert [http.get(f"{R}/currency/{i}").json()["symbol"] for i in (1, 2, 3)] == ["USD", "GBP", "EUR"]
    terms = http.get(f"{R}/term", params={"q": 'name IS "Net 30"'}).json()
    assert [i["id"] for i in terms["items"]] == ["2"]
    legacy = http.get(f"{R}/customer/101").json()
    assert legacy["companyName"] == "Acme Analytics Inc." and "externalId" not in legacy
    assert legacy["subsidiary"]["refName"] == "Q2C Consulting Inc."
    assert legacy["defaultAddress"].endswith("United States")


def test_seeding_is_idempotent_and_reset_restores(tmp_path):
    from sandboxes.erp.app import create_app

    url = f"sqlite:///{tmp_path}/seed.db"
    first = create_app(url)
    counts = {t: len(first.state.store.all(t)) for t in ("subsidiary", "currency", "term", "customer", "job")}
    second = create_app(url)
    assert {t: len(second.state.store.all(t)) for t in counts} == counts
    assert counts["subsidiary"] == 3 and counts["term"] == 4 and counts["customer"] == 2
    assert create_app(f"sqlite:///{tmp_path}/empty.db", seed=False).state.store.is_empty()


def test_admin_reset_restores_seed_and_concurrency_limit(erp_isolated):
    http = httpx.Client(base_url=erp_isolated.url, headers={"Authorization": f"Bearer {erp_isolated.token()}"})
    make_customer(http, uid("CRM"))
    erp_isolated.set_faults(concurrency_limit=None, latency_ms=5)
    assert httpx.post(f"{erp_isolated.url}/__sandbox/reset").json() == {"reset": True}
    assert [c["id"] for c in erp_isolated.records("customer")] == ["101", "102"]
    faults = httpx.get(f"{erp_isolated.url}/__sandbox/faults").json()["config"]
    assert faults["concurrency_limit"] == 5 and faults["latency_ms"] == 0


# --- create / get / upsert ------------------------------------------------------------------


def test_post_answers_204_with_location_and_get_renders_refs(http, erp_sandbox):
    eid = uid("CRM")
    r = http.post(
        f"{R}/customer",
        json={
            "externalId": eid,
            "companyName": "Initech GmbH",
            "subsidiary": {"id": "3"},
            "terms": {"id": "3"},
            "vatRegNumber": "DE811907980",
            "addressBook": {
                "items": [
                    {"addressBookAddress": {"addr1": "Hauptstr. 1", "city": "Berlin", "zip": "10115", "country": "DE"}}
                ]
            },
        },
    )
    assert r.status_code == 204 and r.content == b""
    location = r.headers["Location"]
    assert location.startswith(f"{erp_sandbox.url}{R}/customer/")
    record = http.get(location).json()
    assert record["externalId"] == eid and record["vatRegNumber"] == "DE811907980"
    assert record["currency"]["id"] == "3" and record["currency"]["refName"] == "Euro"
    assert record["terms"]["refName"] == "Net 45"
    assert record["links"][0]["href"] == location
    assert record["addressBook"]["items"][0]["addressBookAddress"]["country"] == {"id": "DE", "refName": "Germany"}
    assert http.get(f"{R}/customer/eid:{eid}").json()["id"] == record["id"]

    dup = http.post(f"{R}/customer", json={"externalId": eid, "companyName": "Other", "subsidiary": {"id": "3"}})
    assert dup.status_code == 400
    assert error_of(dup)["o:errorCode"] == "DUP_RCRD"


def test_put_eid_twice_is_one_record(http, erp_sandbox):
    eid = uid("CRM")
    first = make_customer(http, eid, companyName="Hooli Inc.")
    second = make_customer(http, eid, companyName="Hooli Incorporated")
    assert first == second
    found = http.get(f"{R}/customer", params={"q": f'externalId IS "{eid}"'}).json()
    assert found["totalResults"] == 1 and found["items"][0]["id"] == first
    assert http.get(f"{R}/customer/{first}").json()["companyName"] == "Hooli Incorporated"
    assert len([c for c in erp_sandbox.records("customer") if c.get("externalId") == eid]) == 1


def test_get_missing_is_404(http):
    for path in (f"{R}/customer/999999", f"{R}/customer/eid:{uid()}"):
        r = http.get(path)
        assert r.status_code == 404 and error_of(r)["o:errorCode"] == "RECORD_NOT_FOUND"
    r = http.patch(f"{R}/customer/999999", json={"companyName": "x"})
    assert r.status_code == 404 and error_of(r)["o:errorCode"] == "NONEXISTENT_ID"


def test_patch_merges_fields(http):
    cid = make_customer(http, uid("CRM"), vatRegNumber="US1")
    r = http.patch(f"{R}/customer/{cid}", json={"vatRegNumber": "US2"})
    assert r.status_code == 204 and r.headers["Location"].endswith(f"/customer/{cid}")
    record = http.get(f"{R}/customer/{cid}").json()
    assert record["vatRegNumber"] == "US2" and record["companyName"].startswith("Customer ")


def test_read_only_and_unknown_types(http):
    assert http.post(f"{R}/subsidiary", json={"name": "x"}).status_code == 405
    r = http.get(f"{R}/salesOrderz")
    assert r.status_code == 400 and error_of(r)["o:errorCode"] == "INVALID_RCRD_TYPE"
    r = http.put(f"{R}/customer/101", json={"companyName": "x"})
    assert r.status_code == 405


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, path, code",
    [
        ({"subsidiary": {"id": "1"}}, "companyName", "USER_ERROR"),
        ({"companyName": "A"}, "subsidiary", "USER_ERROR"),
        ({"companyName": "A", "subsidiary": {"id": "99"}}, "subsidiary", "INVALID_FLD_VALUE"),
        ({"companyName": "A", "subsidiary": {"id": "2"}, "currency": {"id": "1"}}, "currency", "INVALID_FLD_VALUE"),
        ({"companyName": "A", "subsidiary": {"id": "1"}, "terms": {"id": "77"}}, "terms", "INVALID_FLD_VALUE"),
        ({"companyName": "A", "subsidiary": {"id": "1"}, "bogus": 1}, "bogus", "USER_ERROR"),
        (
            {
                "companyName": "A",
                "subsidiary": {"id": "1"},
                "addressBook": {"items": [{"addressBookAddress": {"city": "X", "country": "USA"}}]},
            },
            "addressBook.items[0].addressBookAddress.country",
            "INVALID_FLD_VALUE",
        ),
    ],
)
def test_customer_validation(http, body, path, code):
    r = http.put(f"{R}/customer/eid:{uid('CRM')}", json=body)
    assert r.status_code == 400, r.text
    detail = error_of(r)
    assert (detail["o:errorPath"], detail["o:errorCode"]) == (path, code)


def test_job_validation(http):
    gbp_customer = make_customer(http, uid("CRM"), subsidiary={"id": "2"})
    cases = [
        ({"parent": {"id": gbp_customer}, "jobBillingType": "TM"}, "companyName"),
        ({"companyName": "P", "jobBillingType": "TM"}, "parent"),
        ({"companyName": "P", "parent": {"id": "424242"}, "jobBillingType": "TM"}, "parent"),
        (
            {"companyName": "P", "parent": {"id": gbp_customer}, "subsidiary": {"id": "1"}, "jobBillingType": "TM"},
            "subsidiary",
        ),
        (
            {"companyName": "P", "parent": {"id": gbp_customer}, "currency": {"id": "1"}, "jobBillingType": "TM"},
            "currency",
        ),
        (
            {
                "companyName": "P",
                "parent": {"id": gbp_customer},
                "jobBillingType": "TM",
                "startDate": "2025-06-01",
                "projectedEndDate": "2025-05-31",
            },
            "projectedEndDate",
        ),
        ({"companyName": "P", "parent": {"id": gbp_customer}, "jobBillingType": "BARTER"}, "jobBillingType"),
    ]
    for body, path in cases:
        r = http.put(f"{R}/job/eid:{uid('OPP')}", json=body)
        assert r.status_code == 400, (body, r.text)
        assert error_of(r)["o:errorPath"] == path, body
    # Defaults come from the customer; a reference by external ID works too.
    crm = uid("CRM")
    make_customer(http, crm, subsidiary={"id": "2"})
    r = http.put(
        f"{R}/job/eid:{uid('OPP')}", json={"companyName": "P", "parent": {"externalId": crm}, "jobBillingType": "TM"}
    )
    assert r.status_code == 204
    job = http.get(r.headers["Location"]).json()
    assert (job["subsidiary"]["id"], job["currency"]["id"]) == ("2", "2")


def test_billing_schedule_validation_and_exact_amounts(http, erp_sandbox):
    customer = make_customer(http, uid("CRM"))
    job = make_job(http, uid("OPP"), customer, "FF", "1000.30")
    eid = uid("bs")
    lines = '[{"name":"Kickoff","amount":0.10,"milestoneDate":"2025-02-01"},{"name":"Go-live","amount":1000.20}]'
    body = '{"name":"S","project":{"id":"%s"},"scheduleType":"FIXED_BID_MILESTONE","milestone":{"items":%s}}' % (
        job,
        lines,
    )
    r = http.put(f"{R}/billingSchedule/eid:{eid}", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 204, r.text
    raw = http.get(r.headers["Location"])
    assert '"amount":0.10' in raw.text and '"amount":1000.20' in raw.text
    record = loads_exact(raw.content)
    assert [m["amount"] for m in record["milestone"]["items"]] == [Decimal("0.10"), Decimal("1000.20")]
    assert erp_sandbox.record_by_eid("billingSchedule", eid)["milestone"]["items"][1]["amount"] == Decimal("1000.20")

    over = body.replace("1000.20", "1000.21")
    r = http.put(f"{R}/billingSchedule/eid:{uid('bs')}", content=over, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and error_of(r)["o:errorPath"] == "milestone"
    assert "exceeds the project's contract value 1000.30" in error_of(r)["detail"]

    cases = [
        ({"name": "S", "project": {"id": "999999"}, "scheduleType": "FIXED_BID_MILESTONE"}, "project"),
        ({"name": "S", "project": {"id": job}, "scheduleType": "TIME_AND_MATERIALS"}, "scheduleType"),
        ({"name": "S", "project": {"id": job}, "scheduleType": "WEEKLY_BARTER"}, "scheduleType"),
        ({"name": "S", "project": {"id": job}, "scheduleType": "FIXED_BID_MILESTONE"}, "milestone"),
        (
            {
                "name": "S",
                "project": {"id": job},
                "scheduleType": "FIXED_BID_MILESTONE",
                "milestone": {"items": [{"name": "A", "amount": -5}]},
            },
            "milestone.items[0].amount",
        ),
    ]
    for case, path in cases:
        r = http.put(f"{R}/billingSchedule/eid:{uid('bs')}", json=case)
        assert r.status_code == 400 and error_of(r)["o:errorPath"] == path, (case, r.text)

    retainer = make_job(http, uid("OPP"), customer, "RETAINER", "12000")
    r = http.put(
        f"{R}/billingSchedule/eid:{uid('bs')}",
        json={
            "name": "R",
            "project": {"id": retainer},
            "scheduleType": "FIXED_BID_INTERVAL",
            "frequency": "MONTHLY",
            "recurrenceAmount": 1000,
            "recurrenceCount": 0,
        },
    )
    assert r.status_code == 400 and error_of(r)["o:errorPath"] == "recurrenceCount"


# --- query ------------------------------------------------------------------------------------


def test_query_and_paging(http):
    tag = uid("Q")
    ids = [make_customer(http, f"{tag}-{i}", companyName=f"{tag} Corp {i}") for i in range(3)]
    page = http.get(f"{R}/customer", params={"q": f'companyName START_WITH "{tag}"', "limit": 2}).json()
    assert (page["count"], page["hasMore"], page["totalResults"], page["offset"]) == (2, True, 3, 0)
    assert any(link["rel"] == "next" for link in page["links"])
    rest = http.get(f"{R}/customer", params={"q": f'companyName START_WITH "{tag}"', "limit": 2, "offset": 2}).json()
    assert [i["id"] for i in page["items"] + rest["items"]] == ids and rest["hasMore"] is False
    both = http.get(f"{R}/customer", params={"q": f'externalId IS "{tag}-0" OR externalId IS "{tag}-2"'}).json()
    assert [i["id"] for i in both["items"]] == [ids[0], ids[2]]
    job = make_job(http, uid("OPP"), ids[1], "TM")
    jobs = http.get(f"{R}/job", params={"q": f"parent ANY_OF [{ids[0]}, {ids[1]}]"}).json()
    assert [i["id"] for i in jobs["items"]] == [job]
    r = http.get(f"{R}/customer", params={"q": "companyName LIKE x"})
    assert r.status_code == 400 and error_of(r)["o:errorCode"] == "INVALID_PARAMETER"
    assert http.get(f"{R}/customer", params={"limit": 0}).status_code == 400


# --- faults and concurrency ---------------------------------------------------------------------


async def test_concurrency_limit_answers_429(erp_isolated):
    erp_isolated.set_faults(latency_ms=300, concurrency_limit=5, retry_after_seconds=2)
    headers = {"Authorization": f"Bearer {erp_isolated.token()}"}
    async with httpx.AsyncClient(base_url=erp_isolated.url, headers=headers, timeout=10) as client:
        responses = await asyncio.gather(*(client.get(f"{R}/term/1") for _ in range(12)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 5 and statuses.count(429) == 7
    limited = next(r for r in responses if r.status_code == 429)
    assert error_of(limited)["o:errorCode"] == "CONCURRENCY_LIMIT_EXCEEDED"
    assert limited.headers["Retry-After"] == "2"
    counters = httpx.get(f"{erp_isolated.url}/__sandbox/faults").json()["counters"]
    assert counters["concurrency_rejections"] == 7


def test_injected_5xx_uses_netsuite_body(erp_isolated):
    erp_isolated.set_faults(error_rate=1.0)
    r = httpx.get(f"{erp_isolated.url}{R}/term/1", headers={"Authorization": f"Bearer {erp_isolated.token()}"})
    assert r.status_code == 503 and error_of(r)["o:errorCode"] == "SERVICE_UNAVAILABLE"
