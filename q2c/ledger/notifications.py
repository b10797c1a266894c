"""What the CRM last told us about each opportunity (`q2c_crm_notification`), so the webhook
signals a running engagement only when a notification says something new.

Why: a `crm_changed` signal costs the engagement a workflow task, an activity and three CRM
reads (opportunity, account, line items). Outbound Messages repeat themselves: Salesforce
redelivers (recognised by the notification `Id`, `q2c.ledger.inbound`), and a rule that fires
on every edit sends the same field values again and again (an edit of a field the message
does not select, or an integration's write-back). Issue 15 measured 3,517 activities for 300
deals against 2,257 without those repeats.

What "changed" means, from what a notification carries: its sObject fields as sent (every
field the outbound message definition selects, `Id` excluded) are reduced to a fingerprint
(SHA-256 of the sorted name/value pairs). A notification is *unchanged* when its fingerprint
equals the last one recorded for the opportunity AND the fields include a modification stamp
(`SystemModstamp` or `LastModifiedDate`). Only then is equality proof that nothing changed:
Salesforce moves the stamp on every edit. Without a stamp the fields cannot see a change order
(this org's definition selects `AccountId, IsClosed, IsWon, Name, StageName`; a change of
`Amount`, `End_Date__c` or a line item fires the rule with the very same values), so such a
notification is taken as a change and signalled, as before. To let q2c skip the repeats, add
`SystemModstamp` to the outbound message definition (deploy/salesforce/...).

One row per (source, opportunity); the fingerprint is recorded after the webhook acted on
the notification (started, restarted or signalled), so a failed attempt never hides the
change from the redelivery. Sync SQLAlchemy: call through `asyncio.to_thread`. The table is
created on first use (its own MetaData, so the ledger's models stay as they are).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from sqlalchemy import Column, DateTime, MetaData, String, Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from q2c.ledger.columns import utcnow

STAMP_FIELDS = ("SystemModstamp", "LastModifiedDate")
_CHUNK = 200  # rows per statement (SQLite's bound-parameter limit)

metadata = MetaData()
crm_notification = Table(
    "q2c_crm_notification",
    metadata,
    Column("source", String(80), primary_key=True),
    Column("opportunity_id", String(18), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("stamped", String(1), nullable=False),  # "y": the fields held a modification stamp
    Column("seen_at", DateTime(timezone=True), nullable=False),
)


def fingerprint(fields: Mapping[str, str | None]) -> str:
    """SHA-256 of the notification's fields (`Id` left out), independent of their order."""
    items = sorted((k, v) for k, v in fields.items() if k != "Id")
    return hashlib.sha256(json.dumps(items, separators=(",", ":")).encode()).hexdigest()


def is_stamped(fields: Mapping[str, str | None]) -> bool:
    return any(fields.get(f) for f in STAMP_FIELDS)


class NotificationLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine, tables=[crm_notification])

    def unchanged(self, source: str, notes: Mapping[str, Mapping[str, str | None]]) -> set[str]:
        """The opportunities (of `notes`: opportunity -> fields) whose notification repeats the
        last one recorded, with a modification stamp: nothing changed in the CRM."""
        stamped = {opp: fingerprint(f) for opp, f in notes.items() if is_stamped(f)}
        if not stamped:
            return set()
        t = crm_notification
        known: dict[str, str] = {}
        ids = list(stamped)
        with self.engine.connect() as conn:
            for start in range(0, len(ids), _CHUNK):
                rows = conn.execute(
                    select(t.c.opportunity_id, t.c.fingerprint).where(
                        t.c.source == source, t.c.opportunity_id.in_(ids[start : start + _CHUNK])
                    )
                )
                known.update({o: f for o, f in rows})
        return {opp for opp, fp in stamped.items() if known.get(opp) == fp}

    def record(self, source: str, notes: Mapping[str, Mapping[str, str | None]]) -> None:
        """Remember these notifications' fields as the last seen for their opportunities."""
        if not notes:
            return
        now = utcnow()
        rows = [
            dict(
                source=source,
                opportunity_id=opp,
                fingerprint=fingerprint(f),
                stamped="y" if is_stamped(f) else "n",
                seen_at=now,
            )
            for opp, f in notes.items()
        ]
        t = crm_notification
        with self.engine.begin() as conn:
            dialect = conn.dialect.name
            for start in range(0, len(rows), _CHUNK):
                chunk = rows[start : start + _CHUNK]
                if dialect in ("sqlite", "postgresql"):
                    insert = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(t).values(chunk)
                    conn.execute(
                        insert.on_conflict_do_update(
                            index_elements=["source", "opportunity_id"],
                            set_={c: insert.excluded[c] for c in ("fingerprint", "stamped", "seen_at")},
                        )
                    )
                else:  # other dialects: delete then insert, in the same transaction
                    for row in chunk:
                        conn.execute(
                            t.delete().where(t.c.source == row["source"], t.c.opportunity_id == row["opportunity_id"])
                        )
                        conn.execute(t.insert().values(**row))

    def last(self, source: str, opportunity_id: str) -> str | None:
        t = crm_notification
        with self.engine.connect() as conn:
            return conn.execute(
                select(t.c.fingerprint).where(t.c.source == source, t.c.opportunity_id == opportunity_id)
            ).scalar_one_or_none()
