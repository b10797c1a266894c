"""In-memory bearer tokens with expiry and revocation (for 401-refresh paths).

A token may carry the scopes it was granted (NetSuite's M2M tokens do: rest_webservices,
restlets, suite_analytics), so a record API can refuse a token granted for something else.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field


@dataclass
class TokenStore:
    ttl_seconds: int = 3600
    _tokens: dict[str, float] = field(default_factory=dict)
    _scopes: dict[str, frozenset[str]] = field(default_factory=dict)
    issued: int = 0

    def issue(self, scopes: list[str] | tuple[str, ...] | None = None) -> str:
        token = secrets.token_urlsafe(24)
        self._tokens[token] = time.monotonic() + self.ttl_seconds
        if scopes is not None:
            self._scopes[token] = frozenset(scopes)
        self.issued += 1
        return token

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        expires = self._tokens.get(token)
        if expires is None:
            return False
        if expires < time.monotonic():
            self._tokens.pop(token, None)
            self._scopes.pop(token, None)
            return False
        return True

    def scopes_of(self, token: str | None) -> frozenset[str]:
        return self._scopes.get(token or "", frozenset())

    def revoke_all(self) -> int:
        n = len(self._tokens)
        self._tokens.clear()
        self._scopes.clear()
        return n
