"""The Salesforce sandbox over real HTTP: OAuth, CRUD, upsert, SOQL paging, limits, outbound messages."""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal

import httpx
import pytest
from defusedxml import ElementTree
from fastapi import FastAPI, Request
from fastapi.responses import Response
from sqlmodel import Session

from sandboxes.common.db import make_engine
from sandboxes.common.server import ServerThread, free_port
from sandboxes.crm import ids
from sandboxes.crm import seed as S
from sandboxes.crm.app import create_app
from sandboxes.crm.models import OutboundNotificationRow
from sandboxes.crm.outbound import ACK_RESPONSE, OutboundConfig, OutboundDispatcher, build_envelope, is_ack
from sandboxes.crm.store import CrmStore, now_utc
from stack.demo_env import DEMO_CRM_CLIENT_ID, DEMO_CRM_CLIENT_SECRET, DEMO_CRM_ORG_ID

API = "/services/data/v60.0"
NS = {
    "soapenv": "http://schemas.xmlsoap.org/soap/envelope/",
    "o": "http://soap.sforce.com/2005/09/outbound",
    "sf": "urn:sobject.enterprise.soap.sforce.com",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}


def token_for(url: str) -> str:
    r = httpx.post(
        f"{url}/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": DEMO_CRM_CLIENT_ID,
            "client_secret": DEMO_CRM_CLIENT_SECRET,
        },
    )
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def api_client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token_for(url)}"})


def jloads(r: httpx.Response):
    return json.loads(r.content, parse_float=Decimal)


@pytest.fixture(scope="module")
def sf(make_crm_sandbox):
    """A sandbox of this module's own (tests here write to it)."""
    return make_crm_sandbox()


@pytest.fixture(scope="module")
def http(sf):
    with api_client(sf.url) as client:
        yield client


# --- OAuth and sessions -------------------------------------------------------------------


def test_token_response_has_salesforce_shape(sf):
    r = httpx.post(
        f"{sf.url}/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": DEMO_CRM_CLIENT_ID,
            "client_secret": DEMO_CRM_CLIENT_SECRET,
        },
    )
    body = r.json()
    assert r.status_code == 200
    assert set(body) == {"access_token", "instance_url", "id", "token_type", "issued_at", "signature"}
    assert body["token_type"] == "Bearer" and body["instance_url"] == sf.url
    assert DEMO_CRM_ORG_ID in body["id"]


def test_bad_client_credentials_are_invalid_client(sf):
    r = httpx.post(
        f"{sf.url}/services/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": DEMO_CRM_CLIENT_ID, "client_secret": "nope"},
    )
    assert r.status_code == 400
    assert r.json() == {"error": "invalid_client", "error_description": "invalid client credentials"}


def test_missing_or_revoked_token_is_invalid_session(sf):
    r = httpx.get(f"{sf.url}{API}/sobjects/Account/{S.ACME_ACCOUNT_ID}")
    assert r.status_code == 401
    assert r.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    with api_client(sf.url) as c:
        assert c.get(f"{API}/sobjects/Account/{S.ACME_ACCOUNT_ID}").status_code == 200
        assert httpx.post(f"{sf.url}/__sandbox/tokens/revoke").json()["revoked"] >= 1
        assert c.get(f"{API}/sobjects/Account/{S.ACME_ACCOUNT_ID}").status_code == 401


def test_expired_token_is_invalid_session(make_crm_sandbox):
    short = make_crm_sandbox(token_ttl_seconds=0)
    with api_client(short.url) as c:
        time.sleep(0.01)
        r = c.get(f"{API}/sobjects/Account/{S.ACME_ACCOUNT_ID}")
    assert r.status_code == 401 and r.json()[0]["errorCode"] == "INVALID_SESSION_ID"


# --- records ------------------------------------------------------------------------------


def test_seeded_records_read_back_with_exact_money(http):
    opp = jloads(http.get(f"{API}/sobjects/Opportunity/{S.ACME_OPPORTUNITY_ID}"))
    assert opp["attributes"] == {"type": "Opportunity", "url": f"{API}/sobjects/Opportunity/{S.ACME_OPPORTUNITY_ID}"}
    assert opp["Name"] == "Acme Data Platform Modernization"
    assert opp["Amount"] == Decimal("194000.00") and opp["StageName"] == "Negotiation/Review"
    assert opp["AccountId"] == S.ACME_ACCOUNT_ID and opp["IsWon"] is False
    acc = http.get(f"{API}/sobjects/Account/{S.HELIX_ACCOUNT_ID}").json()
    assert acc["Tax_Id__c"] is None and acc["Region__c"] == "NA"
    line = jloads(http.get(f"{API}/sobjects/OpportunityLineItem/{S.HELIX_RATE_LINE_IDS[1]}"))
    assert line["UnitPrice"] == Decimal("162.50") and line["TotalPrice"] == Decimal("78000.00")


def test_ids_are_18_char_with_checksum_and_15_char_accepted(http):
    assert all(len(i) == 18 and ids.is_valid_id(i) for i in S.ALL_OPPORTUNITY_IDS)
    assert S.ACME_ACCOUNT_ID.startswith("001") and S.ACME_OPPORTUNITY_ID.startswith("006")
    assert S.ACME_RATE_LINE_IDS[0].startswith("00k")
    r = http.get(f"{API}/sobjects/Account/{S.ACME_ACCOUNT_ID[:15]}")
    assert r.status_code == 200 and r.json()["Id"] == S.ACME_ACCOUNT_ID


def test_get_with_fields_param(http):
    r = http.get(f"{API}/sobjects/Account/{S.ACME_ACCOUNT_ID}", params={"fields": "Name,Tax_Id__c"})
    body = r.json()
    assert {k for k in body if k != "attributes"} == {"Id", "Name", "Tax_Id__c"}
    bad = http.get(f"{API}/sobjects/Account/{S.ACME_ACCOUNT_ID}", params={"fields": "Nope__c"})
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_FIELD"


def test_unknown_type_and_id_are_not_found(http):
    r = http.get(f"{API}/sobjects/Widget__c/{S.ACME_ACCOUNT_ID}")
    assert r.status_code == 404 and r.json()[0]["errorCode"] == "NOT_FOUND"
    r = http.get(f"{API}/sobjects/Account/{ids.make_id('001', 99999)}")
    assert r.status_code == 404 and r.json() == [
        {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}
    ]
    # an opportunity id is not an account
    assert http.get(f"{API}/sobjects/Account/{S.ACME_OPPORTUNITY_ID}").status_code == 404


def test_create_update_delete(http):
    r = http.post(f"{API}/sobjects/Account", json={"Name": "Orbit Labs", "Region__c": "NA"})
    assert r.status_code == 201
    body = r.json()
    assert body["success"] is True and body["errors"] == [] and body["id"].startswith("001")
    new_id = body["id"]
    assert ids.is_valid_id(new_id)
    r = http.patch(
        f"{API}/sobjects/Account/{new_id}",
        content=b'{"Tax_Id__c": "77-1234567", "BillingCountry": "US"}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 204 and r.content == b""
    got = http.get(f"{API}/sobjects/Account/{new_id}").json()
    assert got["Tax_Id__c"] == "77-1234567" and got["Name"] == "Orbit Labs"
    assert http.delete(f"{API}/sobjects/Account/{new_id}").status_code == 204
    assert http.get(f"{API}/sobjects/Account/{new_id}").status_code == 404


def test_decimal_written_as_number_stays_exact(http):
    r = http.patch(
        f"{API}/sobjects/Opportunity/{S.KEYSTONE_CYBER_OPPORTUNITY_ID}",
        content=b'{"Last_Invoice_Amount__c": 12345678.91}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 204
    opp = jloads(http.get(f"{API}/sobjects/Opportunity/{S.KEYSTONE_CYBER_OPPORTUNITY_ID}"))
    assert opp["Last_Invoice_Amount__c"] == Decimal("12345678.91")


def test_q2c_reference_fields_exist_on_the_opportunity(http):
    """Every field q2c documents as its reference field is on the Opportunity schema, and the
    credit field keeps money exact."""
    from sandboxes.crm.schema import Q2C_REFERENCE_FIELDS, SCHEMAS

    assert set(Q2C_REFERENCE_FIELDS) <= set(SCHEMAS["Opportunity"])
    assert SCHEMAS["Opportunity"]["Unapplied_Credit__c"].type == "currency"
    r = http.patch(
        f"{API}/sobjects/Opportunity/{S.HELIX_OPPORTUNITY_ID}",
        json={"Unapplied_Credit__c": "200.10", "Amount_Paid__c": "1800.00"},
    )
    assert r.status_code == 204, r.text
    body = jloads(http.get(f"{API}/sobjects/Opportunity/{S.HELIX_OPPORTUNITY_ID}"))
    assert (body["Unapplied_Credit__c"], body["Amount_Paid__c"]) == (Decimal("200.10"), Decimal("1800.00"))


def test_write_errors_are_salesforce_arrays(http):
    r = http.post(f"{API}/sobjects/Account", json={"Name": "X", "Colour__c": "blue"})
    assert r.status_code == 400
    assert r.json()[0]["errorCode"] == "INVALID_FIELD" and r.json()[0]["fields"] == ["Colour__c"]
    r = http.post(f"{API}/sobjects/Opportunity", json={"Name": "No stage"})
    assert r.status_code == 400
    err = r.json()[0]
    assert err["errorCode"] == "REQUIRED_FIELD_MISSING" and set(err["fields"]) == {"StageName", "CloseDate"}
    r = http.patch(f"{API}/sobjects/Account/{S.ACME_ACCOUNT_ID}", json={"Name": None})
    assert r.status_code == 400 and r.json()[0]["fields"] == ["Name"]
    r = http.patch(f"{API}/sobjects/Opportunity/{S.ACME_OPPORTUNITY_ID}", json={"StageName": "Won-ish"})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    r = http.patch(f"{API}/sobjects/OpportunityLineItem/{S.ACME_RATE_LINE_IDS[0]}", json={"TotalPrice": 1})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    r = http.patch(f"{API}/sobjects/Opportunity/{S.ACME_OPPORTUNITY_ID}", json={"Amount": "lots"})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "JSON_PARSER_ERROR"
    r = http.post(
        f"{API}/sobjects/Opportunity",
        json={
            "Name": "Orphan",
            "StageName": "Prospecting",
            "CloseDate": "2026-12-31",
            "AccountId": ids.make_id("001", 4242),
        },
    )
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALID_CROSS_REFERENCE_KEY"
    r = http.patch(
        f"{API}/sobjects/Account/{S.ACME_ACCOUNT_ID}",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "JSON_PARSER_ERROR"


def test_upsert_by_external_id_created_updated_and_ambiguous(http):
    url = f"{API}/sobjects/Account/External_Id__c/EXT-42"
    r = http.patch(url, json={"Name": "Upsert Co"})
    assert r.status_code == 201
    created = r.json()
    assert created["created"] is True and created["success"] is True
    r = http.patch(url, json={"Legal_Name__c": "Upsert Company Ltd"})
    assert r.status_code == 200
    assert r.json()["id"] == created["id"] and r.json()["created"] is False
    got = http.get(f"{API}/sobjects/Account/{created['id']}").json()
    assert got["External_Id__c"] == "EXT-42" and got["Legal_Name__c"] == "Upsert Company Ltd"
    # two records share an external ID value: 300 with both URLs
    a = http.post(f"{API}/sobjects/Account", json={"Name": "Dup A", "External_Id__c": "DUP-1"}).json()["id"]
    b = http.post(f"{API}/sobjects/Account", json={"Name": "Dup B", "External_Id__c": "DUP-1"}).json()["id"]
    r = http.patch(f"{API}/sobjects/Account/External_Id__c/DUP-1", json={"Name": "Which?"})
    assert r.status_code == 300
    assert sorted(r.json()) == sorted([f"{API}/sobjects/Account/{a}", f"{API}/sobjects/Account/{b}"])
    # a field that is not an external ID
    r = http.patch(f"{API}/sobjects/Account/Name/Acme", json={"Region__c": "NA"})
    assert r.status_code == 404 and r.json()[0]["errorCode"] == "NOT_FOUND"
    # upsert-created records still need their required fields
    r = http.patch(f"{API}/sobjects/Opportunity/External_Id__c/OPP-NEW", json={"Name": "x"})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "REQUIRED_FIELD_MISSING"


def test_offered_api_versions_and_the_latest_alias_are_served_others_not_found(http):
    assert http.get(f"/services/data/v58.0/sobjects/Account/{S.ACME_ACCOUNT_ID}").status_code == 200
    latest = http.get(f"/services/data/latest/sobjects/Account/{S.ACME_ACCOUNT_ID}")
    assert latest.status_code == 200 and latest.json()["attributes"]["url"].startswith("/services/data/v64.0/")
    for version in ("v99.0", "v60", "v30.0", "60.0"):
        r = http.get(f"/services/data/{version}/sobjects/Account/{S.ACME_ACCOUNT_ID}")
        assert r.status_code == 404, version
        assert r.json() == [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]


# --- SOQL -----------------------------------------------------------------------------------


def q(http: httpx.Client, soql: str, **headers) -> httpx.Response:
    return http.get(f"{API}/query", params={"q": soql}, headers=headers)


def test_soql_where_order_limit(http):
    r = q(
        http,
        "SELECT Id, Name, Amount FROM Opportunity WHERE StageName = 'Negotiation/Review' "
        "AND CurrencyIsoCode IN ('USD', 'EUR') AND Service_Line__c != 'Cybersecurity' "
        "ORDER BY Amount DESC LIMIT 2",
    )
    body = jloads(r)
    assert r.status_code == 200 and body["done"] is True and body["totalSize"] == 2
    assert [rec["Id"] for rec in body["records"]] == [S.ACME_OPPORTUNITY_ID, S.HELIX_OPPORTUNITY_ID]
    assert body["records"][0]["attributes"]["type"] == "Opportunity"
    assert set(body["records"][0]) == {"attributes", "Id", "Name", "Amount"}
    r = q(http, "select Id from Account where Tax_Id__c = null and Payment_Terms__c != null")
    assert [rec["Id"] for rec in r.json()["records"]] == [S.HELIX_ACCOUNT_ID]
    r = q(http, "SELECT Id FROM Account WHERE Name = 'summit partners' ORDER BY Id")
    assert [rec["Id"] for rec in r.json()["records"]] == [S.SUMMIT_NA_ACCOUNT_ID, S.SUMMIT_UK_ACCOUNT_ID]
    r = q(http, "SELECT Id, Account.Name FROM Opportunity WHERE Id = '%s'" % S.BRIGHTWATER_OPPORTUNITY_ID)
    assert r.json()["records"][0]["Account"]["Name"] == "Brightwater Retail Ltd"
    r = q(http, "SELECT Name FROM Account WHERE Name LIKE 'Nord%' OR (Region__c = 'UK' AND NOT Tax_Id__c = null)")
    assert {rec["Name"] for rec in r.json()["records"]} == {
        "Nordlicht Maschinenbau GmbH",
        "Brightwater Retail Ltd",
        "Summit Partners",
    }


def test_soql_paging_with_next_records_url(http):
    soql = (
        f"SELECT Id, TotalPrice FROM OpportunityLineItem WHERE OpportunityId IN "
        f"('{S.ACME_OPPORTUNITY_ID}', '{S.BRIGHTWATER_OPPORTUNITY_ID}') ORDER BY Id"
    )
    first = q(http, soql, **{"Sforce-Query-Options": "batchSize=4"}).json()
    assert first["totalSize"] == 6 and first["done"] is False and len(first["records"]) == 4
    assert first["nextRecordsUrl"].startswith(f"{API}/query/01g")
    second = http.get(first["nextRecordsUrl"]).json()
    assert second["done"] is True and "nextRecordsUrl" not in second and len(second["records"]) == 2
    got = [r["Id"] for r in first["records"] + second["records"]]
    assert got == list(S.ACME_RATE_LINE_IDS + S.BRIGHTWATER_MILESTONE_LINE_IDS)
    stale = http.get(first["nextRecordsUrl"])  # cursor is gone once fully read
    assert stale.status_code == 400 and stale.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


@pytest.mark.parametrize(
    "soql, code",
    [
        ("SELECT FROM Account", "MALFORMED_QUERY"),
        ("SELECT Id Account", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE Name = 'unterminated", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account LIMIT x", "MALFORMED_QUERY"),
        ("SELECT Id, Colour__c FROM Account", "INVALID_FIELD"),
        ("SELECT Id FROM Widget__c", "INVALID_TYPE"),
    ],
)
def test_soql_errors(http, soql, code):
    r = q(http, soql)
    assert r.status_code == 400 and r.json()[0]["errorCode"] == code


# --- limits, faults, seeding ----------------------------------------------------------------


def test_limit_info_header_counts_api_calls(http):
    first = http.get(f"{API}/sobjects/Account/{S.ACME_ACCOUNT_ID}").headers["Sforce-Limit-Info"]
    second = http.get(f"{API}/sobjects/Account/{S.ACME_ACCOUNT_ID}").headers["Sforce-Limit-Info"]
    used1, limit = first.removeprefix("api-usage=").split("/")
    used2, _ = second.removeprefix("api-usage=").split("/")
    assert limit == "15000" and int(used2) == int(used1) + 1


def test_daily_limit_exceeded_is_403(make_crm_sandbox):
    small = make_crm_sandbox(daily_api_limit=2)
    with api_client(small.url) as c:
        for _ in range(2):
            assert c.get(f"{API}/sobjects/Account/{S.ACME_ACCOUNT_ID}").status_code == 200
        r = c.get(f"{API}/sobjects/Account/{S.ACME_ACCOUNT_ID}")
    assert r.status_code == 403
    assert r.json() == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    assert r.headers["Sforce-Limit-Info"] == "api-usage=2/2"


def test_fault_injection_uses_salesforce_error_body(sf, http):
    httpx.put(f"{sf.url}/__sandbox/faults", json={"error_rate": 1.0, "path_prefix": "/services/data"})
    try:
        r = http.get(f"{API}/sobjects/Account/{S.ACME_ACCOUNT_ID}")
        assert r.status_code == 503 and r.json()[0]["errorCode"] == "SERVICE_UNAVAILABLE"
    finally:
        httpx.put(f"{sf.url}/__sandbox/faults", json={})
    assert sf.app.state.faults.config.error_rate == 0.0


def test_seeding_is_idempotent_and_reset_restores_seed(tmp_path):
    db = f"sqlite:///{tmp_path}/seed.db"
    first = create_app(db).state.store.count()
    second = create_app(db).state.store.count()
    assert first == second == len(S.SEED_ACCOUNTS) + len(S.SEED_OPPORTUNITIES) + len(S.SEED_LINE_ITEMS)


def test_admin_reset_restores_seed(make_crm_sandbox):
    box = make_crm_sandbox()
    with api_client(box.url) as c:
        c.patch(f"{API}/sobjects/Account/{S.ACME_ACCOUNT_ID}", json={"Name": "Changed"})
        assert c.get(f"{API}/sobjects/Account/{S.ACME_ACCOUNT_ID}").json()["Name"] == "Changed"
        assert httpx.post(f"{box.url}/__sandbox/reset").json() == {"reset": True}
        assert c.get(f"{API}/sobjects/Account/{S.ACME_ACCOUNT_ID}").json()["Name"] == "Acme Analytics Inc."


# --- outbound messages ----------------------------------------------------------------------


class Receiver:
    """A SOAP endpoint that refuses the first `nacks` messages, then acknowledges."""

    def __init__(self, nacks: int = 1) -> None:
        self.nacks = nacks
        self.bodies: list[bytes] = []
        self.headers: list[dict] = []
        self.lock = threading.Lock()
        app = FastAPI()

        @app.post("/outbound")
        async def outbound(request: Request) -> Response:
            body = await request.body()
            with self.lock:
                self.bodies.append(body)
                self.headers.append(dict(request.headers))
                refuse = len(self.bodies) <= self.nacks
            if refuse:
                return Response("<soapenv:Fault>busy</soapenv:Fault>", status_code=500, media_type="text/xml")
            return Response(ACK_RESPONSE, media_type="text/xml")

        self.server = ServerThread(app).start()
        self.url = f"{self.server.url}/outbound"


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def deliveries(url: str) -> list[dict]:
    return httpx.get(f"{url}/__sandbox/outbound").json()["deliveries"]


@pytest.fixture(scope="module")
def receiver():
    rx = Receiver(nacks=1)
    yield rx
    rx.server.stop()


def test_closed_won_sends_outbound_message_retries_then_delivers(make_crm_sandbox, receiver):
    box = make_crm_sandbox(outbound_url=receiver.url, outbound_retry_initial_seconds=0.1)
    with api_client(box.url) as c:
        assert (
            c.patch(f"{API}/sobjects/Opportunity/{S.ACME_OPPORTUNITY_ID}", json={"StageName": "Closed Won"}).status_code
            == 204
        )
        delivered = wait_for(lambda: [d for d in deliveries(box.url) if d["status"] == "delivered"])
        assert len(delivered) == 1 and delivered[0]["attempts"] == 2
        assert len(receiver.bodies) == 2 and receiver.bodies[0] == receiver.bodies[1]
        assert receiver.headers[0]["content-type"].startswith("text/xml")
        assert receiver.headers[0]["soapaction"] == '""'

        root = ElementTree.fromstring(receiver.bodies[-1])
        notes = root.find("soapenv:Body/o:notifications", NS)
        assert notes.findtext("o:OrganizationId", namespaces=NS) == DEMO_CRM_ORG_ID
        assert notes.findtext("o:ActionId", namespaces=NS).startswith("04k")
        assert notes.find("o:SessionId", NS).get(f"{{{NS['xsi']}}}nil") == "true"
        assert "/services/Soap/c/60.0/" in notes.findtext("o:EnterpriseUrl", namespaces=NS)
        assert "/services/Soap/u/60.0/" in notes.findtext("o:PartnerUrl", namespaces=NS)
        [note] = notes.findall("o:Notification", NS)
        assert note.findtext("o:Id", namespaces=NS) == delivered[0]["notification_ids"][0]
        sobject = note.find("o:sObject", NS)
        assert sobject.get(f"{{{NS['xsi']}}}type") == "sf:Opportunity"
        assert sobject.findtext("sf:Id", namespaces=NS) == S.ACME_OPPORTUNITY_ID
        assert sobject.findtext("sf:Name", namespaces=NS) == "Acme Data Platform Modernization"
        assert sobject.findtext("sf:StageName", namespaces=NS) == "Closed Won"
        assert sobject.findtext("sf:AccountId", namespaces=NS) == S.ACME_ACCOUNT_ID

        # already Closed Won: patching it again (or upserting it) sends nothing new
        assert (
            c.patch(
                f"{API}/sobjects/Opportunity/{S.ACME_OPPORTUNITY_ID}",
                json={"StageName": "Closed Won", "Q2C_Status__c": "x"},
            ).status_code
            == 204
        )
        assert (
            c.patch(
                f"{API}/sobjects/Opportunity/Id/{S.ACME_OPPORTUNITY_ID}", json={"StageName": "Closed Won"}
            ).status_code
            == 200
        )
        time.sleep(0.4)
        assert len(deliveries(box.url)) == 1 and len(receiver.bodies) == 2

        # redeliver: the identical message again
        r = httpx.post(f"{box.url}/__sandbox/outbound/{delivered[0]['id']}/redeliver")
        assert r.status_code == 201 and r.json()["redelivery_of"] == delivered[0]["id"]
        wait_for(lambda: all(d["status"] == "delivered" for d in deliveries(box.url)) and len(deliveries(box.url)) == 2)
        assert len(receiver.bodies) == 3 and receiver.bodies[2] == receiver.bodies[1]
        assert httpx.post(f"{box.url}/__sandbox/outbound/999/redeliver").status_code == 404


def test_upsert_and_create_to_closed_won_also_notify(make_crm_sandbox):
    box = make_crm_sandbox()  # no outbound URL: messages stay pending
    with api_client(box.url) as c:
        c.patch(
            f"{API}/sobjects/Opportunity/External_Id__c/NEW-1",
            json={
                "Name": "Upserted",
                "StageName": "Closed Won",
                "CloseDate": "2026-12-01",
                "AccountId": S.ACME_ACCOUNT_ID,
            },
        )
        c.patch(f"{API}/sobjects/Opportunity/{S.BRIGHTWATER_OPPORTUNITY_ID}", json={"StageName": "Closed Lost"})
        c.patch(f"{API}/sobjects/Opportunity/{S.NORDLICHT_OPPORTUNITY_ID}", json={"StageName": "Prospecting"})
    found = wait_for(lambda: deliveries(box.url))
    assert all(d["status"] == "pending" and d["attempts"] == 0 for d in found)
    assert sum(len(d["notification_ids"]) for d in found) == 1


def test_pending_delivery_survives_restart(make_crm_sandbox, tmp_path):
    db_url = f"sqlite:///{tmp_path}/restart.db"
    dead = f"http://127.0.0.1:{free_port()}/outbound"
    first = make_crm_sandbox(dead, db_url=db_url, outbound_retry_initial_seconds=0.05)
    with api_client(first.url) as c:
        c.patch(f"{API}/sobjects/Opportunity/{S.HELIX_OPPORTUNITY_ID}", json={"StageName": "Closed Won"})
    failing = wait_for(lambda: [d for d in deliveries(first.url) if d["attempts"] >= 1])
    assert failing[0]["status"] == "pending" and failing[0]["last_error"]
    first.stop()
    rx = Receiver(nacks=0)
    try:
        second = make_crm_sandbox(
            rx.url, db_url=db_url, outbound_retry_initial_seconds=0.05, outbound_retry_max_seconds=0.05
        )
        done = wait_for(lambda: [d for d in deliveries(second.url) if d["status"] == "delivered"])
        assert done[0]["id"] == failing[0]["id"] and len(rx.bodies) == 1
        assert S.HELIX_OPPORTUNITY_ID.encode() in rx.bodies[0]
    finally:
        rx.server.stop()


def test_pending_notifications_batch_up_to_100_per_message(tmp_path):
    store = CrmStore(make_engine(f"sqlite:///{tmp_path}/batch.db"))
    store.create_tables()
    with Session(store.engine) as s:
        for n in range(150):
            s.add(
                OutboundNotificationRow(
                    id=ids.make_id(ids.NOTIFICATION_PREFIX, n + 1),
                    opportunity_id=S.ACME_OPPORTUNITY_ID,
                    sobject_json=json.dumps(
                        {
                            "Id": S.ACME_OPPORTUNITY_ID,
                            "Name": f"Deal {n}",
                            "StageName": "Closed Won",
                            "AccountId": S.ACME_ACCOUNT_ID,
                        }
                    ),
                    created_at=now_utc(),
                )
            )
        s.commit()
    dispatcher = OutboundDispatcher(
        store, OutboundConfig(url=None, organization_id=DEMO_CRM_ORG_ID, instance_url="https://example.invalid")
    )
    assert len(dispatcher.batch_pending()) == 2
    sizes = [len(m["notification_ids"]) for m in dispatcher.list_messages()]
    assert sizes == [100, 50]
    root = ElementTree.fromstring(dispatcher.list_messages()[0]["payload"])
    assert len(root.findall("soapenv:Body/o:notifications/o:Notification", NS)) == 100
    assert dispatcher.batch_pending() == []  # nothing left unbatched


def test_envelope_escapes_text_and_ack_detection():
    xml = build_envelope(
        organization_id=DEMO_CRM_ORG_ID,
        instance_url="https://x.invalid",
        notifications=[("04lX", {"Id": "006X", "Name": "R&D <Phase 1>", "AccountId": None})],
    )
    root = ElementTree.fromstring(xml)
    assert root.find(".//sf:Name", NS).text == "R&D <Phase 1>"
    assert root.find(".//sf:AccountId", NS) is None
    assert is_ack(200, ACK_RESPONSE.encode())
    assert not is_ack(500, ACK_RESPONSE.encode())
    assert not is_ack(200, ACK_RESPONSE.replace("true", "false").encode())
    assert not is_ack(200, b"OK")
    with pytest.raises(ValueError):
        build_envelope(organization_id=DEMO_CRM_ORG_ID, instance_url="x", notifications=[])


# --- what real clients call: trailing slashes, metadata resources, bad input ------------------


def usage_of(url: str) -> int:
    return httpx.get(f"{url}/__sandbox/api-usage").json()["used"]


def test_trailing_slash_urls_are_answered_directly_and_counted_once(sf, http):
    before = usage_of(sf.url)
    r = http.get(f"{API}/query/", params={"q": "SELECT Id FROM Account LIMIT 1"})
    assert r.status_code == 200 and r.json()["totalSize"] == 1
    created = http.post(f"{API}/sobjects/Account/", json={"Name": "Slash Ltd"})
    assert created.status_code == 201
    assert http.get(f"{API}/sobjects/Account/{created.json()['id']}/").json()["Name"] == "Slash Ltd"
    assert http.get(f"{API}/sobjects/Account/describe/").status_code == 200
    assert usage_of(sf.url) == before + 4
    assert r.headers["Sforce-Limit-Info"] == f"api-usage={before + 1}/15000"


def test_versions_resource_needs_no_session_and_is_not_counted(sf):
    before = usage_of(sf.url)
    for path in ("/services/data/", "/services/data"):
        r = httpx.get(f"{sf.url}{path}")
        assert r.status_code == 200 and "Sforce-Limit-Info" not in r.headers
        versions = r.json()
        assert {"label": "Spring '24", "url": "/services/data/v60.0", "version": "60.0"} in versions
        assert versions[0]["version"] == "31.0" and versions[-1]["version"] == "64.0"
    assert usage_of(sf.url) == before


def test_limits_report_the_same_daily_count_as_the_header(sf, http):
    r = http.get(f"{API}/limits/")
    used, limit = map(int, r.headers["Sforce-Limit-Info"].removeprefix("api-usage=").split("/"))
    assert r.json()["DailyApiRequests"] == {"Max": limit, "Remaining": limit - used}
    assert all(set(v) == {"Max", "Remaining"} for v in r.json().values())


def test_describe_global_and_sobject_describe(http):
    body = http.get(f"{API}/sobjects").json()
    assert (body["encoding"], body["maxBatchSize"]) == ("UTF-8", 200)
    account = next(o for o in body["sobjects"] if o["name"] == "Account")
    assert account["keyPrefix"] == "001" and account["urls"]["describe"] == f"{API}/sobjects/Account/describe"
    described = http.get(f"{API}/sobjects/OpportunityLineItem/describe").json()
    fields = {f["name"]: f for f in described["fields"]}
    line_type = fields["Line_Type__c"]
    assert (line_type["type"], line_type["custom"], line_type["restrictedPicklist"]) == ("picklist", True, True)
    assert line_type["picklistValues"] == [
        {"active": True, "defaultValue": False, "label": v, "validFor": None, "value": v}
        for v in ("Rate", "Milestone", "Retainer")
    ]
    assert (fields["Role__c"]["length"], fields["Role__c"]["externalId"]) == (80, False)
    assert fields["External_Id__c"]["externalId"] is True and fields["Id"]["type"] == "id"
    assert fields["OpportunityId"]["referenceTo"] == ["Opportunity"] and fields["TotalPrice"]["createable"] is False
    children = http.get(f"{API}/sobjects/Opportunity/describe").json()["childRelationships"]
    assert {"childSObject": "OpportunityLineItem", "field": "OpportunityId"}.items() <= children[0].items()
    r = http.get(f"{API}/sobjects/Widget__c/describe")
    assert r.status_code == 404 and r.json()[0]["errorCode"] == "NOT_FOUND"


def test_get_by_external_id(http):
    new = http.post(f"{API}/sobjects/Account", json={"Name": "Lookup AG", "Tax_Id__c": "DE999999999"}).json()["id"]
    r = http.get(f"{API}/sobjects/Account/Tax_Id__c/de999999999", params={"fields": "Name"})
    assert r.status_code == 200 and {k: v for k, v in r.json().items() if k != "attributes"} == {
        "Id": new,
        "Name": "Lookup AG",
    }
    assert http.get(f"{API}/sobjects/Account/Id/{new}").json()["Id"] == new
    missing = http.get(f"{API}/sobjects/Account/Tax_Id__c/NOPE")
    assert missing.status_code == 404 and missing.json()[0]["errorCode"] == "NOT_FOUND"
    not_external = http.get(f"{API}/sobjects/Account/Name/Lookup AG")
    assert not_external.status_code == 404
    assert "Provided external ID field does not exist" in not_external.json()[0]["message"]


def test_count_and_query_all_over_the_recycle_bin(http):
    opp = http.post(
        f"{API}/sobjects/Opportunity",
        json={"Name": "Binned", "StageName": "Prospecting", "CloseDate": "2026-12-31", "AccountId": S.ACME_ACCOUNT_ID},
    ).json()["id"]
    line = http.post(
        f"{API}/sobjects/OpportunityLineItem", json={"OpportunityId": opp, "Quantity": 1, "UnitPrice": "10.00"}
    ).json()["id"]
    soql = f"SELECT COUNT() FROM OpportunityLineItem WHERE OpportunityId = '{opp}'"
    assert q(http, soql).json() == {"totalSize": 1, "done": True, "records": []}
    assert http.delete(f"{API}/sobjects/Opportunity/{opp}").status_code == 204
    assert q(http, soql).json()["totalSize"] == 0  # the line item went with its opportunity
    binned = http.get(
        f"{API}/queryAll", params={"q": f"SELECT Id, IsDeleted FROM OpportunityLineItem WHERE Id = '{line}'"}
    )
    assert [(r["Id"], r["IsDeleted"]) for r in binned.json()["records"]] == [(line, True)]
    assert http.get(f"{API}/sobjects/Opportunity/{opp}").json()[0]["errorCode"] == "ENTITY_IS_DELETED"
    assert http.patch(f"{API}/sobjects/Opportunity/{opp}", json={"Name": "x"}).status_code == 404
    assert http.delete(f"{API}/sobjects/Opportunity/{opp}").json()[0]["errorCode"] == "ENTITY_IS_DELETED"
    counted = q(http, "SELECT COUNT(Id) FROM Account").json()
    assert counted["totalSize"] == 1 and counted["records"][0]["expr0"] >= len(S.SEED_ACCOUNTS)
    paged = http.get(
        f"{API}/queryAll",
        params={"q": "SELECT Id FROM OpportunityLineItem"},
        headers={"Sforce-Query-Options": "batchSize=5"},
    ).json()
    assert paged["nextRecordsUrl"].startswith(f"{API}/queryAll/01g")
    assert http.get(paged["nextRecordsUrl"]).status_code == 200


@pytest.mark.parametrize(
    "method, path, kwargs, status, code",
    [
        ("GET", f"{API}/sobjects/Account/{'9' * 40}", {}, 404, "NOT_FOUND"),
        ("GET", f"{API}/sobjects/Account/%00%FF", {}, 404, "NOT_FOUND"),
        ("PATCH", f"{API}/sobjects/Account/{'a' * 18}", {"json": {"Name": "x"}}, 404, "NOT_FOUND"),
        ("DELETE", f"{API}/sobjects/Account/001", {}, 404, "NOT_FOUND"),
        ("PATCH", f"{API}/sobjects/Account/{S.ACME_ACCOUNT_ID}", {"content": b"[" * 100_000}, 400, "JSON_PARSER_ERROR"),
        ("PATCH", f"{API}/sobjects/Account/{S.ACME_ACCOUNT_ID}", {"content": b"\xff\xfe"}, 400, "JSON_PARSER_ERROR"),
        ("PATCH", f"{API}/sobjects/Account/{S.ACME_ACCOUNT_ID}", {"content": b"a=b"}, 400, "JSON_PARSER_ERROR"),
        ("POST", f"{API}/sobjects/Account", {"content": b"1" * 5000}, 400, "JSON_PARSER_ERROR"),
        ("POST", f"{API}/sobjects/Account", {"json": {"Name": "x" * 256}}, 400, "STRING_TOO_LONG"),
        (
            "PATCH",
            f"{API}/sobjects/Opportunity/{S.ACME_OPPORTUNITY_ID}",
            {"content": b'{"Amount": 1e400}'},
            400,
            "NUMBER_OUTSIDE_VALID_RANGE",
        ),
        (
            "PATCH",
            f"{API}/sobjects/Opportunity/{S.ACME_OPPORTUNITY_ID}",
            {"json": {"Amount": 10**17}},
            400,
            "NUMBER_OUTSIDE_VALID_RANGE",
        ),
        (
            "PATCH",
            f"{API}/sobjects/Opportunity/{S.ACME_OPPORTUNITY_ID}",
            {"json": {"Amount": "1e-999999"}},
            400,
            "NUMBER_OUTSIDE_VALID_RANGE",
        ),
        (
            "PATCH",
            f"{API}/sobjects/Opportunity/{S.ACME_OPPORTUNITY_ID}",
            {"json": {"AccountId": "not-an-id"}},
            400,
            "MALFORMED_ID",
        ),
        (
            "PATCH",
            f"{API}/sobjects/Opportunity/{S.ACME_OPPORTUNITY_ID}",
            {"json": {"Name": {"a": 1}}},
            400,
            "JSON_PARSER_ERROR",
        ),
        (
            "GET",
            f"{API}/query",
            {"params": {"q": "SELECT Id FROM Account WHERE " + "(" * 5000 + "Name = 'x'"}},
            400,
            "MALFORMED_QUERY",
        ),
        (
            "GET",
            f"{API}/query",
            {"params": {"q": "SELECT Id FROM Account LIMIT " + "9" * 5000}},
            400,
            "MALFORMED_QUERY",
        ),
        (
            "GET",
            f"{API}/query",
            {"params": {"q": "SELECT Id FROM Account OFFSET 2001"}},
            400,
            "NUMBER_OUTSIDE_VALID_RANGE",
        ),
        ("GET", f"{API}/query", {"params": {"q": "SELECT Id, COUNT() FROM Account"}}, 400, "MALFORMED_QUERY"),
        (
            "GET",
            f"{API}/query",
            {"params": {"q": "SELECT Id FROM Account"}, "headers": {"Sforce-Query-Options": "batchSize=" + "9" * 5000}},
            200,
            None,
        ),
        ("GET", f"{API}/query/01g5e0000000001AAA-{'9' * 5000}", {}, 400, "INVALID_QUERY_LOCATOR"),
        ("GET", f"{API}/query/01g-²", {}, 400, "INVALID_QUERY_LOCATOR"),
        (
            "GET",
            f"{API}/sobjects/Account/{S.ACME_ACCOUNT_ID}",
            {"params": {"fields": "Name," + "x" * 5000}},
            400,
            "INVALID_FIELD",
        ),
        ("PUT", f"{API}/sobjects/Account/{S.ACME_ACCOUNT_ID}", {"json": {}}, 405, "METHOD_NOT_ALLOWED"),
        ("GET", "/services/data/v60.0/nothing/here", {}, 404, "NOT_FOUND"),
    ],
)
def test_bad_input_is_a_salesforce_4xx_never_a_5xx(http, method, path, kwargs, status, code):
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    r = http.request(method, path, headers=headers, **kwargs)
    assert r.status_code == status, r.text[:300]
    if code is not None:
        body = r.json()
        assert isinstance(body, list) and body[0]["errorCode"] == code and isinstance(body[0]["message"], str)
        assert len(body[0]["message"]) < 500


def test_token_endpoint_refuses_non_ascii_credentials_as_invalid_client(sf):
    r = httpx.post(
        f"{sf.url}/services/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": "é", "client_secret": "ü"},
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_client"


def test_order_by_id_is_creation_order_across_the_case_boundary():
    """IDs are case-sensitive: `…IZ…` (sequence 35) sorts before `…Ia…` (36), as Salesforce
    returns ORDER BY Id. Sorting them case-insensitively put a deal's milestone lines out of
    order once the ID counter crossed that boundary (a test invoiced the wrong milestone)."""
    from sandboxes.crm import ids
    from sandboxes.crm.soql import _compare, sort_records

    made = [ids.make_id("00k", n) for n in range(30, 40)]
    records = [{"Id": i} for i in reversed(made)]
    assert [r["Id"] for r in sort_records(records, [("Id", False, False)], lambda r: {})] == made
    upper, lower = ids.make_id("00k", 35), ids.make_id("00k", 61)  # ...Z... and ...z...
    assert upper[:15].lower() == lower[:15].lower()  # the same ID but for case
    assert not _compare(upper, "=", lower) and _compare(upper, "=", upper[:15])  # 18 = its 15-char form
