"""What q2c needs in a Salesforce org, stated three times, kept identical.

`REQUIRED_FIELDS` / `REQUIRED_PICKLIST_VALUES` (q2c/vendors/salesforce/mapping.py) say what the
connector reads and writes; the Salesforce DX source in deploy/salesforce is what an admin
deploys; the CRM sandbox's describe (over real HTTP, through the connector) is the org the
tests run against. A field added to one and not the others fails here, not at go-live.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest
from defusedxml import ElementTree

from q2c.vendors.salesforce.mapping import (
    OUTBOUND_MESSAGE_FIELDS,
    REQUIRED_FIELDS,
    REQUIRED_PICKLIST_VALUES,
    WRITTEN_FIELDS,
    OrgGap,
    org_gaps,
)
from sandboxes.crm import ids, outbound, store
from sandboxes.crm.schema import SANDBOX_ONLY_FIELDS

ROOT = Path(__file__).resolve().parents[2] / "deploy" / "salesforce"
SOURCE = ROOT / "force-app" / "main" / "default"
MD = {"md": "http://soap.sforce.com/2006/04/metadata"}
# DX field type -> the type describe reports
DESCRIBE_TYPES = {"Text": "string", "Picklist": "picklist", "Currency": "currency", "Number": "double", "Date": "date"}


def _text(el, tag: str) -> str | None:
    return el.findtext(f"md:{tag}", namespaces=MD)


def dx_fields() -> dict[tuple[str, str], dict]:
    """(object, field) -> the field's deployable definition, from the DX source."""
    out = {}
    for path in sorted(SOURCE.glob("objects/*/fields/*.field-meta.xml")):
        root = ElementTree.parse(path).getroot()
        sobject, name = path.parts[-3], _text(root, "fullName")
        assert path.name == f"{name}.field-meta.xml", path
        values = [v.findtext("md:fullName", namespaces=MD) for v in root.iterfind(".//md:value", MD)]
        out[(sobject, name)] = {
            "type": DESCRIBE_TYPES[_text(root, "type")],
            "label": _text(root, "label"),
            "length": int(_text(root, "length") or 0),
            "precision": int(_text(root, "precision") or 0),
            "scale": int(_text(root, "scale") or 0),
            "external_id": _text(root, "externalId") == "true",
            "values": tuple(values),
            "restricted": root.findtext("md:valueSet/md:restricted", namespaces=MD) == "true",
        }
    return out


def required_custom() -> set[tuple[str, str]]:
    return {(s, f) for s, fields in REQUIRED_FIELDS.items() for f in fields if f.endswith("__c")}


@pytest.fixture(scope="module")
def describes(crm_sandbox):
    """The sandbox org's describe of each object q2c uses, read by the connector over HTTP."""

    async def read():
        async with crm_sandbox.client() as client:
            return {sobject: await client.describe(sobject) for sobject in REQUIRED_FIELDS}

    return asyncio.run(read())


def test_dx_source_deploys_exactly_the_custom_fields_q2c_needs():
    assert set(dx_fields()) == required_custom()


def test_sandbox_describe_has_the_same_custom_fields_as_the_dx_source(describes):
    dx = dx_fields()
    described = {
        (sobject, f.name): f
        for sobject, d in describes.items()
        for f in d.fields
        if f.custom and (sobject, f.name) not in SANDBOX_ONLY_FIELDS
    }
    assert set(described) == set(dx) == required_custom()
    for key, want in dx.items():
        got = described[key]
        assert (got.type, got.label, got.external_id) == (want["type"], want["label"], want["external_id"]), key
        if want["type"] == "string":
            assert got.length == want["length"], key
        if want["type"] in ("currency", "double"):
            assert (got.precision, got.scale) == (want["precision"], want["scale"]), key
        assert tuple(v.value for v in got.picklist_values) == want["values"], key
        assert got.restricted_picklist == want["restricted"], key


def test_the_sandbox_org_has_everything_q2c_needs(describes):
    assert org_gaps(describes) == []
    for sobject, fields in REQUIRED_FIELDS.items():
        assert set(fields) <= set(describes[sobject].field_names), sobject
    for (sobject, name), values in REQUIRED_PICKLIST_VALUES.items():
        assert set(values) <= set(describes[sobject].field(name).active_values), (sobject, name)
        dx = dx_fields().get((sobject, name))
        if dx is not None:  # custom picklists: the deployed values include them too
            assert set(values) <= set(dx["values"]), (sobject, name)


def test_org_gaps_name_a_missing_field_object_picklist_value_and_read_only_field(describes):
    opportunity = describes["Opportunity"]
    without = dataclasses.replace(opportunity, fields=tuple(f for f in opportunity.fields if f.name != "Q2C_Status__c"))
    stage = opportunity.field("StageName")
    lost_only = dataclasses.replace(
        stage, picklist_values=tuple(v for v in stage.picklist_values if v.value != "Closed Won")
    )
    read_only = dataclasses.replace(opportunity.field("ERP_Project_Id__c"), updateable=False)
    changed = tuple(
        lost_only if f.name == "StageName" else read_only if f.name == "ERP_Project_Id__c" else f
        for f in without.fields
    )
    gaps = org_gaps({**describes, "Opportunity": dataclasses.replace(opportunity, fields=changed), "Account": None})
    assert gaps == [
        OrgGap("Account", "", "object"),
        OrgGap("Opportunity", "ERP_Project_Id__c", "writable field"),
        OrgGap("Opportunity", "Q2C_Status__c", "field"),
        OrgGap("Opportunity", "StageName", "picklist value", "Closed Won"),
    ]
    assert str(gaps[3]) == "Opportunity.StageName: picklist value 'Closed Won' is missing or inactive"


def workflow() -> ElementTree.Element:
    return ElementTree.parse(SOURCE / "workflows" / "Opportunity.workflow-meta.xml").getroot()


def test_outbound_message_selects_what_the_webhook_reads_and_the_sandbox_sends():
    message = workflow().find("md:outboundMessages", MD)
    fields = tuple(f.text for f in message.iterfind("md:fields", MD))
    assert fields == OUTBOUND_MESSAGE_FIELDS == outbound.SELECTED_FIELDS
    assert _text(message, "includeSessionId") == "false"
    assert _text(message, "endpointUrl").endswith("/webhooks/salesforce/outbound")
    rule = workflow().find("md:rules", MD)
    action = rule.find("md:actions", MD)
    assert (_text(action, "name"), _text(action, "type")) == (_text(message, "fullName"), "OutboundMessage")
    assert _text(rule, "active") == "true" and _text(rule, "triggerType") == "onAllChanges"
    formula = _text(rule, "formula")
    # the same triggers as the sandbox's workflow rule: Closed Won, and a change order on a won deal
    for name in ("IsWon", "ISNEW()", "ISCHANGED(StageName)", *(f"ISCHANGED({f})" for f in store.CHANGE_ORDER_FIELDS)):
        assert name in formula, name


def test_sandbox_outbound_message_lists_the_fields_in_wsdl_order():
    """Id (from the base sObject type) first, then the selected fields sorted by name."""
    envelope = outbound.build_envelope(
        organization_id="00D5e0000000001EAA",
        instance_url="https://example.my.salesforce.com",
        notifications=[
            (
                "04l5e0000000001AAA",
                {
                    "StageName": "Closed Won",
                    "Name": "Deal",
                    "AccountId": "0015e0000000001AAA",
                    "Id": ids.make_id("006", 1),
                },
            )
        ],
    )
    sobject = ElementTree.fromstring(envelope).find(".//{http://soap.sforce.com/2005/09/outbound}sObject")
    names = [child.tag.rsplit("}", 1)[-1] for child in sobject]
    assert names == ["Id", "AccountId", "IsClosed", "IsWon", "Name", "StageName"]


def test_permission_set_grants_the_integration_user_every_custom_field():
    root = ElementTree.parse(SOURCE / "permissionsets" / "Q2C_Integration.permissionset-meta.xml").getroot()
    granted = {}
    for perm in root.iterfind("md:fieldPermissions", MD):
        sobject, _, name = _text(perm, "field").partition(".")
        assert _text(perm, "readable") == "true"
        granted[(sobject, name)] = _text(perm, "editable") == "true"
    assert set(granted) == required_custom()
    assert {k for k, editable in granted.items() if editable} == {
        (s, f) for s, fields in WRITTEN_FIELDS.items() for f in fields if f.endswith("__c")
    }


def test_sfdx_project_uses_the_api_version_q2c_calls():
    project = json.loads((ROOT / "sfdx-project.json").read_text())
    assert project["packageDirectories"] == [{"path": "force-app", "default": True}]
    assert project["sourceApiVersion"] == "60.0"
    assert _text(workflow().find("md:outboundMessages", MD), "apiVersion") == project["sourceApiVersion"]
