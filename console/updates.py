"""Run a steward's change against an engagement workflow; get the result or the field errors.

The engagement's Updates (`provide_customer_data`, `amend_contract`, `cancel`,
`replay_exceptions`) have validators: an invalid input is rejected *before* anything is
written to the workflow history, with an `ApplicationError` of type `ValidationFailed` whose
message is "field: reason; field: reason" and whose `details[0]` is
`{"errors": [{"field": ..., "reason": ...}]}`. On the client that arrives as
`WorkflowUpdateFailedError` whose `.cause` is that ApplicationError.

    outcome = await run_update(client, opp, "provide_customer_data", patch, result_type=str)
    if outcome.ok: outcome.result  else: outcome.errors  # [FieldError(field, reason)]

The console, the JSON API and the CLI all go through this module, so they agree on what a
rejection looks like. Engagement-level problems raise: `EngagementNotFound` (no such workflow,
or it has finished), `EngagementNotAnswering` (no worker answered in time).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from starter.cli import EngagementNotAnswering, EngagementNotFound
from starter.start import workflow_id_for
from workflows.models import (
    Amendment,
    CancelInput,
    ContractVersion,
    CustomerPatch,
    PostingResult,
    RecheckInput,
    ReplayExceptionsInput,
)

VALIDATION_FAILED = "ValidationFailed"
DEFAULT_UPDATE_TIMEOUT = 30.0

PROVIDE_CUSTOMER_DATA = "provide_customer_data"
AMEND_CONTRACT = "amend_contract"
CANCEL = "cancel"
REPLAY_EXCEPTIONS = "replay_exceptions"
RECHECK = "recheck"


@dataclass(frozen=True)
class FieldError:
    field: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}


@dataclass
class UpdateOutcome:
    """The result of an accepted update, or why it was rejected (never both)."""

    result: Any = None
    errors: list[FieldError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def field_errors_from(err: ApplicationError) -> list[FieldError]:
    """The field errors a ValidationFailed carries (details[0]["errors"]), else parsed from
    its "field: reason; field: reason" message; any other failure becomes one `_` error."""
    if err.type == VALIDATION_FAILED:
        details = err.details[0] if err.details else None
        if isinstance(details, dict) and isinstance(details.get("errors"), list):
            found = [FieldError(str(e.get("field", "_")), str(e.get("reason", "")))
                     for e in details["errors"] if isinstance(e, dict)]
            if found:
                return found
        parsed = []
        for part in (err.message or "").split(";"):
            name, sep, reason = part.partition(":")
            if sep and name.strip():
                parsed.append(FieldError(name.strip(), reason.strip()))
        if parsed:
            return parsed
    return [FieldError("_", err.message or err.type or "rejected")]


async def run_update(client: Client, opportunity_id: str, update: str, arg: Any, *,
                     result_type: type | None = None,
                     timeout: float = DEFAULT_UPDATE_TIMEOUT) -> UpdateOutcome:
    """Execute `update` with `arg` on the engagement; rejection -> UpdateOutcome.errors."""
    handle = client.get_workflow_handle(workflow_id_for(opportunity_id))
    try:
        result = await asyncio.wait_for(
            handle.execute_update(update, arg, result_type=result_type,
                                  rpc_timeout=timedelta(seconds=timeout)),
            timeout=timeout + 2)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError):
            return UpdateOutcome(errors=field_errors_from(cause))
        return UpdateOutcome(errors=[FieldError("_", str(cause or err))])
    except RPCError as err:
        _raise_for_rpc(opportunity_id, err)
    except asyncio.TimeoutError:
        raise EngagementNotAnswering(opportunity_id, f"no answer in {timeout:g}s") from None
    return UpdateOutcome(result=result)


def _raise_for_rpc(opportunity_id: str, err: RPCError) -> None:
    if err.status == RPCStatusCode.NOT_FOUND:  # no such workflow, or it has completed
        raise EngagementNotFound(opportunity_id) from None
    if err.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED,
                      RPCStatusCode.UNAVAILABLE):
        raise EngagementNotAnswering(opportunity_id, err.message) from None
    raise err


# ---- the engagement's changes, typed --------------------------------------------------------

async def provide_customer_data(client: Client, opportunity_id: str, patch: CustomerPatch,
                                **kw) -> UpdateOutcome:
    return await run_update(client, opportunity_id, PROVIDE_CUSTOMER_DATA, patch, result_type=str, **kw)


async def amend_contract(client: Client, opportunity_id: str, amendment: Amendment, **kw) -> UpdateOutcome:
    return await run_update(client, opportunity_id, AMEND_CONTRACT, amendment,
                            result_type=ContractVersion, **kw)


async def cancel(client: Client, opportunity_id: str, request: CancelInput, **kw) -> UpdateOutcome:
    return await run_update(client, opportunity_id, CANCEL, request, result_type=str, **kw)


async def replay_exceptions(client: Client, opportunity_id: str, request: ReplayExceptionsInput,
                            **kw) -> UpdateOutcome:
    return await run_update(client, opportunity_id, REPLAY_EXCEPTIONS, request,
                            result_type=PostingResult, **kw)


async def send_recheck(client: Client, opportunity_id: str, request: RecheckInput) -> str:
    """The `recheck` signal (a steward fixed the source system directly); returns the workflow id."""
    wf_id = workflow_id_for(opportunity_id)
    try:
        await client.get_workflow_handle(wf_id).signal(RECHECK, request)
    except RPCError as err:
        _raise_for_rpc(opportunity_id, err)
    return wf_id
