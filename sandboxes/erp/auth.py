"""OAuth 2.0 token endpoint and bearer check.

Real NetSuite's machine-to-machine flow is the OAuth 2.0 client-credentials grant with a
JWT client assertion signed by a certificate uploaded to the integration record
(`client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`). The
sandbox accepts the simpler `client_id` + `client_secret` form fields (or HTTP Basic), and
otherwise answers the same: `{"access_token", "expires_in": 3600, "token_type": "bearer"}`,
OAuth error bodies (`{"error": "invalid_client"}`) for bad credentials. The token endpoint
is exempt from the fault injection and the concurrency limit (NetSuite does not count it
against the account's concurrency either).

A missing, unknown, expired or revoked bearer token on a record call is 401 INVALID_LOGIN.
"""

from __future__ import annotations

import base64
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sandboxes.common.tokens import TokenStore
from sandboxes.erp.errors import INVALID_LOGIN_DETAIL, NetSuiteError

TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"


def token_router(tokens: TokenStore, client_id: str, client_secret: str) -> APIRouter:
    router = APIRouter(tags=["oauth2"])

    @router.post(TOKEN_PATH)
    async def issue_token(request: Request) -> JSONResponse:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        given_id, given_secret = form.get("client_id"), form.get("client_secret")
        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            try:
                given_id, _, given_secret = base64.b64decode(basic[6:]).decode().partition(":")
            except ValueError:
                given_id = given_secret = None
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        if given_id != client_id or given_secret != client_secret:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        return JSONResponse({"access_token": tokens.issue(), "expires_in": tokens.ttl_seconds, "token_type": "bearer"})

    return router


def check_bearer(request: Request, tokens: TokenStore) -> None:
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else None
    if not tokens.valid(token):
        raise NetSuiteError(401, "INVALID_LOGIN", INVALID_LOGIN_DETAIL)
