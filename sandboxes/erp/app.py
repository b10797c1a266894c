"""The NetSuite sandbox app: `create_app(db_url, ...)`.

Wires the record API, the OAuth token endpoint, NetSuite-shaped errors, the shared
fault injection (with the account-wide concurrency limit, default 5 in-flight requests,
beyond which NetSuite answers 429 CONCURRENCY_LIMIT_EXCEEDED) and the sandbox admin API:

- `GET/PUT /__sandbox/faults` (PUT replaces the whole FaultConfig: include
  `concurrency_limit` to keep a limit), `POST /__sandbox/reset` (faults back to the
  defaults of this app, data back to the seed), `POST /__sandbox/tokens/revoke`;
- `GET /__sandbox/records/{type}`: every record of a type, rendered in full (tests);
- finance controls (close/reopen accounting periods, simulate a customer payment): see
  sandbox/erp/finance_admin.py.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError

from sandboxes import config as settings
from sandboxes.common.admin import admin_router
from sandboxes.common.db import make_engine
from sandboxes.common.faults import ADMIN_PREFIX, FaultConfig, FaultInjectionMiddleware, FaultState
from sandboxes.common.tokens import TokenStore
from sandboxes.erp.auth import TOKEN_PATH, token_router
from sandboxes.erp.errors import NetSuiteError, error_response, render_fault
from sandboxes.erp.finance_admin import finance_admin_router
from sandboxes.erp.jsonio import dumps_exact
from sandboxes.erp.render import render
from sandboxes.erp.routes import SINGLE, _record_type, record_router
from sandboxes.erp.seed import seed as seed_store
from sandboxes.erp.store import RecordStore


def create_app(
    db_url: str,
    *,
    seed: bool = True,
    account_id: str = settings.DEMO_ERP_ACCOUNT,
    client_id: str = settings.DEMO_ERP_CLIENT_ID,
    client_secret: str = settings.DEMO_ERP_CLIENT_SECRET,
    concurrency_limit: int | None = 5,
    token_ttl_seconds: int = 3600,
) -> FastAPI:
    """`account_id` is informational: real NetSuite carries it in the host name
    (`{account}.suitetalk.api.netsuite.com`); the sandbox reports it at `/__sandbox/account`."""
    store = RecordStore(make_engine(db_url))
    if seed:
        seed_store(store)
    tokens = TokenStore(ttl_seconds=token_ttl_seconds)

    def default_faults() -> FaultConfig:
        return FaultConfig(concurrency_limit=concurrency_limit)

    faults = FaultState(config=default_faults())

    app = FastAPI(title="NetSuite sandbox (q2c)", version="1.0")
    app.state.faults = faults
    app.state.store = store
    app.state.tokens = tokens
    app.state.account_id = account_id

    @app.exception_handler(NetSuiteError)
    async def _netsuite_error(request: Request, exc: NetSuiteError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return error_response(
            NetSuiteError(400, "INVALID_PARAMETER", f"Invalid request parameter: {first.get('msg', 'invalid')}", where)
        )

    def reset() -> None:
        faults.config = default_faults()
        with store.lock:
            store.clear()
            seed_store(store)

    app.include_router(token_router(tokens, client_id, client_secret))
    app.include_router(record_router(store, tokens))
    app.include_router(admin_router(faults, reset=reset, revoke_tokens=tokens.revoke_all))
    app.include_router(finance_admin_router(store))

    @app.get(ADMIN_PREFIX + "/records/{record_type}")
    def sandbox_records(request: Request, record_type: str) -> Response:
        _record_type(record_type)
        base = str(request.base_url).rstrip("/")
        items = [render(record_type, r, store, base) for r in store.all(record_type)]
        return Response(dumps_exact({"count": len(items), "items": items}), media_type=SINGLE)

    @app.get(ADMIN_PREFIX + "/account")
    def sandbox_account() -> dict:
        return {"account_id": account_id}

    app.add_middleware(FaultInjectionMiddleware, state=faults, render_error=render_fault, exempt_prefixes=(TOKEN_PATH,))
    return app
