"""Shared HTTP plumbing for every vendor connector.

- one `httpx.AsyncClient` per connector, with timeouts;
- an OAuth/bearer token fetched lazily, cached, and refreshed once on 401;
- an `X-Correlation-Id` header on every request (also passed to the audit hook);
- errors classified: timeouts, transport errors, 5xx and 429 are retryable; 4xx validation
  errors are non-retryable. Both are raised as `temporalio.exceptions.ApplicationError`
  carrying the vendor's own message and code, so a workflow history says what went wrong in words.

Bounded, adaptive load (issue 15), the same for every vendor because every request of a
process goes through this one class:

- **one gate per vendor and process**: at most `max_in_flight` requests in flight (the CRM's
  Q2C_CRM_MAX_IN_FLIGHT, the ERP's share of the account-wide concurrency limit, the PSA's
  Q2C_PSA_MAX_IN_FLIGHT). A request waits for a slot at most the HTTP timeout, then fails
  retryable *unsent*: when a vendor is slow the queue drains instead of growing;
- **the vendor's wait is honoured**: a 429 or 503 with Retry-After closes the gate for that long
  (bounded by `RETRY_AFTER_MAX_SECONDS`): no request of this process goes to that vendor before
  then, whoever retries it (the batch, Temporal, another activity). The error carries the same
  wait as `next_retry_delay`, so Temporal's retry is scheduled for it; a request that would
  wait at the gate longer than the timeout fails unsent with the remaining wait;
- **one retry layer**: nothing is retried in place (`read_retries=0`; the parameter stays for
  tools that want it), but for one case: a 429/503 with a Retry-After of at most the timeout is
  sent once more after that wait (the vendor refused it without acting on it and said when to
  come back: nothing of it is in flight, so nothing piles up); a second refusal is the caller's.
  An activity is retried by Temporal (`VENDOR_RETRY`), a batch's single
  requests by the batch (`q2c.delivery.retry`) before its attempt fails. In-place retries under
  an activity's retries made a slow vendor see each request up to 4 times per attempt, and an
  attempt abandoned at its timeout left them running while the next attempt began: the pile-up
  of issue 15. A request is bounded by the timeout (15 s) and the slot wait by the same, so a
  live attempt ends with an error before its start-to-close (60 s), and a dead worker's attempt
  is found by its heartbeat timeout (q2c.provisioning.activities);
- **a daily API budget** (q2c.ledger.api_budget), checked before and counted after each send.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import httpx
from temporalio.exceptions import ApplicationError

from q2c.observability.tracing import current_vendor_span, vendor_call_span
from q2c.observability.vendor import observe_vendor_call
from q2c.vendors.calls import AuditHook, CallRecord

if TYPE_CHECKING:  # the ledger is not imported by connectors (they are imported everywhere)
    from q2c.ledger.api_budget import ApiBudget

RETRYABLE_TYPE = "VendorUnavailable"
RATE_LIMITED_TYPE = "VendorRateLimited"
REJECTED_TYPE = "VendorRejected"
AUTH_TYPE = "VendorAuthFailed"
NOT_FOUND_TYPE = "VendorNotFound"

READ_RETRIES = 0  # no in-place retries: the activity (or the batch) is the one retry layer
READ_RETRY_BASE_SECONDS = 0.1
READ_RETRY_MAX_SECONDS = 2.0
# the longest Retry-After q2c takes from a vendor (a longer one is probed again after this)
RETRY_AFTER_MAX_SECONDS = 300.0


@dataclass(frozen=True)
class VendorError:
    code: str
    message: str
    fields: tuple[str, ...] = ()


def default_transport() -> httpx.AsyncBaseTransport | None:
    """The engine under every vendor client's httpx API (`q2c.settings.http_engine`): an
    aiohttp transport, or None for httpx's own pool. The aiohttp session is made at the first
    request, inside the event loop that uses it."""
    from q2c.settings import http_engine

    if http_engine() == "httpcore":
        return None
    from httpx_aiohttp import AiohttpTransport

    return AiohttpTransport()


class VendorClient:
    """Base class; subclasses set `system`, implement `_fetch_token` and `_parse_errors`."""

    system = "vendor"
    # the variable that sets this vendor's in-flight cap, named when a request is not sent
    in_flight_variable = "max_in_flight"

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 15.0,
        audit: AuditHook | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        read_retries: int = READ_RETRIES,
        max_in_flight: int | None = None,
        budget: ApiBudget | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.read_retries = read_retries
        self.timeout = timeout
        # a vendor-wide concurrency limit (NetSuite's, shared by every integration) is best
        # respected by queueing here rather than by collecting 429s
        self.max_in_flight = max_in_flight or None
        self._slots = asyncio.Semaphore(max_in_flight) if max_in_flight else None
        self.in_flight = 0
        self.max_in_flight_seen = 0
        self._not_before = 0.0  # time.monotonic() before which nothing is sent (the vendor's Retry-After)
        self.budget = budget
        self._client = httpx.AsyncClient(
            base_url=self.base_url, timeout=httpx.Timeout(timeout), transport=transport or default_transport()
        )
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
        """Send one authenticated request through this vendor's gate; raise ApplicationError
        unless status is ok. Not retried in place unless `read_retries` (or `retries`) asks:
        the caller (the activity, or a batch) is the retry layer, keyed by external IDs."""
        retries = (self.read_retries if method == "GET" else 0) if retries is None else retries
        # one span per call, its in-place retries included (q2c.observability.tracing)
        with vendor_call_span(self.system, operation, method, path):
            return await self._request_with_retries(method, path, operation=operation, retries=retries, **kwargs)

    async def _request_with_retries(
        self, method: str, path: str, *, operation: str, retries: int, **kwargs: Any
    ) -> httpx.Response:
        waited_once = False
        attempt = 0
        while True:
            try:
                async with self._gate(operation):
                    return await self._request_once(method, path, operation=operation, **kwargs)
            except ApplicationError as err:
                if not waited_once and self._sent_back_with_retry_after(err):
                    waited_once = True  # the gate sleeps out the vendor's wait, then it goes once more
                    continue
                if err.non_retryable or attempt >= retries:
                    raise
                attempt += 1
                delay = READ_RETRY_BASE_SECONDS * 2**attempt * (1 + random.random())  # jitter
                if err.next_retry_delay is not None:
                    asked = err.next_retry_delay.total_seconds()
                    if asked > READ_RETRY_MAX_SECONDS:
                        raise  # a long wait (e.g. a daily API limit) is Temporal's to schedule
                    delay = max(delay, asked)
                await asyncio.sleep(delay)

    def _sent_back_with_retry_after(self, err: ApplicationError) -> bool:
        """A 429/503 the vendor answered with a Retry-After this request may wait out here (at
        most the timeout): the vendor did nothing with it and said when to come back."""
        if err.next_retry_delay is None or err.next_retry_delay.total_seconds() > self.timeout:
            return False
        details = err.details[0] if err.details else None
        return isinstance(details, dict) and details.get("status") in (429, 503)

    @asynccontextmanager
    async def _gate(self, operation: str) -> AsyncIterator[None]:
        """This vendor's gate: the vendor's Retry-After, the daily budget, an in-flight slot
        (waited for at most the timeout), then the vendor's own checks (`_before_send`)."""
        await self._wait_for_vendor(operation)
        if self.budget is not None:
            self.budget.check(self.system, operation)
        self._before_send(operation)
        if self._slots is None:
            yield
            return
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout=self.timeout)
        except TimeoutError:
            raise ApplicationError(
                f"{self.system} {operation}: not sent, {self.max_in_flight} requests already in flight "
                f"for {self.timeout:g} s ({self.in_flight_variable})",
                {"system": self.system, "operation": operation},
                type=RETRYABLE_TYPE,
            ) from None
        try:
            # a Retry-After or a pause may have begun while this one queued: wait holding the
            # slot, so the requests resume at most max_in_flight at a time
            await self._wait_for_vendor(operation)
            self._before_send(operation)
            self.in_flight += 1
            self.max_in_flight_seen = max(self.max_in_flight_seen, self.in_flight)
            try:
                yield
            finally:
                self.in_flight -= 1
        finally:
            self._slots.release()

    async def _wait_for_vendor(self, operation: str) -> None:
        """Sleep out the vendor's Retry-After; a wait longer than the timeout is not waited
        here: the request fails retryable, unsent, and Temporal schedules it for then."""
        wait = self._not_before - time.monotonic()
        if wait <= 0:
            return
        if wait > self.timeout:
            raise ApplicationError(
                f"{self.system} {operation}: not sent, the vendor asked q2c to wait (Retry-After): {wait:.0f} s left",
                {"system": self.system, "operation": operation},
                type=RATE_LIMITED_TYPE,
                next_retry_delay=timedelta(seconds=wait),
            )
        await asyncio.sleep(wait)

    def _before_send(self, operation: str) -> None:
        """A vendor's own reason not to send (the CRM's api-usage pause): raise ApplicationError."""

    def _honour_retry_after(self, response: httpx.Response) -> timedelta | None:
        """The vendor's Retry-After (bounded), which closes this vendor's gate for that long."""
        delay = _retry_after(response)
        if delay is not None and delay > timedelta(0):
            self._not_before = max(self._not_before, time.monotonic() + delay.total_seconds())
        return delay

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
            if self.budget is not None:
                self.budget.count(self.system)  # sent is spent, whatever the answer
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
            delay = self._honour_retry_after(response)
            return ApplicationError(message, details, type=RATE_LIMITED_TYPE, next_retry_delay=delay)
        if status >= 500 or status == 408:
            await self._record(correlation_id, operation, method, path, status, "retryable", started, first.code)
            delay = self._honour_retry_after(response) if status == 503 else None
            return ApplicationError(message, details, type=RETRYABLE_TYPE, next_retry_delay=delay)
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
    """Retry-After in seconds or as an HTTP date (RFC 9110), at most RETRY_AFTER_MAX_SECONDS;
    none (the caller's back-off applies) when it asks for no wait at all."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return None
    if seconds <= 0:
        return None
    return timedelta(seconds=min(seconds, RETRY_AFTER_MAX_SECONDS))


def is_not_found(err: BaseException) -> bool:
    return isinstance(err, ApplicationError) and err.type == NOT_FOUND_TYPE
