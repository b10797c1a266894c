"""What a steward can do to an engagement, shared by the console pages, the JSON API and the CLI.

Each action parses the input (field errors for bad input, nothing sent), runs the Update
through `q2c.engagement.updates` with an Update ID derived from the request, and records the outcome
with the acting user in the ledger audit (the Update ID is the audit row's correlation ID, so
a retried request shows as two rows with one ID). Authorization is the caller's job (the
routers check the role before calling).

Update IDs (`RequestKey`): a request that is sent again must apply once, a new request must
apply even when it asks the same thing as an earlier one.
- a console form carries a request id minted when the page was rendered; the ID is that id
  plus what the form asks, so a retried POST of the same form applies once, while the same
  form sent with other values (back, edit, submit) is a new change;
- an API client's `Idempotency-Key`, or the CLI's `--request-id`, names the request by itself;
- without one, the ID is derived from the user, the engagement, the update and its input. For
  actions a steward legitimately repeats with the same input, the ID also names what the
  action is aimed at, so that repeating it after the engagement moved on is a new request:
  `retry` and `provide_customer_data` the pause they end (a new pause is a new one);
  `replay_exceptions` and `write_off_exceptions` the targeted open exceptions and how often
  each was tried (from the ledger); `accept_milestone` the milestone's state and the pause.
  An amendment, a cancellation or a waiver is named by its input alone: the same change order
  sent again is the same change order (give a new key to really apply it twice). A credit too:
  the same invoice, amount and reason again is the same credit note (the ERP memo's external
  ID is derived from the Update ID, so it is created once); a second, equal credit needs a key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from temporalio.client import Client

from q2c.domain.text import REASON_MAX
from q2c.engagement import client as engagement_client
from q2c.engagement import updates
from q2c.engagement.client import get_status
from q2c.engagement.messages import (
    AcceptMilestoneInput,
    Amendment,
    BudgetHoldDecisionInput,
    CancelInput,
    CreditInvoiceInput,
    CustomerPatch,
    EngagementStatus,
    RebillLine,
    ReplayExceptionsInput,
    RetryInput,
    WaiveMilestoneInput,
    WriteOffInput,
)
from q2c.engagement.updates import FieldError, UpdateOutcome, derive_update_id
from q2c.stewardship.audit import StewardAudit
from q2c.stewardship.forms import amendment_from_form, customer_patch_from
from q2c.stewardship.queue import QueueRow, list_queue

ClientGetter = Callable[[], Awaitable[Client]]
MAX_KEY_LENGTH = 200
MAX_PSA_IDS = 5_000


@dataclass(frozen=True)
class RequestKey:
    """What names one request for its Update ID (see the module doc).

    value: the caller's key (a form's request id, an Idempotency-Key, `--request-id`), or None
    to derive it; per_input: the key names a rendered form, so different values sent with it
    are different requests."""

    value: str | None = None
    source: str = "api"  # console | api | cli
    per_input: bool = False

    @classmethod
    def form(cls, request_id: str | None) -> RequestKey:
        return cls(value=(request_id or "").strip() or None, source="console", per_input=True)


def key_errors(value: str | None, field: str) -> list[FieldError]:
    """A client-supplied key: 1..200 visible ASCII characters."""
    if value is None:
        return []
    if not value or len(value) > MAX_KEY_LENGTH or not all(33 <= ord(c) < 127 for c in value):
        return [FieldError(field, f"must be 1 to {MAX_KEY_LENGTH} visible ASCII characters")]
    return []


def _text(
    value: object, field: str, errors: list[FieldError], *, required: str | None = None, limit: int = REASON_MAX
) -> str:
    """A string input; `required` is the reason given when it is missing or blank. Longer than
    `limit` (what the ledger keeps of a reason) is refused, never cut."""
    if value is not None and not isinstance(value, str):
        errors.append(FieldError(field, "must be a string"))
        return ""
    text = (value or "").strip()
    if required and not text:
        errors.append(FieldError(field, required))
    if len(text) > limit:
        errors.append(FieldError(field, f"at most {limit} characters ({len(text)} given)"))
    return text


def _psa_ids(value: object, errors: list[FieldError]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
        errors.append(FieldError("psa_ids", "must be a list of PSA time-entry ids"))
        return []
    ids = list(dict.fromkeys(i.strip() for i in value if i.strip()))
    if len(ids) > MAX_PSA_IDS:
        errors.append(FieldError("psa_ids", f"at most {MAX_PSA_IDS} ids per request; use all open ones instead"))
    return ids


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

    # ---- update ids -----------------------------------------------------------------------
    async def update_id(self, key: RequestKey | None, user: str, opportunity_id: str, update: str, arg: Any) -> str:
        key = key or RequestKey()
        if key.value:
            parts = [key.source, user, opportunity_id, update, key.value]
            return derive_update_id(*parts, *([arg] if key.per_input else []))
        return derive_update_id(
            "derived", user, opportunity_id, update, arg, await self._target(update, opportunity_id, arg)
        )

    async def _target(self, update: str, opportunity_id: str, arg: Any) -> Any:
        """What a repeatable action is aimed at, as it is now (see the module doc)."""
        if update not in (
            updates.RETRY,
            updates.PROVIDE_CUSTOMER_DATA,
            updates.REPLAY_EXCEPTIONS,
            updates.WRITE_OFF_EXCEPTIONS,
            updates.ACCEPT_MILESTONE,
        ):
            return None
        if update in (updates.REPLAY_EXCEPTIONS, updates.WRITE_OFF_EXCEPTIONS):
            tried = await self._exception_attempts(opportunity_id, arg.psa_ids)
            if tried is not None:
                return tried
        status = await self.status(opportunity_id)
        pause = status.pause
        target: dict[str, Any] = {
            "pause": [pause.kind.value, pause.since, pause.system, pause.operation] if pause is not None else None
        }
        if update in (updates.REPLAY_EXCEPTIONS, updates.WRITE_OFF_EXCEPTIONS):  # no ledger at hand
            target.update(
                open=status.open_exception_count,
                sample=[x.psa_id for x in status.open_exceptions],
                written_off=status.written_off_entries,
                posted=status.totals.posted_entries,
            )
        if update == updates.ACCEPT_MILESTONE and status.engagement is not None:
            m = next((m for m in status.engagement.milestones if m.key == arg.milestone_key), None)
            target["milestone"] = None if m is None else [m.accepted, m.invoiced, getattr(m, "waived", False)]
        return target

    async def _exception_attempts(self, opportunity_id: str, psa_ids: list[str]) -> list | None:
        """[(psa id, attempts, last seen)] of the open exceptions targeted, from the ledger; None
        without a ledger. A replay that parks an entry again counts one more attempt."""
        ledger_of = getattr(self.audit, "ledger", None)
        if ledger_of is None:
            return None

        def read() -> list:
            rows = ledger_of().list_exceptions(opportunity_id, status="open")
            wanted = set(psa_ids)
            return sorted(
                [r.psa_id, r.attempts, r.last_seen.isoformat() if r.last_seen else None]
                for r in rows
                if not wanted or r.psa_id in wanted
            )

        return await asyncio.to_thread(read)

    # ---- changes ----------------------------------------------------------------------------
    async def _send(
        self,
        operation: str,
        user: str,
        opportunity_id: str,
        arg: Any,
        key: RequestKey | None,
        send: Callable[..., Awaitable[UpdateOutcome]],
    ) -> UpdateOutcome:
        """Name the request, send it, audit the outcome with the user and the Update ID."""
        started = time.monotonic()
        update_id = await self.update_id(key, user, opportunity_id, operation, arg)
        outcome = await send(await self.client(), opportunity_id, arg, update_id=update_id)
        outcome.update_id = update_id
        await self.audit.arecord(
            operation,
            user,
            opportunity_id,
            accepted=outcome.ok,
            started=started,
            error_code=None if outcome.ok else "ValidationFailed",
            update_id=update_id,
        )
        return outcome

    async def fix(
        self,
        opportunity_id: str,
        values: Mapping[str, object] | CustomerPatch,
        user: str,
        key: RequestKey | None = None,
    ) -> UpdateOutcome:
        if isinstance(values, CustomerPatch):
            patch, errors = values.model_copy(update={"provided_by": user}), []
        else:
            patch, errors = customer_patch_from(values, provided_by=user)
        if errors:
            return UpdateOutcome(errors=errors)
        return await self._send(
            updates.PROVIDE_CUSTOMER_DATA, user, opportunity_id, patch, key, updates.provide_customer_data
        )

    async def amend(
        self, opportunity_id: str, values: Mapping[str, object] | Amendment, user: str, key: RequestKey | None = None
    ) -> UpdateOutcome:
        if isinstance(values, Amendment):
            amendment, errors = values.model_copy(update={"requested_by": user}), []
        else:
            amendment, errors = amendment_from_form(values, requested_by=user)
        if errors:
            return UpdateOutcome(errors=errors)
        return await self._send(updates.AMEND_CONTRACT, user, opportunity_id, amendment, key, updates.amend_contract)

    async def cancel(
        self, opportunity_id: str, reason: object, user: str, key: RequestKey | None = None
    ) -> UpdateOutcome:
        errors: list[FieldError] = []
        text = _text(reason, "reason", errors, required="a cancellation needs a reason")
        if errors:
            return UpdateOutcome(errors=errors)
        return await self._send(
            updates.CANCEL, user, opportunity_id, CancelInput(reason=text, requested_by=user), key, updates.cancel
        )

    async def replay(
        self, opportunity_id: str, psa_ids: object, user: str, key: RequestKey | None = None
    ) -> UpdateOutcome:
        errors: list[FieldError] = []
        ids = _psa_ids(psa_ids, errors)
        if errors:
            return UpdateOutcome(errors=errors)
        return await self._send(
            updates.REPLAY_EXCEPTIONS,
            user,
            opportunity_id,
            ReplayExceptionsInput(psa_ids=ids, requested_by=user),
            key,
            updates.replay_exceptions,
        )

    async def retry(self, opportunity_id: str, note: object, user: str, key: RequestKey | None = None) -> UpdateOutcome:
        """The cause of a parked step was fixed in the named system: run the step again."""
        errors: list[FieldError] = []
        text = _text(note, "note", errors)
        if errors:
            return UpdateOutcome(errors=errors)
        return await self._send(
            updates.RETRY, user, opportunity_id, RetryInput(requested_by=user, note=text), key, updates.retry
        )

    async def write_off(
        self, opportunity_id: str, psa_ids: object, reason: object, user: str, key: RequestKey | None = None
    ) -> UpdateOutcome:
        """Parked time that will never be billed; empty psa_ids: every open exception."""
        errors: list[FieldError] = []
        ids = _psa_ids(psa_ids, errors)
        text = _text(reason, "reason", errors, required="say why this time will never be billed")
        if errors:
            return UpdateOutcome(errors=errors)
        return await self._send(
            updates.WRITE_OFF_EXCEPTIONS,
            user,
            opportunity_id,
            WriteOffInput(psa_ids=ids, reason=text, requested_by=user),
            key,
            updates.write_off_exceptions,
        )

    async def accept_milestone(
        self,
        opportunity_id: str,
        milestone_key: object,
        user: str,
        accepted_on: object = None,
        key: RequestKey | None = None,
    ) -> UpdateOutcome:
        """The client accepted a fixed-fee milestone: it is invoiced (once)."""
        errors: list[FieldError] = []
        mkey = _text(milestone_key, "milestone_key", errors, required="name the milestone (its key)")
        on = _date(accepted_on, "accepted_on", errors)
        if errors:
            return UpdateOutcome(errors=errors)
        return await self._send(
            updates.ACCEPT_MILESTONE,
            user,
            opportunity_id,
            AcceptMilestoneInput(milestone_key=mkey, accepted_by=user, accepted_on=on),
            key,
            updates.accept_milestone,
        )

    async def waive_milestone(
        self, opportunity_id: str, milestone_key: object, reason: object, user: str, key: RequestKey | None = None
    ) -> UpdateOutcome:
        """A milestone that will not be invoiced, decided with a reason."""
        errors: list[FieldError] = []
        mkey = _text(milestone_key, "milestone_key", errors, required="name the milestone (its key)")
        text = _text(reason, "reason", errors, required="say why the milestone is waived")
        if errors:
            return UpdateOutcome(errors=errors)
        return await self._send(
            updates.WAIVE_MILESTONE,
            user,
            opportunity_id,
            WaiveMilestoneInput(milestone_key=mkey, reason=text, requested_by=user),
            key,
            updates.waive_milestone,
        )

    async def credit_invoice(
        self,
        opportunity_id: str,
        invoice: object,
        amount: object,
        reason: object,
        user: str,
        key: RequestKey | None = None,
        rebill: object = None,
    ) -> UpdateOutcome:
        """Credit all or part of an issued invoice with a reason (an ERP credit memo applied
        to it); the engagement checks the invoice and the amount against what it still owes."""
        errors: list[FieldError] = []
        name = _text(invoice, "invoice", errors, required="name the invoice (its external ID or number)")
        value = _amount(amount, "amount", errors)
        text = _text(reason, "reason", errors, required="say why the invoice is credited")
        lines = _rebill_lines(rebill, errors)
        if errors:
            return UpdateOutcome(errors=errors)
        return await self._send(
            updates.CREDIT_INVOICE,
            user,
            opportunity_id,
            CreditInvoiceInput(invoice=name, amount=value, reason=text, requested_by=user, rebill=lines),
            key,
            updates.credit_invoice,
        )

    async def decide_budget_hold(
        self, opportunity_id: str, action: object, reason: object, user: str, key: RequestKey | None = None
    ) -> UpdateOutcome:
        """The PMO's decision on time held at the not-to-exceed cap: release (bill it, beyond
        the cap) or write_off (never bill it), with a reason. Raising the cap is a change order."""
        errors: list[FieldError] = []
        text = _text(reason, "reason", errors, required="say why (the decision is recorded)")
        what = str(action or "").strip().lower().replace("-", "_")
        if what not in ("release", "write_off"):
            errors.append(FieldError("action", "choose release or write_off"))
        if errors:
            return UpdateOutcome(errors=errors)
        return await self._send(
            updates.DECIDE_BUDGET_HOLD,
            user,
            opportunity_id,
            BudgetHoldDecisionInput(action=what, reason=text, requested_by=user),
            key,
            updates.decide_budget_hold,
        )

    async def recheck(self, opportunity_id: str, note: str | None, user: str) -> str:
        """A signal, not an Update: re-reading the CRM twice is harmless, so it needs no ID."""
        started = time.monotonic()
        wf_id = await engagement_client.recheck(
            await self.client(), opportunity_id, requested_by=user, note=(note or "").strip() or None
        )
        await self.audit.arecord(updates.RECHECK, user, opportunity_id, started=started)
        return wf_id


def _rebill_lines(value: object, errors: list[FieldError]) -> list[RebillLine]:
    """[{description, quantity, rate}] (money as strings, never floats); None or [] -> none."""
    if value in (None, "", []):
        return []
    if not isinstance(value, list):
        errors.append(FieldError("rebill", "a list of {description, quantity, rate}"))
        return []
    lines: list[RebillLine] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            errors.append(FieldError(f"rebill[{i}]", "an object with description, quantity and rate"))
            continue
        before = len(errors)
        text = _text(item.get("description"), f"rebill[{i}].description", errors, required="describe the line")
        parsed = len(errors)
        quantity = _amount(item.get("quantity", "1"), f"rebill[{i}].quantity", errors)
        if len(errors) == parsed and quantity <= 0:
            errors.append(FieldError(f"rebill[{i}].quantity", "must be positive"))
        rate = _amount(item.get("rate"), f"rebill[{i}].rate", errors)
        if len(errors) == before:
            lines.append(RebillLine(description=text, quantity=quantity, rate=rate))
    return lines


def _amount(value: object, field: str, errors: list[FieldError]) -> Decimal:
    """A money amount as given (a string or a number, never read through float)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, float):
        errors.append(FieldError(field, 'send the amount as a string (e.g. "250.00"): money is never read as a float'))
        return Decimal(0)
    if isinstance(value, str) and value.strip():
        try:
            parsed = Decimal(value.strip().replace(",", ""))
        except InvalidOperation:
            parsed = None
        if parsed is not None and parsed.is_finite():
            return parsed
    errors.append(FieldError(field, f"'{value if value is not None else ''}' is not an amount (e.g. 250.00)"))
    return Decimal(0)


def _date(value: object, field: str, errors: list[FieldError]) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    errors.append(FieldError(field, f"'{value}' is not a date (YYYY-MM-DD)"))
    return None
