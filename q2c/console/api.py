"""The stewards' JSON API, beside the console (same tokens, same rules).

    GET  /api/queue?queue=&older_than_hours=&customer=   -> {"engagements": [row, ...]}
    GET  /api/engagements/{opp}                          -> the `status` query, as JSON
    POST /api/engagements/{opp}/customer-data  {CustomerPatch fields}      -> {"result": str}
    POST /api/engagements/{opp}/amendments     {Amendment}                 -> {"contract_version": {...}}
    POST /api/engagements/{opp}/cancel         {"reason": str}             -> {"result": str}
    POST /api/engagements/{opp}/recheck        {"note": str?}              -> {"workflow_id": str}
    POST /api/engagements/{opp}/retry          {"note": str?}              -> {"result": str}
    POST /api/engagements/{opp}/exceptions/replay    {"psa_ids": [str]?}   -> {"posting": PostingResult}
    POST /api/engagements/{opp}/exceptions/write-off {"psa_ids": [str]?, "reason": str}
                                                                           -> {"write_off": WriteOffResult}
    POST /api/engagements/{opp}/milestones/{key}/accept {"accepted_on": "YYYY-MM-DD"?}
                                                                           -> {"invoice": InvoiceSummary|null}
    POST /api/engagements/{opp}/milestones/{key}/waive  {"reason": str}    -> {"result": str}
    POST /api/engagements/{opp}/credits  {"invoice": str, "amount": "250.00", "reason": str,
                                          "rebill": [{"description", "quantity", "rate"}] (optional)}
                                                                           -> {"credit_note": CreditNoteSummary}
    POST /api/engagements/{opp}/budget-decisions  {"action": "release" | "write_off", "reason": str}
                                                                           -> {"decision": BudgetHoldDecisionResult}

Auth: `Authorization: Bearer <token>` (or the console cookie plus `X-CSRF-Token`); reads need
any token (401), writes a steward (403 for a viewer). A rejected change answers 422 with
`{"errors": [{"field": ..., "reason": ...}]}`; an unknown engagement 404; no worker 503.
`requested_by` / `provided_by` / `accepted_by` are always the token's user, whatever the body says.

Retries: send `Idempotency-Key: <1..200 visible ASCII>` and a request sent again with the same
key (by the same user, to the same engagement and action) applies once and answers the first
outcome. Without the header the key is derived from the user, the action and the canonical
body (see `q2c.stewardship.service`), so a client's blind retry is safe too. Every change answer
carries `X-Q2C-Update-Id`, the Update ID it was sent with. (recheck is a signal: no ID.)
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from q2c.console.auth import Authenticator, Principal, require_steward, require_viewer
from q2c.console.web import MILESTONE_KEY, OPPORTUNITY_ID, ConsoleUnavailable
from q2c.engagement.client import EngagementNotAnswering, EngagementNotFound
from q2c.engagement.messages import Amendment
from q2c.engagement.updates import FieldError, UpdateOutcome
from q2c.stewardship.forms import pydantic_errors
from q2c.stewardship.service import RequestKey, StewardService, key_errors

MAX_JSON_BYTES = 64_000
IDEMPOTENCY_HEADER = "Idempotency-Key"
UPDATE_ID_HEADER = "X-Q2C-Update-Id"


def _errors(errors: list[FieldError], status: int = 422, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"errors": [e.as_dict() for e in errors]}, status_code=status, headers=headers)


async def _json_body(request: Request) -> dict:
    body = await request.body()
    if len(body) > MAX_JSON_BYTES:
        raise HTTPException(413, "body too large")
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except ValueError as err:
        raise _Rejected([FieldError("body", f"not JSON: {err}")]) from None
    if not isinstance(value, dict):
        raise _Rejected([FieldError("body", "expected a JSON object")])
    return value


def _only(body: dict, *allowed: str) -> None:
    """Unknown fields are refused by name: a typo must not pass for an absent optional field."""
    unknown = [k for k in body if k not in allowed]
    if unknown:
        raise _Rejected([FieldError(k, f"unknown field; allowed: {', '.join(allowed) or 'none'}") for k in unknown])


class _Rejected(Exception):
    def __init__(self, errors: list[FieldError], status: int = 422) -> None:
        self.errors = errors
        self.status = status


def request_key(request: Request) -> RequestKey:
    """The client's Idempotency-Key (400 when malformed), or a key to derive."""
    value = request.headers.get(IDEMPOTENCY_HEADER)
    errors = key_errors(value.strip() if value is not None else None, IDEMPOTENCY_HEADER)
    if errors:
        raise _Rejected(errors, status=400)
    return RequestKey(value=value.strip() if value is not None else None, source="api")


def build_router(service: StewardService, auth: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["steward"])

    def check_opp(opp: str) -> None:
        if not OPPORTUNITY_ID.match(opp):
            raise HTTPException(404, "not an opportunity id")

    async def steward_call(request: Request, opp: str, p: Principal, action) -> JSONResponse:
        """Parse the body, check CSRF for cookie sessions, run `action(body, key)`, map outcomes."""
        check_opp(opp)
        try:
            body = await _json_body(request)
            auth.check_csrf(request, p, None)
            key = request_key(request)
            outcome, render = await action(body, key)
        except _Rejected as rejected:
            return _errors(rejected.errors, rejected.status)
        except EngagementNotFound as err:
            return JSONResponse({"detail": str(err)}, status_code=404)
        except (EngagementNotAnswering, ConsoleUnavailable) as err:
            return JSONResponse({"detail": str(err)}, status_code=503)
        headers = {UPDATE_ID_HEADER: outcome.update_id} if outcome.update_id else None
        if not outcome.ok:
            return _errors(outcome.errors, headers=headers)
        return JSONResponse(render(outcome.result), headers=headers)

    @router.get("/queue")
    async def queue(
        queue: str | None = None,
        older_than_hours: float | None = None,
        customer: str | None = None,
        p: Principal = Depends(require_viewer),
    ) -> JSONResponse:
        try:
            rows = await service.queue(queue=queue or None, older_than_hours=older_than_hours, customer=customer)
        except ValueError as err:
            return _errors([FieldError("queue", str(err))], 400)
        except ConsoleUnavailable as err:
            return JSONResponse({"detail": str(err)}, status_code=503)
        return JSONResponse({"engagements": [r.as_dict() for r in rows]})

    @router.get("/engagements/{opp}")
    async def engagement(opp: str, p: Principal = Depends(require_viewer)) -> JSONResponse:
        check_opp(opp)
        try:
            status = await service.status(opp)
        except EngagementNotFound as err:
            return JSONResponse({"detail": str(err)}, status_code=404)
        except (EngagementNotAnswering, ConsoleUnavailable) as err:
            return JSONResponse({"detail": str(err)}, status_code=503)
        return JSONResponse(status.model_dump(mode="json"))

    @router.post("/engagements/{opp}/customer-data")
    async def customer_data(request: Request, opp: str, p: Principal = Depends(require_steward)) -> JSONResponse:
        async def act(body: dict, key: RequestKey):
            values = {k: v for k, v in body.items() if k != "provided_by"}
            return await service.fix(opp, values, p.user, key), lambda r: {"result": r}

        return await steward_call(request, opp, p, act)

    @router.post("/engagements/{opp}/amendments")
    async def amendments(request: Request, opp: str, p: Principal = Depends(require_steward)) -> JSONResponse:
        async def act(body: dict, key: RequestKey):
            try:
                amendment = Amendment.model_validate({**body, "requested_by": p.user})
            except ValidationError as err:
                raise _Rejected(pydantic_errors(err)) from None
            return (
                await service.amend(opp, amendment, p.user, key),
                lambda v: {"contract_version": v.model_dump(mode="json") if v is not None else None},
            )

        return await steward_call(request, opp, p, act)

    @router.post("/engagements/{opp}/cancel")
    async def cancel(request: Request, opp: str, p: Principal = Depends(require_steward)) -> JSONResponse:
        async def act(body: dict, key: RequestKey):
            return await service.cancel(opp, body.get("reason"), p.user, key), lambda r: {"result": r}

        return await steward_call(request, opp, p, act)

    @router.post("/engagements/{opp}/recheck")
    async def recheck(request: Request, opp: str, p: Principal = Depends(require_steward)) -> JSONResponse:
        async def act(body: dict, key: RequestKey):
            note = body.get("note")
            if note is not None and not isinstance(note, str):
                raise _Rejected([FieldError("note", "must be a string")])
            return UpdateOutcome(result=await service.recheck(opp, note, p.user)), lambda r: {"workflow_id": r}

        return await steward_call(request, opp, p, act)

    @router.post("/engagements/{opp}/retry")
    async def retry(request: Request, opp: str, p: Principal = Depends(require_steward)) -> JSONResponse:
        async def act(body: dict, key: RequestKey):
            _only(body, "note")
            return await service.retry(opp, body.get("note"), p.user, key), lambda r: {"result": r}

        return await steward_call(request, opp, p, act)

    @router.post("/engagements/{opp}/exceptions/replay")
    async def replay(request: Request, opp: str, p: Principal = Depends(require_steward)) -> JSONResponse:
        async def act(body: dict, key: RequestKey):
            return (
                await service.replay(opp, body.get("psa_ids"), p.user, key),
                lambda r: {"posting": r.model_dump(mode="json") if r is not None else None},
            )

        return await steward_call(request, opp, p, act)

    @router.post("/engagements/{opp}/exceptions/write-off")
    async def write_off(request: Request, opp: str, p: Principal = Depends(require_steward)) -> JSONResponse:
        async def act(body: dict, key: RequestKey):
            _only(body, "psa_ids", "reason")
            return (
                await service.write_off(opp, body.get("psa_ids"), body.get("reason"), p.user, key),
                lambda r: {"write_off": r.model_dump(mode="json") if r is not None else None},
            )

        return await steward_call(request, opp, p, act)

    def check_milestone(key: str) -> None:
        if not MILESTONE_KEY.match(key):
            raise HTTPException(404, "not a milestone key")

    @router.post("/engagements/{opp}/milestones/{milestone_key}/accept")
    async def accept_milestone(
        request: Request, opp: str, milestone_key: str, p: Principal = Depends(require_steward)
    ) -> JSONResponse:
        check_milestone(milestone_key)

        async def act(body: dict, key: RequestKey):
            _only(body, "accepted_on")
            return (
                await service.accept_milestone(opp, milestone_key, p.user, body.get("accepted_on"), key),
                lambda r: {"invoice": r.model_dump(mode="json") if r is not None else None},
            )

        return await steward_call(request, opp, p, act)

    @router.post("/engagements/{opp}/milestones/{milestone_key}/waive")
    async def waive_milestone(
        request: Request, opp: str, milestone_key: str, p: Principal = Depends(require_steward)
    ) -> JSONResponse:
        check_milestone(milestone_key)

        async def act(body: dict, key: RequestKey):
            _only(body, "reason")
            return (
                await service.waive_milestone(opp, milestone_key, body.get("reason"), p.user, key),
                lambda r: {"result": r},
            )

        return await steward_call(request, opp, p, act)

    @router.post("/engagements/{opp}/credits")
    async def credit_invoice(request: Request, opp: str, p: Principal = Depends(require_steward)) -> JSONResponse:
        """Credit all or part of an issued invoice: an ERP credit memo applied to it."""

        async def act(body: dict, key: RequestKey):
            _only(body, "invoice", "amount", "reason", "rebill")
            return (
                await service.credit_invoice(
                    opp, body.get("invoice"), body.get("amount"), body.get("reason"), p.user, key, body.get("rebill")
                ),
                lambda r: {"credit_note": r.model_dump(mode="json") if r is not None else None},
            )

        return await steward_call(request, opp, p, act)

    @router.post("/engagements/{opp}/budget-decisions")
    async def budget_decision(request: Request, opp: str, p: Principal = Depends(require_steward)) -> JSONResponse:
        """Release or write off the time held at a T&M contract's not-to-exceed cap."""

        async def act(body: dict, key: RequestKey):
            _only(body, "action", "reason")
            return (
                await service.decide_budget_hold(opp, body.get("action"), body.get("reason"), p.user, key),
                lambda r: {"decision": r.model_dump(mode="json") if r is not None else None},
            )

        return await steward_call(request, opp, p, act)

    return router
