"""Who may use the steward console and the JSON API: tokens tied to a user and a role.

Tokens come from `Q2C_API_TOKENS`, a comma-separated list of `user:role:token`:

    Q2C_API_TOKENS="alice:steward:s3cret-alice,victor:viewer:s3cret-victor"

Roles: `steward` (read and change: fixes, amendments, cancel, recheck, retry, replay and
write-off of time exceptions, milestone acceptance and waiver) and `viewer` (read only). When the variable is
unset the demo tokens apply (sandbox only, never in
production): `steward-demo-token` (user `steward`) and `viewer-demo-token` (user `viewer`).

A request authenticates with `Authorization: Bearer <token>` or with the `q2c_session`
cookie that the console's login page sets (HttpOnly, SameSite=Strict). Anonymous requests get
401, a viewer trying to change anything gets 403, and nothing is changed in either case.

CSRF: a request authenticated by the cookie that changes something must also carry the
session's CSRF token (hidden `csrf_token` form field, or `X-CSRF-Token` header), an HMAC of
the session token under a per-app secret, and, when the browser sends `Origin`, it must be
this server. Bearer requests need neither (browsers never add that header on their own).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import Enum

from fastapi import HTTPException, Request

TOKENS_ENV = "Q2C_API_TOKENS"
SECRET_ENV = "Q2C_CONSOLE_SECRET"
DEMO_STEWARD_TOKEN = "steward-demo-token"
DEMO_VIEWER_TOKEN = "viewer-demo-token"
DEFAULT_TOKENS = f"steward:steward:{DEMO_STEWARD_TOKEN},viewer:viewer:{DEMO_VIEWER_TOKEN}"
SESSION_COOKIE = "q2c_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class Role(str, Enum):
    STEWARD = "steward"
    VIEWER = "viewer"


@dataclass(frozen=True)
class Principal:
    user: str
    role: Role
    token: str
    via_cookie: bool = False

    @property
    def can_change(self) -> bool:
        return self.role is Role.STEWARD


class TokenConfigError(ValueError):
    pass


def parse_tokens(spec: str) -> dict[str, Principal]:
    """`user:role:token,...` -> {token: Principal}; rejects malformed entries loudly."""
    tokens: dict[str, Principal] = {}
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        parts = entry.split(":", 2)
        if len(parts) != 3 or not all(p.strip() for p in parts):
            raise TokenConfigError(f"{TOKENS_ENV}: '{entry}' is not user:role:token")
        user, role, token = (p.strip() for p in parts)
        try:
            role_ = Role(role.lower())
        except ValueError:
            raise TokenConfigError(
                f"{TOKENS_ENV}: role '{role}' of {user} is not one of {', '.join(r.value for r in Role)}"
            ) from None
        if token in tokens:
            raise TokenConfigError(f"{TOKENS_ENV}: the same token is given twice")
        tokens[token] = Principal(user=user, role=role_, token=token)
    if not tokens:
        raise TokenConfigError(f"{TOKENS_ENV} names no tokens")
    return tokens


class Authenticator:
    """Resolves a request to a Principal and issues/checks CSRF tokens."""

    def __init__(self, tokens: dict[str, Principal], secret: bytes | None = None) -> None:
        self.tokens = tokens
        self.secret = secret or secrets.token_bytes(32)

    @classmethod
    def from_env(cls, spec: str | None = None) -> Authenticator:
        from q2c.settings import load_settings  # Q2C_API_TOKENS, Q2C_CONSOLE_SECRET

        settings = load_settings()
        spec = spec if spec is not None else (settings.api_tokens or DEFAULT_TOKENS)
        secret = settings.console_secret
        return cls(parse_tokens(spec), secret.encode() if secret else None)

    def lookup(self, token: str | None) -> Principal | None:
        if not token:
            return None
        for known, principal in self.tokens.items():  # constant-time compare per entry
            if hmac.compare_digest(known.encode(), token.encode()):
                return principal
        return None

    def principal(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            return self.lookup(header[7:].strip())  # a bad bearer token is not rescued by a cookie
        found = self.lookup(request.cookies.get(SESSION_COOKIE))
        if found is None:
            return None
        return Principal(found.user, found.role, found.token, via_cookie=True)

    def csrf_token(self, principal: Principal) -> str:
        return hmac.new(self.secret, principal.token.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, request: Request, principal: Principal, submitted: str | None) -> None:
        """Raise 403 if a cookie-authenticated change lacks the CSRF token or comes cross-origin."""
        if not principal.via_cookie:
            return
        origin = request.headers.get("origin")
        if origin and origin != "null" and not _same_origin(origin, request):
            raise HTTPException(403, detail=f"cross-origin request from {origin} refused")
        submitted = submitted or request.headers.get(CSRF_HEADER)
        if not submitted or not hmac.compare_digest(submitted, self.csrf_token(principal)):
            raise HTTPException(403, detail="missing or wrong CSRF token: reload the page and retry")


def _same_origin(origin: str, request: Request) -> bool:
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1].rstrip("/") == host


def authenticator(request: Request) -> Authenticator:
    return request.app.state.auth


def require_viewer(request: Request) -> Principal:
    """FastAPI dependency: any valid token (viewer or steward); 401 otherwise."""
    principal = authenticator(request).principal(request)
    if principal is None:
        raise HTTPException(
            401,
            detail="a valid token is required (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


def require_steward(request: Request) -> Principal:
    """FastAPI dependency: a steward token; 401 anonymous, 403 viewer. CSRF is checked by the
    caller once it has read the form (the token may be a form field)."""
    principal = require_viewer(request)
    if not principal.can_change:
        raise HTTPException(
            403, detail=f"{principal.user} is a {principal.role.value}: only a steward may change engagements"
        )
    return principal
