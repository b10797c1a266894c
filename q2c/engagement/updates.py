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

Update IDs: every change is sent with an ID derived from the request (`derive_update_id`), and
Temporal applies an Update ID once per workflow run: a second request with the same ID gets
the first one's outcome (or joins it while it still runs) instead of changing anything again.
So a click retried after a timeout, an API call retried by its client, or a CLI command run
again after a lost answer applies once. Where the ID comes from is the caller's business (a
form's request id, an `Idempotency-Key`, the command's arguments; see `q2c.stewardship.service`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio.client import Client, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from q2c.engagement.client import EngagementNotAnswering, raise_for_rpc, workflow_id_for
from q2c.engagement.messages import (
    AcceptMilestoneInput,
    Amendment,
    BudgetHoldDecisionInput,
    BudgetHoldDecisionResult,
    CancelInput,
    ContractVersion,
    CreditInvoiceInput,
    CreditNoteSummary,
    CustomerPatch,
    InvoiceSummary,
    PostingResult,
    ReplayExceptionsInput,
    RetryInput,
    WaiveMilestoneInput,
    WriteOffInput,
    WriteOffResult,
)
from q2c.engagement.rejections import VALIDATION_FAILED

DEFAULT_UPDATE_TIMEOUT = 30.0

PROVIDE_CUSTOMER_DATA = "provide_customer_data"
AMEND_CONTRACT = "amend_contract"
CANCEL = "cancel"
REPLAY_EXCEPTIONS = "replay_exceptions"
RECHECK = "recheck"
RETRY = "retry"
WRITE_OFF_EXCEPTIONS = "write_off_exceptions"
ACCEPT_MILESTONE = "accept_milestone"
WAIVE_MILESTONE = "waive_milestone"
CREDIT_INVOICE = "credit_invoice"
DECIDE_BUDGET_HOLD = "decide_budget_hold"
UPDATE_ID_PREFIX = "q2c-"


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
    update_id: str | None = None  # the ID it was sent with (None: not sent, e.g. bad input)

    @property
    def ok(self) -> bool:
        return not self.errors


def field_errors_from(err: ApplicationError) -> list[FieldError]:
    """The field errors a ValidationFailed carries (details[0]["errors"]), else parsed from
    its "field: reason; field: reason" message; any other failure becomes one `_` error."""
    if err.type == VALIDATION_FAILED:
        details = err.details[0] if err.details else None
        if isinstance(details, dict) and isinstance(details.get("errors"), list):
            found = [
                FieldError(str(e.get("field", "_")), str(e.get("reason", "")))
                for e in details["errors"]
                if isinstance(e, dict)
            ]
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


# ---- reading results ------------------------------------------------------------------------


def counted(result: Any, count_field: str, sample_field: str) -> int:
    """How many, where a result carries an exact count beside a bounded sample list (a long
    engagement parks thousands of entries; the list holds a few): the count when it has one."""
    return max(getattr(result, count_field, 0) or 0, len(getattr(result, sample_field, None) or []))


def replay_text(result: Any) -> str:
    """'posted 3 (4.50 h), 2 still parked' for a PostingResult."""
    return (
        f"posted {result.posted} ({result.posted_minutes / 60:.2f} h), "
        f"{counted(result, 'exceptions_count', 'exceptions')} still parked"
    )


def write_off_text(result: Any) -> str:
    """'3 entries written off (4.50 h), never to be billed; 2 still open' for a WriteOffResult."""
    minutes = getattr(result, "minutes", None)
    remaining = getattr(result, "open_remaining", None)
    not_open = getattr(result, "not_open", None) or []
    return (
        f"{result.written_off} entries written off"
        + (f" ({minutes / 60:.2f} h)" if minutes else "")
        + ", never to be billed"
        + (f"; {remaining} still open" if remaining is not None else "")
        + (f"; not open exceptions: {', '.join(not_open[:20])}" if not_open else "")
    )


def canonical(value: Any) -> Any:
    """JSON-ready form of an Update input (or any part of a request), for hashing: a model is
    dumped in JSON mode, so Decimal("1.0") and "1.0" in a body come out the same."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def derive_update_id(*parts: Any) -> str:
    """A stable Update ID from the parts that name one request (who, which engagement, which
    update, what was asked...): the same parts always give the same ID."""
    text = json.dumps([canonical(p) for p in parts], sort_keys=True, separators=(",", ":"), default=str)
    return UPDATE_ID_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


async def run_update(
    client: Client,
    opportunity_id: str,
    update: str,
    arg: Any,
    *,
    result_type: type | None = None,
    update_id: str | None = None,
    timeout: float = DEFAULT_UPDATE_TIMEOUT,
) -> UpdateOutcome:
    """Execute `update` with `arg` on the engagement; rejection -> UpdateOutcome.errors.

    `update_id`: the request's ID (see the module doc); the same ID again returns the first
    outcome instead of applying twice. None lets Temporal pick a fresh one (applies each time)."""
    handle = client.get_workflow_handle(workflow_id_for(opportunity_id))
    try:
        result = await asyncio.wait_for(
            handle.execute_update(
                update, arg, id=update_id, result_type=result_type, rpc_timeout=timedelta(seconds=timeout)
            ),
            timeout=timeout + 2,
        )
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError):
            return UpdateOutcome(errors=field_errors_from(cause))
        return UpdateOutcome(errors=[FieldError("_", str(cause or err))])
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        # it may still apply: sending the same request again (same update ID) applies it once
        raise EngagementNotAnswering(
            opportunity_id, f"no answer in {timeout:g}s; sending the same request again applies it once"
        ) from None
    except RPCError as err:
        _raise_for_rpc(opportunity_id, err)
    return UpdateOutcome(result=result)


def _raise_for_rpc(opportunity_id: str, err: RPCError) -> None:
    raise_for_rpc(opportunity_id, err)


# ---- the engagement's changes, typed --------------------------------------------------------


async def provide_customer_data(client: Client, opportunity_id: str, patch: CustomerPatch, **kw) -> UpdateOutcome:
    return await run_update(client, opportunity_id, PROVIDE_CUSTOMER_DATA, patch, result_type=str, **kw)


async def amend_contract(client: Client, opportunity_id: str, amendment: Amendment, **kw) -> UpdateOutcome:
    return await run_update(client, opportunity_id, AMEND_CONTRACT, amendment, result_type=ContractVersion, **kw)


async def cancel(client: Client, opportunity_id: str, request: CancelInput, **kw) -> UpdateOutcome:
    return await run_update(client, opportunity_id, CANCEL, request, result_type=str, **kw)


async def replay_exceptions(client: Client, opportunity_id: str, request: ReplayExceptionsInput, **kw) -> UpdateOutcome:
    return await run_update(client, opportunity_id, REPLAY_EXCEPTIONS, request, result_type=PostingResult, **kw)


async def retry(client: Client, opportunity_id: str, request: RetryInput, **kw) -> UpdateOutcome:
    """End a pause whose action is `retry`: the parked step runs again (result: what is retried)."""
    return await run_update(client, opportunity_id, RETRY, request, result_type=str, **kw)


async def write_off_exceptions(client: Client, opportunity_id: str, request: WriteOffInput, **kw) -> UpdateOutcome:
    """Parked time that will never be billed (result: WriteOffResult)."""
    return await run_update(client, opportunity_id, WRITE_OFF_EXCEPTIONS, request, result_type=WriteOffResult, **kw)


async def accept_milestone(client: Client, opportunity_id: str, request: AcceptMilestoneInput, **kw) -> UpdateOutcome:
    """The client accepted a fixed-fee milestone (result: its invoice, or None)."""
    return await run_update(client, opportunity_id, ACCEPT_MILESTONE, request, result_type=InvoiceSummary | None, **kw)


async def waive_milestone(client: Client, opportunity_id: str, request: WaiveMilestoneInput, **kw) -> UpdateOutcome:
    """A milestone that will not be invoiced, decided with a reason (result: str)."""
    return await run_update(client, opportunity_id, WAIVE_MILESTONE, request, result_type=str, **kw)


async def credit_invoice(client: Client, opportunity_id: str, request: CreditInvoiceInput, **kw) -> UpdateOutcome:
    """Credit all or part of an issued invoice (result: CreditNoteSummary)."""
    return await run_update(client, opportunity_id, CREDIT_INVOICE, request, result_type=CreditNoteSummary, **kw)


async def decide_budget_hold(
    client: Client, opportunity_id: str, request: BudgetHoldDecisionInput, **kw
) -> UpdateOutcome:
    """Release or write off the time held at the not-to-exceed cap (result: BudgetHoldDecisionResult)."""
    return await run_update(
        client, opportunity_id, DECIDE_BUDGET_HOLD, request, result_type=BudgetHoldDecisionResult, **kw
    )
