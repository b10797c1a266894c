"""What a steward can do to an engagement, shared by the console pages and the JSON API.

Each action parses the input (field errors for bad input, nothing sent), runs the Update
through `console.updates`, and records the outcome with the acting user in the ledger audit.
Authorization is the caller's job (the routers check the role before calling).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping

from temporalio.client import Client

from console import updates
from console.audit import StewardAudit
from console.forms import amendment_from_form, customer_patch_from
from console.queue import QueueRow, list_queue
from console.updates import FieldError, UpdateOutcome
from starter.cli import get_status
from workflows.models import (
    Amendment,
    CancelInput,
    CustomerPatch,
    EngagementStatus,
    RecheckInput,
    ReplayExceptionsInput,
)

ClientGetter = Callable[[], Awaitable[Client]]


class StewardService:
    def __init__(self, get_client: ClientGetter, audit: StewardAudit) -> None:
        self._get_client = get_client
        self.audit = audit

    async def client(self) -> Client:
        return await self._get_client()

    # ---- reads ----------------------------------------------------------------------------
    async def status(self, opportunity_id: str) -> EngagementStatus:
        return await get_status(await self.client(), opportunity_id)

    async def queue(self, **filters) -> list[QueueRow]:
        return await list_queue(await self.client(), **filters)

    # ---- changes ----------------------------------------------------------------------------
    async def _audited(self, operation: str, user: str, opportunity_id: str, outcome: UpdateOutcome,
                       started: float) -> UpdateOutcome:
        await self.audit.arecord(operation, user, opportunity_id, accepted=outcome.ok, started=started,
                                 error_code=None if outcome.ok else "ValidationFailed")
        return outcome

    async def fix(self, opportunity_id: str, values: Mapping[str, object] | CustomerPatch,
                  user: str) -> UpdateOutcome:
        started = time.monotonic()
        if isinstance(values, CustomerPatch):
            patch, errors = values.model_copy(update={"provided_by": user}), []
        else:
            patch, errors = customer_patch_from(values, provided_by=user)
        if errors:
            return UpdateOutcome(errors=errors)
        outcome = await updates.provide_customer_data(await self.client(), opportunity_id, patch)
        return await self._audited(updates.PROVIDE_CUSTOMER_DATA, user, opportunity_id, outcome, started)

    async def amend(self, opportunity_id: str, values: Mapping[str, object] | Amendment,
                    user: str) -> UpdateOutcome:
        started = time.monotonic()
        if isinstance(values, Amendment):
            amendment, errors = values.model_copy(update={"requested_by": user}), []
        else:
            amendment, errors = amendment_from_form(values, requested_by=user)
        if errors:
            return UpdateOutcome(errors=errors)
        outcome = await updates.amend_contract(await self.client(), opportunity_id, amendment)
        return await self._audited(updates.AMEND_CONTRACT, user, opportunity_id, outcome, started)

    async def cancel(self, opportunity_id: str, reason: str, user: str) -> UpdateOutcome:
        started = time.monotonic()
        if not (reason or "").strip():
            return UpdateOutcome(errors=[FieldError("reason", "a cancellation needs a reason")])
        outcome = await updates.cancel(await self.client(), opportunity_id,
                                       CancelInput(reason=reason.strip(), requested_by=user))
        return await self._audited(updates.CANCEL, user, opportunity_id, outcome, started)

    async def replay(self, opportunity_id: str, psa_ids: list[str], user: str) -> UpdateOutcome:
        started = time.monotonic()
        outcome = await updates.replay_exceptions(
            await self.client(), opportunity_id,
            ReplayExceptionsInput(psa_ids=[p.strip() for p in psa_ids if p.strip()], requested_by=user))
        return await self._audited(updates.REPLAY_EXCEPTIONS, user, opportunity_id, outcome, started)

    async def recheck(self, opportunity_id: str, note: str | None, user: str) -> str:
        started = time.monotonic()
        wf_id = await updates.send_recheck(await self.client(), opportunity_id,
                                           RecheckInput(requested_by=user, note=(note or "").strip() or None))
        await self.audit.arecord(updates.RECHECK, user, opportunity_id, started=started)
        return wf_id
