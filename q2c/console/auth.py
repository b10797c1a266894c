"""Who may use the steward console and the JSON API: tokens tied to a user and a role.

Tokens come from `Q2C_API_TOKENS`, a comma-separated list of `user:role:token`, or, so that
the configuration need not hold the tokens themselves, `user:role:sha256:<hex digest>`:

    Q2C_API_TOKENS="alice:steward:s3cret-alice,victor:viewer:sha256:9f86d08..."

Roles: `steward` (read and change: fixes, amendments, cancel, recheck, retry, replay and
write-off of time exceptions, milestone acceptance and waiver) and `viewer` (read only). There
is no default: without the variable the console and API refuse to start (`make up` and the
tests set demo tokens explicitly). Only SHA-256 digests are kept in memory; a presented token
is hashed and compared with every digest in constant time.

A request authenticates with `Authorization: Bearer <token>`, or with the `q2c_session`
cookie the console's login page sets: an opaque, random session ID (never the token) looked up
server-side in the ledger (`q2c.ledger.sessions`), expiring after `Q2C_SESSION_HOURS`, revoked
at logout on every replica. The cookie is HttpOnly, SameSite=Strict, and Secure when the
console is reached over TLS. Anonymous requests get 401, a viewer trying to change anything
gets 403, and nothing is changed in either case.

CSRF: a request authenticated by the cookie that changes something must also carry the
session's CSRF token (hidden `csrf_token` form field, or `X-CSRF-Token` header), an HMAC of
the session under `Q2C_CONSOLE_SECRET`, and, when the browser sends `Origin`, it must be this
server. Bearer requests need neither (browsers never add that header on their own).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

from fastapi import HTTPException, Request

from q2c.ledger.sessions import SessionStore
from q2c.settings import Settings

TOKENS_ENV = "Q2C_API_TOKENS"
SECRET_ENV = "Q2C_CONSOLE_SECRET"
SESSION_COOKIE = "q2c_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
DEFAULT_SESSION_HOURS = 8.0
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Role(str, Enum):
    STEWARD = "steward"
    VIEWER = "viewer"


@dataclass(frozen=True)
class Principal:
    user: str
    role: Role
    token: str  # a digest that names the credential (token or session), never the secret itself
    via_cookie: bool = False

    @property
    def can_change(self) -> bool:
        return self.role is Role.STEWARD


class TokenConfigError(ValueError):
    pass


def parse_tokens(spec: str) -> dict[str, Principal]:
    """`user:role:token,...` (or `user:role:sha256:<hex>`) -> {token digest: Principal};
    rejects malformed entries loudly, naming them (never printing a token)."""
    tokens: dict[str, Principal] = {}
    for n, entry in enumerate((e.strip() for e in spec.split(",")), start=1):
        if not entry:
            continue
        parts = entry.split(":", 2)
        if len(parts) != 3 or not all(p.strip() for p in parts):
            raise TokenConfigError(f"{TOKENS_ENV}: entry {n} is not user:role:token")
        user, role, token = (p.strip() for p in parts)
        try:
            role_ = Role(role.lower())
        except ValueError:
            raise TokenConfigError(
                f"{TOKENS_ENV}: role '{role}' of {user} is not one of {', '.join(r.value for r in Role)}"
            ) from None
        if token.startswith("sha256:"):
            digest = token.removeprefix("sha256:").lower()
            if not _HEX64.match(digest):
                raise TokenConfigError(f"{TOKENS_ENV}: entry {n} ({user}): sha256: needs 64 hex digits")
        else:
            digest = token_digest(token)
        if digest in tokens:
            raise TokenConfigError(f"{TOKENS_ENV}: the same token is given twice")
        tokens[digest] = Principal(user=user, role=role_, token=digest)
    if not tokens:
        raise TokenConfigError(f"{TOKENS_ENV} names no tokens")
    return tokens


class Authenticator:
    """Resolves a request to a Principal, opens and ends console sessions, issues/checks CSRF
    tokens. Without a session store (tests of the pages alone) sessions live in this process."""

    def __init__(
        self,
        tokens: dict[str, Principal],
        secret: bytes | None = None,
        sessions: SessionStore | None = None,
        session_hours: float = DEFAULT_SESSION_HOURS,
    ) -> None:
        self.tokens = tokens
        self.secret = secret or secrets.token_bytes(32)
        self.sessions = sessions
        self.session_lifetime = timedelta(hours=session_hours)

    @classmethod
    def from_settings(cls, settings: Settings, sessions: SessionStore | None = None) -> Authenticator:
        """Tokens (Q2C_API_TOKENS), the CSRF secret (Q2C_CONSOLE_SECRET) and sessions in the
        ledger of these settings; no tokens configured is an error (fail closed)."""
        if not settings.api_tokens:
            raise TokenConfigError(f"{TOKENS_ENV} is not set: the console and API have no users (fail closed)")
        if sessions is None:
            from q2c.ledger.config import ledger_url, make_ledger_engine

            sessions = SessionStore(make_ledger_engine(ledger_url(settings)))
        secret = settings.console_secret
        return cls(
            parse_tokens(settings.api_tokens), secret.encode() if secret else None, sessions, settings.session_hours
        )

    @classmethod
    def from_env(cls) -> Authenticator:
        from q2c.settings import load_settings

        return cls.from_settings(load_settings())

    def lookup(self, token: str | None) -> Principal | None:
        if not token:
            return None
        presented = token_digest(token).encode()
        found = None
        for digest, principal in self.tokens.items():  # every entry compared, in constant time
            if hmac.compare_digest(digest.encode(), presented):
                found = principal
        return found

    def start_session(self, principal: Principal) -> str:
        """Open a server-side session for a signed-in principal; returns the cookie value."""
        if self.sessions is None:
            raise RuntimeError("no session store configured")
        session_id, _ = self.sessions.open(principal.user, principal.role.value, principal.token, self.session_lifetime)
        return session_id

    def end_session(self, session_id: str | None) -> bool:
        return bool(self.sessions and self.sessions.revoke(session_id))

    def principal(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            return self.lookup(header[7:].strip())  # a bad bearer token is not rescued by a cookie
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie or self.sessions is None:
            return None
        found = self.sessions.find(cookie)
        if found is None:
            return None
        owner = self.tokens.get(found.token_hash)
        if owner is None or owner.user != found.user:  # the token behind the session was removed
            return None
        return Principal(owner.user, owner.role, found.id_hash, via_cookie=True)

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
