"""Persistence: one table of NetSuite records, data as exact JSON (Decimal-safe).

Internal IDs are per record type and start at a type-specific base so that IDs of
different types never look alike in tests (customer 101..., job 5001..., billing
schedule 301..., accounting period 1..72, timeBill 7001...,
invoice 9001..., customerPayment 12001..., expenseReport 14001..., currencyRate 16001...).
(In real NetSuite customers and jobs share the entity ID space; the
point here is only that an ID of the wrong type is never accepted by accident.)
External IDs are unique per record type (a DB constraint as well as a check).
All writes happen under one lock so that concurrent upserts of the same external ID
cannot create two records.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from sqlalchemy import UniqueConstraint, delete, func
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

from sandboxes.erp.jsonio import dumps_exact, loads_exact

ID_BASE = {
    "subsidiary": 0,
    "currency": 0,
    "term": 0,
    "customer": 100,
    "job": 5000,
    "billingSchedule": 300,
    "accountingPeriod": 0,
    "timeBill": 7000,
    "invoice": 9000,
    "customerPayment": 12000,
    "expenseReport": 14000,
    "currencyRate": 16000,
}


class ErpRecord(SQLModel, table=True):
    __tablename__ = "erp_record"
    __table_args__ = (UniqueConstraint("record_type", "external_id", name="uq_erp_record_eid"),)

    record_type: str = Field(primary_key=True)
    id: int = Field(primary_key=True)
    external_id: str | None = Field(default=None, index=True)
    data: str = "{}"


MAX_ID = 2**63 - 1


def internal_id(value: object) -> int | None:
    """An internal ID as the integer the database keys by, or None if it cannot be one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value <= MAX_ID else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        number = int(value)
        return number if 0 < number <= MAX_ID else None
    return None


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class RecordStore:
    """Records as dicts: stored fields plus "id" (str) and "externalId" (str or absent)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.lock = threading.RLock()
        ErpRecord.__table__.create(engine, checkfirst=True)

    @staticmethod
    def _to_dict(row: ErpRecord) -> dict:
        record = {"id": str(row.id)}
        if row.external_id is not None:
            record["externalId"] = row.external_id
        record.update(loads_exact(row.data))
        return record

    def is_empty(self) -> bool:
        with Session(self.engine) as s:
            return s.exec(select(func.count()).select_from(ErpRecord)).one() == 0

    def get(self, record_type: str, record_id: int | str) -> dict | None:
        """None for an ID no record can have (not a positive 64-bit integer), as for a free one."""
        rid = internal_id(record_id)
        if rid is None:
            return None
        with Session(self.engine) as s:
            row = s.get(ErpRecord, (record_type, rid))
            return self._to_dict(row) if row else None

    def get_by_eid(self, record_type: str, external_id: str) -> dict | None:
        with Session(self.engine) as s:
            row = s.exec(
                select(ErpRecord).where(ErpRecord.record_type == record_type, ErpRecord.external_id == external_id)
            ).first()
            return self._to_dict(row) if row else None

    def all(self, record_type: str) -> list[dict]:
        with Session(self.engine) as s:
            rows = s.exec(select(ErpRecord).where(ErpRecord.record_type == record_type).order_by(ErpRecord.id)).all()
            return [self._to_dict(r) for r in rows]

    def create(
        self, record_type: str, fields: dict, external_id: str | None = None, record_id: int | None = None
    ) -> int:
        with self.lock, Session(self.engine) as s:
            if record_id is None:
                top = s.exec(select(func.max(ErpRecord.id)).where(ErpRecord.record_type == record_type)).one()
                record_id = max(top or 0, ID_BASE.get(record_type, 0)) + 1
            stamp = now_iso()
            data = {**fields, "dateCreated": stamp, "lastModifiedDate": stamp}
            s.add(ErpRecord(record_type=record_type, id=record_id, external_id=external_id, data=dumps_exact(data)))
            s.commit()
            return record_id

    def replace(self, record_type: str, record_id: int, fields: dict, external_id: str | None) -> None:
        with self.lock, Session(self.engine) as s:
            row = s.get(ErpRecord, (record_type, record_id))
            old = loads_exact(row.data)
            data = {**fields, "dateCreated": old.get("dateCreated", now_iso()), "lastModifiedDate": now_iso()}
            row.data = dumps_exact(data)
            row.external_id = external_id
            s.add(row)
            s.commit()

    def clear(self) -> None:
        with self.lock, Session(self.engine) as s:
            s.exec(delete(ErpRecord))
            s.commit()
