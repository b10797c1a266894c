"""Salesforce Outbound Message parsing, ack and fault (pure functions)."""

from __future__ import annotations

import pytest
from defusedxml.ElementTree import fromstring

from q2c.webhook.outbound_message import (
    ACK_XML,
    OutboundMessageError,
    ack_response,
    build_outbound_message,
    id_checksum,
    parse_outbound_message,
    soap_fault,
    to_18,
)

ORG = "00D5e000000Q2CDEMO"
OPP_A = "0065e00000ABCDEFGH"[:15]
OPP_B = "0065e00000Zyxwvut"[:15]


def test_id_checksum_known_values():
    # 001000000000001 is all digits: no uppercase bits -> AAA
    assert to_18("001000000000001") == "001000000000001AAA"
    # one uppercase letter in the first position of block 1 -> bit 0 -> 'B'
    assert id_checksum("A00000000000000") == "BAA"
    assert id_checksum("AAAAAAAAAAAAAAA") == "555"
    assert to_18(to_18(OPP_A)) == to_18(OPP_A)


@pytest.mark.parametrize(
    "bad", ["", "006", "0065e00000ABCDEF!", "0065e00000ABCDEFGHX", "001000000000001AAB", "001000000000001aaa"]
)
def test_to_18_rejects(bad):
    with pytest.raises(OutboundMessageError):
        to_18(bad)


def test_parse_two_notifications_normalises_and_dedupes():
    a18, b18 = to_18(OPP_A), to_18(OPP_B)
    xml = build_outbound_message(ORG, [OPP_A, b18, a18])
    msg = parse_outbound_message(xml.encode())
    assert msg.organization_id == ORG
    assert msg.action_id
    assert [n.record_id for n in msg.notifications] == [a18, b18, a18]
    assert msg.opportunity_ids == [a18, b18]
    assert all(n.object_type == "Opportunity" for n in msg.notifications)


def test_parse_real_salesforce_shape_with_other_prefixes():
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>{ORG}</OrganizationId>
   <ActionId>04k5e000000AbCdAAA</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://x.my.salesforce.com/services/Soap/c/60.0/00D</EnterpriseUrl>
   <PartnerUrl>https://x.my.salesforce.com/services/Soap/u/60.0/00D</PartnerUrl>
   <Notification>
    <Id>04l5e00000AbCdEAAU</Id>
    <sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>{to_18(OPP_A)}</sf:Id>
     <sf:StageName>Closed Won</sf:StageName>
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>"""
    assert parse_outbound_message(xml).opportunity_ids == [to_18(OPP_A)]


@pytest.mark.parametrize(
    "body,needle",
    [
        (b"", "empty"),
        (b"<not-xml", "malformed"),
        (b"<a/>", "Envelope"),
        (b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body/></e:Envelope>', "notifications"),
        (build_outbound_message(ORG, []).encode(), "no Notification"),
        (build_outbound_message(ORG, [OPP_A] * 101).encode(), "at most 100"),
        (build_outbound_message("", [OPP_A]).encode(), "OrganizationId"),
        (build_outbound_message(ORG, [OPP_A], object_type="Account").encode(), "not sf:Opportunity"),
        (build_outbound_message(ORG, [OPP_A, ""]).encode(), "Notification 2: sf:Id is missing"),
        (build_outbound_message(ORG, [OPP_A, "0015e00000ABCDE"]).encode(), "not an Opportunity ID"),
        (build_outbound_message(ORG, ["006BAD"]).encode(), "15- or 18-character"),
    ],
)
def test_parse_rejects(body, needle):
    with pytest.raises(OutboundMessageError) as err:
        parse_outbound_message(body)
    assert needle in str(err.value)


def test_parse_rejects_entity_expansion():
    bomb = b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><lolz>&lol2;</lolz>'
    with pytest.raises(OutboundMessageError, match="forbidden XML"):
        parse_outbound_message(bomb)


def test_hundred_notifications_accepted():
    ids = [to_18(f"0065e00000{i:05d}") for i in range(100)]
    assert len(parse_outbound_message(build_outbound_message(ORG, ids)).notifications) == 100


def test_ack_is_exact():
    assert (
        ack_response()
        == ACK_XML
        == (
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
            '<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>true</Ack>'
            "</notificationsResponse></soapenv:Body></soapenv:Envelope>"
        )
    )


def test_soap_fault_is_wellformed_and_escaped():
    root = fromstring(soap_fault("bad <thing> & more"))
    ns = "{http://schemas.xmlsoap.org/soap/envelope/}"
    fault = root.find(f"{ns}Body/{ns}Fault")
    assert fault.findtext("faultcode") == "soapenv:Client"
    assert fault.findtext("faultstring") == "bad <thing> & more"


def test_sobject_fields_are_kept_and_the_last_notification_of_a_deal_is_its_latest():
    a18, b18 = to_18(OPP_A), to_18(OPP_B)
    xml = build_outbound_message(
        ORG,
        [a18, b18],
        extra_fields={"StageName": "Negotiation/Review", "IsWon": "false", "Name": " R&D <1> ", "AccountId": None},
    )
    msg = parse_outbound_message(xml)
    first = msg.notifications[0]
    assert first.stage_name == "Negotiation/Review"
    assert first.fields == {
        "StageName": "Negotiation/Review",
        "IsWon": "false",
        "Name": "R&D <1>",
        "AccountId": None,
    }  # xsi:nil is None, text trimmed, Id not repeated
    # a definition that selects no StageName: the receiver must ask the CRM
    assert (
        parse_outbound_message(build_outbound_message(ORG, [a18], extra_fields={})).notifications[0].stage_name is None
    )
    # the same deal twice: the later notification wins, first-seen order kept
    twice = build_outbound_message(ORG, [a18, b18, a18])
    head, tail = twice.rsplit("<sf:StageName>Closed Won</sf:StageName>", 1)
    latest = parse_outbound_message(head + "<sf:StageName>Closed Lost</sf:StageName>" + tail).latest()
    assert list(latest) == [a18, b18]
    assert latest[a18].stage_name == "Closed Lost" and latest[b18].stage_name == "Closed Won"


def test_crm_sandbox_sends_the_stage_and_its_flags():
    """The CRM sandbox's sender and this parser agree on the sObject fields."""
    from sandboxes.crm.outbound import build_envelope

    xml = build_envelope(
        organization_id=ORG,
        instance_url="https://x.invalid",
        notifications=[
            (
                "04l5e00000AbCdEAAU",
                {"Id": to_18(OPP_A), "Name": "Deal", "StageName": "Closed Won", "AccountId": "0015e00000ABCDEAAA"},
            ),
            (
                "04l5e00000AbCdFAAU",
                {"Id": to_18(OPP_B), "Name": "Other", "StageName": "Prospecting", "AccountId": None},
            ),
        ],
    )
    a, b = parse_outbound_message(xml).notifications
    assert a.fields == {
        "Name": "Deal",
        "AccountId": "0015e00000ABCDEAAA",
        "StageName": "Closed Won",
        "IsClosed": "true",
        "IsWon": "true",
    }
    assert b.fields == {"Name": "Other", "StageName": "Prospecting", "IsClosed": "false", "IsWon": "false"}


def test_notification_ids_are_unique_and_must_look_like_salesforce_ids():
    """The notification Id is what a redelivery is recognised by (the ledger keeps it): each
    built notification gets its own, and the parser refuses anything but an alphanumeric ID."""
    msg = parse_outbound_message(build_outbound_message(ORG, [OPP_A, OPP_A]))
    first, second = (n.notification_id for n in msg.notifications)
    assert first != second and first.startswith("04l") and len(first) == 18
    for bad in ("04l-not-an-id", "x" * 300, "04l5e00000AbCd"):
        with pytest.raises(OutboundMessageError, match="notification Id"):
            parse_outbound_message(build_outbound_message(ORG, [(bad, OPP_A)]))
