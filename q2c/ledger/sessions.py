"""Console sessions, server-side (`q2c_console_session`): opaque, expiring, revocable.

The console's cookie holds only a random session ID (256 bits); the ledger holds its SHA-256,
the user and role it stands for, when it expires and whether it was revoked. So:

- a stolen database reveals no usable cookie (only hashes), and the cookie reveals no token;
- logout revokes the session on every replica at once (they share the ledger), and an old
  cookie replayed after logout finds a revoked row and is refused;
- a session ends by itself at `expires_at` (absolute lifetime, `Q2C_SESSION_HOURS`), and
  removing a user's token from `Q2C_API_TOKENS` ends their sessions at their next request
  (the session names the token it was opened with, by hash, and the token must still exist).

Sync SQLAlchemy, short transactions; callers in async code use `asyncio.to_thread`.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional

from sqlalchemy import Column, String, delete, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Field

from q2c.ledger.columns import UTCDateTime, utcnow
from q2c.ledger.models import LedgerTable

SESSION_ID_BYTES = 32


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class ConsoleSession(LedgerTable, table=True):
    __tablename__ = "q2c_console_session"

    id_hash: str = Field(sa_column=Column(String(64), primary_key=True))
    user: str = Field(sa_column=Column(String(200), nullable=False, index=True))
    role: str = Field(sa_column=Column(String(20), nullable=False))
    token_hash: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    revoked_at: Optional[datetime] = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


@dataclass(frozen=True)
class OpenSession:
    user: str
    role: str
    token_hash: str
    id_hash: str
    expires_at: datetime


class SessionStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        ConsoleSession.__table__.create(engine, checkfirst=True)

    def open(self, user: str, role: str, token_hash: str, lifetime: timedelta) -> tuple[str, OpenSession]:
        """A new session; returns the cookie value (shown once, never stored) and the row."""
        session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        row = OpenSession(user, role, token_hash, session_hash(session_id), utcnow() + lifetime)
        with self.engine.begin() as conn:
            conn.execute(
                ConsoleSession.__table__.insert().values(
                    id_hash=row.id_hash,
                    user=user,
                    role=role,
                    token_hash=token_hash,
                    created_at=utcnow(),
                    expires_at=row.expires_at,
                )
            )
            # housekeeping: sessions that ended over a day ago are of no use to anyone
            conn.execute(
                delete(ConsoleSession.__table__).where(
                    ConsoleSession.__table__.c.expires_at < utcnow() - timedelta(days=1)
                )
            )
        return session_id, row

    def find(self, session_id: str | None) -> OpenSession | None:
        """The live session of a cookie value; None if unknown, expired or revoked."""
        if not session_id or len(session_id) > 200:
            return None
        t = ConsoleSession.__table__
        with self.engine.connect() as conn:
            found = conn.execute(select(t).where(t.c.id_hash == session_hash(session_id))).first()
        if found is None or found.revoked_at is not None or found.expires_at <= utcnow():
            return None
        return OpenSession(found.user, found.role, found.token_hash, found.id_hash, found.expires_at)

    def revoke(self, session_id: str | None) -> bool:
        """End a session now (logout). True if a live session was revoked."""
        if not session_id:
            return False
        t = ConsoleSession.__table__
        with self.engine.begin() as conn:
            done = conn.execute(
                update(t)
                .where(t.c.id_hash == session_hash(session_id), t.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        return bool(done.rowcount)

    def revoke_user(self, user: str) -> int:
        """End every live session of a user (a token leaked, a person left); returns how many."""
        t = ConsoleSession.__table__
        with self.engine.begin() as conn:
            done = conn.execute(
                update(t)
                .where(t.c.user == user, t.c.revoked_at.is_(None), t.c.expires_at > utcnow())
                .values(revoked_at=utcnow())
            )
        return int(done.rowcount or 0)
