"""The NetSuite sandbox app: `create_app(db_url, ...)`.

Wires the record API, the OAuth token endpoint, NetSuite-shaped errors, the shared
fault injection (with the account-wide concurrency limit, default 5 in-flight requests,
beyond which NetSuite answers 429 CONCURRENCY_LIMIT_EXCEEDED) and the sandbox admin API:

- `GET/PUT /__sandbox/faults` (PUT replaces the whole FaultConfig: include
  `concurrency_limit` to keep a limit), `POST /__sandbox/reset` (faults back to the
  defaults of this app, data back to the seed, M2M mappings back to the demo certificate),
  `POST /__sandbox/tokens/revoke`;
- the account's OAuth 2.0 M2M setup (sandboxes/erp/m2m.py): `GET /__sandbox/m2m/certificates`,
  `POST /__sandbox/m2m/certificates` `{"certificate": "<X.509 PEM>", "clientId": "..."}` (what
  an administrator uploads in Setup > Integration > OAuth 2.0 Client Credentials (M2M) Setup;
  answers the `certificateId`, the JWT `kid`), `POST /__sandbox/m2m/certificates/{id}/revoke`;
  the demo certificate (generated at first start into `m2m_dir`) is mapped at start;
- `GET /__sandbox/records/{type}`: every record of a type, rendered in full (tests);
- finance controls (close/reopen accounting periods, simulate a customer payment): see
  sandbox/erp/finance_admin.py.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandboxes import config as settings
from sandboxes.common.admin import admin_router
from sandboxes.common.db import make_engine
from sandboxes.common.faults import ADMIN_PREFIX, FaultConfig, FaultInjectionMiddleware, FaultState
from sandboxes.common.tokens import TokenStore
from sandboxes.erp.auth import TOKEN_PATH, token_router
from sandboxes.erp.errors import NetSuiteError, error_response, render_fault
from sandboxes.erp.finance_admin import finance_admin_router
from sandboxes.erp.jsonio import dumps_exact, json_object
from sandboxes.erp.m2m import KNOWN_SCOPES, AssertionRules, CertificateRegistry, CertificateRejected
from sandboxes.erp.m2m import ensure_demo_credentials as ensure_demo_m2m
from sandboxes.erp.render import render
from sandboxes.erp.routes import SINGLE, _record_type, method_not_allowed, record_router
from sandboxes.erp.seed import seed as seed_store
from sandboxes.erp.store import RecordStore


def create_app(
    db_url: str,
    *,
    seed: bool = True,
    account_id: str = settings.DEMO_ERP_ACCOUNT,
    client_id: str = settings.DEMO_ERP_CLIENT_ID,
    client_scopes: tuple[str, ...] = ("rest_webservices", "restlets"),
    m2m_dir: Path | str | None = None,
    concurrency_limit: int | None = 5,
    token_ttl_seconds: int = 3600,
    assertion_rules: AssertionRules | None = None,
) -> FastAPI:
    """`account_id`: real NetSuite carries it in the host name
    (`{account}.suitetalk.api.netsuite.com`); the sandbox reports it at `/__sandbox/account`
    and accepts that host's token URL as an assertion `aud` besides its own.

    `client_id` is the one integration record with the client-credentials grant, with the
    scopes `client_scopes` checked; `m2m_dir` the folder of the demo certificate, generated
    there at first start (default: `<state_dir>/erp-m2m`, see sandboxes/config.py)."""
    store = RecordStore(make_engine(db_url))
    if seed:
        seed_store(store)
    tokens = TokenStore(ttl_seconds=token_ttl_seconds)
    registry = CertificateRegistry({client_id: tuple(client_scopes)})
    demo = ensure_demo_m2m(m2m_dir if m2m_dir is not None else settings.load_config().erp_m2m_dir)
    registry.register_pem(demo.certificate_path.read_bytes(), client_id, keep_on_reset=True)

    def default_faults() -> FaultConfig:
        return FaultConfig(concurrency_limit=concurrency_limit)

    faults = FaultState(config=default_faults())

    app = FastAPI(title="NetSuite sandbox (q2c)", version="1.0")
    app.state.faults = faults
    app.state.store = store
    app.state.tokens = tokens
    app.state.account_id = account_id
    app.state.m2m = registry
    app.state.demo_m2m = demo

    @app.exception_handler(NetSuiteError)
    async def _netsuite_error(request: Request, exc: NetSuiteError) -> Response:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """FastAPI's own 404/405 (no such URL, no such method) in NetSuite's shape."""
        if request.url.path.startswith(ADMIN_PREFIX):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        if exc.status_code == 405:
            return error_response(method_not_allowed(request.method, request.url.path))
        if exc.status_code == 404:
            return error_response(NetSuiteError(404, "INVALID_URL", f"The URL {request.url.path[:200]} is not valid."))
        return error_response(NetSuiteError(exc.status_code, "INVALID_REQUEST", str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return error_response(
            NetSuiteError(400, "INVALID_PARAMETER", f"Invalid request parameter: {first.get('msg', 'invalid')}", where)
        )

    def reset() -> None:
        faults.config = default_faults()
        registry.reset()
        with store.lock:
            store.clear()
            seed_store(store)

    app.include_router(token_router(tokens, registry, account_id, assertion_rules))
    app.include_router(record_router(store, tokens))
    app.include_router(admin_router(faults, reset=reset, revoke_tokens=tokens.revoke_all))
    app.include_router(finance_admin_router(store))

    @app.get(ADMIN_PREFIX + "/records/{record_type}")
    def sandbox_records(request: Request, record_type: str) -> Response:
        _record_type(record_type)
        base = str(request.base_url).rstrip("/")
        items = [render(record_type, r, store, base, expand=True) for r in store.all(record_type)]
        return Response(dumps_exact({"count": len(items), "items": items}), media_type=SINGLE)

    @app.get(ADMIN_PREFIX + "/account")
    def sandbox_account() -> dict:
        return {"account_id": account_id}

    @app.get(ADMIN_PREFIX + "/m2m/certificates")
    def m2m_certificates() -> dict:
        return {
            "clients": {cid: list(scopes) for cid, scopes in registry.client_scopes.items()},
            "knownScopes": list(KNOWN_SCOPES),
            "certificates": [m.as_json() for m in registry.all()],
        }

    @app.post(ADMIN_PREFIX + "/m2m/certificates")
    async def m2m_register(request: Request) -> Response:
        body = await json_object(request)
        pem, cid = body.get("certificate"), body.get("clientId", client_id)
        if not isinstance(pem, str) or not isinstance(cid, str):
            raise NetSuiteError(400, "USER_ERROR", "Give certificate (X.509 PEM text) and clientId.", "certificate")
        try:
            mapping = registry.register_pem(pem, cid)
        except CertificateRejected as err:
            raise NetSuiteError(400, "INVALID_FLD_VALUE", str(err), "certificate") from None
        return JSONResponse(mapping.as_json(), status_code=201)

    @app.post(ADMIN_PREFIX + "/m2m/certificates/{certificate_id}/revoke")
    def m2m_revoke(certificate_id: str) -> dict:
        if not registry.revoke(certificate_id):
            raise NetSuiteError(404, "NONEXISTENT_ID", f"No M2M mapping with certificate ID {certificate_id[:60]}.")
        return {"revoked": certificate_id}

    app.add_middleware(FaultInjectionMiddleware, state=faults, render_error=render_fault, exempt_prefixes=(TOKEN_PATH,))
    return app
