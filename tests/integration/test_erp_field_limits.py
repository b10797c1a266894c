"""ERP field limits and what a link keeps (issue 14, item 4), against the NetSuite sandbox over
real HTTP: an over-long value is refused with NetSuite's own error and never stored shortened;
the connector never cuts a value; an upsert of an existing customer writes only the fields q2c
owns (CUSTOMER_OWNED_FIELDS), so what people entered in the ERP by hand survives."""

from __future__ import annotations

import uuid

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from q2c.domain.customer import Address, Customer
from q2c.domain.project import Subsidiary
from q2c.vendors.http import REJECTED_TYPE
from q2c.vendors.netsuite.mapping import CUSTOMER_OWNED_FIELDS, MappingError, customer_payload

R = "/services/rest/record/v1"
US = Subsidiary(subsidiary_id="1", name="Q2C Consulting Inc.", region="NA", country="US", currency="USD")
NAME_120 = ("Northwind Holdings International Consolidated Professional Services and Advisory " * 2)[:120]
VOLATILE = {"links", "dateCreated", "lastModifiedDate"}


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def body_fields(record: dict) -> dict:
    """The record's stored fields as a person would compare them (no links, no timestamps)."""
    out = {}
    for key, value in record.items():
        if key in VOLATILE:
            continue
        if isinstance(value, dict) and "links" in value:
            value = {k: v for k, v in value.items() if k != "links"}
        out[key] = value
    return out


def customer(crm_id: str, **kw) -> Customer:
    base = dict(
        crm_account_id=crm_id,
        name="Northwind Analytics",
        legal_name="Northwind Analytics LLC",
        region="NA",
        tax_id="12-3456789",
        currency="USD",
        payment_terms="Net 30",
        billing_address=Address(
            street="500 Market St", city="San Francisco", state="CA", postal_code="94105", country="US"
        ),
    )
    base.update(kw)
    return Customer(**base)


@pytest.fixture
def http(erp_sandbox):
    with httpx.Client(
        base_url=erp_sandbox.url, timeout=10, headers={"Authorization": f"Bearer {erp_sandbox.token()}"}
    ) as client:
        yield client


def detail(response: httpx.Response) -> dict:
    assert response.status_code == 400, response.text
    return response.json()["o:errorDetails"][0]


def test_sandbox_refuses_an_over_long_company_name_with_netsuites_error(http, erp_sandbox):
    crm_id = uid("001")
    r = http.put(f"{R}/customer/eid:{crm_id}", json={"companyName": "N" * 84, "subsidiary": {"id": "1"}})
    assert detail(r) == {
        "detail": "The field companyName contained more than the maximum number ( 83 ) of characters allowed.",
        "o:errorPath": "companyName",
        "o:errorCode": "USER_ERROR",
    }
    assert erp_sandbox.record_by_eid("customer", crm_id) is None  # nothing stored, not even shortened

    r = http.put(f"{R}/customer/eid:{crm_id}", json={"companyName": "N" * 83, "subsidiary": {"id": "1"}})
    assert r.status_code == 204, r.text
    assert erp_sandbox.record_by_eid("customer", crm_id)["companyName"] == "N" * 83


@pytest.mark.parametrize(
    ("field", "limit"), [("addr1", 150), ("addr2", 150), ("addressee", 83), ("city", 50), ("state", 30), ("zip", 36)]
)
def test_sandbox_refuses_over_long_address_fields(http, field, limit):
    address = {"country": {"id": "US"}, field: "x" * (limit + 1)}
    r = http.put(
        f"{R}/customer/eid:{uid('001')}",
        json={
            "companyName": "Addr Co",
            "subsidiary": {"id": "1"},
            "addressBook": {"items": [{"addressBookAddress": address}]},
        },
    )
    assert detail(r) == {
        "detail": f"The field {field} contained more than the maximum number ( {limit} ) of characters allowed.",
        "o:errorPath": f"addressBook.items[0].addressBookAddress.{field}",
        "o:errorCode": "USER_ERROR",
    }


def test_sandbox_refuses_over_long_phone_and_project_name(http):
    r = http.put(
        f"{R}/customer/eid:{uid('001')}", json={"companyName": "P Co", "subsidiary": {"id": "1"}, "phone": "1" * 33}
    )
    assert detail(r)["detail"] == "The field phone contained more than the maximum number ( 32 ) of characters allowed."
    r = http.put(
        f"{R}/job/eid:{uid('006')}", json={"companyName": "J" * 84, "parent": {"id": "101"}, "jobBillingType": "TM"}
    )
    assert detail(r) == {
        "detail": "The field companyName contained more than the maximum number ( 83 ) of characters allowed.",
        "o:errorPath": "companyName",
        "o:errorCode": "USER_ERROR",
    }


def test_sandbox_upsert_of_an_existing_record_keeps_what_the_request_omits(http, erp_sandbox):
    """NetSuite: the upsert updates an existing record; "Any omitted fields are considered unchanged"."""
    crm_id = uid("001")
    r = http.put(
        f"{R}/customer/eid:{crm_id}",
        json={"companyName": "Kept Co", "subsidiary": {"id": "1"}, "email": "ap@kept.example", "comments": "VIP"},
    )
    assert r.status_code == 204, r.text
    r = http.put(f"{R}/customer/eid:{crm_id}", json={"companyName": "Kept Company", "subsidiary": {"id": "1"}})
    assert r.status_code == 204, r.text
    record = erp_sandbox.record_by_eid("customer", crm_id)
    assert (record["companyName"], record["email"], record["comments"]) == ("Kept Company", "ap@kept.example", "VIP")
    r = http.patch(f"{R}/customer/eid:{crm_id}", json={"comments": None})  # null deletes a body field
    assert r.status_code == 204, r.text
    assert "comments" not in erp_sandbox.record_by_eid("customer", crm_id)


def test_mapping_never_cuts_a_value():
    with pytest.raises(MappingError) as err:
        customer_payload(customer("001X", legal_name=NAME_120), US, "1", None)
    assert err.value.field == "customer.legal_name"
    assert "is 120 characters; the ERP's customer companyName holds at most 83" in str(err.value)
    street = "S" * 151
    with pytest.raises(MappingError) as err:
        customer_payload(
            customer("001X", billing_address=Address(street=street, city="SF", postal_code="94105", country="US")),
            US,
            "1",
            None,
        )
    assert err.value.field == "customer.billing_address.street" and "at most 150" in str(err.value)
    payload = customer_payload(customer("001X", legal_name="L" * 83), US, "1", "2")
    assert payload["companyName"] == "L" * 83 and set(payload) == set(CUSTOMER_OWNED_FIELDS)


async def test_connector_refuses_an_over_long_name_before_writing(erp_client, erp_sandbox):
    crm_id = uid("001")
    with pytest.raises(ApplicationError) as err:
        await erp_client.upsert_customer(customer(crm_id, legal_name=NAME_120), US)
    assert err.value.type == REJECTED_TYPE and err.value.non_retryable
    assert err.value.details[0]["errors"][0]["fields"] == ["customer.legal_name"]
    assert erp_sandbox.record_by_eid("customer", crm_id) is None


async def test_linking_an_existing_customer_keeps_its_hand_entered_fields(erp_client, erp_sandbox, http):
    """A customer someone created in the ERP with the CRM account ID as its external ID (a
    migration, a hand link): q2c's upsert writes its own fields and keeps entityId, email,
    phone and comments exactly as they were."""
    crm_id = uid("001")
    r = http.post(
        f"{R}/customer",
        json={
            "externalId": crm_id,
            "entityId": "CUST-NW-0042",
            "companyName": "Northwind (entered by AR)",
            "subsidiary": {"id": "1"},
            "email": "ap@northwind.example",
            "phone": "+1 415 555 0100",
            "comments": "Invoices by email only; PO required",
        },
    )
    assert r.status_code == 204, r.text
    existing_id = r.headers["Location"].rsplit("/", 1)[-1]

    linked = await erp_client.upsert_customer(customer(crm_id), US)
    assert linked == existing_id
    assert await erp_client.upsert_customer(customer(crm_id), US) == existing_id  # a retry changes nothing

    record = body_fields(erp_sandbox.record_by_eid("customer", crm_id))
    assert record == {
        "id": existing_id,
        "externalId": crm_id,
        # the ERP's own, kept
        "entityId": "CUST-NW-0042",
        "email": "ap@northwind.example",
        "phone": "+1 415 555 0100",
        "comments": "Invoices by email only; PO required",
        # q2c's (CUSTOMER_OWNED_FIELDS)
        "companyName": "Northwind Analytics LLC",
        "subsidiary": {"id": "1", "refName": "Q2C Consulting Inc."},
        "currency": {"id": "1", "refName": "US Dollar"},
        "terms": {"id": record["terms"]["id"], "refName": "Net 30"},
        "vatRegNumber": "12-3456789",
        "addressBook": record["addressBook"],
        "defaultAddress": "500 Market St\nSan Francisco CA 94105\nUnited States",
    }
    [line] = record["addressBook"]["items"]
    assert line["addressBookAddress"]["addr1"] == "500 Market St" and line["defaultBilling"] is True
    assert len([c for c in erp_sandbox.records("customer") if c.get("externalId") == crm_id]) == 1
