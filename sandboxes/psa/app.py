"""The Kantata sandbox app: `create_app(db_url, *, seed=True, token=DEMO_PSA_TOKEN)`.

Kantata authenticates every `/api/v1` call with `Authorization: Bearer <token>` (an OAuth
token or a personal API token); a missing or wrong token answers 401
`{"errors": [{"type": "oauth", "message": ...}]}`. The sandbox accepts one configured token;
`POST /__sandbox/tokens/revoke` rejects it until `POST /__sandbox/reset`.

Sandbox-only: `/__sandbox/faults` (shared fault injection, rendered in Kantata's error shape),
`/__sandbox/reset`, `/__sandbox/tokens/revoke`, `GET /__sandbox/records/{type}` (every row
of a type, for test assertions: workspaces, stories, users, roles, resource_requests,
workspace_resources, external_references, workspace_templates, time_entries, timesheet_submissions, expenses),
`POST /__sandbox/time/generate` and `/__sandbox/time/bulk` (time data, see time_generator),
`PUT /__sandbox/users/{id}` `{"role_id": "502" | null}` (a member's account role changes).

Time: `/api/v1/time_entries.json` and `/api/v1/timesheet_submissions.json` (see time_routes).
Expenses: `/api/v1/expenses.json` and the sandbox-only `POST /__sandbox/expenses/generate`
(see expense_routes).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import StatementError
from sqlmodel import Session, col, select
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandboxes import config as settings
from sandboxes.common.admin import admin_router
from sandboxes.common.db import make_engine
from sandboxes.common.faults import ADMIN_PREFIX, FaultInjectionMiddleware, FaultState, json_error_renderer
from sandboxes.psa import render
from sandboxes.psa import seed as seeding
from sandboxes.psa.expense_routes import expense_router, expense_sandbox_router
from sandboxes.psa.models import Role, User
from sandboxes.psa.render import KantataError, error
from sandboxes.psa.routes import RENDERERS, api_router, as_id, get_or_404, render_row
from sandboxes.psa.time_generator import time_sandbox_router
from sandboxes.psa.time_routes import time_router


@dataclass
class AuthState:
    token: str
    revoked: bool = False


def create_app(db_url: str, *, seed: bool = True, token: str = settings.DEMO_PSA_TOKEN) -> FastAPI:
    engine = make_engine(db_url)
    seeding.create_tables(engine)
    if seed:
        seeding.seed(engine)
    auth = AuthState(token=token)
    faults = FaultState()

    def require_auth(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if not header:
            raise error(401, "oauth", "Authorization header is missing: send 'Authorization: Bearer <token>'")
        if scheme.lower() != "bearer" or presented.strip() != auth.token or auth.revoked:
            raise error(401, "oauth", "Invalid OAuth 2 token: it is unknown, expired or revoked")

    app = FastAPI(title="Kantata OX API v1 (q2c sandbox)")
    app.state.faults = faults
    app.state.engine = engine
    app.state.auth = auth

    @app.exception_handler(KantataError)
    async def kantata_error(_: Request, exc: KantataError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Bearer realm="Kantata"'} if exc.status == 401 else None
        return JSONResponse(render.error_body(exc.errors), status_code=exc.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            render.error_body([{"type": "system", "message": str(exc.detail)}]), status_code=exc.status_code
        )

    @app.exception_handler(RequestValidationError)
    async def request_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        message = f"Malformed request: {first.get('msg', 'invalid input')}"
        return JSONResponse(render.error_body([{"type": "system", "message": message}]), status_code=400)

    @app.exception_handler(OverflowError)
    @app.exception_handler(UnicodeError)
    @app.exception_handler(StatementError)
    async def unstorable_input(_: Request, exc: Exception) -> JSONResponse:
        """A value the database cannot hold (a number beyond 64 bits, text that is not valid
        Unicode) is the client's mistake: Kantata answers 4xx for bad input, never 5xx. A
        database failure of any other kind stays a 500 in Kantata's error shape."""
        cause = getattr(exc, "orig", None) if isinstance(exc, StatementError) else exc
        if isinstance(cause, (OverflowError, UnicodeError, ValueError)):
            message = f"Malformed request: a value cannot be stored ({type(cause).__name__})"
            return JSONResponse(render.error_body([{"type": "system", "message": message}]), status_code=400)
        return JSONResponse(render.error_body([{"type": "system", "message": "Internal error"}]), status_code=500)

    app.include_router(api_router(engine, require_auth))
    app.include_router(time_router(engine, require_auth))
    app.include_router(expense_router(engine, require_auth))

    def revoke() -> int:
        auth.revoked = True
        return 1

    def reset() -> None:
        auth.revoked = False
        seeding.reset(engine)

    app.include_router(admin_router(faults, reset=reset, revoke_tokens=revoke))
    app.include_router(time_sandbox_router(engine))
    app.include_router(expense_sandbox_router(engine))

    @app.get(f"{ADMIN_PREFIX}/records/{{record_type}}")
    def records(record_type: str) -> dict:
        if record_type not in RENDERERS:
            raise error(404, "system", f"unknown record type '{record_type}'; one of {sorted(RENDERERS)}")
        model = RENDERERS[record_type][0]
        with Session(engine) as s:
            rows = s.exec(select(model).order_by(col(model.id))).all()
            items = [render_row(s, record_type, r) for r in rows]
        return {"type": record_type, "count": len(items), "records": items}

    @app.put(f"{ADMIN_PREFIX}/users/{{user_id}}")
    def set_user_role(user_id: str, payload: dict = Body(...)) -> dict:
        """Stands in for an account admin changing a member's account role (Kantata: Settings >
        Members; `role_id: null` leaves the member without one). Entries already booked keep
        the role they were booked under, as in Kantata."""
        if "role_id" not in payload:
            raise error(422, "validation", "role_id is required (a role id, or null)", "role_id")
        raw = payload["role_id"]
        with Session(engine) as s:
            user = get_or_404(s, User, user_id, "User")
            role_id = as_id(raw)
            if raw in (None, ""):
                user.role_id = None
            elif role_id is None or s.get(Role, role_id) is None:
                raise error(422, "validation", f"Role {raw} does not exist", "role_id")
            else:
                user.role_id = role_id
            s.add(user)
            s.commit()
            s.refresh(user)
            return render.user(user)

    app.add_middleware(FaultInjectionMiddleware, state=faults, render_error=json_error_renderer(render.fault_body))
    return app
