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
    """The M2M grant answers a token for a signed assertion; the record API wants it."""
    url = erp_sandbox.token_url
    token = erp_sandbox.token()
    bad = httpx.post(url, data={"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"
    grant = httpx.post(url, data={"grant_type": "password"})
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"

    for headers in ({}, {"Authorization": "Bearer nope"}):
        r = httpx.get(f"{erp_sandbox.url}{R}/customer/101", headers=headers)
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/vnd.oracle.resource+json; type=error"
        assert error_of(r)["o:errorCode"] == "INVALID_LOGIN"
    ok = httpx.get(f"{erp_sandbox.url}{R}/customer/101", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200


def test_a_token_without_the_rest_webservices_scope_cannot_read_records(erp_sandbox):
    token = erp_sandbox.token(scopes=("restlets",))
    r = httpx.get(f"{erp_sandbox.url}{R}/term/1", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and error_of(r)["o:errorCode"] == "INVALID_LOGIN"


def test_revoked_and_expired_tokens_are_rejected(erp_isolated, tmp_path):
    token = erp_isolated.token()
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{erp_isolated.url}{R}/term/1", headers=headers).status_code == 200
    assert erp_isolated.revoke_tokens() >= 1
    assert httpx.get(f"{erp_isolated.url}{R}/term/1", headers=headers).status_code == 401

    from sandboxes.common.server import ServerThread
    from sandboxes.erp.app import create_app
    from tests.fixtures.erp import ErpSandbox, demo_m2m

    app = create_app(f"sqlite:///{tmp_path}/exp.db", token_ttl_seconds=0, m2m_dir=demo_m2m().directory)
    server = ServerThread(app).start()
    try:
        t = ErpSandbox(url=server.url, app=app, server=server).token()
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
    from tests.fixtures.erp import demo_m2m

    url = f"sqlite:///{tmp_path}/seed.db"
    m2m = demo_m2m().directory
    first = create_app(url, m2m_dir=m2m)
    counts = {t: len(first.state.store.all(t)) for t in ("subsidiary", "currency", "term", "customer", "job")}
    second = create_app(url, m2m_dir=m2m)
    assert {t: len(second.state.store.all(t)) for t in counts} == counts
    assert counts["subsidiary"] == 3 and counts["term"] == 4 and counts["customer"] == 2
    assert create_app(f"sqlite:///{tmp_path}/empty.db", seed=False, m2m_dir=m2m).state.store.is_empty()


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
    # NetSuite: sublists are links unless expandSubResources=true
    assert record["addressBook"] == {"links": [{"rel": "self", "href": f"{location}/addressBook"}]}
    expanded = http.get(location, params={"expandSubResources": "true"}).json()
    line = expanded["addressBook"]["items"][0]
    assert line["addressBookAddress"]["country"] == {"id": "DE", "refName": "Germany"}
    assert http.get(f"{location}/addressBook").json()["items"] == [line]
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


def test_get_or_patch_missing_is_404_nonexistent_id(http):
    """NetSuite answers a missing record with NONEXISTENT_ID, "The record instance does not
    exist", on GET and PATCH alike; an ID no record can have is missing too, not a 500."""
    for key in ("999999", f"eid:{uid()}", "99999999999999999999", "abc", "-1", "0"):
        for r in (http.get(f"{R}/customer/{key}"), http.patch(f"{R}/customer/{key}", json={"companyName": "x"})):
            assert r.status_code == 404, (key, r.status_code, r.text)
            assert r.headers["content-type"] == "application/vnd.oracle.resource+json; type=error"
            detail = error_of(r)
            assert detail["o:errorCode"] == "NONEXISTENT_ID"
            assert detail["detail"].startswith("The record instance does not exist.")


def test_patch_merges_fields(http):
    cid = make_customer(http, uid("CRM"), vatRegNumber="US1")
    r = http.patch(f"{R}/customer/{cid}", json={"vatRegNumber": "US2"})
    assert r.status_code == 204 and r.headers["Location"].endswith(f"/customer/{cid}")
    record = http.get(f"{R}/customer/{cid}").json()
    assert record["vatRegNumber"] == "US2" and record["companyName"].startswith("Customer ")


def test_read_only_and_unknown_types(http):
    r = http.post(f"{R}/subsidiary", json={"name": "x"})
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    assert error_of(r)["o:errorCode"] == "METHOD_NOT_ALLOWED"
    r = http.get(f"{R}/salesOrderz")
    assert r.status_code == 404 and error_of(r)["o:errorCode"] == "INVALID_RCRD_TYPE"
    assert error_of(r)["detail"] == "Record type 'salesOrderz' does not exist."
    r = http.put(f"{R}/customer/101", json={"companyName": "x"})
    assert r.status_code == 405 and r.headers["allow"] == "GET, PATCH"


def test_delete_is_refused_the_netsuite_way_with_allow(http):
    """The sandbox offers no DELETE: NetSuite's error body and content type, and an Allow
    header naming what the URL takes (not FastAPI's {"detail": "Method Not Allowed"})."""
    for path, allow in (
        (f"{R}/customer/101", "GET, PATCH"),
        (f"{R}/customer/eid:LEGACY-0042", "GET, PATCH, PUT"),
        (f"{R}/customer", "GET, POST"),
        (f"{R}/currency/1", "GET"),
    ):
        r = http.delete(path)
        assert r.status_code == 405 and r.headers["allow"] == allow, (path, r.headers, r.text)
        assert r.headers["content-type"] == "application/vnd.oracle.resource+json; type=error"
        assert error_of(r)["o:errorCode"] == "METHOD_NOT_ALLOWED"
    r = http.get("/services/rest/record/v2/customer")
    assert r.status_code == 404 and error_of(r)["o:errorCode"] == "INVALID_URL"


def test_collection_links_page_the_netsuite_way(http):
    """NetSuite's "Collection Paging": next/last/self on the first page, first/prev after it,
    every link with limit and offset."""
    first = http.get(f"{R}/currency", params={"limit": 2}).json()
    rels = {link["rel"]: link["href"] for link in first["links"]}
    assert list(rels) == ["next", "last", "self"]
    assert rels["self"].endswith("/currency?limit=2&offset=0")
    assert rels["next"].endswith("/currency?limit=2&offset=2")
    assert rels["last"].endswith("/currency?limit=2&offset=4")
    middle = http.get(f"{R}/currency", params={"limit": 2, "offset": 2}).json()
    assert [link["rel"] for link in middle["links"]] == ["first", "prev", "next", "last", "self"]
    last = httpx.get(rels["last"], headers=http.headers).json()
    assert last["hasMore"] is False and [i["id"] for i in last["items"]] == ["5", "6"]
    assert [link["rel"] for link in last["links"]] == ["first", "prev", "last", "self"]
    q = http.get(f"{R}/term", params={"q": 'name START_WITH "Net"', "limit": 1}).json()
    nxt = next(link["href"] for link in q["links"] if link["rel"] == "next")
    assert httpx.get(nxt, headers=http.headers).json()["items"][0]["id"] == "2"


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
    raw = http.get(r.headers["Location"], params={"expandSubResources": "true"})
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
    for bad in ({"q": "companyName LIKE x"}, {"q": "id GREATER NaN"}, {"limit": 0}, {"limit": "1e308"}):
        r = http.get(f"{R}/customer", params=bad)
        assert r.status_code == 400 and error_of(r)["o:errorCode"] == "INVALID_PARAMETER", (bad, r.text)


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
    assert limited.headers["content-type"] == "application/vnd.oracle.resource+json; type=error"
    assert limited.headers["Retry-After"] == "2"
    counters = httpx.get(f"{erp_isolated.url}/__sandbox/faults").json()["counters"]
    assert counters["concurrency_rejections"] == 7


def test_injected_5xx_uses_netsuite_body(erp_isolated):
    erp_isolated.set_faults(error_rate=1.0)
    r = httpx.get(f"{erp_isolated.url}{R}/term/1", headers={"Authorization": f"Bearer {erp_isolated.token()}"})
    assert r.status_code == 503 and error_of(r)["o:errorCode"] == "SERVICE_UNAVAILABLE"
    assert r.headers["content-type"] == "application/vnd.oracle.resource+json; type=error"
