"""Persistence for the CRM sandbox (tables prefixed crm_ so sandboxes can share a database).

Records of every sObject type live in one table: type, 18-character ID, and the field
values as exact JSON (numbers kept as Decimal). Outbound Message notifications and the
SOAP messages that carry them are persisted so delivery state survives a restart.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class SObjectRow(SQLModel, table=True):
    __tablename__ = "crm_sobject"

    id: str = Field(primary_key=True, max_length=18)
    sobject_type: str = Field(index=True)
    fields_json: str
    created_at: datetime
    updated_at: datetime


class IdSequenceRow(SQLModel, table=True):
    __tablename__ = "crm_id_sequence"

    prefix: str = Field(primary_key=True)
    next_value: int


class OutboundNotificationRow(SQLModel, table=True):
    """One notification (one sObject snapshot); batched into messages of up to 100."""

    __tablename__ = "crm_outbound_notification"

    id: str = Field(primary_key=True)  # 04l... notification id
    opportunity_id: str = Field(index=True)
    sobject_json: str
    created_at: datetime
    message_id: int | None = Field(default=None, index=True)


class OutboundMessageRow(SQLModel, table=True):
    """One SOAP POST to the endpoint; delivered once it is acknowledged with <Ack>true</Ack>."""

    __tablename__ = "crm_outbound_message"

    id: int | None = Field(default=None, primary_key=True)
    status: str = Field(default="pending", index=True)  # pending | delivered | failed
    attempts: int = 0
    last_error: str | None = None
    last_status_code: int | None = None
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: datetime | None = None
    payload: str
    notification_ids: str  # JSON list
    redelivery_of: int | None = None


CRM_TABLES = [
    SObjectRow.__table__,
    IdSequenceRow.__table__,
    OutboundNotificationRow.__table__,
    OutboundMessageRow.__table__,
]
