"""Salesforce Outbound Messages: SOAP notifications, at-least-once, until acknowledged.

Facts modelled (Salesforce "Outbound Messaging" docs):
- a workflow rule queues a notification; pending notifications for the same endpoint are
  sent together, up to 100 `<Notification>` elements in one SOAP `notifications` message;
- each message is POSTed as `text/xml` with `SOAPAction: ""`; it is delivered only when the
  endpoint answers HTTP 200 with `<Ack>true</Ack>`; anything else is retried with
  exponential backoff (here 0.5 s doubling up to 30 s by default) for up to 24 hours;
- messages are unsigned and may be delivered more than once (the receiver must dedupe on
  the notification `Id`). `SessionId` is nil because "Send Session ID" is off;
- the `sObject` holds the fields the outbound message definition selects, with their values
  when the rule fired. This org's definition (deploy/salesforce/.../Opportunity.workflow-meta.xml)
  selects `AccountId`, `Id`, `IsClosed`, `IsWon`, `Name`, `StageName`; the formula flags are
  derived from the stage, as Salesforce does, so a receiver can tell a Closed Won deal from any
  other without calling back. Values are written as the SOAP API writes them: booleans
  `true`/`false`, empty fields left out.
- the fields come in WSDL order: the message WSDL types the sObject as `ens:Opportunity`,
  an extension of `ens:sObject` (whose sequence is `fieldsToNull`, `Id`), whose own sequence is
  the selected fields sorted by name. So `Id` first, then the rest alphabetically; a strict
  listener generated from the WSDL (JAX-WS, .NET) rejects elements out of sequence.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from xml.sax.saxutils import escape

import httpx
from defusedxml import ElementTree
from sqlmodel import Session, select

from sandboxes.crm import ids
from sandboxes.crm.models import OutboundMessageRow, OutboundNotificationRow
from sandboxes.crm.schema import computed_fields
from sandboxes.crm.store import CrmStore, now_utc

log = logging.getLogger(__name__)

MAX_NOTIFICATIONS_PER_MESSAGE = 100
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
SOBJECT_NS = "urn:sobject.enterprise.soap.sforce.com"
API_VERSION = "60.0"
# the fields the outbound message definition selects (as the metadata lists them: sorted)
SELECTED_FIELDS = ("AccountId", "Id", "IsClosed", "IsWon", "Name", "StageName")


def wsdl_order(fields: tuple[str, ...] | list[str]) -> list[str]:
    """The sequence of the sObject's elements in the message WSDL: `Id` (from the base
    `sObject` type), then the other fields sorted by name."""
    return (["Id"] if "Id" in fields else []) + sorted(f for f in fields if f != "Id")


def sobject_fields(snapshot: dict) -> dict:
    """The selected fields of an Opportunity snapshot, in WSDL order (formula flags derived
    from the stage); empty ones are left out, fields the definition does not select are
    never sent."""
    values = dict(snapshot)
    if values.get("StageName") is not None:
        values.update(computed_fields("Opportunity", values))
    return {name: values[name] for name in wsdl_order(SELECTED_FIELDS) if values.get(name) is not None}


def soap_value(value) -> str:
    """A field value as the SOAP API writes it (xsd:boolean is lowercase)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def action_id(organization_id: str) -> str:
    """The fixed ID of the workflow outbound-message action of this org."""
    return ids.make_id(ids.ACTION_PREFIX, 1)


def build_envelope(*, organization_id: str, instance_url: str, notifications: list[tuple[str, dict]]) -> str:
    """The exact SOAP envelope Salesforce posts; `notifications` is [(notification id, sObject fields)]."""
    if not 1 <= len(notifications) <= MAX_NOTIFICATIONS_PER_MESSAGE:
        raise ValueError("a message carries 1..100 notifications")
    base = instance_url.rstrip("/")
    org15 = organization_id[:15]
    items = []
    for note_id, fields in notifications:
        sobject_xml = "".join(
            f"<sf:{name}>{escape(soap_value(value))}</sf:{name}>" for name, value in sobject_fields(fields).items()
        )
        items.append(
            f"<Notification><Id>{escape(note_id)}</Id>"
            f'<sObject xsi:type="sf:Opportunity" xmlns:sf="{SOBJECT_NS}">{sobject_xml}</sObject>'
            "</Notification>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body>"
        f'<notifications xmlns="{OUTBOUND_NS}">'
        f"<OrganizationId>{escape(organization_id)}</OrganizationId>"
        f"<ActionId>{action_id(organization_id)}</ActionId>"
        '<SessionId xsi:nil="true"/>'
        f"<EnterpriseUrl>{escape(base)}/services/Soap/c/{API_VERSION}/{escape(org15)}</EnterpriseUrl>"
        f"<PartnerUrl>{escape(base)}/services/Soap/u/{API_VERSION}/{escape(org15)}</PartnerUrl>"
        + "".join(items)
        + "</notifications></soapenv:Body></soapenv:Envelope>"
    )


ACK_RESPONSE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    f'<soapenv:Body><notificationsResponse xmlns="{OUTBOUND_NS}"><Ack>true</Ack>'
    "</notificationsResponse></soapenv:Body></soapenv:Envelope>"
)


def is_ack(status: int, body: bytes) -> bool:
    """HTTP 200 and an `Ack` element (any namespace) whose text is `true`."""
    if status != 200:
        return False
    try:
        root = ElementTree.fromstring(body)
    except Exception:
        return False
    return any(el.tag.rsplit("}", 1)[-1] == "Ack" and (el.text or "").strip().lower() == "true" for el in root.iter())


@dataclass
class OutboundConfig:
    url: str | None
    organization_id: str
    instance_url: str
    retry_initial_seconds: float = 0.5
    retry_max_seconds: float = 30.0
    max_age_seconds: float = 24 * 3600
    poll_seconds: float = 0.1
    timeout_seconds: float = 10.0


def backoff(attempts: int, initial: float, maximum: float) -> float:
    return min(maximum, initial * (2 ** max(0, attempts - 1)))


def message_view(row: OutboundMessageRow) -> dict:
    return {
        "id": row.id,
        "status": row.status,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "last_status_code": row.last_status_code,
        "created_at": row.created_at.isoformat(),
        "next_attempt_at": row.next_attempt_at.isoformat(),
        "delivered_at": row.delivered_at.isoformat() if row.delivered_at else None,
        "notification_ids": json.loads(row.notification_ids),
        "redelivery_of": row.redelivery_of,
        "payload": row.payload,
    }


class OutboundDispatcher:
    """Batches queued notifications into messages and delivers them (background task)."""

    def __init__(self, store: CrmStore, config: OutboundConfig) -> None:
        self.store = store
        self.config = config
        self._wake = asyncio.Event()
        # records whose notifications are lost: Salesforce drops a message after 24 hours of
        # failed delivery, and an admin can delete one from the outbound queue (Setup > Outbound
        # Messages: "Del"); either way the receiver never hears of it
        self.dropped_records: set[str] = set()

    # --- persistence --------------------------------------------------------------------
    def batch_pending(self) -> list[int]:
        """Group notifications not yet in a message into messages of up to 100."""
        created: list[int] = []
        with self.store.lock, Session(self.store.engine) as s:
            notes = s.exec(
                select(OutboundNotificationRow)
                .where(OutboundNotificationRow.message_id.is_(None))
                .order_by(OutboundNotificationRow.created_at, OutboundNotificationRow.id)
            ).all()
            lost = [n for n in notes if n.opportunity_id in self.dropped_records]
            notes = [n for n in notes if n.opportunity_id not in self.dropped_records]
            for n in lost:
                self._drop(s, n)
            for start in range(0, len(notes), MAX_NOTIFICATIONS_PER_MESSAGE):
                chunk = notes[start : start + MAX_NOTIFICATIONS_PER_MESSAGE]
                payload = build_envelope(
                    organization_id=self.config.organization_id,
                    instance_url=self.config.instance_url,
                    notifications=[(n.id, json.loads(n.sobject_json)) for n in chunk],
                )
                now = now_utc()
                msg = OutboundMessageRow(
                    payload=payload,
                    created_at=now,
                    next_attempt_at=now,
                    notification_ids=json.dumps([n.id for n in chunk]),
                )
                s.add(msg)
                s.flush()
                for n in chunk:
                    n.message_id = msg.id
                    s.add(n)
                created.append(msg.id)
            s.commit()
        return created

    def _drop(self, s: Session, note: OutboundNotificationRow) -> None:
        """The notification's message, already given up on: status failed, never attempted."""
        now = now_utc()
        msg = OutboundMessageRow(
            payload=build_envelope(
                organization_id=self.config.organization_id,
                instance_url=self.config.instance_url,
                notifications=[(note.id, json.loads(note.sobject_json))],
            ),
            created_at=now,
            next_attempt_at=now,
            notification_ids=json.dumps([note.id]),
            status="failed",
            last_error="dropped: removed from the outbound message queue (sandbox admin)",
        )
        s.add(msg)
        s.flush()
        note.message_id = msg.id
        s.add(note)

    def drop_record(self, record_id: str, dropped: bool = True) -> None:
        """Lose (or stop losing) every notification of this record from now on."""
        (self.dropped_records.add if dropped else self.dropped_records.discard)(record_id)

    def due_messages(self, now: datetime) -> list[OutboundMessageRow]:
        with Session(self.store.engine) as s:
            return list(
                s.exec(
                    select(OutboundMessageRow)
                    .where(OutboundMessageRow.status == "pending", OutboundMessageRow.next_attempt_at <= now)
                    .order_by(OutboundMessageRow.id)
                ).all()
            )

    def record_attempt(self, message_id: int, *, ok: bool, status: int | None, error: str | None) -> None:
        with self.store.lock, Session(self.store.engine) as s:
            row = s.get(OutboundMessageRow, message_id)
            if row is None or row.status != "pending":
                return
            now = now_utc()
            row.attempts += 1
            row.last_status_code = status
            if ok:
                row.status = "delivered"
                row.delivered_at = now
                row.last_error = None
            else:
                row.last_error = error
                age = (now - row.created_at).total_seconds()
                if age >= self.config.max_age_seconds:
                    row.status = "failed"
                else:
                    row.next_attempt_at = now + timedelta(
                        seconds=backoff(row.attempts, self.config.retry_initial_seconds, self.config.retry_max_seconds)
                    )
            s.add(row)
            s.commit()

    def list_messages(self) -> list[dict]:
        with Session(self.store.engine) as s:
            rows = s.exec(select(OutboundMessageRow).order_by(OutboundMessageRow.id)).all()
            return [message_view(r) for r in rows]

    def redeliver(self, message_id: int) -> dict | None:
        """Queue the identical message again (a duplicate delivery, as Salesforce may do)."""
        with self.store.lock, Session(self.store.engine) as s:
            original = s.get(OutboundMessageRow, message_id)
            if original is None:
                return None
            now = now_utc()
            copy = OutboundMessageRow(
                payload=original.payload,
                created_at=now,
                next_attempt_at=now,
                notification_ids=original.notification_ids,
                redelivery_of=original.id,
            )
            s.add(copy)
            s.commit()
            s.refresh(copy)
            view = message_view(copy)
        self.wake()
        return view

    # --- delivery -----------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=self.config.timeout_seconds) as client:
            while True:
                try:
                    await self.tick(client)
                except asyncio.CancelledError:
                    raise
                except Exception:  # keep the loop alive; state is in the database
                    log.exception("outbound delivery tick failed")
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.config.poll_seconds)
                except TimeoutError:
                    pass

    async def tick(self, client: httpx.AsyncClient) -> None:
        self.batch_pending()
        url = self.config.url
        for msg in self.due_messages(now_utc()):
            if url is None:  # nothing to deliver to yet: stays pending, no attempt counted
                continue
            try:
                response = await client.post(
                    url,
                    content=msg.payload.encode("utf-8"),
                    headers={
                        "Content-Type": "text/xml; charset=utf-8",
                        "SOAPAction": '""',
                        "User-Agent": "Salesforce Outbound Messaging (q2c sandbox)",
                    },
                )
            except httpx.HTTPError as exc:
                self.record_attempt(msg.id, ok=False, status=None, error=f"{exc.__class__.__name__}: {exc}")
                continue
            ok = is_ack(response.status_code, response.content)
            error = (
                None if ok else (f"HTTP {response.status_code}: no <Ack>true</Ack> in response: {response.text[:200]}")
            )
            self.record_attempt(msg.id, ok=ok, status=response.status_code, error=error)
