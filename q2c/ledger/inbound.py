"""De-duplication of inbound webhook messages, in the ledger (`q2c_inbound_message`).

Senders deliver at least once: Salesforce redelivers an Outbound Message until it sees its
Ack, a Standard Webhooks sender retries with the same `webhook-id`, and an attacker can replay
a captured signed message inside the signature's 5-minute window. Each message ID is
*claimed* before anything is done for it:

- the claim is one `INSERT ... ON CONFLICT DO NOTHING RETURNING` (SQLite and PostgreSQL): the
  unique key decides, never a read-then-write, so two replicas on one PostgreSQL or two
  requests at once cannot both win;
- the winner acts, then marks the row `done` (`finish`) or, when it could not act (Temporal
  or the CRM unavailable, so the sender will deliver again), deletes it (`release`);
- a message whose row is `done` is a duplicate: the caller acknowledges it and does nothing;
- a `pending` row younger than the lease means another request is acting on it right now
  (`busy`: answer "retry later"); older than the lease, its request died mid-way (a crash, a
  kill) and the claim is taken over, so a crash never swallows a message.

Rows are pruned once older than the source's window (`prune`): the Standard Webhooks window is
twice the timestamp tolerance (a timestamp may be that far in the future), Outbound Messages
are kept beyond Salesforce's 24-hour retry period. Sync SQLAlchemy: call from async code
through `asyncio.to_thread`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from q2c.ledger.columns import utcnow
from q2c.ledger.models import INBOUND_DONE, INBOUND_PENDING, InboundMessage

DEFAULT_LEASE_SECONDS = 120.0  # longer than one request may take (vendor timeouts included)
MAX_MESSAGE_ID_LENGTH = 255
_CHUNK = 200  # rows per statement (SQLite's bound-parameter limit)


@dataclass(frozen=True)
class Claim:
    """What a claim found, each list in the caller's order."""

    new: list[str] = field(default_factory=list)  # ours: act, then finish (or release)
    done: list[str] = field(default_factory=list)  # taken before: a duplicate, do nothing
    busy: list[str] = field(default_factory=list)  # another request is acting on it now

    @property
    def is_duplicate(self) -> bool:
        return not self.new and not self.busy and bool(self.done)


class InboundLog:
    def __init__(self, engine: Engine, *, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.engine = engine
        self.lease = timedelta(seconds=lease_seconds)
        self.table = InboundMessage.__table__

    def claim(self, source: str, message_ids: Iterable[str]) -> Claim:
        ids = list(dict.fromkeys(message_ids))
        for message_id in ids:
            if not message_id or len(message_id) > MAX_MESSAGE_ID_LENGTH:
                raise ValueError(f"a message id is 1 to {MAX_MESSAGE_ID_LENGTH} characters")
        if not ids:
            return Claim()
        t = self.table
        now = utcnow()
        won: set[str] = set()
        with self.engine.begin() as conn:
            for start in range(0, len(ids), _CHUNK):
                won |= self._insert_new(conn, source, ids[start : start + _CHUNK], now)
            rest = [i for i in ids if i not in won]
            for start in range(0, len(rest), _CHUNK):
                chunk = rest[start : start + _CHUNK]
                # a pending claim past its lease: its request died; take it over (atomically:
                # the WHERE is checked again under the row lock, so only one taker wins)
                taken = conn.execute(
                    update(t)
                    .where(
                        t.c.source == source,
                        t.c.message_id.in_(chunk),
                        t.c.state == INBOUND_PENDING,
                        t.c.received_at < now - self.lease,
                    )
                    .values(received_at=now)
                    .returning(t.c.message_id)
                )
                won |= set(taken.scalars())
            rest = [i for i in rest if i not in won]
            states: dict[str, str] = {}
            for start in range(0, len(rest), _CHUNK):
                rows = conn.execute(
                    select(t.c.message_id, t.c.state).where(
                        t.c.source == source, t.c.message_id.in_(rest[start : start + _CHUNK])
                    )
                )
                states.update({m: s for m, s in rows})
        return Claim(
            new=[i for i in ids if i in won],
            done=[i for i in ids if i not in won and states.get(i) == INBOUND_DONE],
            # pending elsewhere, or (rarely) pruned between our insert and our read: retry later
            busy=[i for i in ids if i not in won and states.get(i) != INBOUND_DONE],
        )

    def _insert_new(self, conn, source: str, ids: list[str], now) -> set[str]:
        rows = [dict(source=source, message_id=i, state=INBOUND_PENDING, received_at=now) for i in ids]
        dialect = conn.dialect.name
        if dialect in ("sqlite", "postgresql"):
            insert = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(self.table)
            stmt = (
                insert.values(rows)
                .on_conflict_do_nothing(index_elements=["source", "message_id"])
                .returning(self.table.c.message_id)
            )
            return set(conn.execute(stmt).scalars())
        won = set()
        for row in rows:  # other dialects: one insert each, the unique key refusing duplicates
            try:
                with conn.begin_nested():
                    conn.execute(self.table.insert().values(**row))
                won.add(row["message_id"])
            except IntegrityError:
                continue
        return won

    def finish(self, source: str, message_ids: Iterable[str]) -> None:
        """The claimed messages were acted on: the same IDs again are duplicates."""
        ids = list(dict.fromkeys(message_ids))
        t = self.table
        with self.engine.begin() as conn:
            for start in range(0, len(ids), _CHUNK):
                conn.execute(
                    update(t)
                    .where(t.c.source == source, t.c.message_id.in_(ids[start : start + _CHUNK]))
                    .values(state=INBOUND_DONE, done_at=utcnow())
                )

    def release(self, source: str, message_ids: Iterable[str]) -> None:
        """The claimed messages could not be acted on: forget the claims, so the sender's next
        delivery is acted on (only pending rows go: a done one stays done)."""
        ids = list(dict.fromkeys(message_ids))
        t = self.table
        with self.engine.begin() as conn:
            for start in range(0, len(ids), _CHUNK):
                conn.execute(
                    delete(t).where(
                        t.c.source == source,
                        t.c.message_id.in_(ids[start : start + _CHUNK]),
                        t.c.state == INBOUND_PENDING,
                    )
                )

    def prune(self, source: str, older_than: timedelta) -> int:
        """Delete the source's rows received longer ago than its window; returns how many."""
        t = self.table
        with self.engine.begin() as conn:
            result = conn.execute(delete(t).where(t.c.source == source, t.c.received_at < utcnow() - older_than))
            return result.rowcount or 0

    def state(self, source: str, message_id: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(self.table.c.state).where(self.table.c.source == source, self.table.c.message_id == message_id)
            ).scalar_one_or_none()
