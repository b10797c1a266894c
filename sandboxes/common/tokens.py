"""In-memory bearer tokens with expiry and revocation (for 401-refresh paths)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field


@dataclass
class TokenStore:
    ttl_seconds: int = 3600
    _tokens: dict[str, float] = field(default_factory=dict)
    issued: int = 0

    def issue(self) -> str:
        token = secrets.token_urlsafe(24)
        self._tokens[token] = time.monotonic() + self.ttl_seconds
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
            return False
        return True

    def revoke_all(self) -> int:
        n = len(self._tokens)
        self._tokens.clear()
        return n
