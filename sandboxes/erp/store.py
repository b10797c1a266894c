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

Records are kept materialized in memory per type (by ID, in ID order, and by external ID),
loaded from the database once at start and updated by every write after it commits. Why:
a record list (`GET /timeBill?q=...`, one per project at month-end) read and decoded every
record of the type from SQLite per request, 20,000 timeBills at 200 engagements x 100 time
entries: 64% of the sandbox's CPU. The database stays the durable copy (every write commits
first, the memory follows only once it has), so the state survives a restart. The store is
the one writer of its table: the sandbox is the one process using its database file (as
`make up`, the benchmarks and the tests run it), and nothing else in it writes the table.

An index per type files the record IDs by the value of the fields the connector lists by with
`IS` / `ANY_OF` (INDEXED_FIELDS), kept with the records on every write (a reference that changes
moves its record to the new key). Why: with the records in memory, a month-end list
(`customer ANY_OF [<project>] AND ...`, 100 of 20,000 timeBills) still spent half its time
testing every record of the type; `candidates` answers the few records that can match.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import UniqueConstraint, delete
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

from sandboxes.erp.jsonio import dumps_exact, loads_exact
from sandboxes.erp.query import Key, value_key

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

# the fields q2c's connector lists records by with IS / ANY_OF (q2c/vendors/netsuite/): timeBills
# and payments by customer (the project, the customer), expense reports by custbody_job, credit
# memos by createdFrom; and externalId, entity (a transaction's customer in NetSuite's own name)
INDEXED_FIELDS = frozenset({"externalId", "customer", "entity", "custbody_job", "createdFrom"})

Index = dict[str, dict[Key, set[int]]]  # field -> value key -> internal IDs


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


def _copy(value: Any) -> Any:
    """A deep copy of decoded JSON (dicts, lists and immutable scalars), faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _index_add(index: Index, record_id: int, record: dict) -> None:
    for field in INDEXED_FIELDS:
        key = value_key(record.get(field))
        if key is not None:
            index.setdefault(field, {}).setdefault(key, set()).add(record_id)


def _index_remove(index: Index, record_id: int, record: dict) -> None:
    for field in INDEXED_FIELDS:
        key = value_key(record.get(field))
        by_key = index.get(field)
        ids = by_key.get(key) if by_key is not None and key is not None else None
        if ids is not None:
            ids.discard(record_id)
            if not ids:
                del by_key[key]
                if not by_key:
                    del index[field]


class RecordStore:
    """Records as dicts: stored fields plus "id" (str) and "externalId" (str or absent).

    `get` and `get_by_eid` answer a copy the caller may change; `all` answers the records held
    in memory (shared with the store and other requests): read them, never change them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.lock = threading.RLock()  # writers (and callers' read-check-write sequences)
        # the materialized records; changed only under `lock`, after the write committed, and
        # under `_memory_lock` (held briefly) so that readers never wait for a writer's request
        self._memory_lock = threading.Lock()
        self._by_id: dict[str, dict[int, dict]] = {}  # type -> internal ID -> record, in ID order
        self._by_eid: dict[str, dict[str, int]] = {}  # type -> external ID -> internal ID
        self._index: dict[str, Index] = {}  # type -> INDEXED_FIELDS' values -> internal IDs
        ErpRecord.__table__.create(engine, checkfirst=True)
        self._load()

    def _load(self) -> None:
        """Every record from the database, decoded once (at start)."""
        by_id: dict[str, dict[int, dict]] = {}
        by_eid: dict[str, dict[str, int]] = {}
        with Session(self.engine) as s:
            rows = s.exec(select(ErpRecord).order_by(ErpRecord.record_type, ErpRecord.id)).all()
            for row in rows:
                by_id.setdefault(row.record_type, {})[row.id] = self._to_dict(row)
                if row.external_id is not None:
                    by_eid.setdefault(row.record_type, {})[row.external_id] = row.id
        index: dict[str, Index] = {}
        for record_type, records in by_id.items():
            for record_id, record in records.items():
                _index_add(index.setdefault(record_type, {}), record_id, record)
        with self._memory_lock:
            self._by_id, self._by_eid, self._index = by_id, by_eid, index

    @staticmethod
    def _to_dict(row: ErpRecord) -> dict:
        return RecordStore._record(row.id, row.external_id, row.data)

    @staticmethod
    def _record(record_id: int, external_id: str | None, data: str) -> dict:
        """The record as read back from its stored row (so memory holds exactly what the DB does)."""
        record = {"id": str(record_id)}
        if external_id is not None:
            record["externalId"] = external_id
        record.update(loads_exact(data))
        return record

    def _remember(self, record_type: str, record_id: int, external_id: str | None, data: str) -> None:
        """A committed write into memory: the record replaced or added, in ID order."""
        record = self._record(record_id, external_id, data)
        with self._memory_lock:
            records = self._by_id.setdefault(record_type, {})
            eids = self._by_eid.setdefault(record_type, {})
            index = self._index.setdefault(record_type, {})
            old = records.get(record_id)
            if old is not None:
                _index_remove(index, record_id, old)
                if old.get("externalId") is not None:
                    eids.pop(old["externalId"], None)
            _index_add(index, record_id, record)
            if old is None and records and record_id < next(reversed(records)):
                # an ID below the highest (explicit IDs, as seeding gives): a new dict in ID order,
                # so a reader still iterating the old one is not disturbed
                records = dict(sorted({**records, record_id: record}.items()))
                self._by_id[record_type] = records
            else:
                records[record_id] = record
            if external_id is not None:
                eids[external_id] = record_id

    def is_empty(self) -> bool:
        with self._memory_lock:
            return not any(self._by_id.values())

    def get(self, record_type: str, record_id: int | str) -> dict | None:
        """None for an ID no record can have (not a positive 64-bit integer), as for a free one."""
        rid = internal_id(record_id)
        if rid is None:
            return None
        with self._memory_lock:
            record = self._by_id.get(record_type, {}).get(rid)
        return _copy(record) if record is not None else None

    def get_by_eid(self, record_type: str, external_id: str) -> dict | None:
        with self._memory_lock:
            rid = self._by_eid.get(record_type, {}).get(external_id)
            record = self._by_id.get(record_type, {}).get(rid) if rid is not None else None
        return _copy(record) if record is not None else None

    def all(self, record_type: str) -> list[dict]:
        """Every record of the type in ID order (shared: read them, never change them)."""
        with self._memory_lock:
            return list(self._by_id.get(record_type, {}).values())

    def candidates(self, record_type: str, equalities: Iterable[tuple[str, frozenset[Key]]]) -> list[dict] | None:
        """The records of the type that can satisfy the equalities (field, the `value_key`s its
        value must have: a conjunction's, as `query.Query.equalities`), in ID order, narrowed by
        the index of the one on an indexed field that leaves the fewest; None when none is on an
        indexed field (then only a scan of `all` answers). Every record that satisfies them is
        among those answered, so a caller that tests each with its whole query gets exactly what
        a scan would. Shared as `all`'s: read them, never change them."""
        with self._memory_lock:
            index = self._index.get(record_type, {})
            best: list[set[int]] | None = None
            for field, keys in equalities:
                if field not in INDEXED_FIELDS:
                    continue
                by_key = index.get(field, {})
                found = [by_key[key] for key in keys if key in by_key]
                if best is None or sum(map(len, found)) < sum(map(len, best)):
                    best = found
            if best is None:
                return None
            records = self._by_id.get(record_type, {})
            return [records[record_id] for record_id in sorted(set().union(*best))]

    def create(
        self, record_type: str, fields: dict, external_id: str | None = None, record_id: int | None = None
    ) -> int:
        with self.lock, Session(self.engine) as s:
            if record_id is None:
                with self._memory_lock:
                    top = next(reversed(self._by_id.get(record_type) or {0: None}))
                record_id = max(top, ID_BASE.get(record_type, 0)) + 1
            stamp = now_iso()
            data = dumps_exact({**fields, "dateCreated": stamp, "lastModifiedDate": stamp})
            s.add(ErpRecord(record_type=record_type, id=record_id, external_id=external_id, data=data))
            s.commit()
            self._remember(record_type, record_id, external_id, data)
            return record_id

    def replace(self, record_type: str, record_id: int, fields: dict, external_id: str | None) -> None:
        with self.lock, Session(self.engine) as s:
            row = s.get(ErpRecord, (record_type, record_id))
            old = loads_exact(row.data)
            data = {**fields, "dateCreated": old.get("dateCreated", now_iso()), "lastModifiedDate": now_iso()}
            text = dumps_exact(data)
            row.data = text
            row.external_id = external_id
            s.add(row)
            s.commit()
            self._remember(record_type, record_id, external_id, text)

    def clear(self) -> None:
        with self.lock, Session(self.engine) as s:
            s.exec(delete(ErpRecord))
            s.commit()
            with self._memory_lock:
                self._by_id, self._by_eid, self._index = {}, {}, {}
