"""Limits before work: one ASGI middleware in front of the webhook, the console and the API.

Threats it answers, in the order it checks:

1. **A flood from one source** (a leaked path secret, a misbehaving sender, a script): a
   per-client-IP rate limit on the webhook routes (`Q2C_WEBHOOK_RATE_LIMIT`, e.g.
   `10/second;300/minute`, moving windows from the `limits` library), checked before anything
   else; over it: 429 with `Retry-After` (Salesforce delivers again later), nothing read,
   nothing reaches Temporal or the CRM. The client IP is the socket's peer, or, behind a
   reverse proxy, what uvicorn took from `X-Forwarded-For` for proxies listed in
   `FORWARDED_ALLOW_IPS` (never a header from anyone else).
2. **Unauthenticated requests doing work**: a route may name a `gate` that looks at the path
   and headers (the Outbound Message path secret) and answers before the body is read.
3. **Big bodies**: `Content-Length` is checked first: over the route's cap, 413 at once,
   without reading a byte of it. A chunked body, or one longer than it declared, is counted as
   it arrives and cut at the cap: 413. The body is never held beyond the cap, so memory stays
   flat whatever is sent.
4. **Slow senders** (declares 1 MB, sends 100 KB, stalls; or trickles a byte a second): the
   whole body must arrive within `Q2C_BODY_TIMEOUT_SECONDS`, else 408. And the request line
   and headers must arrive within `Q2C_HEADER_TIMEOUT_SECONDS` (`HeaderTimeoutH11Protocol`,
   given to uvicorn by `q2c.webhook.app.main`), else the connection is closed: uvicorn itself
   has no header timeout, only a keep-alive one.

Errors are in the caller's language: a SOAP fault for the Outbound Message endpoint (Salesforce
logs the faultstring), JSON elsewhere. Every early answer carries `Connection: close`, since
the rest of the body was not read. Only a body that passed the checks reaches the application,
buffered (at most the cap), as the chunks it arrived in.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ErrorBody = Callable[[int, str, str], Response]  # (status, code, message) -> response
Gate = Callable[[Scope], Awaitable[Response | None]]


def json_error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"error": code, "message": message}, status_code=status)


class RateLimit:
    """Moving-window limits per key (`limits` library, in-process memory: each replica counts
    its own; a shared store is `limits.storage.storage_from_string("redis://...")`)."""

    def __init__(self, spec: str, *, storage_uri: str = "memory://") -> None:
        from limits import parse_many
        from limits.storage import storage_from_string
        from limits.strategies import MovingWindowRateLimiter

        self.spec = spec
        self.items = parse_many(spec)
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))

    def hit(self, *key: str) -> float | None:
        """Count one request; None when allowed, else the seconds until it would be."""
        for item in self.items:
            if not self.limiter.hit(item, *key):
                reset = self.limiter.get_window_stats(item, *key).reset_time
                return max(1.0, reset - time.time())
        return None


@dataclass(frozen=True)
class Route:
    """Limits for the paths starting with `prefix` (the first matching route applies)."""

    prefix: str
    max_body_bytes: int
    error: ErrorBody = json_error
    rate_limit: RateLimit | None = None
    gate: Gate | None = None


class BodyTooLarge(Exception):
    pass


class RequestLimits:
    """The ASGI middleware (see the module docstring). `routes` are tried in order; `default`
    applies to every other path."""

    def __init__(
        self, app: ASGIApp, *, routes: Sequence[Route], default: Route, body_timeout_seconds: float, log=None
    ) -> None:
        self.app = app
        self.routes = list(routes)
        self.default = default
        self.body_timeout = body_timeout_seconds
        self.log = log

    def route_for(self, path: str) -> Route:
        return next((r for r in self.routes if path.startswith(r.prefix)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self.route_for(scope["path"])
        headers = _headers(scope)
        lengths = headers.get(b"content-length", [])
        chunked = any(b"chunked" in v.lower() for v in headers.get(b"transfer-encoding", []))
        has_body = chunked or any(v.strip() not in (b"", b"0") for v in lengths)

        async def answer(response: Response, reason: str) -> None:
            if has_body:
                response.headers["Connection"] = "close"
            if self.log:
                self.log("request_refused", status=response.status_code, reason=reason, path=route.prefix)
            await response(scope, receive, send)

        if route.rate_limit is not None:
            client = (scope.get("client") or ("unknown", 0))[0]
            wait = route.rate_limit.hit(client)  # routes sharing a RateLimit share its budget
            if wait is not None:
                response = route.error(429, "rate_limited", f"more than {route.rate_limit.spec} from {client}")
                response.headers["Retry-After"] = str(math.ceil(wait))
                await answer(response, "rate_limited")
                return
        if route.gate is not None:
            refused = await route.gate(scope)
            if refused is not None:
                await answer(refused, "gate")
                return
        if len(lengths) > 1 or (lengths and not lengths[0].strip().isdigit()):
            await answer(route.error(400, "bad_content_length", "Content-Length is not one number"), "bad_length")
            return
        cap = route.max_body_bytes
        if lengths and int(lengths[0]) > cap:
            await answer(route.error(413, "body_too_large", f"the body is larger than {cap} bytes"), "declared_size")
            return
        if not has_body:
            await self.app(scope, receive, send)
            return
        # the caller owns the buffer and empties it on every refusal: the exception's traceback
        # (kept until the garbage collector runs) must not keep up to `cap` bytes alive
        chunks: list[bytes] = []
        try:
            complete = await asyncio.wait_for(_read_body(receive, cap, chunks), timeout=self.body_timeout)
        except BodyTooLarge:
            chunks.clear()
            await answer(route.error(413, "body_too_large", f"the body is larger than {cap} bytes"), "streamed_size")
            return
        except TimeoutError:
            chunks.clear()
            message = f"the body did not arrive within {self.body_timeout:g} s"
            await answer(route.error(408, "body_timeout", message), "body_timeout")
            return
        if not complete:  # the client went away mid-body: nobody to answer
            chunks.clear()
            return
        await self.app(scope, _replay(chunks, receive), send)


def _headers(scope: Scope) -> dict[bytes, list[bytes]]:
    found: dict[bytes, list[bytes]] = {}
    for name, value in scope.get("headers", []):
        found.setdefault(name.lower(), []).append(value)
    return found


async def _read_body(receive: Receive, cap: int, chunks: list[bytes]) -> bool:
    """Append the body's chunks to `chunks`, counted as they arrive (BodyTooLarge past `cap`);
    False if the client left. Kept as received (no copy into one buffer: the application joins
    them once)."""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            raise BodyTooLarge
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return True


def _replay(chunks: list[bytes], receive: Receive) -> Receive:
    """The checked body's chunks, then the real channel (so a later disconnect is seen)."""
    pending = list(chunks) or [b""]

    async def replay() -> Message:
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending)}
        return await receive()

    return replay


# ---- header timeout for uvicorn ------------------------------------------------------------


def header_timeout_protocol(timeout_seconds: float):
    """A uvicorn h11 protocol class that closes a connection whose request line and headers
    have not all arrived `timeout_seconds` after its first byte (a slowloris holds a socket
    and a slot of `limit_concurrency` otherwise, forever). Idle keep-alive connections are
    still closed by uvicorn's own `timeout_keep_alive`."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _waiting_for_headers(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._header_timer is None and self._waiting_for_headers():
                self._arm()  # the next request on a kept-alive connection began
            super().data_received(data)
            if not self._waiting_for_headers():
                self._disarm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(timeout_seconds, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self._waiting_for_headers() and not self.transport.is_closing():
                self.logger.warning("request headers not received within %ss: connection closed", timeout_seconds)
                self.transport.close()

    return HeaderTimeoutH11Protocol
