"""Fault injection and concurrency limits shared by every sandbox.

Settable at run time through the sandbox-only admin endpoint
(`GET/PUT /__sandbox/faults`). Each vendor supplies how its errors look.

Besides transient faults (latency, 5xx, 429), `reject_writes` stands in for a vendor's
business rule that the sandbox does not model (a NetSuite approval workflow locking a
project, a Kantata account setting refusing a workspace): a write to a matching path is
answered 4xx in the vendor's own error shape, as the real system would, until the rule is
removed (the "fix" a steward makes in the vendor system). Reads are never rejected.

What the vendor saw, for benchmarks and tests (`GET /__sandbox/faults` counters):
`max_concurrent` is the most requests it had in flight at once (those it refused over the
concurrency limit included: they reached it), so a client-side cap can be checked from the
vendor's side; `arrivals` are the wall-clock times (and paths) of the latest requests, so a
test can see how long a client waited after a 429 before it asked again. Every 429 carries
`Retry-After` (`retry_after_seconds`), as NetSuite, Kantata and Salesforce send it.
`fail_next` answers the next N matching requests 429, deterministically.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send

ADMIN_PREFIX = "/__sandbox"
ARRIVALS_KEPT = 200

# (status, vendor error code, message) -> (body bytes, content type, extra headers)
ErrorRenderer = Callable[[int, str, str], tuple[bytes, str, dict[str, str]]]


WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class WriteRejection(BaseModel):
    """A write the vendor refuses: `status` (4xx, non-retryable) with `code` and `message` in
    the vendor's error body, for requests whose path starts with `path_prefix`."""

    path_prefix: str = Field(..., min_length=2, description="e.g. /services/rest/record/v1/job/eid:006...")
    methods: list[str] = Field(
        default_factory=lambda: list(WRITE_METHODS), description="which write methods (never GET)"
    )
    status: int = Field(400, ge=400, le=499)
    code: str = Field(..., min_length=1, description="the vendor's error code, e.g. USER_ERROR")
    message: str = Field(..., min_length=1)

    def matches(self, method: str, path: str) -> bool:
        method = method.upper()
        return (
            method in WRITE_METHODS
            and method in {m.upper() for m in self.methods}
            and path.startswith(self.path_prefix)
        )


class FaultConfig(BaseModel):
    error_rate: float = Field(0.0, ge=0.0, le=1.0, description="share of requests answered 5xx")
    rate_429: float = Field(0.0, ge=0.0, le=1.0, description="share of requests answered 429")
    latency_ms: int = Field(0, ge=0, le=60_000, description="added latency per request")
    path_prefix: str = Field("", description="only requests whose path starts with this")
    retry_after_seconds: int = Field(1, ge=0, le=3600)
    concurrency_limit: int | None = Field(None, ge=1, description="in-flight request limit (429 beyond)")
    fail_next: int = Field(0, ge=0, le=10_000, description="the next N matching requests are answered 429")
    reject_writes: list[WriteRejection] = Field(
        default_factory=list, description="writes refused with the vendor's own 4xx"
    )


@dataclass
class FaultState:
    config: FaultConfig = field(default_factory=FaultConfig)
    in_flight: int = 0
    requests: int = 0
    injected_errors: int = 0
    injected_429s: int = 0
    concurrency_rejections: int = 0
    rejected_writes: int = 0
    arriving: int = 0  # requests inside the middleware now, refused ones included
    max_concurrent: int = 0
    fail_next_left: int = 0
    arrivals: deque = field(default_factory=lambda: deque(maxlen=ARRIVALS_KEPT))
    rng: random.Random = field(default_factory=random.Random)

    def counters(self) -> dict:
        return {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "max_concurrent": self.max_concurrent,
            "injected_errors": self.injected_errors,
            "injected_429s": self.injected_429s,
            "concurrency_rejections": self.concurrency_rejections,
            "rejected_writes": self.rejected_writes,
            "arrivals": list(self.arrivals),
        }

    def reset_counters(self) -> None:
        self.requests = self.injected_errors = self.injected_429s = self.concurrency_rejections = 0
        self.rejected_writes = 0
        self.max_concurrent = self.arriving
        self.fail_next_left = self.config.fail_next
        self.arrivals.clear()


class FaultInjectionMiddleware:
    """Pure ASGI middleware: latency, random 5xx/429, in-flight concurrency limit, and the
    configured write rejections."""

    def __init__(
        self, app: ASGIApp, state: FaultState, render_error: ErrorRenderer, exempt_prefixes: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.state = state
        self.render_error = render_error
        self.exempt = (ADMIN_PREFIX, *exempt_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        st = self.state
        st.arriving += 1
        st.max_concurrent = max(st.max_concurrent, st.arriving)
        try:
            await self._handle(scope, receive, send)
        finally:
            st.arriving -= 1

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        st = self.state
        cfg = st.config
        st.requests += 1
        st.arrivals.append({"at": time.time(), "method": scope.get("method", ""), "path": scope["path"]})
        limit = cfg.concurrency_limit
        if limit is not None and st.in_flight >= limit:
            st.concurrency_rejections += 1
            await self._error(
                send,
                429,
                "CONCURRENCY_LIMIT_EXCEEDED",
                f"Concurrent request limit exceeded ({limit}). Request blocked.",
            )
            return
        st.in_flight += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                st.in_flight -= 1

        async def send_counted(message) -> None:
            # the request stops counting as its last body part leaves, not after it was sent:
            # otherwise a client that frees its slot on the answer can send the next request
            # before this one is uncounted, and the limit answers 429 to a client within it
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                release()
            await send(message)

        try:
            if cfg.latency_ms:
                await asyncio.sleep(cfg.latency_ms / 1000)
            rule = next((r for r in cfg.reject_writes if r.matches(scope.get("method", ""), scope["path"])), None)
            if rule is not None:
                st.rejected_writes += 1
                await self._error(send, rule.status, rule.code, rule.message)
                return
            if scope["path"].startswith(cfg.path_prefix):
                roll = st.rng.random()
                if st.fail_next_left > 0:
                    st.fail_next_left -= 1
                    roll = -1.0  # answered 429 below
                if roll < cfg.rate_429 or roll < 0:
                    st.injected_429s += 1
                    await self._error(
                        send, 429, "REQUEST_LIMIT_EXCEEDED", "Too many requests (sandbox fault injection)."
                    )
                    return
                if roll < cfg.rate_429 + cfg.error_rate:
                    st.injected_errors += 1
                    await self._error(
                        send, 503, "SERVICE_UNAVAILABLE", "Service temporarily unavailable (sandbox fault injection)."
                    )
                    return
            await self.app(scope, receive, send_counted)
        finally:
            release()

    async def _error(self, send: Send, status: int, code: str, message: str) -> None:
        body, ctype, extra = self.render_error(status, code, message)
        headers = [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]
        if status == 429:
            headers.append((b"retry-after", str(self.state.config.retry_after_seconds).encode()))
        headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def json_error_renderer(make_body: Callable[[int, str, str], object]) -> ErrorRenderer:
    def render(status: int, code: str, message: str) -> tuple[bytes, str, dict[str, str]]:
        return json.dumps(make_body(status, code, message)).encode(), "application/json", {}

    return render
