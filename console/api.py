"""The stewards' JSON API, beside the console (same tokens, same rules).

    GET  /api/queue?queue=&older_than_hours=&customer=   -> {"engagements": [row, ...]}
    GET  /api/engagements/{opp}                          -> the `status` query, as JSON
    POST /api/engagements/{opp}/customer-data  {CustomerPatch fields}      -> {"result": str}
    POST /api/engagements/{opp}/amendments     {Amendment}                 -> {"contract_version": {...}}
    POST /api/engagements/{opp}/cancel         {"reason": str}             -> {"result": str}
    POST /api/engagements/{opp}/recheck        {"note": str?}              -> {"workflow_id": str}
    POST /api/engagements/{opp}/exceptions/replay {"psa_ids": [str]?}      -> {"posting": PostingResult}

Auth: `Authorization: Bearer <token>` (or the console cookie plus `X-CSRF-Token`); reads need
any token (401), writes a steward (403 for a viewer). A rejected change answers 422 with
`{"errors": [{"field": ..., "reason": ...}]}`; an unknown engagement 404; no worker 503.
`requested_by` / `provided_by` are always the token's user, whatever the body says.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from console.forms import pydantic_errors
from console.service import StewardService
from console.updates import FieldError, UpdateOutcome
from console.web import OPPORTUNITY_ID, ConsoleUnavailable
from starter.auth import Authenticator, Principal, require_steward, require_viewer
from starter.cli import EngagementNotAnswering, EngagementNotFound
from workflows.models import Amendment

MAX_JSON_BYTES = 64_000


def _errors(errors: list[FieldError], status: int = 422) -> JSONResponse:
    return JSONResponse({"errors": [e.as_dict() for e in errors]}, status_code=status)


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


class _Rejected(Exception):
    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors


def build_router(service: StewardService, auth: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["steward"])

    def check_opp(opp: str) -> None:
        if not OPPORTUNITY_ID.match(opp):
            raise HTTPException(404, "not an opportunity id")

    async def steward_call(request: Request, opp: str, p: Principal, action) -> JSONResponse:
        """Parse the body, check CSRF for cookie sessions, run `action(body)`, map outcomes."""
        check_opp(opp)
        try:
            body = await _json_body(request)
            auth.check_csrf(request, p, None)
            outcome, render = await action(body)
        except _Rejected as rejected:
            return _errors(rejected.errors)
        except EngagementNotFound as err:
            return JSONResponse({"detail": str(err)}, status_code=404)
        except (EngagementNotAnswering, ConsoleUnavailable) as err:
            return JSONResponse({"detail": str(err)}, status_code=503)
        if not outcome.ok:
            return _errors(outcome.errors)
        return JSONResponse(render(outcome.result))

    @router.get("/queue")
    async def queue(queue: str | None = None, older_than_hours: float | None = None,
                    customer: str | None = None, p: Principal = Depends(require_viewer)) -> JSONResponse:
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
        async def act(body: dict):
            values = {k: v for k, v in body.items() if k != "provided_by"}
            return await service.fix(opp, values, p.user), lambda r: {"result": r}
        return await steward_call(request, opp, p, act)

    @router.post("/engagements/{opp}/amendments")
    async def amendments(request: Request, opp: str, p: Principal = Depends(require_steward)) -> JSONResponse:
        async def act(body: dict):
            try:
                amendment = Amendment.model_validate({**body, "requested_by": p.user})
            except ValidationError as err:
                raise _Rejected(pydantic_errors(err)) from None
            return (await service.amend(opp, amendment, p.user),
                    lambda v: {"contract_version": v.model_dump(mode="json") if v is not None else None})
        return await steward_call(request, opp, p, act)

    @router.post("/engagements/{opp}/cancel")
    async def cancel(request: Request, opp: str, p: Principal = Depends(require_steward)) -> JSONResponse:
        async def act(body: dict):
            reason = body.get("reason")
            if reason is not None and not isinstance(reason, str):
                raise _Rejected([FieldError("reason", "must be a string")])
            return await service.cancel(opp, reason or "", p.user), lambda r: {"result": r}
        return await steward_call(request, opp, p, act)

    @router.post("/engagements/{opp}/recheck")
    async def recheck(request: Request, opp: str, p: Principal = Depends(require_steward)) -> JSONResponse:
        async def act(body: dict):
            note = body.get("note")
            if note is not None and not isinstance(note, str):
                raise _Rejected([FieldError("note", "must be a string")])
            return UpdateOutcome(result=await service.recheck(opp, note, p.user)), lambda r: {"workflow_id": r}
        return await steward_call(request, opp, p, act)

    @router.post("/engagements/{opp}/exceptions/replay")
    async def replay(request: Request, opp: str, p: Principal = Depends(require_steward)) -> JSONResponse:
        async def act(body: dict):
            ids = body.get("psa_ids") or []
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise _Rejected([FieldError("psa_ids", "must be a list of PSA time-entry ids")])
            return (await service.replay(opp, ids, p.user),
                    lambda r: {"posting": r.model_dump(mode="json") if r is not None else None})
        return await steward_call(request, opp, p, act)

    return router
