"""Audit hook: every vendor call a connector makes lands in the ledger's `q2c_api_call`.

    client = KantataClient(settings.psa, audit=audit_hook(ledger))

Inside a Temporal activity the row also gets the workflow id, activity type and attempt,
so an engineer can list every call made on behalf of one engagement. The write runs in a
thread (the ledger is sync SQLAlchemy) and a failing write is logged, never raised: the
audit must not turn a successful vendor call into a failed one.
"""

from __future__ import annotations

import asyncio
import logging

from temporalio import activity

from q2c.ledger.store import Ledger
from q2c.vendors.calls import AuditHook, CallRecord

log = logging.getLogger(__name__)


def activity_context() -> dict:
    """workflow_id / activity_type / attempt of the running activity, else {}."""
    try:
        if not activity.in_activity():
            return {}
        info = activity.info()
        return {"workflow_id": info.workflow_id, "activity_type": info.activity_type, "attempt": info.attempt}
    except Exception:  # pragma: no cover - context lookups must never break a call
        return {}


def audit_hook(ledger: Ledger, *, actor: str | None = None) -> AuditHook:
    async def record(call: CallRecord) -> None:
        context = activity_context()
        try:
            await asyncio.to_thread(ledger.record_api_call, call, actor=actor, **context)
        except Exception as err:
            log.warning("could not audit %s %s (%s): %s", call.system, call.operation, call.correlation_id, err)

    return record
