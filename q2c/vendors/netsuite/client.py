"""NetSuite (ERP) connector: SuiteTalk REST record API, canonical models in and out.

Vendor facts this relies on:
- token: `POST /services/rest/auth/oauth2/v1/token` (client credentials) ->
  `{"access_token", "expires_in", "token_type"}`; a 401 INVALID_LOGIN later means the
  token expired or was revoked (the base class refreshes once and retries).
- create answers 204 with the new ID only in `Location`; `PUT /{type}/eid:{externalId}` is an
  upsert (also 204 + Location), so every write here is keyed by an external ID and a retry
  never creates a duplicate. Customers are keyed by the CRM account ID, never matched by
  name (a hand-made ERP customer with the same name is a different record).
- errors: `{"o:errorDetails": [{"detail", "o:errorPath", "o:errorCode"}]}`; one
  account-wide concurrency limit answered with 429 CONCURRENCY_LIMIT_EXCEEDED (retryable,
  honouring Retry-After).
- list endpoints answer IDs only, paged with `limit`/`offset`/`hasMore`.

Delivery-to-cash calls (time bills, invoices, payments, periods, project closure) live in
connectors/netsuite_finance.py and are mixed in here.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx
from temporalio.exceptions import ApplicationError

from q2c.domain.customer import Customer
from q2c.domain.engagement import Engagement
from q2c.domain.project import Subsidiary
from q2c.settings import ErpSettings
from q2c.vendors.http import READ_RETRIES, RETRYABLE_TYPE, AuditHook, VendorClient, VendorError, is_not_found
from q2c.vendors.netsuite.finance import NetSuiteFinanceMixin
from q2c.vendors.netsuite.finance_mapping import TimeBillResult
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

_mapping_error = mapping_error

__all__ = ["NetSuiteClient", "TimeBillResult"]


class NetSuiteClient(NetSuiteFinanceMixin, VendorClient):
    system = "erp"

    def __init__(
        self,
        settings: ErpSettings,
        *,
        timeout: float = 15.0,
        audit: AuditHook | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        read_retries: int = READ_RETRIES,
    ) -> None:
        super().__init__(
            settings.base_url,
            timeout=timeout,
            audit=audit,
            transport=transport,
            read_retries=read_retries,
            max_in_flight=settings.max_in_flight,
        )
        self.settings = settings
        self._currency_ids: dict[str, str] = {}
        self._currency_codes: dict[str, str] = {}
        self._term_ids: dict[str, str] = {}

    # --- VendorClient hooks ---------------------------------------------------------------
    async def _fetch_token(self) -> str:
        return await self._client_credentials_token(TOKEN_PATH, self.settings.client_id, self.settings.client_secret)

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

    async def get_record(self, record_type: str, record_id: str) -> dict:
        return await self._get_json(f"{RECORD_PATH}/{record_type}/{record_id}", f"get_{record_type}")

    async def get_by_external_id(self, record_type: str, external_id: str) -> dict | None:
        """The record keyed by this external ID, or None when there is none."""
        try:
            return await self._get_json(
                f"{RECORD_PATH}/{record_type}/eid:{quote(external_id, safe='')}", f"get_{record_type}_by_eid"
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

    async def list_subsidiaries(self) -> list[Subsidiary]:
        result = []
        for sid in await self.find_ids("subsidiary"):
            record = await self.get_record("subsidiary", sid)
            currency = record.get("currency") or {}
            code = await self.currency_code(str(currency["id"])) if currency.get("id") else ""
            result.append(subsidiary_from_record(record, code))
        return result

    # --- provisioning -----------------------------------------------------------------------
    async def upsert_customer(self, customer: Customer, subsidiary: Subsidiary) -> str:
        """Create or update the ERP customer keyed by the CRM account ID; its internal ID."""
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
