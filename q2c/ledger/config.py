"""Where the ledger lives and how to open it.

`Q2C_LEDGER_DB_URL` names the database; by default a SQLite file `<state_dir>/ledger.db`
(state_dir from `settings.load_settings()`, env `Q2C_STATE_DIR`). PostgreSQL URLs use
psycopg 3: `postgresql+psycopg://user@host:5432/dbname`.

SQLite is opened for several writer threads: WAL journal (readers never wait for the
writer), a busy timeout (writers queue instead of failing with "database is locked"),
and every transaction starts with BEGIN IMMEDIATE so a read-then-write transaction can
never dead-lock on the lock upgrade.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import create_engine

from q2c.settings import Settings, load_settings

LEDGER_URL_ENV = "Q2C_LEDGER_DB_URL"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def ledger_url(settings: Settings | None = None) -> str:
    """`Q2C_LEDGER_DB_URL` (read by q2c.settings), else SQLite in the state folder."""
    settings = settings or load_settings()
    if settings.ledger_db_url:
        return settings.ledger_db_url
    return f"sqlite:///{Path(settings.state_dir) / 'ledger.db'}"


def make_ledger_engine(url: str, *, echo: bool = False) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, echo=echo)
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if path and path != ":memory:" and not path.startswith("file:"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, echo=echo, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    )
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy (not pysqlite) decide when transactions begin (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
