"""Salesforce (CRM) connector: REST API v60.0 subset, mapped to the canonical model.

Vendor facts relied on:
- OAuth 2.0 client-credentials flow at `POST /services/oauth2/token` (form-encoded); the
  bearer token is cached and refreshed once when the API answers 401 INVALID_SESSION_ID.
- Records: `/services/data/vNN.0/sobjects/{Type}/{Id}`; create answers 201 `{id, success}`,
  update 204; upsert by external ID `PATCH /sobjects/{Type}/{Field}/{value}` answers 201
  (created), 200 (updated) or 300 with the URLs of every matching record (ambiguous).
- SOQL at `/query?q=`; results are paged: follow `nextRecordsUrl` until `done` is true.
- Errors are a JSON array `[{"message", "errorCode", "fields"}]` (the OAuth endpoint uses
  `{"error", "error_description"}`); `Sforce-Limit-Info: api-usage=N/LIMIT` is on every
  API response and the daily limit is 403 REQUEST_LIMIT_EXCEEDED (retryable, later).
- Org metadata for the admin doctor: Versions (`GET /services/data/`, no session needed),
  Limits (`/limits`: `{Name: {Max, Remaining}}`), Describe Global (`/sobjects`) and sObject
  Describe (`/sobjects/{Type}/describe`: fields with type, length, picklistValues).
- Money comes as JSON numbers and is parsed straight to Decimal (never float). Decimals
  are sent as JSON strings, which Salesforce accepts for number fields, so they stay exact.

q2c writes only read-only reference fields on the Opportunity (the ERP and PSA own the data;
the list, with what each one means, is in sandbox/crm/schema.py `Q2C_REFERENCE_FIELDS`).

Bounded load on the org (every integration and every user share its limits):
- at most `CrmSettings.max_in_flight` requests in flight per process (Q2C_CRM_MAX_IN_FLIGHT,
  default 10). Salesforce allows 25 concurrent long-running requests (over 20 s) per org; a
  cap well below it, with a timeout below 20 s (Q2C_HTTP_TIMEOUT_SECONDS, 15), means q2c alone
  never reaches it. A request waits for a slot at most the timeout, then fails retryable
  *without being sent*: when the CRM is slow the queue drains instead of growing;
- `Sforce-Limit-Info: api-usage=used/max` is read on every response; at or above
  `api_usage_backoff` (Q2C_CRM_API_USAGE_BACKOFF, 0.9) of the daily limit the client sends
  nothing for `api_backoff_seconds` (Q2C_CRM_API_BACKOFF_SECONDS, 300): each call raises a
  retryable VendorRateLimited with `next_retry_delay`, so Temporal schedules the retry (the
  activity sleeps on the server, no worker slot and no tight loop); the first call after the
  pause is a probe whose header says whether to pause again. The response that crossed the
  threshold is returned as usual (its write happened);
- one retry layer, not two: reads are not retried in place by default (`read_retries=0`).
  The activity's retry policy (1 s doubling to 60 s, a 60 s start-to-close) is the retry
  layer in the worker, and Salesforce's own redelivery is the one of the webhook. In-place
  retries (3 x 15 s inside one 60 s attempt) made a slow CRM see each read up to 4 times per
  attempt, and an attempt abandoned at its timeout left them running while the next attempt
  started its own: the pile-up of issue 15.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from temporalio.exceptions import ApplicationError

from q2c.domain.engagement import Engagement
from q2c.settings import CrmSettings
from q2c.vendors.http import (
    RATE_LIMITED_TYPE,
    REJECTED_TYPE,
    AuditHook,
    VendorClient,
    VendorError,
)
from q2c.vendors.salesforce.mapping import (
    ACCOUNT_FIELDS,
    LINE_ITEM_FIELDS,
    ApiVersion,
    CrmMappingError,
    GlobalSObject,
    OrgLimit,
    SObjectDescribe,
    parse_limit_info,
    soql_quote,
    to_api_versions,
    to_engagement,
    to_global_sobjects,
    to_limits,
    to_sobject_describe,
)

if TYPE_CHECKING:
    from q2c.ledger.api_budget import ApiBudget


def _loads(response: httpx.Response) -> Any:
    return json.loads(response.content, parse_float=Decimal)


def _encodable(fields: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe field values: Decimal as an exact numeric string, dates as ISO strings."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, float):
            raise ValueError(f"{name}: floats are not accepted for CRM fields; use Decimal")
        if isinstance(value, Decimal):
            out[name] = format(value, "f")
        elif hasattr(value, "isoformat"):
            out[name] = value.isoformat()
        else:
            out[name] = value
    return out


class SalesforceClient(VendorClient):
    system = "crm"

    in_flight_variable = "Q2C_CRM_MAX_IN_FLIGHT"

    def __init__(
        self,
        settings: CrmSettings,
        *,
        timeout: float = 15.0,
        audit: AuditHook | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        read_retries: int = 0,
        budget: ApiBudget | None = None,
    ) -> None:
        # the in-flight cap is VendorClient's gate: a slot is waited for at most `timeout`
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
        self.api_path = f"/services/data/{settings.api_version}"
        self.last_limit_info: dict[str, tuple[int, int]] | None = None
        self._paused_until = 0.0  # time.monotonic() before which nothing is sent (api-usage)
        self._client.event_hooks["response"].append(self._capture_limit_info)

    async def _capture_limit_info(self, response: httpx.Response) -> None:
        info = parse_limit_info(response.headers.get("Sforce-Limit-Info"))
        if info:
            self.last_limit_info = info
            used, limit = info.get("api-usage", (0, 0))
            if limit and used >= self.settings.api_usage_backoff * limit:
                self._paused_until = time.monotonic() + self.settings.api_backoff_seconds

    def _before_send(self, operation: str) -> None:
        """The api-usage pause, checked before and again after a request queued for a slot."""
        self._raise_if_paused(operation)

    def _raise_if_paused(self, operation: str) -> None:
        wait = self._paused_until - time.monotonic()
        if wait <= 0:
            return
        used, limit = self.api_usage or (0, 0)
        raise ApplicationError(
            f"crm {operation}: not sent, the org's API usage is {used}/{limit} (at or above "
            f"{self.settings.api_usage_backoff:.0%}, Q2C_CRM_API_USAGE_BACKOFF): pausing {wait:.0f} s",
            {"system": self.system, "operation": operation, "api_usage": [used, limit]},
            type=RATE_LIMITED_TYPE,
            next_retry_delay=timedelta(seconds=max(1.0, wait)),
        )

    @property
    def api_usage(self) -> tuple[int, int] | None:
        """(used, limit) of the org's daily API requests, as last reported."""
        return (self.last_limit_info or {}).get("api-usage")

    # --- VendorClient hooks -------------------------------------------------------------
    async def _fetch_token(self) -> str:
        return await self._client_credentials_token(
            "/services/oauth2/token", self.settings.client_id, self.settings.client_secret, "oauth token"
        )

    def _parse_errors(self, response: httpx.Response) -> list[VendorError]:
        body = _loads(response)
        if isinstance(body, dict) and "error" in body:  # OAuth endpoint
            return [VendorError(code=str(body["error"]), message=str(body.get("error_description", body["error"])))]
        if isinstance(body, list) and body and all(isinstance(x, str) for x in body):
            # 300 Multiple Choices from an upsert: the URLs of every matching record.
            ids = [url.rstrip("/").rsplit("/", 1)[-1] for url in body]
            return [
                VendorError(
                    code="MULTIPLE_CHOICES",
                    message=f"{len(ids)} records match the external ID: {', '.join(ids)}",
                    fields=tuple(ids),
                )
            ]
        if isinstance(body, list):
            return [
                VendorError(
                    code=str(e.get("errorCode", "UNKNOWN")),
                    message=str(e.get("message", "")),
                    fields=tuple(e.get("fields") or ()),
                )
                for e in body
                if isinstance(e, dict)
            ]
        raise ValueError("not a Salesforce error body")

    # --- generic REST -------------------------------------------------------------------
    async def query(self, soql: str, *, batch_size: int | None = None) -> list[dict]:
        """All records of a SOQL query, following `nextRecordsUrl` until `done`."""
        headers = {"Sforce-Query-Options": f"batchSize={batch_size}"} if batch_size else None
        response = await self.request(
            "GET", f"{self.api_path}/query", operation="query", params={"q": soql}, headers=headers
        )
        body = _loads(response)
        records = list(body.get("records", []))
        while not body.get("done", True) and body.get("nextRecordsUrl"):
            response = await self.request("GET", body["nextRecordsUrl"], operation="query more", headers=headers)
            body = _loads(response)
            records.extend(body.get("records", []))
        return records

    async def get_record(self, sobject: str, record_id: str, fields: list[str] | tuple[str, ...] | None = None) -> dict:
        params = {"fields": ",".join(fields)} if fields else None
        response = await self.request(
            "GET",
            f"{self.api_path}/sobjects/{sobject}/{quote(record_id, safe='')}",
            operation=f"get {sobject}",
            params=params,
        )
        return _loads(response)

    async def create_record(self, sobject: str, fields: dict) -> str:
        response = await self.request(
            "POST",
            f"{self.api_path}/sobjects/{sobject}",
            operation=f"create {sobject}",
            json=_encodable(fields),
            ok_statuses=(200, 201),
        )
        return _loads(response)["id"]

    async def update_record(self, sobject: str, record_id: str, fields: dict) -> None:
        await self.request(
            "PATCH",
            f"{self.api_path}/sobjects/{sobject}/{quote(record_id, safe='')}",
            operation=f"update {sobject}",
            json=_encodable(fields),
            ok_statuses=(204,),
        )

    async def upsert_by_external_id(self, sobject: str, field: str, value: str, fields: dict) -> tuple[str, bool]:
        """(record id, created). Several matches (HTTP 300) raise a non-retryable error naming them."""
        response = await self.request(
            "PATCH",
            f"{self.api_path}/sobjects/{sobject}/{field}/{quote(value, safe='')}",
            operation=f"upsert {sobject}",
            json=_encodable(fields),
            ok_statuses=(200, 201),
        )
        body = _loads(response)
        return body["id"], bool(body.get("created", response.status_code == 201))

    async def delete_record(self, sobject: str, record_id: str) -> None:
        await self.request(
            "DELETE",
            f"{self.api_path}/sobjects/{sobject}/{quote(record_id, safe='')}",
            operation=f"delete {sobject}",
            ok_statuses=(204,),
        )

    # --- org metadata (the admin doctor) ---------------------------------------------------
    async def api_versions(self) -> list[ApiVersion]:
        """The REST API versions the org serves (oldest first), to check `api_version` is one."""
        response = await self.request("GET", "/services/data/", operation="list api versions")
        return to_api_versions(_loads(response))

    async def limits(self) -> dict[str, OrgLimit]:
        """The org's limits by name, e.g. `limits()["DailyApiRequests"].remaining`."""
        response = await self.request("GET", f"{self.api_path}/limits/", operation="limits")
        return to_limits(_loads(response))

    async def describe_global(self) -> list[GlobalSObject]:
        """Every sObject the integration user can see."""
        response = await self.request("GET", f"{self.api_path}/sobjects/", operation="describe global")
        return to_global_sobjects(_loads(response))

    async def describe(self, sobject: str) -> SObjectDescribe:
        """One sObject's fields (name, type, length, custom, external ID, picklist values);
        an object the user cannot see raises a NOT_FOUND ApplicationError."""
        response = await self.request(
            "GET", f"{self.api_path}/sobjects/{quote(sobject, safe='')}/describe/", operation=f"describe {sobject}"
        )
        return to_sobject_describe(_loads(response))

    # --- q2c operations -----------------------------------------------------------------
    async def get_engagement(self, opportunity_id: str) -> Engagement:
        """Opportunity + Account + line items, mapped to the canonical Engagement."""
        opportunity = await self.get_record("Opportunity", opportunity_id)
        account_id = opportunity.get("AccountId")
        if not account_id:
            raise _mapping_error(opportunity_id, CrmMappingError("AccountId", "the opportunity has no account"))
        account = await self.get_record("Account", account_id)
        lines = await self.query(
            f"SELECT {', '.join(LINE_ITEM_FIELDS)} FROM OpportunityLineItem "
            f"WHERE OpportunityId = {soql_quote(opportunity['Id'])} ORDER BY Id"
        )
        try:
            return to_engagement(opportunity, account, lines)
        except CrmMappingError as err:
            raise _mapping_error(opportunity_id, err) from err

    async def write_back_provisioning(
        self,
        opportunity_id: str,
        *,
        erp_customer_id: str | None,
        erp_project_id: str | None,
        psa_workspace_id: str | None,
        status: str | None,
        contract_version: int | None = None,
    ) -> None:
        """Write ERP/PSA reference IDs, the q2c status and the contract version back (None
        values are left as they are). Activation writes version 1, so the field tells which
        contract q2c works to from the start, not only after the first amendment."""
        fields = {
            "ERP_Customer_Id__c": erp_customer_id,
            "ERP_Project_Id__c": erp_project_id,
            "PSA_Workspace_Id__c": psa_workspace_id,
            "Q2C_Status__c": status,
            "Q2C_Contract_Version__c": contract_version,
        }
        fields = {k: v for k, v in fields.items() if v is not None}
        if fields:
            await self.update_record("Opportunity", opportunity_id, fields)

    async def write_invoice_reference(
        self, opportunity_id: str, *, number: str | None, amount: Decimal, currency: str, status: str
    ) -> None:
        """The ERP's latest invoice, as read-only reference fields on the opportunity."""
        await self.update_record(
            "Opportunity",
            opportunity_id,
            {
                "Last_Invoice_Number__c": number,
                "Last_Invoice_Amount__c": str(amount),
                "Last_Invoice_Currency__c": currency,
                "Last_Invoice_Status__c": status,
            },
        )

    async def write_collection_status(
        self,
        opportunity_id: str,
        *,
        amount_paid: Decimal,
        open_balance: Decimal,
        days_overdue: int,
        unapplied_credit: Decimal | None = None,
        last_invoice_number: str | None = None,
        last_invoice_amount: Decimal | None = None,
        last_invoice_currency: str | None = None,
        last_invoice_status: str | None = None,
        extra_fields: dict | None = None,
    ) -> None:
        """Payment status and aging from the ERP, as read-only reference fields, in ONE update
        so the opportunity never shows totals from one ERP read next to the latest invoice's
        status from another. Totals are over every invoice of the engagement; the credit is
        the customer's unapplied payments; the last-invoice fields (None: left as they are)
        describe the latest invoice as the ERP has it now (e.g. Paid In Full)."""
        fields: dict = {"Amount_Paid__c": amount_paid, "Open_Balance__c": open_balance, "Days_Overdue__c": days_overdue}
        optional = {
            "Unapplied_Credit__c": unapplied_credit,
            "Last_Invoice_Number__c": last_invoice_number,
            "Last_Invoice_Amount__c": last_invoice_amount,
            "Last_Invoice_Currency__c": last_invoice_currency,
            "Last_Invoice_Status__c": last_invoice_status,
        }
        fields.update({k: v for k, v in optional.items() if v is not None})
        fields.update(extra_fields or {})  # billed / credited / budget figures, in the same update
        await self.update_record("Opportunity", opportunity_id, fields)

    async def write_customer_master(self, account_id: str, patch: dict[str, str]) -> None:
        """A steward's customer-master fix, written back to the CRM account (canonical names in)."""
        fields = {ACCOUNT_FIELDS[k]: v for k, v in patch.items() if k in ACCOUNT_FIELDS and v is not None}
        if fields:
            await self.update_record("Account", account_id, fields)

    async def write_contract_version(self, opportunity_id: str, version: int) -> None:
        await self.update_record("Opportunity", opportunity_id, {"Q2C_Contract_Version__c": version})

    async def set_opportunity_stage(self, opportunity_id: str, stage: str) -> None:
        await self.update_record("Opportunity", opportunity_id, {"StageName": stage})

    async def update_opportunity(self, opportunity_id: str, fields: dict) -> None:
        await self.update_record("Opportunity", opportunity_id, fields)

    async def update_account(self, account_id: str, fields: dict) -> None:
        await self.update_record("Account", account_id, fields)

    async def closed_won_opportunity_ids(self, *, unprovisioned_only: bool = False) -> list[str]:
        """IDs of Closed Won opportunities (for reconciliation), optionally only those without an ERP project."""
        soql = "SELECT Id FROM Opportunity WHERE StageName = 'Closed Won'"
        if unprovisioned_only:
            soql += " AND ERP_Project_Id__c = null"
        return [r["Id"] for r in await self.query(soql + " ORDER BY Id")]


def _mapping_error(opportunity_id: str, err: CrmMappingError) -> ApplicationError:
    return ApplicationError(
        f"crm opportunity {opportunity_id} cannot be mapped: {err}",
        {"system": "crm", "opportunity_id": opportunity_id, "field": err.field},
        type=REJECTED_TYPE,
        non_retryable=True,
    )
