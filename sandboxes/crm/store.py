"""Record storage with Salesforce semantics: IDs, system fields, validation, upsert, triggers.

Records read are kept materialized in memory, by ID. Why: every SOQL query materialized every
row of its type (exact JSON, three timestamps, computed fields) and read each row's parent
by primary key (`Account.Name` and friends), so the line-item query cost 0.27-0.44 s of CPU
at 1,000 opportunities (issue 15), and every activation asks it. A query (`all`) reads only
the two columns that say which rows of the type exist and when each last changed, and
rebuilds just the rows that changed; `get` answers from memory. Each write forgets the
records it touched once it commits. The sandbox is the one process writing its database
(as `make up`, the benchmarks and the tests run it); a query still sees rows another process
changed, because every write stamps `updated_at`.

The triggers the sandbox models are the workflow rules behind the Outbound Message, each
queuing one notification in the same transaction as the write:
- an Opportunity whose StageName *changes to* "Closed Won" (on create, update or upsert);
  setting "Closed Won" on an opportunity that already was Closed Won queues nothing;
- a change order on a Closed Won opportunity: its Amount or End_Date__c changes, or one of its
  line items (rates, milestones) is created or changed. Reference fields written back by an
  integration (ERP/PSA IDs, invoice and payment status) never trigger anything.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete as sa_delete
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from sandboxes.crm import ids, jsonutil
from sandboxes.crm.errors import SfError
from sandboxes.crm.models import CRM_TABLES, IdSequenceRow, OutboundMessageRow, OutboundNotificationRow, SObjectRow
from sandboxes.crm.schema import CLOSED_WON, computed_fields, schema_for, validate_write

FIRST_DYNAMIC_SEQUENCE = 1000  # seeded records use lower sequence numbers


class MultipleMatches(Exception):
    def __init__(self, record_ids: list[str]) -> None:
        super().__init__(record_ids)
        self.record_ids = record_ids


def now_utc() -> datetime:
    return datetime.now(UTC)


def sf_datetime(value: datetime) -> str:
    """Salesforce's REST datetime format, e.g. 2026-11-25T17:02:02.000+0000."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


class CrmStore:
    def __init__(self, engine: Engine, id_instance: str = ids.DEFAULT_INSTANCE) -> None:
        self.engine = engine
        self.lock = threading.RLock()
        self.id_instance = id_instance
        # id -> (sobject, its updated_at as the driver returns it or None, materialized record);
        # writes forget what they touch, and bump the generation so that a read that began
        # before the write does not put back what it read
        self._cache: dict[str, tuple[str, Any, dict[str, Any]]] = {}
        self._cache_lock = threading.Lock()
        self._generation = 0

    def create_tables(self) -> None:
        SQLModel.metadata.create_all(self.engine, tables=CRM_TABLES)

    # --- reading ------------------------------------------------------------------------
    def get(self, sobject: str, record_id: str, *, include_deleted: bool = False) -> dict[str, Any] | None:
        """The record, or None when there is none of this type (or it is in the recycle bin,
        unless `include_deleted`: then it comes back with IsDeleted true)."""
        schema_for(sobject)
        if not ids.looks_like_id(record_id):
            return None
        rid = ids.normalize_id(record_id)
        with self._cache_lock:
            hit, generation = self._cache.get(rid), self._generation
        if hit is None:
            with Session(self.engine) as s:
                row = s.get(SObjectRow, rid)
                if row is None:
                    return None
                hit = (row.sobject_type, None, _materialize(row))  # no stamp: all() reads it once more
            self._remember({rid: hit}, generation)
        sobject_type, _, record = hit
        if sobject_type != sobject or (record["IsDeleted"] and not include_deleted):
            return None
        return dict(record)

    def all(self, sobject: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Every record of a type in ID order; deleted ones only with `include_deleted`
        (what queryAll sees, as the recycle bin keeps them). The records are shared with the
        cache and other queries: read them, never change them."""
        schema_for(sobject)
        with self._cache_lock:
            generation = self._generation
        with Session(self.engine) as s:
            stamps = s.execute(_STAMPS, {"sobject": sobject}).all()
            with self._cache_lock:
                known = {rid: self._cache.get(rid) for rid, _ in stamps}
            stale = {rid: stamp for rid, stamp in stamps if known[rid] is None or known[rid][1] != stamp}
            fresh: dict[str, tuple[str, Any, dict[str, Any]]] = {}
            wanted = list(stale)
            for start in range(0, len(wanted), 500):
                # read after the stamps: a row changed in between is cached under its older
                # stamp and read again next time, never the reverse
                for row in s.exec(select(SObjectRow).where(SObjectRow.id.in_(wanted[start : start + 500]))).all():
                    fresh[row.id] = (row.sobject_type, stale[row.id], _materialize(row))
        self._remember(fresh, generation)
        records = [entry[2] for rid, _ in stamps if (entry := fresh.get(rid) or known[rid]) is not None]
        return records if include_deleted else [r for r in records if not r["IsDeleted"]]

    def _remember(self, entries: dict[str, tuple[str, Any, dict[str, Any]]], generation: int) -> None:
        """Cache what was read, unless a write committed since the read began (it may be older)."""
        with self._cache_lock:
            if self._generation == generation:
                self._cache.update(entries)

    def _changed(self, *record_ids: str) -> None:
        """After a write commits: forget its records (none named: all of them)."""
        with self._cache_lock:
            self._generation += 1
            if not record_ids:
                self._cache.clear()
            for rid in record_ids:
                self._cache.pop(rid, None)

    def count(self) -> int:
        with Session(self.engine) as s:
            return len(s.exec(select(SObjectRow.id)).all())

    # --- writing ------------------------------------------------------------------------
    def create(
        self, sobject: str, values: dict[str, Any], *, record_id: str | None = None, at: datetime | None = None
    ) -> str:
        clean = validate_write(sobject, values, creating=True)
        with self.lock, Session(self.engine) as s:
            self._check_references(s, sobject, clean)
            new_id = record_id or self._next_id(s, ids.KEY_PREFIXES[sobject])
            stamp = at or now_utc()
            row = SObjectRow(
                id=new_id, sobject_type=sobject, fields_json=jsonutil.dumps(clean), created_at=stamp, updated_at=stamp
            )
            s.add(row)
            self._trigger(s, sobject, new_id, {}, clean)
            s.commit()
            self._changed(new_id)
            return new_id

    def update(self, sobject: str, record_id: str, values: dict[str, Any]) -> None:
        clean = validate_write(sobject, values, creating=False)
        with self.lock, Session(self.engine) as s:
            row = self._live_row(s, sobject, record_id)
            self._check_references(s, sobject, clean)
            self._apply(s, row, clean)
            s.commit()
            self._changed(row.id)

    def find_by_external_id(self, sobject: str, field: str, value: str) -> list[dict[str, Any]]:
        """Live records whose external-ID `field` equals `value` (case-insensitive, as
        Salesforce compares external IDs). A field that is not an external ID is NOT_FOUND."""
        fdef = schema_for(sobject).get(field)
        if fdef is None or not fdef.external_id:
            raise SfError(
                404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {field[:80]}"
            )
        if field == "Id":
            record = self.get(sobject, value)
            return [record] if record is not None else []
        wanted = value.lower()
        # copies: the records of all() are shared with other queries
        return [dict(r) for r in self.all(sobject) if r.get(field) is not None and str(r[field]).lower() == wanted]

    def upsert(self, sobject: str, field: str, value: str, values: dict[str, Any]) -> tuple[str, bool]:
        """Upsert by external ID: (id, created). Raises MultipleMatches when ambiguous."""
        if field == "Id":
            self.find_by_external_id(sobject, field, value)  # checks the type
            self.update(sobject, value, values)
            return ids.normalize_id(value), False
        with self.lock:
            matches = [r["Id"] for r in self.find_by_external_id(sobject, field, value)]
            if field in values and values[field] != value:
                raise SfError(
                    400, "INVALID_FIELD", f"The external ID field {field} in the body does not match the URL", [field]
                )
            if len(matches) > 1:
                raise MultipleMatches(matches)
            if matches:
                self.update(sobject, matches[0], {k: v for k, v in values.items() if k != field})
                return matches[0], False
            return self.create(sobject, {**values, field: value}), True

    def delete(self, sobject: str, record_id: str) -> None:
        """Move the record to the recycle bin (IsDeleted true: gone from get, query and upsert,
        still seen by queryAll), with the children Salesforce deletes with it: an account's
        opportunities, an opportunity's line items."""
        schema_for(sobject)
        with self.lock, Session(self.engine) as s:
            row = self._live_row(s, sobject, record_id)
            self._delete_with_children(s, row, now_utc())
            s.commit()
            self._changed()  # the record and its children (rare: forget everything)

    def wipe(self) -> None:
        with self.lock, Session(self.engine) as s:
            for model in (SObjectRow, IdSequenceRow, OutboundNotificationRow, OutboundMessageRow):
                s.exec(sa_delete(model))
            s.commit()
            self._changed()

    # --- internals ----------------------------------------------------------------------
    @staticmethod
    def _live_row(s: Session, sobject: str, record_id: str) -> SObjectRow:
        row = s.get(SObjectRow, ids.normalize_id(record_id)) if ids.looks_like_id(record_id) else None
        if row is None or row.sobject_type != sobject:
            raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
        if jsonutil.loads(row.fields_json).get("IsDeleted"):
            raise SfError(404, "ENTITY_IS_DELETED", "entity is deleted")
        return row

    def _delete_with_children(self, s: Session, row: SObjectRow, stamp: datetime) -> None:
        values = jsonutil.loads(row.fields_json)
        values["IsDeleted"] = True
        row.fields_json = jsonutil.dumps(values)
        row.updated_at = stamp
        s.add(row)
        for child_type, ref_field in CASCADE_DELETES.get(row.sobject_type, ()):
            for child in s.exec(select(SObjectRow).where(SObjectRow.sobject_type == child_type)).all():
                child_values = jsonutil.loads(child.fields_json)
                if child_values.get(ref_field) == row.id and not child_values.get("IsDeleted"):
                    self._delete_with_children(s, child, stamp)

    def _apply(self, s: Session, row: SObjectRow, clean: dict[str, Any]) -> None:
        before = jsonutil.loads(row.fields_json)
        after = {**before, **clean}
        row.fields_json = jsonutil.dumps(after)
        row.updated_at = now_utc()
        s.add(row)
        self._trigger(s, row.sobject_type, row.id, before, after)

    def _check_references(self, s: Session, sobject: str, clean: dict[str, Any]) -> None:
        schema = schema_for(sobject)
        for name, value in list(clean.items()):
            target = schema[name].reference_to
            if target is None or value is None:
                continue
            ref = s.get(SObjectRow, ids.normalize_id(value)) if ids.is_valid_id(value) else None
            if ref is None or ref.sobject_type != target:
                raise SfError(400, "INVALID_CROSS_REFERENCE_KEY", f"invalid cross reference id: {name}", [name])
            if jsonutil.loads(ref.fields_json).get("IsDeleted"):
                raise SfError(400, "ENTITY_IS_DELETED", f"entity is deleted: {name}", [name])
            clean[name] = ref.id

    def _next_id(self, s: Session, prefix: str) -> str:
        seq = s.get(IdSequenceRow, prefix)
        if seq is None:
            seq = IdSequenceRow(prefix=prefix, next_value=FIRST_DYNAMIC_SEQUENCE)
        value = seq.next_value
        seq.next_value = value + 1
        s.add(seq)
        return ids.make_id(prefix, value, self.id_instance)

    def _trigger(self, s: Session, sobject: str, record_id: str, before: dict[str, Any], after: dict[str, Any]) -> None:
        if sobject == "OpportunityLineItem":
            parent = s.get(SObjectRow, ids.normalize_id(str(after.get("OpportunityId") or "")))
            if parent is not None and before != after:
                opp = _materialize(parent)
                if opp.get("StageName") == CLOSED_WON:
                    self._notify(s, opp["Id"], opp)
            return
        if sobject != "Opportunity":
            return
        closed_won = after.get("StageName") == CLOSED_WON
        if closed_won and before.get("StageName") != CLOSED_WON:
            self._notify(s, record_id, after)
        elif closed_won and any(before.get(f) != after.get(f) for f in CHANGE_ORDER_FIELDS):
            self._notify(s, record_id, after)

    def _notify(self, s: Session, record_id: str, opp: dict[str, Any]) -> None:
        snapshot = {
            "Id": record_id,
            "Name": opp.get("Name"),
            "StageName": opp.get("StageName"),
            "AccountId": opp.get("AccountId"),
        }
        note_id = self._next_id(s, ids.NOTIFICATION_PREFIX)
        s.add(
            OutboundNotificationRow(
                id=note_id, opportunity_id=record_id, sobject_json=json.dumps(snapshot), created_at=now_utc()
            )
        )


# which rows of a type exist and when each last changed, as the driver returns it (no type
# processing: the value is only compared with the one cached)
_STAMPS = text("SELECT id, updated_at FROM crm_sobject WHERE sobject_type = :sobject ORDER BY id")

CHANGE_ORDER_FIELDS = ("Amount", "End_Date__c", "Not_To_Exceed__c")
# parent type -> (child type, reference field) deleted with it
CASCADE_DELETES: dict[str, tuple[tuple[str, str], ...]] = {
    "Account": (("Opportunity", "AccountId"),),
    "Opportunity": (("OpportunityLineItem", "OpportunityId"),),
}


def _materialize(row: SObjectRow) -> dict[str, Any]:
    """Full record in schema order (unset fields null), with system and computed fields."""
    stored = jsonutil.loads(row.fields_json)
    system = {
        "Id": row.id,
        "CreatedDate": sf_datetime(row.created_at),
        "LastModifiedDate": sf_datetime(row.updated_at),
        "SystemModstamp": sf_datetime(row.updated_at),
    }
    values = {
        **stored,
        **system,
        "IsDeleted": bool(stored.get("IsDeleted")),
        **computed_fields(row.sobject_type, stored),
    }
    return {name: values.get(name) for name in schema_for(row.sobject_type)}


Seeder = Callable[[CrmStore], None]
