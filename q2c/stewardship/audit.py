"""Who changed what: every steward action goes to the ledger's API-call audit.

One row per accepted (outcome "ok", status 200) or rejected (outcome "rejected", status 422)
fix, amendment, cancel, replay, write-off, retry, milestone acceptance or waiver, or recheck,
with `system="q2c"`, the operation name, the engagement's workflow id and `actor` = the user
behind the token (console/API) or the OS user (CLI). The correlation ID is the Update ID the
request was sent with, so a request sent twice (applied once) shows as two rows with one ID.
Requests refused for lack of a token or role are not changes and are not recorded.

The ledger is the one the worker writes (`q2c.ledger.config.ledger_url(settings)`, env
`Q2C_LEDGER_DB_URL`), opened lazily on first use.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

from q2c.engagement.client import workflow_id_for
from q2c.settings import Settings
from q2c.vendors.calls import CallRecord

SYSTEM = "q2c"


class StewardAudit:
    def __init__(self, url: str | None = None, *, settings: Settings | None = None, ledger=None) -> None:
        self._url = url
        self._settings = settings
        self._ledger = ledger
        self._own = ledger is None
        self._lock = threading.Lock()

    def ledger(self):
        with self._lock:
            if self._ledger is None:
                from q2c.ledger.config import ledger_url
                from q2c.ledger.store import Ledger

                self._ledger = Ledger.from_url(self._url or ledger_url(self._settings))
                self._ledger.create_all()
            return self._ledger

    def record(
        self,
        operation: str,
        actor: str,
        opportunity_id: str,
        *,
        accepted: bool = True,
        started: float | None = None,
        error_code: str | None = None,
        update_id: str | None = None,
    ) -> None:
        wf_id = workflow_id_for(opportunity_id)
        self.ledger().record_api_call(
            CallRecord(
                correlation_id=update_id or uuid.uuid4().hex,
                system=SYSTEM,
                operation=operation,
                method="UPDATE" if operation != "recheck" else "SIGNAL",
                url=f"temporal://workflows/{wf_id}/{operation}",
                status=200 if accepted else 422,
                outcome="ok" if accepted else "rejected",
                duration_ms=(time.monotonic() - started) * 1000 if started else 0.0,
                error_code=error_code,
            ),
            actor=actor,
            workflow_id=wf_id,
        )

    async def arecord(self, *args, **kwargs) -> None:
        await asyncio.to_thread(self.record, *args, **kwargs)

    def close(self) -> None:
        if self._own and self._ledger is not None:
            self._ledger.dispose()
