"""Salesforce Outbound Messages: parse the SOAP notification, build the ack and SOAP faults.

Vendor facts (Salesforce "Outbound Messaging" docs):
- Salesforce POSTs a SOAP 1.1 envelope (`Content-Type: text/xml`) whose body holds one
  `notifications` element (namespace `http://soap.sforce.com/2005/09/outbound`) with
  `OrganizationId`, `ActionId`, `SessionId`, `EnterpriseUrl`, `PartnerUrl` and 1 to 100
  `Notification`s. Each has its own `Id` and an `sObject` with `xsi:type="sf:Opportunity"`
  whose fields are in the namespace `urn:sobject.enterprise.soap.sforce.com` (`sf:Id`, ...).
- Messages are unsigned and delivered at least once: Salesforce retries (for up to 24 hours)
  until it receives exactly the `notificationsResponse` with `<Ack>true</Ack>`. So a
  receiver must check `OrganizationId`, and treat a redelivery as a no-op.
- Record IDs are 15 characters (case-sensitive) or 18 characters (the 15 plus a 3-character
  case checksum). Opportunity IDs start with the key prefix `006`.
- The `sObject` carries the fields the outbound message definition selects (here `StageName`,
  `IsWon`, `IsClosed`, `Name`, `AccountId` when the sender includes them), with their values at
  the time the rule fired, as text; an empty field is omitted or sent as `xsi:nil="true"`.
  They are kept as they arrived (`OutboundNotification.fields`), so a receiver can decide per
  notification (e.g. start only for Closed Won) without reading the CRM.

Everything here is pure (no I/O) so it can be unit tested and reused (e.g. the CRM sandbox
can send real Outbound Messages with `build_outbound_message`).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
SOBJECT_NS = "urn:sobject.enterprise.soap.sforce.com"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
MAX_NOTIFICATIONS = 100
OPPORTUNITY_KEY_PREFIX = "006"

ACK_XML = (
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    "<soapenv:Body>"
    '<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    "<Ack>true</Ack>"
    "</notificationsResponse>"
    "</soapenv:Body>"
    "</soapenv:Envelope>"
)

_ID_RE = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Z0-5]{3})?$")
# a notification Id is the key redeliveries are recognised by (the ledger stores it): an
# alphanumeric Salesforce ID, nothing longer
_NOTIFICATION_ID_RE = re.compile(r"^[A-Za-z0-9]{15,18}$")
_CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


class OutboundMessageError(ValueError):
    """The request is not a valid Outbound Message (answer 400 with a SOAP fault)."""


@dataclass(frozen=True)
class OutboundNotification:
    notification_id: str
    object_type: str
    record_id: str  # always the 18-character form
    # every sObject field but Id, by its local name, as sent (None for xsi:nil / empty)
    fields: dict[str, str | None] = field(default_factory=dict, hash=False, compare=True)

    @property
    def stage_name(self) -> str | None:
        """`StageName` as sent, or None when the definition does not select it (then ask the CRM)."""
        return self.fields.get("StageName")


@dataclass(frozen=True)
class OutboundMessage:
    organization_id: str
    action_id: str | None
    notifications: list[OutboundNotification]

    @property
    def opportunity_ids(self) -> list[str]:
        """Distinct opportunity IDs, in message order."""
        return list(dict.fromkeys(n.record_id for n in self.notifications))

    def latest(self) -> dict[str, OutboundNotification]:
        """One notification per opportunity, in first-seen order: the last one in the message,
        which carries the latest field values this message knows (Salesforce batches pending
        notifications in the order they were queued)."""
        last = {n.record_id: n for n in self.notifications}
        return {opp: last[opp] for opp in self.opportunity_ids}


# ---- Salesforce IDs ------------------------------------------------------------------------


def id_checksum(id15: str) -> str:
    """The 3-character suffix of an 18-character ID: one bit per uppercase letter, 5 chars a block."""
    suffix = ""
    for block in range(3):
        chunk = id15[block * 5 : block * 5 + 5]
        bits = sum(1 << i for i, ch in enumerate(chunk) if "A" <= ch <= "Z")
        suffix += _CHECKSUM_ALPHABET[bits]
    return suffix


def to_18(record_id: str) -> str:
    """The 18-character form of a 15- or 18-character ID (raises OutboundMessageError if invalid)."""
    if not isinstance(record_id, str) or not _ID_RE.match(record_id):
        raise OutboundMessageError(f"'{record_id}' is not a 15- or 18-character Salesforce ID")
    if len(record_id) == 15:
        return record_id + id_checksum(record_id)
    if record_id[15:] != id_checksum(record_id[:15]):
        raise OutboundMessageError(f"'{record_id}' has a wrong 18-character ID checksum")
    return record_id


def is_salesforce_id(record_id: str) -> bool:
    try:
        to_18(record_id)
    except OutboundMessageError:
        return False
    return True


# ---- parsing -------------------------------------------------------------------------------


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _text(parent: Element, ns: str, tag: str) -> str | None:
    el = parent.find(_q(ns, tag))
    if el is None or el.text is None:
        return None
    return el.text.strip() or None


def parse_outbound_message(body: bytes | str) -> OutboundMessage:
    """Parse and fully validate an Outbound Message; raise OutboundMessageError on any problem.

    Validation is complete before returning, so a caller can act on all notifications or none.
    """
    if not body:
        raise OutboundMessageError("empty request body")
    try:
        root = SafeET.fromstring(body)
    except DefusedXmlException as err:
        raise OutboundMessageError(f"forbidden XML construct: {type(err).__name__}") from None
    except SafeET.ParseError as err:
        raise OutboundMessageError(f"malformed XML: {err}") from None
    if root.tag != _q(SOAP_ENV_NS, "Envelope"):
        raise OutboundMessageError("not a SOAP 1.1 Envelope")
    soap_body = root.find(_q(SOAP_ENV_NS, "Body"))
    if soap_body is None:
        raise OutboundMessageError("SOAP Envelope has no Body")
    notifications_el = soap_body.find(_q(OUTBOUND_NS, "notifications"))
    if notifications_el is None:
        raise OutboundMessageError("SOAP Body has no Outbound Message 'notifications' element")
    org_id = _text(notifications_el, OUTBOUND_NS, "OrganizationId")
    if not org_id:
        raise OutboundMessageError("OrganizationId is missing")
    action_id = _text(notifications_el, OUTBOUND_NS, "ActionId")
    items = notifications_el.findall(_q(OUTBOUND_NS, "Notification"))
    if not items:
        raise OutboundMessageError("no Notification in the message")
    if len(items) > MAX_NOTIFICATIONS:
        raise OutboundMessageError(f"{len(items)} notifications: at most {MAX_NOTIFICATIONS} are allowed")
    parsed = [_parse_notification(i, item) for i, item in enumerate(items, start=1)]
    return OutboundMessage(organization_id=org_id, action_id=action_id, notifications=parsed)


def _parse_notification(position: int, item: Element) -> OutboundNotification:
    where = f"Notification {position}"
    notification_id = _text(item, OUTBOUND_NS, "Id") or ""
    if notification_id and not _NOTIFICATION_ID_RE.match(notification_id):
        raise OutboundMessageError(f"{where}: notification Id is not a Salesforce ID")
    sobject = item.find(_q(OUTBOUND_NS, "sObject"))
    if sobject is None:
        raise OutboundMessageError(f"{where}: sObject is missing")
    xsi_type = sobject.get(_q(XSI_NS, "type"), "")
    object_type = xsi_type.rsplit(":", 1)[-1]
    if object_type != "Opportunity":
        raise OutboundMessageError(f"{where}: sObject type '{xsi_type}' is not sf:Opportunity")
    record_id = _text(sobject, SOBJECT_NS, "Id")
    if not record_id:
        raise OutboundMessageError(f"{where}: sf:Id is missing")
    try:
        record_id = to_18(record_id)
    except OutboundMessageError as err:
        raise OutboundMessageError(f"{where}: {err}") from None
    if not record_id.startswith(OPPORTUNITY_KEY_PREFIX):
        raise OutboundMessageError(f"{where}: '{record_id}' is not an Opportunity ID (prefix 006)")
    return OutboundNotification(
        notification_id=notification_id, object_type=object_type, record_id=record_id, fields=_sobject_fields(sobject)
    )


def _sobject_fields(sobject: Element) -> dict[str, str | None]:
    """The sObject's fields but Id, by local name; nil or blank values are None."""
    fields: dict[str, str | None] = {}
    for child in sobject:
        if not isinstance(child.tag, str) or not child.tag.startswith(f"{{{SOBJECT_NS}}}"):
            continue
        name = child.tag.rsplit("}", 1)[-1]
        if name == "Id":
            continue
        nil = (child.get(_q(XSI_NS, "nil")) or "").strip().lower() == "true"
        text = None if nil or child.text is None else (child.text.strip() or None)
        fields[name] = text
    return fields


# ---- responses -----------------------------------------------------------------------------


def ack_response() -> str:
    """The exact acknowledgement Salesforce waits for before it stops redelivering."""
    return ACK_XML


def soap_fault(message: str, *, code: str = "soapenv:Client") -> str:
    """A SOAP 1.1 Fault (`soapenv:Client` for the sender's fault, `soapenv:Server` for ours)."""
    return (
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV_NS}">'
        "<soapenv:Body><soapenv:Fault>"
        f"<faultcode>{escape(code)}</faultcode>"
        f"<faultstring>{escape(message)}</faultstring>"
        "</soapenv:Fault></soapenv:Body>"
        "</soapenv:Envelope>"
    )


# ---- building (tests, sandbox) -------------------------------------------------------------


def new_notification_id() -> str:
    """A random 18-character notification ID (prefix 04l)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return to_18("04l" + "".join(secrets.choice(alphabet) for _ in range(12)))


def build_outbound_message(
    org_id: str,
    notifications: list[str] | list[tuple[str, str]],
    *,
    action_id: str = "04k5e000000Q2CDAAA",
    object_type: str = "Opportunity",
    extra_fields: dict[str, str | None] | None = None,
    enterprise_url: str = "https://example.my.salesforce.com/services/Soap/c/60.0",
) -> str:
    """An Outbound Message as Salesforce sends it.

    `notifications` is a list of record IDs (each gets a new random notification Id, as every
    notification Salesforce queues has its own), or of (notification_id, record_id) pairs.
    `extra_fields` are added to every sObject (default: Closed Won); a None value is sent as
    `xsi:nil="true"`, `{}` sends the Id alone (a definition that selects no other field).
    """
    fields = extra_fields if extra_fields is not None else {"StageName": "Closed Won", "IsWon": "true"}
    parts = []
    for entry in notifications:
        notification_id, record_id = entry if isinstance(entry, tuple) else (new_notification_id(), entry)
        field_xml = "".join(
            f'<sf:{escape(k)} xsi:nil="true"/>' if v is None else f"<sf:{escape(k)}>{escape(v)}</sf:{escape(k)}>"
            for k, v in fields.items()
        )
        parts.append(
            "<Notification>"
            f"<Id>{escape(notification_id)}</Id>"
            f'<sObject xsi:type="sf:{escape(object_type)}" xmlns:sf="{SOBJECT_NS}">'
            f"<sf:Id>{escape(record_id)}</sf:Id>{field_xml}"
            "</sObject>"
            "</Notification>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV_NS}" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        f'xmlns:xsi="{XSI_NS}">'
        "<soapenv:Body>"
        f'<notifications xmlns="{OUTBOUND_NS}">'
        f"<OrganizationId>{escape(org_id)}</OrganizationId>"
        f"<ActionId>{escape(action_id)}</ActionId>"
        '<SessionId xsi:nil="true"/>'
        f"<EnterpriseUrl>{escape(enterprise_url)}</EnterpriseUrl>"
        f"<PartnerUrl>{escape(enterprise_url.replace('/c/', '/u/'))}</PartnerUrl>"
        + "".join(parts)
        + "</notifications></soapenv:Body></soapenv:Envelope>"
    )
