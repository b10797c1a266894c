"""NetSuite (ERP) connector: SuiteTalk REST record API, canonical models in and out.

Vendor facts this relies on:
- token: `POST /services/rest/auth/oauth2/v1/token`, OAuth 2.0 client credentials with a JWT
  client assertion (machine-to-machine; no client secret, see vendors/netsuite/m2m.py) ->
  `{"access_token", "expires_in": 3600, "token_type"}`. The token is kept until a minute
  before it expires (there is no refresh token in this flow: a new assertion is signed); a
  401 INVALID_LOGIN before that means it was revoked (the base class refreshes once and
  retries). Rejections are OAuth error bodies `{"error", "error_description"}`.
- create answers 204 with the new ID only in `Location`; `PUT /{type}/eid:{externalId}` is an
  upsert (also 204 + Location), so every write here is keyed by an external ID and a retry
  never creates a duplicate. Customers are keyed by the CRM account ID, never matched by
  name (a hand-made ERP customer with the same name is a different record).
- errors: `{"o:errorDetails": [{"detail", "o:errorPath", "o:errorCode"}]}`; one
  account-wide concurrency limit answered with 429 CONCURRENCY_LIMIT_EXCEEDED (retryable,
  honouring Retry-After).
- list endpoints answer IDs only, paged with `limit`/`offset`/`hasMore`.
- a GET answers body fields only: sublists (invoice `item`, payment `apply`) come as links
  unless the request says `expandSubResources=true`, so the reads that use them ask for it.
- a record that does not exist is 404 NONEXISTENT_ID (GET and PATCH).

Delivery-to-cash calls (time bills, invoices, payments, periods, project closure) live in
connectors/netsuite_finance.py and are mixed in here.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx
from temporalio.exceptions import ApplicationError

from q2c.domain.customer import Customer
from q2c.domain.engagement import Engagement
from q2c.domain.project import Subsidiary
from q2c.settings import ErpSettings
from q2c.vendors.http import (
    AUTH_TYPE,
    READ_RETRIES,
    RETRYABLE_TYPE,
    AuditHook,
    VendorClient,
    VendorError,
    is_not_found,
)
from q2c.vendors.netsuite.finance import NetSuiteFinanceMixin
from q2c.vendors.netsuite.finance_mapping import TimeBillResult
from q2c.vendors.netsuite.m2m import AssertionSigner, load_signer
from q2c.vendors.netsuite.mapping import (
    RECORD_PATH,
    TOKEN_PATH,
    MappingError,
    billing_schedule_payload,
    customer_payload,
    dumps_exact,
    id_from_location,
    loads_exact,
    mapping_error,
    project_payload,
    quote_q,
    subsidiary_from_record,
)

if TYPE_CHECKING:
    from q2c.ledger.api_budget import ApiBudget

_mapping_error = mapping_error

__all__ = ["NetSuiteClient", "TimeBillResult"]

# Setup records `q2c doctor` reads (NetSuite record types): legal entities, currencies, terms.
SETUP_RECORD_TYPES = ("subsidiary", "currency", "term")
TOKEN_EXPIRY_MARGIN_SECONDS = 60
# Subsidiaries (legal entities) change a few times a year; every validation read them all (a
# list and one GET each: most of an activation's ERP calls). Kept this long per process; a
# validation that finds something missing reads them again (`fresh=True`).
REFERENCE_TTL_SECONDS = 300.0


class NetSuiteClient(NetSuiteFinanceMixin, VendorClient):
    """One per process: its gate keeps this process's share of the account-wide concurrency
    limit (`ErpSettings.max_in_flight`: Q2C_ERP_ACCOUNT_CONCURRENCY / Q2C_WORKER_COUNT, or
    Q2C_ERP_MAX_IN_FLIGHT), so N workers together never exceed the account's limit."""

    system = "erp"
    in_flight_variable = "Q2C_ERP_MAX_IN_FLIGHT, or Q2C_ERP_ACCOUNT_CONCURRENCY / Q2C_WORKER_COUNT"

    def __init__(
        self,
        settings: ErpSettings,
        *,
        timeout: float = 15.0,
        audit: AuditHook | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        read_retries: int = READ_RETRIES,
        budget: ApiBudget | None = None,
    ) -> None:
        super().__init__(
            settings.base_url,
            timeout=timeout,
            audit=audit,
            transport=transport,
            read_retries=read_retries,
            max_in_flight=settings.max_in_flight,
            budget=budget,
        )
        self.settings = settings
        self._currency_ids: dict[str, str] = {}
        self._currency_codes: dict[str, str] = {}
        self._term_ids: dict[str, str] = {}
        self._signer: AssertionSigner | None = None
        self._token_expires_at = 0.0
        self._token_lock = asyncio.Lock()
        self._reference: dict[tuple[str, str], tuple[float, object]] = {}  # (type, id) -> (expires, value)

    @property
    def token_url(self) -> str:
        """The assertion's `aud`: the token endpoint of the account, as this client reaches it."""
        return self.base_url + TOKEN_PATH

    # --- VendorClient hooks ---------------------------------------------------------------
    async def _auth_header(self, force_refresh: bool = False) -> dict[str, str]:
        """The cached token until shortly before NetSuite's `expires_in`; one token fetch at a
        time, so concurrent first calls share one token instead of each signing their own."""
        async with self._token_lock:
            if self._token is not None and time.monotonic() >= self._token_expires_at:
                force_refresh = True
            return await super()._auth_header(force_refresh)

    async def _fetch_token(self) -> str:
        """Sign a client assertion and exchange it for an access token (NetSuite M2M)."""
        if self._signer is None:
            self._signer = load_signer(self.settings)  # a configuration error names the variable
        operation = "token"
        started = time.perf_counter()
        correlation_id = str(uuid.uuid4())
        try:
            response = await self._client.post(
                TOKEN_PATH, data=self._signer.form(self.token_url), headers={"X-Correlation-Id": correlation_id}
            )
        except httpx.HTTPError as exc:
            await self._record(correlation_id, operation, "POST", TOKEN_PATH, None, "retryable", started, "TRANSPORT")
            raise ApplicationError(
                f"erp {operation}: connection failed: {exc}",
                {"system": self.system, "operation": operation},
                type=RETRYABLE_TYPE,
            ) from exc
        if response.status_code == 200:
            body = response.json()
            await self._record(correlation_id, operation, "POST", TOKEN_PATH, 200, "ok", started)
            try:
                lifetime = float(body.get("expires_in") or 3600)  # NetSuite: 3600 (seconds)
            except (TypeError, ValueError):
                lifetime = 3600.0
            margin = min(TOKEN_EXPIRY_MARGIN_SECONDS, lifetime / 10)
            self._token_expires_at = time.monotonic() + lifetime - margin
            return body["access_token"]
        if response.status_code in (400, 401, 403):
            errors = self._safe_parse_errors(response)
            code = errors[0].code if errors else None
            await self._record(
                correlation_id, operation, "POST", TOKEN_PATH, response.status_code, "rejected", started, code
            )
            text = "; ".join(f"{e.code}: {e.message}" for e in errors)
            raise ApplicationError(
                f"erp {operation} rejected (HTTP {response.status_code}): {text}",
                {
                    "system": self.system,
                    "operation": operation,
                    "status": response.status_code,
                    "errors": [{"code": e.code, "message": e.message, "fields": list(e.fields)} for e in errors],
                },
                type=AUTH_TYPE,
                non_retryable=True,
            )
        raise await self._classify(response, operation, correlation_id, "POST", TOKEN_PATH, started)

    def _parse_errors(self, response: httpx.Response) -> list[VendorError]:
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("o:errorDetails"), list):
            return [
                VendorError(
                    code=d.get("o:errorCode") or f"HTTP_{response.status_code}",
                    message=d.get("detail") or body.get("title") or "",
                    fields=(d["o:errorPath"],) if d.get("o:errorPath") else (),
                )
                for d in body["o:errorDetails"]
            ]
        if isinstance(body, dict) and "error" in body:  # OAuth 2.0 error
            return [VendorError(code=str(body["error"]), message=str(body.get("error_description") or body["error"]))]
        raise ValueError("not a NetSuite error body")

    # --- generic record access ------------------------------------------------------------
    async def _get_json(self, path: str, operation: str, params: dict | None = None):
        response = await self.request("GET", path, operation=operation, params=params)
        return loads_exact(response.content)

    async def get_record(self, record_type: str, record_id: str, *, expand: bool = False) -> dict:
        """The record's body fields; with `expand`, its sublists too (`expandSubResources=true`,
        without which NetSuite answers a sublist as a link only)."""
        params = {"expandSubResources": "true"} if expand else None
        return await self._get_json(f"{RECORD_PATH}/{record_type}/{record_id}", f"get_{record_type}", params)

    async def get_by_external_id(self, record_type: str, external_id: str, *, expand: bool = False) -> dict | None:
        """The record keyed by this external ID, or None when there is none."""
        params = {"expandSubResources": "true"} if expand else None
        try:
            return await self._get_json(
                f"{RECORD_PATH}/{record_type}/eid:{quote(external_id, safe='')}", f"get_{record_type}_by_eid", params
            )
        except ApplicationError as err:
            if is_not_found(err):
                return None
            raise

    async def find_ids(self, record_type: str, q: str | None = None, *, page_size: int = 1000) -> list[str]:
        """Internal IDs of the records matching a `q` query, following every page."""
        ids: list[str] = []
        offset = 0
        while True:
            params = {"limit": page_size, "offset": offset}
            if q:
                params["q"] = q
            page = await self._get_json(f"{RECORD_PATH}/{record_type}", f"find_{record_type}", params)
            ids.extend(str(item["id"]) for item in page.get("items", []))
            if not page.get("hasMore") or not page.get("items"):
                return ids
            offset += len(page["items"])

    async def _upsert(self, record_type: str, external_id: str, payload: dict, operation: str) -> str:
        response = await self.request(
            "PUT",
            f"{RECORD_PATH}/{record_type}/eid:{quote(external_id, safe='')}",
            operation=operation,
            content=dumps_exact(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        record_id = id_from_location(response.headers.get("Location"))
        if record_id is None:
            record = await self.get_by_external_id(record_type, external_id)
            if record is None:
                raise ApplicationError(
                    f"erp {operation}: upsert of {record_type} eid:{external_id} "
                    "answered without a Location and the record is not readable yet",
                    {"system": self.system, "operation": operation},
                    type=RETRYABLE_TYPE,
                )
            record_id = str(record["id"])
        return record_id

    # --- admin pre-flight (q2c doctor) ------------------------------------------------------
    async def check_auth(self) -> None:
        """Obtain a fresh token (sign an assertion, exchange it). Raises the usual
        ApplicationError (type VendorAuthFailed, details with the OAuth error or the
        configuration variable to fix) when NetSuite or the configuration refuses."""
        async with self._token_lock:
            self._token = await self._fetch_token()
            self.token_fetches += 1

    async def setup_records(self, record_type: str, limit: int = 50) -> list[dict]:
        """The first `limit` records of a setup type (`subsidiary`, `currency`, `term`), each as
        NetSuite answers a GET (body fields): what an admin checks before the first engagement
        (legal entities with their base currency, enabled currencies, payment terms)."""
        if record_type not in SETUP_RECORD_TYPES:
            raise ValueError(f"setup record type must be one of {', '.join(SETUP_RECORD_TYPES)}")
        limit = max(1, min(int(limit), 1000))
        page = await self._get_json(
            f"{RECORD_PATH}/{record_type}", f"find_{record_type}", {"limit": limit, "offset": 0}
        )
        ids = [str(item["id"]) for item in page.get("items", [])][:limit]
        return [await self.get_record(record_type, i) for i in ids]

    # --- reference data -------------------------------------------------------------------
    async def currency_code(self, currency_id: str) -> str:
        if currency_id not in self._currency_codes:
            record = await self.get_record("currency", currency_id)
            self._currency_codes[currency_id] = record["symbol"]
            self._currency_ids[record["symbol"]] = currency_id
        return self._currency_codes[currency_id]

    async def currency_id(self, iso_code: str) -> str:
        """NetSuite internal ID of a currency (its `symbol` is the ISO 4217 code)."""
        if iso_code not in self._currency_ids:
            ids = await self.find_ids("currency", f"symbol IS {quote_q(iso_code)}")
            if not ids:
                raise MappingError("currency", f"currency {iso_code} is not enabled in NetSuite")
            self._currency_ids[iso_code] = ids[0]
            self._currency_codes[ids[0]] = iso_code
        return self._currency_ids[iso_code]

    async def terms_id(self, name: str) -> str:
        """NetSuite internal ID of payment terms by name (e.g. "Net 30")."""
        if name not in self._term_ids:
            ids = await self.find_ids("term", f"name IS {quote_q(name)}")
            if not ids:
                raise MappingError("payment_terms", f"payment terms '{name}' do not exist in NetSuite")
            self._term_ids[name] = ids[0]
        return self._term_ids[name]

    async def _reference_data(self, key: tuple[str, str], read, fresh: bool):
        """`read()` through the reference-data cache: a record read once is kept for
        REFERENCE_TTL_SECONDS, so an attempt that failed half-way keeps what it read for the next."""
        hit = self._reference.get(key)
        if hit is not None and not fresh and hit[0] > time.monotonic():
            return hit[1]
        value = await read()
        self._reference[key] = (time.monotonic() + REFERENCE_TTL_SECONDS, value)
        return value

    async def list_subsidiaries(self, *, fresh: bool = False) -> list[Subsidiary]:
        """The legal entities, from the reference-data cache unless `fresh`."""
        result = []
        for sid in await self._reference_data(("subsidiary", "*"), lambda: self.find_ids("subsidiary"), fresh):
            record = await self._reference_data(
                ("subsidiary", sid), lambda sid=sid: self.get_record("subsidiary", sid), fresh
            )
            currency = record.get("currency") or {}
            code = await self.currency_code(str(currency["id"])) if currency.get("id") else ""
            result.append(subsidiary_from_record(record, code))
        return result

    # --- provisioning -----------------------------------------------------------------------
    async def upsert_customer(self, customer: Customer, subsidiary: Subsidiary) -> str:
        """Create or update the ERP customer keyed by the CRM account ID; its internal ID.

        One upsert (`PUT customer/eid:<account>`), not a read then a PATCH: NetSuite updates an
        existing record with the fields sent and keeps every field omitted (Help: "Using the
        Upsert Operation", "Updating a Record Instance"), and the payload holds only
        CUSTOMER_OWNED_FIELDS, so linking a customer someone keyed by hand keeps its entityId,
        email, phone and comments, with no window between a read and a write."""
        operation = "upsert_customer"
        try:
            currency = await self.currency_id(customer.currency or subsidiary.currency)
            terms = await self.terms_id(customer.payment_terms) if customer.payment_terms else None
            payload = customer_payload(customer, subsidiary, currency, terms)
        except MappingError as err:
            raise _mapping_error(operation, err) from err
        return await self._upsert("customer", customer.crm_account_id, payload, operation)

    async def upsert_project(self, engagement: Engagement, customer_id: str, subsidiary: Subsidiary) -> str:
        """Create or update the ERP project (job) keyed by the opportunity ID; its internal ID."""
        operation = "upsert_project"
        try:
            currency = await self.currency_id(engagement.currency)
            payload = project_payload(engagement, customer_id, subsidiary, currency)
        except MappingError as err:
            raise _mapping_error(operation, err) from err
        return await self._upsert("job", engagement.opportunity_id, payload, operation)

    async def upsert_billing_schedule(self, engagement: Engagement, project_id: str) -> str:
        """Create or update the billing schedule keyed `bs-{opportunity_id}`; its internal ID."""
        operation = "upsert_billing_schedule"
        try:
            payload = billing_schedule_payload(engagement, project_id)
        except MappingError as err:
            raise _mapping_error(operation, err) from err
        return await self._upsert("billingSchedule", f"bs-{engagement.opportunity_id}", payload, operation)
