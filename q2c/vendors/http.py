"""Shared HTTP plumbing for every vendor connector.

- one `httpx.AsyncClient` per connector, with timeouts;
- an OAuth/bearer token fetched lazily, cached, and refreshed once on 401;
- an `X-Correlation-Id` header on every request (also passed to the audit hook);
- errors classified: timeouts, transport errors, 5xx and 429 are retryable (429 honours
  Retry-After through `next_retry_delay`); 4xx validation errors are non-retryable.
  Both are raised as `temporalio.exceptions.ApplicationError` carrying the vendor's
  own message and code, so a workflow history says what went wrong in words.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from temporalio.exceptions import ApplicationError

from q2c.observability.tracing import current_vendor_span, vendor_call_span
from q2c.observability.vendor import observe_vendor_call

RETRYABLE_TYPE = "VendorUnavailable"
RATE_LIMITED_TYPE = "VendorRateLimited"
REJECTED_TYPE = "VendorRejected"
AUTH_TYPE = "VendorAuthFailed"
NOT_FOUND_TYPE = "VendorNotFound"

READ_RETRIES = 3
READ_RETRY_BASE_SECONDS = 0.1
READ_RETRY_MAX_SECONDS = 2.0


@dataclass(frozen=True)
class CallRecord:
    """What the audit hook receives for every vendor call."""

    correlation_id: str
    system: str
    operation: str
    method: str
    url: str
    status: int | None
    outcome: str  # "ok" | "retryable" | "rejected" | "error"
    duration_ms: float
    error_code: str | None = None


AuditHook = Callable[[CallRecord], Awaitable[None] | None]


@dataclass(frozen=True)
class VendorError:
    code: str
    message: str
    fields: tuple[str, ...] = ()


class VendorClient:
    """Base class; subclasses set `system`, implement `_fetch_token` and `_parse_errors`."""

    system = "vendor"

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 15.0,
        audit: AuditHook | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        read_retries: int = READ_RETRIES,
        max_in_flight: int | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.read_retries = read_retries
        # a vendor-wide concurrency limit (NetSuite's, shared by every integration) is best
        # respected by queueing here rather than by collecting 429s
        self._slots = asyncio.Semaphore(max_in_flight) if max_in_flight else None
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(timeout), transport=transport)
        self._token: str | None = None
        self._audit = audit
        self.token_fetches = 0

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- to implement per vendor -------------------------------------------------------
    async def _fetch_token(self) -> str:
        raise NotImplementedError

    def _parse_errors(self, response: httpx.Response) -> list[VendorError]:
        raise NotImplementedError

    # --- shared -----------------------------------------------------------------------
    async def _client_credentials_token(
        self, path: str, client_id: str, client_secret: str, operation: str = "token"
    ) -> str:
        """OAuth 2.0 client-credentials grant: POST the form, return the access token. Bad
        credentials (400/401/403) are non-retryable auth failures; transport errors, 5xx and
        429 are retryable."""
        correlation_id = str(uuid.uuid4())
        started = time.perf_counter()
        try:
            response = await self._client.post(
                path,
                data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret},
                headers={"X-Correlation-Id": correlation_id},
            )
        except httpx.HTTPError as exc:
            await self._record(correlation_id, operation, "POST", path, None, "retryable", started, "TRANSPORT")
            raise ApplicationError(
                f"{self.system} {operation}: connection failed: {exc}",
                {"system": self.system, "operation": operation},
                type=RETRYABLE_TYPE,
            ) from exc
        if response.status_code == 200:
            await self._record(correlation_id, operation, "POST", path, 200, "ok", started)
            return response.json()["access_token"]
        if response.status_code in (400, 401, 403):
            errors = self._safe_parse_errors(response)
            await self._record(
                correlation_id,
                operation,
                "POST",
                path,
                response.status_code,
                "rejected",
                started,
                errors[0].code if errors else None,
            )
            text = "; ".join(f"{e.code}: {e.message}" for e in errors)
            raise ApplicationError(
                f"{self.system} {operation} rejected (HTTP {response.status_code}): {text}",
                {"system": self.system, "operation": operation, "status": response.status_code},
                type=AUTH_TYPE,
                non_retryable=True,
            )
        raise await self._classify(response, operation, correlation_id, "POST", path, started)

    async def _auth_header(self, force_refresh: bool = False) -> dict[str, str]:
        if self._token is None or force_refresh:
            self._token = await self._fetch_token()
            self.token_fetches += 1
        return {"Authorization": f"Bearer {self._token}"}

    async def request(
        self, method: str, path: str, *, operation: str, retries: int | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send one authenticated request; raise ApplicationError unless status is ok.

        Reads (GET) are retried in place a few times on transient failures (5xx, 429,
        timeouts) with a short back-off, so one flaky read does not fail a whole batch;
        writes are retried by their caller (the activity), keyed by external IDs.
        """
        retries = (self.read_retries if method == "GET" else 0) if retries is None else retries
        # one span per call, its in-place retries included (q2c.observability.tracing)
        with vendor_call_span(self.system, operation, method, path):
            return await self._request_with_retries(method, path, operation=operation, retries=retries, **kwargs)

    async def _request_with_retries(
        self, method: str, path: str, *, operation: str, retries: int, **kwargs: Any
    ) -> httpx.Response:
        for attempt in range(retries + 1):
            try:
                if self._slots is None:
                    return await self._request_once(method, path, operation=operation, **kwargs)
                async with self._slots:
                    return await self._request_once(method, path, operation=operation, **kwargs)
            except ApplicationError as err:
                if err.non_retryable or attempt == retries:
                    raise
                delay = READ_RETRY_BASE_SECONDS * 2**attempt * (1 + random.random())  # jitter
                if err.next_retry_delay is not None:
                    asked = err.next_retry_delay.total_seconds()
                    if asked > READ_RETRY_MAX_SECONDS:
                        raise  # a long wait (e.g. a daily API limit) is Temporal's to schedule
                    delay = max(delay, asked)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _request_once(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        ok_statuses: tuple[int, ...] = (200, 201, 204),
        correlation_id: str | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """One attempt. `content` sends a pre-encoded body (e.g. JSON with exact Decimal
        numbers, which httpx's `json=` cannot write); set its Content-Type in `headers`."""
        correlation_id = correlation_id or str(uuid.uuid4())
        refreshed = False
        while True:
            hdrs = {"X-Correlation-Id": correlation_id, **(headers or {})}
            hdrs.update(await self._auth_header())
            started = time.perf_counter()
            try:
                response = await self._client.request(
                    method, path, json=json, params=params, content=content, headers=hdrs
                )
            except httpx.TimeoutException as exc:
                await self._record(correlation_id, operation, method, path, None, "retryable", started, "TIMEOUT")
                raise ApplicationError(
                    f"{self.system} {operation}: timed out ({exc.__class__.__name__})",
                    {"system": self.system, "operation": operation},
                    type=RETRYABLE_TYPE,
                ) from exc
            except httpx.TransportError as exc:
                await self._record(correlation_id, operation, method, path, None, "retryable", started, "TRANSPORT")
                raise ApplicationError(
                    f"{self.system} {operation}: connection failed: {exc}",
                    {"system": self.system, "operation": operation},
                    type=RETRYABLE_TYPE,
                ) from exc
            if response.status_code == 401 and not refreshed:
                await self._record(correlation_id, operation, method, path, 401, "retryable", started, "UNAUTHORIZED")
                await self._auth_header(force_refresh=True)
                refreshed = True
                continue
            if response.status_code in ok_statuses:
                await self._record(correlation_id, operation, method, path, response.status_code, "ok", started)
                return response
            raise await self._classify(response, operation, correlation_id, method, path, started)

    async def _classify(
        self, response: httpx.Response, operation: str, correlation_id: str, method: str, path: str, started: float
    ) -> ApplicationError:
        status = response.status_code
        errors = self._safe_parse_errors(response)
        first = errors[0] if errors else VendorError(code=f"HTTP_{status}", message=response.reason_phrase)
        text = (
            "; ".join(
                f"{e.code}: {e.message}" + (f" (fields: {', '.join(e.fields)})" if e.fields else "") for e in errors
            )
            or f"HTTP {status}"
        )
        details = {
            "system": self.system,
            "operation": operation,
            "status": status,
            "correlation_id": correlation_id,
            "errors": [{"code": e.code, "message": e.message, "fields": list(e.fields)} for e in errors],
        }
        message = f"{self.system} {operation} failed with HTTP {status}: {text}"
        if status == 429:
            await self._record(correlation_id, operation, method, path, status, "retryable", started, first.code)
            return ApplicationError(message, details, type=RATE_LIMITED_TYPE, next_retry_delay=_retry_after(response))
        if status >= 500 or status == 408:
            await self._record(correlation_id, operation, method, path, status, "retryable", started, first.code)
            return ApplicationError(message, details, type=RETRYABLE_TYPE)
        await self._record(correlation_id, operation, method, path, status, "rejected", started, first.code)
        error_type = {401: AUTH_TYPE, 403: AUTH_TYPE, 404: NOT_FOUND_TYPE}.get(status, REJECTED_TYPE)
        if status == 403 and first.code == "REQUEST_LIMIT_EXCEEDED":
            # Salesforce's daily API limit: retry later, not a data problem.
            return ApplicationError(message, details, type=RATE_LIMITED_TYPE, next_retry_delay=timedelta(minutes=15))
        return ApplicationError(message, details, type=error_type, non_retryable=True)

    def _safe_parse_errors(self, response: httpx.Response) -> list[VendorError]:
        try:
            return self._parse_errors(response)
        except Exception:  # an unparseable body is still an error with a status
            body = response.text[:300]
            return [VendorError(code=f"HTTP_{response.status_code}", message=body or response.reason_phrase)]

    async def _record(
        self,
        correlation_id: str,
        operation: str,
        method: str,
        path: str,
        status: int | None,
        outcome: str,
        started: float,
        error_code: str | None = None,
    ) -> None:
        record = CallRecord(
            correlation_id=correlation_id,
            system=self.system,
            operation=operation,
            method=method,
            url=path,
            status=status,
            outcome=outcome,
            duration_ms=(time.perf_counter() - started) * 1000,
            error_code=error_code,
        )
        observe_vendor_call(record, current_vendor_span())
        if self._audit is None:
            return
        result = self._audit(record)
        if result is not None:
            await result


def _retry_after(response: httpx.Response) -> timedelta | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return timedelta(seconds=max(0.0, float(value)))
    except ValueError:
        return None


def is_not_found(err: BaseException) -> bool:
    return isinstance(err, ApplicationError) and err.type == NOT_FOUND_TYPE
