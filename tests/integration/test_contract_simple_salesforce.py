"""Contract tests: a real, widely used Salesforce client (simple-salesforce) against the CRM sandbox.

If the sandbox answers what simple-salesforce expects (its URLs with trailing slashes, its
paging with `nextRecordsUrl`, its status-code-to-exception mapping, the shapes of describe
and limits), it answers what the real REST API answers, and q2c's own connector is not the
only client the sandbox was built to please. The sandbox runs over https (simple-salesforce
only speaks https) with a certificate the test trusts; the session is a real client-credentials
token from the sandbox's OAuth endpoint, handed to simple-salesforce as `session_id`.
"""

from __future__ import annotations

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceResourceNotFound,
)

from q2c.vendors.salesforce.mapping import REQUIRED_FIELDS
from sandboxes.crm import seed as S
from stack.demo_env import DEMO_CRM_CLIENT_ID, DEMO_CRM_CLIENT_SECRET

VERSION = "60.0"


@pytest.fixture(scope="module")
def box(make_crm_sandbox):
    """A sandbox of this module's own, over https (tests here write to it)."""
    return make_crm_sandbox(tls=True)


def http_session(box) -> requests.Session:
    """A requests session that trusts the sandbox's certificate (and only that: REQUESTS_CA_BUNDLE
    and proxy variables from the environment would override it, so they are ignored)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = box.ca_file
    return session


def token(box) -> dict:
    r = http_session(box).post(
        f"{box.url}/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": DEMO_CRM_CLIENT_ID,
            "client_secret": DEMO_CRM_CLIENT_SECRET,
        },
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return r.json()


def connect(box) -> Salesforce:
    grant = token(box)
    return Salesforce(
        instance_url=grant["instance_url"], session_id=grant["access_token"], version=VERSION, session=http_session(box)
    )


@pytest.fixture
def sf(box) -> Salesforce:
    return connect(box)


def api_usage(box) -> int:
    return http_session(box).get(f"{box.url}/__sandbox/api-usage", timeout=10).json()["used"]


def test_the_oauth_token_gives_the_https_instance_simple_salesforce_calls(box, sf):
    assert token(box)["instance_url"] == box.url
    assert sf.base_url == f"{box.url}/services/data/v{VERSION}/"
    assert sf.Account.get(S.ACME_ACCOUNT_ID)["Name"] == "Acme Analytics Inc."


def test_query_pages_with_query_more_and_query_all(sf):
    soql = f"SELECT Id, Name FROM OpportunityLineItem WHERE OpportunityId = '{S.ACME_OPPORTUNITY_ID}' ORDER BY Id"
    paged = {"Sforce-Query-Options": "batchSize=2"}
    first = sf.query(soql, headers=paged)
    assert (first["totalSize"], first["done"], len(first["records"])) == (3, False, 2)
    url = first["nextRecordsUrl"]
    assert url.startswith(f"/services/data/v{VERSION}/query/")
    second = sf.query_more(url, identifier_is_url=True, headers=paged)
    assert second["done"] is True and "nextRecordsUrl" not in second
    ids = [r["Id"] for r in first["records"] + second["records"]]
    assert ids == list(S.ACME_RATE_LINE_IDS)
    # the locator alone, as simple-salesforce builds `…/query/{locator}` itself
    again = sf.query(soql, headers=paged)
    locator = again["nextRecordsUrl"].rsplit("/", 1)[-1]
    assert [r["Id"] for r in sf.query_more(locator, headers=paged)["records"]] == [S.ACME_RATE_LINE_IDS[2]]
    everything = sf.query_all(soql, headers=paged)
    assert [r["Id"] for r in everything["records"]] == list(S.ACME_RATE_LINE_IDS)
    assert everything["records"][0]["attributes"]["type"] == "OpportunityLineItem"


def test_count_queries(sf):
    counted = sf.query("SELECT COUNT() FROM Opportunity WHERE StageName = 'Negotiation/Review'")
    assert counted["totalSize"] == len(S.DEMO_CLOSE_OPPORTUNITY_IDS) + 1 and counted["records"] == []
    aggregate = sf.query("SELECT COUNT(Tax_Id__c) taxed FROM Account")["records"]
    assert aggregate == [
        {"attributes": {"type": "AggregateResult"}, "taxed": len(S.SEED_ACCOUNTS) - 1}  # Helix has no tax ID
    ]


def test_every_call_counts_once_against_the_daily_limit(box, sf):
    before = api_usage(box)
    sf.query("SELECT Id FROM Account LIMIT 1")  # GET …/query/?q=… with the trailing slash
    sf.Account.metadata()  # GET …/sobjects/Account/
    assert api_usage(box) == before + 2
    limits = sf.limits()
    used = api_usage(box)
    assert limits["DailyApiRequests"] == {"Max": 15000, "Remaining": 15000 - used}
    assert sf.api_usage["api-usage"].used == used and sf.api_usage["api-usage"].total == 15000
    assert {"DataStorageMB", "FileStorageMB", "DailyBulkApiBatches"} <= set(limits)


def test_get_and_get_by_external_id(sf):
    created = sf.Account.create({"Name": "Contract Co", "External_Id__c": "CT-GET-1", "Region__c": "UK"})
    assert created["success"] is True
    by_id = sf.Account.get(created["id"])
    by_ext = sf.Account.get_by_custom_id("External_Id__c", "CT-GET-1")
    assert by_ext == by_id
    assert by_ext["attributes"] == {
        "type": "Account",
        "url": f"/services/data/v{VERSION}/sobjects/Account/{created['id']}",
    }
    assert sf.Account.get_by_custom_id("External_Id__c", "ct-get-1")["Id"] == created["id"]  # case-insensitive
    assert sf.Account.get(created["id"][:15])["Id"] == created["id"]  # 15-character IDs too


def test_update_and_upsert_by_external_id(sf):
    assert sf.Account.upsert("External_Id__c/CT-UPS-1", {"Name": "Upserted Ltd"}) == 201
    record = sf.Account.get_by_custom_id("External_Id__c", "CT-UPS-1")
    assert sf.Account.upsert("External_Id__c/CT-UPS-1", {"Legal_Name__c": "Upserted Limited"}) == 200
    assert sf.Account.update(record["Id"], {"BillingCity": "Leeds"}) == 204
    got = sf.Account.get(record["Id"])
    assert (got["Name"], got["Legal_Name__c"], got["BillingCity"]) == ("Upserted Ltd", "Upserted Limited", "Leeds")
    sf.Account.create({"Name": "Twin A", "External_Id__c": "CT-TWIN"})
    sf.Account.create({"Name": "Twin B", "External_Id__c": "CT-TWIN"})
    with pytest.raises(SalesforceMoreThanOneRecord) as many:
        sf.Account.upsert("External_Id__c/CT-TWIN", {"Name": "Which?"})
    assert len(many.value.content) == 2
    with pytest.raises(SalesforceMoreThanOneRecord):
        sf.Account.get_by_custom_id("External_Id__c", "CT-TWIN")


def test_describe_global_and_sobject(sf):
    names = {o["name"] for o in sf.describe()["sobjects"]}
    assert set(REQUIRED_FIELDS) <= names
    info = sf.Opportunity.metadata()
    assert info["objectDescribe"]["keyPrefix"] == "006" and info["recentItems"] == []
    described = sf.Opportunity.describe()
    fields = {f["name"]: f for f in described["fields"]}
    assert set(REQUIRED_FIELDS["Opportunity"]) <= set(fields)
    billing = fields["Billing_Model__c"]
    assert (billing["type"], billing["custom"], billing["restrictedPicklist"]) == ("picklist", True, True)
    assert [(p["value"], p["active"]) for p in billing["picklistValues"]] == [
        ("Time and Materials", True),
        ("Fixed Fee", True),
        ("Retainer", True),
    ]
    assert "Closed Won" in [p["value"] for p in fields["StageName"]["picklistValues"]]
    assert (fields["ERP_Project_Id__c"]["type"], fields["ERP_Project_Id__c"]["length"]) == ("string", 40)
    assert fields["AccountId"]["referenceTo"] == ["Account"]
    assert (fields["Amount"]["precision"], fields["Amount"]["scale"]) == (18, 2)


def test_deleted_records_are_gone_from_query_and_in_query_all(sf):
    account = sf.Account.create({"Name": "Short-lived GmbH"})["id"]
    opp = sf.Opportunity.create(
        {"Name": "Short deal", "AccountId": account, "StageName": "Prospecting", "CloseDate": "2026-12-31"}
    )["id"]
    assert sf.Account.delete(account) == 204
    soql = f"SELECT Id, IsDeleted FROM Opportunity WHERE AccountId = '{account}'"
    assert sf.query(soql)["totalSize"] == 0
    # the account's opportunities went to the recycle bin with it
    assert sf.query_all(soql, include_deleted=True)["records"] == [
        {
            "attributes": {"type": "Opportunity", "url": f"/services/data/v{VERSION}/sobjects/Opportunity/{opp}"},
            "Id": opp,
            "IsDeleted": True,
        }
    ]
    with pytest.raises(SalesforceResourceNotFound) as gone:
        sf.Account.get(account)
    assert gone.value.content == [{"message": "entity is deleted", "errorCode": "ENTITY_IS_DELETED"}]


def test_errors_map_to_simple_salesforce_exceptions(box, sf):
    with pytest.raises(SalesforceResourceNotFound) as missing:
        sf.Account.get(S.ACME_OPPORTUNITY_ID)  # an opportunity ID is not an account
    assert missing.value.content[0]["errorCode"] == "NOT_FOUND"
    with pytest.raises(SalesforceResourceNotFound):
        sf.Widget__c.describe()
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.get_by_custom_id("External_Id__c", "NO-SUCH-KEY")
    with pytest.raises(SalesforceMalformedRequest) as malformed:
        sf.query("SELECT Id FROM Account WHERE")
    assert malformed.value.content[0]["errorCode"] == "MALFORMED_QUERY"
    with pytest.raises(SalesforceMalformedRequest) as bad_field:
        sf.Account.update(S.ACME_ACCOUNT_ID, {"Colour__c": "blue"})
    assert bad_field.value.content == [
        {
            "message": "No such column 'Colour__c' on sobject of type Account",
            "errorCode": "INVALID_FIELD",
            "fields": ["Colour__c"],
        }
    ]
    with pytest.raises(SalesforceMalformedRequest) as too_long:
        sf.Account.update(S.ACME_ACCOUNT_ID, {"BillingCity": "x" * 41})
    assert too_long.value.content[0]["errorCode"] == "STRING_TOO_LONG"
    with pytest.raises(SalesforceMalformedRequest) as bad_type:
        sf.query("SELECT Id FROM Widget__c")
    assert bad_type.value.content[0]["errorCode"] == "INVALID_TYPE"
    # an expired session: 401 INVALID_SESSION_ID
    stale = connect(box)
    assert http_session(box).post(f"{box.url}/__sandbox/tokens/revoke", timeout=10).status_code == 200
    with pytest.raises(SalesforceExpiredSession):
        stale.query("SELECT Id FROM Account LIMIT 1")
