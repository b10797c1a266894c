"""The Salesforce (CRM) sandbox app: a faithful subset of the Salesforce REST API.

- `POST /services/oauth2/token` (client credentials) issues bearer tokens;
- `GET /services/data/` lists the versions (no session, not counted); `vNN.0` outside them,
  and anything not a resource, is 404 NOT_FOUND; `latest` is the newest version;
- `/services/data/vNN.0/sobjects/...` CRUD, GET and upsert by external ID, Describe Global,
  sObject Describe, `/query` and `/queryAll` SOQL with paging (and COUNT()), `/limits`;
- resource URLs are answered with or without a trailing slash (no redirect), as Salesforce does;
- every API response carries `Sforce-Limit-Info: api-usage=N/LIMIT`; past the daily limit
  the API answers 403 REQUEST_LIMIT_EXCEEDED;
- bad input (IDs, bodies, query strings, unknown objects and fields, numbers out of range) is
  a 4xx with Salesforce's error array `[{message, errorCode, fields}]`, never a 5xx;
- Opportunities turning Closed Won emit SOAP Outbound Messages (see `outbound.py`);
- sandbox-only admin under `/__sandbox` (faults, reset, token revoke, outbound deliveries).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from sandboxes.common.admin import admin_router
from sandboxes.common.db import make_engine
from sandboxes.common.faults import ADMIN_PREFIX, FaultInjectionMiddleware, FaultState, json_error_renderer
from sandboxes.common.tokens import TokenStore
from sandboxes.config import DEMO_CRM_CLIENT_ID, DEMO_CRM_CLIENT_SECRET, DEMO_CRM_ORG_ID
from sandboxes.crm import describe, ids, jsonutil, soql
from sandboxes.crm.errors import SfError, error_body, json_response, sf_error_response
from sandboxes.crm.outbound import OutboundConfig, OutboundDispatcher
from sandboxes.crm.schema import RELATIONSHIPS, schema_for
from sandboxes.crm.seed import seed as seed_demo
from sandboxes.crm.store import CrmStore, MultipleMatches

API_PREFIX = "/services/data"
DEFAULT_BATCH_SIZE = 2000
MAX_BATCH_SIZE = 2000
MAX_BODY_BYTES = 10 * 1024 * 1024
_BATCH_SIZE = re.compile(r"batchSize\s*=\s*([0-9]{1,9})(?![0-9])", re.IGNORECASE)
_CURSOR = re.compile(r"^(01g[A-Za-z0-9]{15})-([0-9]{1,9})$")


@dataclass
class ApiUsage:
    """The org's rolling 24-hour API request count (kept in memory; reset by admin reset)."""

    limit: int
    used: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def header(self) -> str:
        return f"api-usage={self.used}/{self.limit}"

    def consume(self) -> bool:
        with self.lock:
            if self.used >= self.limit:
                return False
            self.used += 1
            return True


@dataclass
class QueryCursors:
    """Server-side query locators for `nextRecordsUrl` paging (in memory, like 15-min cursors)."""

    pages: dict[str, list[dict]] = field(default_factory=dict)
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    def open(self, records: list[dict]) -> str:
        locator = ids.make_id(ids.QUERY_LOCATOR_PREFIX, next(self.counter))
        self.pages[locator] = records
        return locator


def create_app(
    db_url: str,
    *,
    seed: bool = True,
    organization_id: str = DEMO_CRM_ORG_ID,
    client_id: str = DEMO_CRM_CLIENT_ID,
    client_secret: str = DEMO_CRM_CLIENT_SECRET,
    outbound_url: str | None = None,
    token_ttl_seconds: int = 3600,
    daily_api_limit: int = 15000,
    instance_url: str | None = None,
    outbound_retry_initial_seconds: float = 0.5,
    outbound_retry_max_seconds: float = 30.0,
    outbound_poll_seconds: float = 0.1,
    outbound_timeout_seconds: float = 10.0,
    outbound_max_age_seconds: float = 24 * 3600,
    id_instance: str = ids.DEFAULT_INSTANCE,
) -> FastAPI:
    """`id_instance`: 6 base62 characters in every new record ID (a separate org's IDs never
    collide with this one's; tests running several sandboxes give each its own)."""
    store = CrmStore(make_engine(db_url), id_instance=id_instance)
    store.create_tables()
    if seed:
        seed_demo(store)
    tokens = TokenStore(ttl_seconds=token_ttl_seconds)
    faults = FaultState()
    usage = ApiUsage(limit=daily_api_limit)
    cursors = QueryCursors()
    dispatcher = OutboundDispatcher(
        store,
        OutboundConfig(
            url=outbound_url,
            organization_id=organization_id,
            instance_url=instance_url or "https://q2c-sandbox.my.salesforce.com",
            retry_initial_seconds=outbound_retry_initial_seconds,
            retry_max_seconds=outbound_retry_max_seconds,
            max_age_seconds=outbound_max_age_seconds,
            poll_seconds=outbound_poll_seconds,
            timeout_seconds=outbound_timeout_seconds,
        ),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        task = asyncio.create_task(dispatcher.run(), name="crm-outbound-delivery")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # no 307 to the slash-less URL: TrailingSlash below answers both spellings directly
    app = FastAPI(title="Salesforce sandbox (q2c)", lifespan=lifespan, redirect_slashes=False)
    app.state.store = store
    app.state.tokens = tokens
    app.state.faults = faults
    app.state.api_usage = usage
    app.state.outbound = dispatcher

    @app.exception_handler(SfError)
    async def _sf_error(_request: Request, exc: SfError) -> Response:
        return sf_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith(ADMIN_PREFIX):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, f"HTTP_{exc.status_code}")
        message = "The requested resource does not exist" if exc.status_code == 404 else str(exc.detail)
        return json_response(SfError(exc.status_code, code, message).body(), exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.startswith(ADMIN_PREFIX):
            return JSONResponse({"detail": jsonable(exc.errors())}, status_code=422)
        where = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in exc.errors())[:200]
        return json_response(SfError(400, "MALFORMED_QUERY", f"Invalid request parameters: {where}").body(), 400)

    @app.middleware("http")
    async def api_gate(request: Request, call_next):
        """Session check, daily API limit and the Sforce-Limit-Info header for /services/data.
        The Versions resource (`/services/data/`) needs no session and is not counted."""
        if not request.url.path.startswith(API_PREFIX + "/"):
            return await call_next(request)
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        if not tokens.valid(token):
            return json_response(
                [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
                401,
                headers={"WWW-Authenticate": "Token"},
            )
        if not usage.consume():
            return json_response(
                [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
                403,
                headers={"Sforce-Limit-Info": usage.header()},
            )
        response = await call_next(request)
        response.headers["Sforce-Limit-Info"] = usage.header()
        return response

    # --- OAuth -------------------------------------------------------------------------
    @app.post("/services/oauth2/token")
    async def token(request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return JSONResponse(
                {"error": "unsupported_grant_type", "error_description": "grant type not supported"}, status_code=400
            )
        if not (
            hmac.compare_digest(form.get("client_id", "").encode(), client_id.encode())
            and hmac.compare_digest(form.get("client_secret", "").encode(), client_secret.encode())
        ):
            return JSONResponse(
                {"error": "invalid_client", "error_description": "invalid client credentials"}, status_code=400
            )
        instance = str(request.base_url).rstrip("/")
        identity = f"{instance}/id/{organization_id}/{ids.make_id('005', 1)}"
        issued_at = str(int(time.time() * 1000))
        signature = base64.b64encode(
            hmac.new(client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
        ).decode()
        return JSONResponse(
            {
                "access_token": tokens.issue(),
                "instance_url": instance,
                "id": identity,
                "token_type": "Bearer",
                "issued_at": issued_at,
                "signature": signature,
            }
        )

    # --- REST API ----------------------------------------------------------------------
    @app.get(API_PREFIX)
    def list_versions() -> Response:
        """Versions resource: no session needed and not counted against the limit."""
        return json_response(describe.versions())

    api = APIRouter(prefix=API_PREFIX + "/{version}")

    def check_version(version: str) -> str:
        """The numeric version of the path segment (`latest` resolves to the newest); an
        unknown or retired version is NOT_FOUND, as Salesforce answers it."""
        resolved = describe.resolve_version(version)
        if resolved is None:
            raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
        return resolved

    async def json_body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise SfError(413, "REQUEST_ENTITY_TOO_LARGE", f"The request body is larger than {MAX_BODY_BYTES} bytes")
        try:
            body = jsonutil.loads(raw) if raw else None
        except (ValueError, RecursionError) as exc:
            detail = str(exc)[:100] if isinstance(exc, ValueError) else "nested too deeply"
            raise SfError(400, "JSON_PARSER_ERROR", f"Unexpected character in request body: {detail}") from None
        if not isinstance(body, dict):
            raise SfError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
        return body

    def with_attributes(version: str, sobject: str, record: dict[str, Any]) -> dict[str, Any]:
        return {
            "attributes": {"type": sobject, "url": f"{API_PREFIX}/{version}/sobjects/{sobject}/{record['Id']}"},
            **record,
        }

    def pick_fields(sobject: str, record: dict[str, Any], fields: str | None) -> dict[str, Any]:
        if not fields:
            return record
        schema = schema_for(sobject)
        wanted = [f.strip() for f in fields.split(",") if f.strip()]
        unknown = [f for f in wanted if f not in schema]
        if unknown:
            raise SfError(
                400, "INVALID_FIELD", f"No such column '{unknown[0][:80]}' on entity '{sobject}'", unknown[:10]
            )
        return {"Id": record["Id"], **{f: record[f] for f in wanted}}

    @api.get("")
    def version_resources(version: str) -> Response:
        return json_response(describe.resources(check_version(version)))

    @api.get("/limits")
    def org_limits(version: str) -> Response:
        """Limits resource: DailyApiRequests is the same counter Sforce-Limit-Info reports
        (this call included), so both always agree."""
        check_version(version)
        return json_response(describe.limits(api_max=usage.limit, api_used=usage.used, records=store.count()))

    @api.get("/sobjects")
    def describe_global(version: str) -> Response:
        return json_response(describe.global_describe(check_version(version)))

    @api.get("/sobjects/{sobject}")
    def sobject_basic_info(version: str, sobject: str) -> Response:
        """sObject Basic Information (what simple-salesforce's `metadata()` reads)."""
        version = check_version(version)
        schema_for(sobject)
        return json_response({"objectDescribe": describe.sobject_entry(sobject, version), "recentItems": []})

    @api.get("/sobjects/{sobject}/describe")
    def describe_sobject(version: str, sobject: str) -> Response:
        version = check_version(version)
        schema_for(sobject)
        return json_response(describe.describe_sobject(sobject, version))

    @api.get("/sobjects/{sobject}/{record_id}")
    def get_record(version: str, sobject: str, record_id: str, fields: str | None = None) -> Response:
        version = check_version(version)
        schema_for(sobject)
        record = store.get(sobject, record_id, include_deleted=True)
        if record is None:
            raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
        if record["IsDeleted"]:
            raise SfError(404, "ENTITY_IS_DELETED", "entity is deleted")
        return json_response(with_attributes(version, sobject, pick_fields(sobject, record, fields)))

    @api.get("/sobjects/{sobject}/{field}/{value}")
    def get_by_external_id(version: str, sobject: str, field: str, value: str, fields: str | None = None) -> Response:
        """sObject Rows by External ID: the one record whose external-ID field equals `value`
        (case-insensitive); several matches answer 300 with their URLs."""
        version = check_version(version)
        matches = store.find_by_external_id(sobject, field, value)
        if not matches:
            raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
        if len(matches) > 1:
            return json_response([f"{API_PREFIX}/{version}/sobjects/{sobject}/{r['Id']}" for r in matches], 300)
        return json_response(with_attributes(version, sobject, pick_fields(sobject, matches[0], fields)))

    @api.post("/sobjects/{sobject}")
    async def create_record(version: str, sobject: str, request: Request) -> Response:
        check_version(version)
        schema_for(sobject)
        new_id = store.create(sobject, await json_body(request))
        dispatcher.wake()
        return json_response({"id": new_id, "success": True, "errors": []}, 201)

    @api.patch("/sobjects/{sobject}/{record_id}")
    async def update_record(version: str, sobject: str, record_id: str, request: Request) -> Response:
        check_version(version)
        schema_for(sobject)
        store.update(sobject, record_id, await json_body(request))
        dispatcher.wake()
        return Response(status_code=204)

    @api.patch("/sobjects/{sobject}/{field}/{value}")
    async def upsert_record(version: str, sobject: str, field: str, value: str, request: Request) -> Response:
        version = check_version(version)
        schema_for(sobject)
        body = await json_body(request)
        try:
            record_id, created = store.upsert(sobject, field, value, body)
        except MultipleMatches as many:
            return json_response([f"{API_PREFIX}/{version}/sobjects/{sobject}/{rid}" for rid in many.record_ids], 300)
        dispatcher.wake()
        return json_response(
            {"id": record_id, "success": True, "errors": [], "created": created}, 201 if created else 200
        )

    @api.delete("/sobjects/{sobject}/{record_id}")
    def delete_record(version: str, sobject: str, record_id: str) -> Response:
        check_version(version)
        store.delete(sobject, record_id)
        return Response(status_code=204)

    def page(version: str, endpoint: str, locator: str, records: list[dict], offset: int, batch: int) -> dict:
        chunk = records[offset : offset + batch]
        done = offset + batch >= len(records)
        body: dict[str, Any] = {"totalSize": len(records), "done": done, "records": chunk}
        if done:
            cursors.pages.pop(locator, None)
        else:
            body["nextRecordsUrl"] = f"{API_PREFIX}/{version}/{endpoint}/{locator}-{offset + batch}"
        return body

    def batch_size(request: Request) -> int:
        m = _BATCH_SIZE.search(request.headers.get("sforce-query-options", ""))
        # Salesforce's minimum is 200; smaller sizes are honoured here so tests can page cheaply.
        return max(1, min(MAX_BATCH_SIZE, int(m.group(1)))) if m else DEFAULT_BATCH_SIZE

    def run_soql(version: str, endpoint: str, request: Request, q: str | None, *, include_deleted: bool) -> Response:
        if q is None:
            raise SfError(400, "MALFORMED_QUERY", "A query string has to be specified")
        query = soql.parse(q)
        rows = execute(store, version, query, include_deleted=include_deleted)
        if query.count is not None and query.count.field is None:
            # COUNT(): the number is totalSize; no records come back
            return json_response({"totalSize": len(rows), "done": True, "records": []})
        if query.count is not None:
            counted = sum(1 for r in rows if soql.resolve(r, query.count.field, {}) is not None)
            aggregate = {"attributes": {"type": "AggregateResult"}, query.count.alias: counted}
            return json_response({"totalSize": 1, "done": True, "records": [aggregate]})
        records = shape_records(store, version, query, rows)
        locator = cursors.open(records)
        return json_response(page(version, endpoint, locator, records, 0, batch_size(request)))

    @api.get("/query")
    def run_query(version: str, request: Request, q: str | None = None) -> Response:
        return run_soql(check_version(version), "query", request, q, include_deleted=False)

    @api.get("/queryAll")
    def run_query_all(version: str, request: Request, q: str | None = None) -> Response:
        """QueryAll: like query, plus the records in the recycle bin (IsDeleted true)."""
        return run_soql(check_version(version), "queryAll", request, q, include_deleted=True)

    def more(version: str, endpoint: str, cursor: str, request: Request) -> Response:
        version = check_version(version)
        m = _CURSOR.match(cursor)
        records = cursors.pages.get(m.group(1)) if m else None
        if records is None:
            raise SfError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return json_response(page(version, endpoint, m.group(1), records, int(m.group(2)), batch_size(request)))

    @api.get("/query/{cursor}")
    def next_page(version: str, cursor: str, request: Request) -> Response:
        return more(version, "query", cursor, request)

    @api.get("/queryAll/{cursor}")
    def next_page_all(version: str, cursor: str, request: Request) -> Response:
        return more(version, "queryAll", cursor, request)

    app.include_router(api)

    # --- sandbox admin -----------------------------------------------------------------
    def reset() -> None:
        store.wipe()
        if seed:
            seed_demo(store)
        with usage.lock:
            usage.used = 0
        cursors.pages.clear()

    app.include_router(admin_router(faults, reset=reset, revoke_tokens=tokens.revoke_all))
    app.include_router(_crm_admin_router(dispatcher, usage))
    app.add_middleware(FaultInjectionMiddleware, state=faults, render_error=json_error_renderer(error_body))
    app.add_middleware(TrailingSlash)
    return app


class TrailingSlash:
    """`/services/data/v60.0/query/?q=` is `/services/data/v60.0/query?q=`: real clients
    (simple-salesforce) put a slash after the resource, and Salesforce answers both directly.
    Outermost, so the request is counted, authorised and fault-injected once, under one path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if len(path) > 1 and path.endswith("/") and path.startswith("/services/"):
                scope = {**scope, "path": path.rstrip("/") or "/"}
                raw = scope.get("raw_path")
                if isinstance(raw, bytes):
                    scope["raw_path"] = raw.rstrip(b"/") or b"/"
        await self.app(scope, receive, send)


def jsonable(value: Any) -> Any:
    """Validation error details made JSON-safe (they can hold the offending input)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class OutboundUrlIn(BaseModel):
    url: str | None


class ApiUsageIn(BaseModel):
    used: int | None = None
    limit: int | None = None


def _crm_admin_router(dispatcher: OutboundDispatcher, usage: ApiUsage) -> APIRouter:
    router = APIRouter(prefix=ADMIN_PREFIX, tags=["sandbox-admin"])

    @router.get("/outbound")
    def list_outbound() -> dict:
        return {"url": dispatcher.config.url, "deliveries": dispatcher.list_messages()}

    @router.post("/outbound/{message_id}/redeliver")
    def redeliver(message_id: int) -> Response:
        view = dispatcher.redeliver(message_id) if 0 < message_id < 2**63 else None
        if view is None:
            return JSONResponse({"detail": f"no outbound message {message_id}"}, status_code=404)
        return JSONResponse(view, status_code=201)

    @router.put("/outbound/dropped/{record_id}")
    def drop_outbound(record_id: str) -> Response:
        """Lose this record's outbound messages from now on (as when Salesforce gives up after
        24 hours of failed delivery, or an admin deletes them from the queue); DELETE undoes it."""
        dispatcher.drop_record(record_id)
        return JSONResponse({"dropped": sorted(dispatcher.dropped_records)})

    @router.delete("/outbound/dropped/{record_id}")
    def undrop_outbound(record_id: str) -> Response:
        dispatcher.drop_record(record_id, dropped=False)
        return JSONResponse({"dropped": sorted(dispatcher.dropped_records)})

    @router.put("/outbound/url")
    def set_outbound_url(body: OutboundUrlIn) -> Response:
        if body.url is not None:
            try:
                url = httpx.URL(body.url)
            except (httpx.InvalidURL, TypeError, ValueError):
                url = None
            if url is None or url.scheme not in ("http", "https") or not url.host:
                return JSONResponse({"detail": "url must be an absolute http(s) URL"}, status_code=422)
        dispatcher.config.url = body.url
        dispatcher.wake()
        return JSONResponse({"url": dispatcher.config.url})

    @router.get("/api-usage")
    def get_usage() -> dict:
        return {"used": usage.used, "limit": usage.limit}

    @router.put("/api-usage")
    def put_usage(body: ApiUsageIn) -> dict:
        with usage.lock:
            if body.used is not None:
                usage.used = body.used
            if body.limit is not None:
                usage.limit = body.limit
        return {"used": usage.used, "limit": usage.limit}

    return router


class _Parents:
    """Parent records of query rows, each read once per query (for `Account.Name` and friends)."""

    def __init__(self, store: CrmStore, sobject: str) -> None:
        self.store = store
        self.links = RELATIONSHIPS[sobject]
        self.cache: dict[tuple[str, str], dict | None] = {}

    def __call__(self, record: dict[str, Any]) -> dict[str, dict[str, Any]]:
        out = {}
        for rel, (ref_field, parent_type) in self.links.items():
            ref = record.get(ref_field)
            if ref is None:
                continue
            key = (parent_type, ref)
            if key not in self.cache:
                self.cache[key] = self.store.get(parent_type, ref)
            if self.cache[key] is not None:
                out[rel] = self.cache[key]
        return out


def execute(store: CrmStore, version: str, query: soql.Query, *, include_deleted: bool = False) -> list[dict[str, Any]]:
    """The records a parsed query selects (WHERE, ORDER BY, OFFSET, LIMIT), as stored;
    `include_deleted` adds the recycle bin (queryAll)."""
    parents_of = _Parents(store, query.sobject)
    rows = [
        r
        for r in store.all(query.sobject, include_deleted=include_deleted)
        if soql.matches(query.where, r, parents_of(r))
    ]
    if query.order_by:
        rows = soql.sort_records(rows, query.order_by, parents_of)
    rows = rows[query.offset :]
    if query.limit is not None:
        rows = rows[: query.limit]
    return rows


def shape_records(store: CrmStore, version: str, query: soql.Query, rows: list[dict[str, Any]]) -> list[dict]:
    """Rows as the REST API returns them: `attributes`, the selected fields in SELECT order,
    parent fields nested under the relationship name (null when there is no parent)."""
    parents_of = _Parents(store, query.sobject)
    links = RELATIONSHIPS[query.sobject]

    def shape(record: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attributes": {
                "type": query.sobject,
                "url": f"{API_PREFIX}/{version}/sobjects/{query.sobject}/{record['Id']}",
            }
        }
        parents = parents_of(record)
        for name in query.fields:
            if "." in name:
                rel, _, pfield = name.partition(".")
                parent = parents.get(rel)
                if parent is None:
                    out.setdefault(rel, None)
                    continue
                nested = out.get(rel) or {
                    "attributes": {
                        "type": links[rel][1],
                        "url": f"{API_PREFIX}/{version}/sobjects/{links[rel][1]}/{parent['Id']}",
                    }
                }
                nested[pfield] = parent.get(pfield)
                out[rel] = nested
            else:
                out[name] = record.get(name)
        return out

    return [shape(r) for r in rows]
