"""Engine creation for sandbox persistence (SQLite by default, PostgreSQL works).

SQLite files run in WAL mode with `synchronous = NORMAL`, as q2c's own ledger does
(q2c/ledger/config.py). Why: in the default rollback-journal mode every commit syncs the file
and a writer locks readers out, so at month-end (thousands of small writes from 20-50
request threads) the sandboxes' threads spent most of their time waiting on SQLite's lock
and on fsync, not answering (issue 15: the PSA's external-reference POST and the ERP's
timeBill upsert were the largest waits). In WAL mode readers never wait for the writer and a
commit appends to the log without a sync; a power cut may lose the last commits, which a
sandbox can afford.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import create_engine


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        in_memory = not path or path == ":memory:"
        if not in_memory:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        if not in_memory:
            event.listen(engine, "connect", _wal)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _wal(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()
