"""The record API: `/services/rest/record/v1/{type}[/{id | eid:externalId}]`.

- `GET /{type}?q=&limit=&offset=` -> `{"links", "count", "hasMore", "items": [{"links", "id"}],
  "offset", "totalResults"}` (ids only, as NetSuite answers; limit 1..1000, default 1000).
- `POST /{type}` -> 204 No Content, the new record's URL in `Location` (no body).
- `GET /{type}/{id}` and `GET /{type}/eid:{externalId}` -> the record.
- `PATCH /{type}/{id|eid:X}` -> 204 (fields merged; a sublist given replaces the old one).
- `PUT /{type}/eid:{externalId}` -> upsert: creates, or replaces the record's fields; 204 +
  `Location`. PUT by internal ID is not offered (NetSuite's PUT is the external-ID upsert).
- A POST/PATCH that would give a second record the same externalId: 400 DUP_RCRD.
- Finance records (sandbox/erp/finance.py): writing a billed timeBill, an issued invoice or a
  recorded payment again with identical values is a 204 no-op, with changed values a 400;
  creating an invoice marks its timeBills billed, a payment updates the invoices it applies to.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from sandboxes.common.tokens import TokenStore
from sandboxes.erp import finance
from sandboxes.erp.auth import check_bearer
from sandboxes.erp.errors import NetSuiteError
from sandboxes.erp.jsonio import dumps_exact, json_object
from sandboxes.erp.query import parse_query
from sandboxes.erp.render import RECORD_PATH, record_url, render, self_links
from sandboxes.erp.store import RecordStore
from sandboxes.erp.validation import READ_ONLY_TYPES, RECORD_TYPES, check_fields, validate

SINGLE = "application/vnd.oracle.resource+json; type=singular-resource"
COLLECTION = "application/vnd.oracle.resource+json; type=collection"
MAX_LIMIT = 1000


def _record_type(record_type: str, *, write: bool = False) -> str:
    if record_type not in RECORD_TYPES:
        raise NetSuiteError(400, "INVALID_RCRD_TYPE", f"Record type '{record_type}' does not exist.")
    if write and record_type in READ_ONLY_TYPES:
        raise NetSuiteError(405, "USER_ERROR", f"Record type '{record_type}' is read-only in this account.")
    return record_type


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _not_found(record_type: str, key: str, code: str = "RECORD_NOT_FOUND") -> NetSuiteError:
    return NetSuiteError(
        404, code, f"The record instance does not exist. Provide a valid record instance ID. ({record_type} {key})"
    )


def _find(store: RecordStore, record_type: str, key: str) -> dict | None:
    if key.startswith("eid:"):
        return store.get_by_eid(record_type, key[4:])
    return store.get(record_type, key)


def _external_id(body: dict) -> str | None:
    eid = body.get("externalId")
    if eid is None or eid == "":
        return None
    if not isinstance(eid, (str, int)) or len(str(eid)) > 255:
        raise NetSuiteError(400, "INVALID_FLD_VALUE", f"Invalid external ID {eid!r}.", "externalId")
    return str(eid)


def _dup(record_type: str, eid: str) -> NetSuiteError:
    return NetSuiteError(
        400, "DUP_RCRD", f"A record with this external ID already exists ({record_type} eid:{eid}).", "externalId"
    )


def _created(base: str, record_type: str, record_id: int | str) -> Response:
    return Response(status_code=204, headers={"Location": record_url(base, record_type, record_id)})


def record_router(store: RecordStore, tokens: TokenStore) -> APIRouter:
    router = APIRouter(prefix=RECORD_PATH, tags=["record"])

    @router.get("/{record_type}")
    async def list_records(
        request: Request, record_type: str, q: str | None = None, limit: int = MAX_LIMIT, offset: int = 0
    ) -> Response:
        check_bearer(request, tokens)
        _record_type(record_type)
        if not 1 <= limit <= MAX_LIMIT or offset < 0:
            raise NetSuiteError(
                400, "INVALID_PARAMETER", f"Invalid paging: limit must be 1..{MAX_LIMIT}, offset >= 0.", "limit"
            )
        predicate = parse_query(q) if q else (lambda r: True)
        records = await run_in_threadpool(store.all, record_type)
        matching = [r for r in records if predicate(r)]
        page = matching[offset : offset + limit]
        base = _base(request)
        has_more = offset + limit < len(matching)
        url = f"{base}{RECORD_PATH}/{record_type}"
        links = [{"rel": "self", "href": str(request.url)}]
        if has_more:
            links.append(
                {"rel": "next", "href": f"{url}?limit={limit}&offset={offset + limit}" + (f"&q={q}" if q else "")}
            )
        body = {
            "links": links,
            "count": len(page),
            "hasMore": has_more,
            "items": [{"links": self_links(record_url(base, record_type, r["id"])), "id": r["id"]} for r in page],
            "offset": offset,
            "totalResults": len(matching),
        }
        return Response(dumps_exact(body), media_type=COLLECTION)

    @router.get("/{record_type}/{key}")
    async def get_record(request: Request, record_type: str, key: str) -> Response:
        check_bearer(request, tokens)
        _record_type(record_type)

        def load() -> dict:
            record = _find(store, record_type, key)
            if record is None:
                raise _not_found(record_type, key)
            return render(record_type, record, store, _base(request))

        return Response(dumps_exact(await run_in_threadpool(load)), media_type=SINGLE)

    @router.post("/{record_type}")
    async def create_record(request: Request, record_type: str) -> Response:
        check_bearer(request, tokens)
        _record_type(record_type, write=True)
        body = await json_object(request)
        check_fields(record_type, body)
        eid = _external_id(body)

        def create() -> int:
            with store.lock:
                if eid is not None and store.get_by_eid(record_type, eid):
                    raise _dup(record_type, eid)
                fields = validate(record_type, body, store)
                record_id = store.create(record_type, fields, external_id=eid)
                finance.after_write(record_type, record_id, fields, store, created=True)
                return record_id

        return _created(_base(request), record_type, await run_in_threadpool(create))

    @router.put("/{record_type}/{key}")
    async def upsert_record(request: Request, record_type: str, key: str) -> Response:
        check_bearer(request, tokens)
        _record_type(record_type, write=True)
        if not key.startswith("eid:") or len(key) == 4:
            raise NetSuiteError(
                405,
                "USER_ERROR",
                f"PUT is only supported as an upsert by external ID: {RECORD_PATH}/{record_type}/eid:{{externalId}}.",
            )
        eid = key[4:]
        body = await json_object(request)
        check_fields(record_type, body)
        given = _external_id(body)
        if given is not None and given != eid:
            raise NetSuiteError(
                400,
                "USER_ERROR",
                f"The externalId in the body ({given}) differs from the one in the URL ({eid}).",
                "externalId",
            )

        def upsert() -> int:
            with store.lock:
                existing = store.get_by_eid(record_type, eid)
                if existing is not None and finance.unchanged_or_locked(record_type, existing, body, store):
                    return int(existing["id"])
                fields = validate(record_type, body, store, existing)
                if existing is None:
                    record_id = store.create(record_type, fields, external_id=eid)
                    finance.after_write(record_type, record_id, fields, store, created=True)
                    return record_id
                store.replace(record_type, int(existing["id"]), fields, eid)
                finance.after_write(record_type, int(existing["id"]), fields, store, created=False)
                return int(existing["id"])

        return _created(_base(request), record_type, await run_in_threadpool(upsert))

    @router.patch("/{record_type}/{key}")
    async def update_record(request: Request, record_type: str, key: str) -> Response:
        check_bearer(request, tokens)
        _record_type(record_type, write=True)
        body = await json_object(request)
        check_fields(record_type, body)

        def update() -> int:
            with store.lock:
                existing = _find(store, record_type, key)
                if existing is None:
                    raise _not_found(record_type, key, "NONEXISTENT_ID")
                eid = existing.get("externalId")
                if "externalId" in body:
                    eid = _external_id(body)
                    other = store.get_by_eid(record_type, eid) if eid else None
                    if other is not None and other["id"] != existing["id"]:
                        raise _dup(record_type, eid)
                merged = {k: v for k, v in existing.items() if k != "externalId"}
                merged.update(body)
                if finance.unchanged_or_locked(record_type, existing, merged, store):
                    return int(existing["id"])
                fields = validate(record_type, merged, store, existing)
                store.replace(record_type, int(existing["id"]), fields, eid)
                finance.after_write(record_type, int(existing["id"]), fields, store, created=False)
                return int(existing["id"])

        return _created(_base(request), record_type, await run_in_threadpool(update))

    return router
