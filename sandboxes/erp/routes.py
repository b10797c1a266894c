"""The record API: `/services/rest/record/v1/{type}[/{id | eid:externalId}]`.

- `GET /{type}?q=&limit=&offset=` -> `{"links", "count", "hasMore", "items": [{"links", "id"}],
  "offset", "totalResults"}` (ids only, as NetSuite answers; limit 1..1000, default 1000).
  `links` as in NetSuite's "Collection Paging": `first` and `prev` past the first page,
  `next` while `hasMore`, `last`, and `self`, each with `limit` and `offset` (and the `q`).
- `POST /{type}` -> 204 No Content, the new record's URL in `Location` (no body).
- `GET /{type}/{id}` and `GET /{type}/eid:{externalId}` -> the record, body fields only;
  sublists as links unless `expandSubResources=true`; `fields=a,b` for only some fields.
- `GET /{type}/{id}/{sublist}` -> the sublist's lines (NetSuite's subresource URL).
- `PATCH /{type}/{id|eid:X}` -> 204 (fields merged; a sublist given replaces the old one).
  NetSuite (Help: Updating a Record Instance): "Any omitted fields are considered unchanged";
  a field sent as null is deleted.
- `PUT /{type}/eid:{externalId}` -> upsert: creates the record, or updates an existing one
  exactly as PATCH does (fields omitted from the request are kept: NetSuite Help, Using the
  Upsert Operation: "If the record already exists, it will be updated"); 204 + `Location`.
  PUT by internal ID is not offered (NetSuite's PUT is the external-ID upsert).
- A POST/PATCH that would give a second record the same externalId: 400 DUP_RCRD.
- A record that does not exist (GET, PATCH, or an ID no record can have, such as
  99999999999999999999 or "abc"): 404 NONEXISTENT_ID, on GET and PATCH alike.
- Methods the sandbox does not offer on a URL (DELETE everywhere, writes on the read-only
  setup types, PUT by internal ID): 405 METHOD_NOT_ALLOWED in NetSuite's error body with an
  `Allow` header naming what the URL does take.
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
from sandboxes.erp.errors import NOT_FOUND_DETAIL, NetSuiteError
from sandboxes.erp.jsonio import dumps_exact, json_object
from sandboxes.erp.query import parse
from sandboxes.erp.render import RECORD_PATH, SUBLISTS, record_url, render, self_links, sublist_items
from sandboxes.erp.store import RecordStore
from sandboxes.erp.validation import READ_ONLY_TYPES, RECORD_TYPES, check_fields, validate

SINGLE = "application/vnd.oracle.resource+json; type=singular-resource"
COLLECTION = "application/vnd.oracle.resource+json; type=collection"
MAX_LIMIT = 1000
MAX_OFFSET = 10**9


def allowed_methods(path: str) -> list[str] | None:
    """The methods a record API URL takes (for `Allow`), or None for a URL that is not one."""
    if not path.startswith(RECORD_PATH + "/"):
        return None
    parts = path[len(RECORD_PATH) + 1 :].split("/")
    if not parts[0] or parts[0] not in RECORD_TYPES or len(parts) > 3:
        return None
    writable = parts[0] not in READ_ONLY_TYPES
    if len(parts) == 1:
        return ["GET", "POST"] if writable else ["GET"]
    if len(parts) == 3:
        return ["GET"]
    if not writable:
        return ["GET"]
    return ["GET", "PATCH", "PUT"] if parts[1].startswith("eid:") else ["GET", "PATCH"]


def method_not_allowed(method: str, path: str) -> NetSuiteError:
    allow = allowed_methods(path) or ["GET"]
    return NetSuiteError(
        405,
        "METHOD_NOT_ALLOWED",
        f"The {method} method is not supported for the resource {path}. Supported methods: {', '.join(allow)}.",
        headers={"Allow": ", ".join(allow)},
    )


def _record_type(record_type: str, *, write: bool = False, request: Request | None = None) -> str:
    if record_type not in RECORD_TYPES:
        raise NetSuiteError(404, "INVALID_RCRD_TYPE", f"Record type '{record_type}' does not exist.")
    if write and record_type in READ_ONLY_TYPES and request is not None:
        raise method_not_allowed(request.method, request.url.path)
    return record_type


def _flag(value: str | None, name: str) -> bool:
    if value is None or value.lower() == "false":
        return False
    if value.lower() == "true":
        return True
    raise NetSuiteError(400, "INVALID_PARAMETER", f"Invalid value for the {name} query parameter: true or false.")


def _fields(value: str | None) -> set[str] | None:
    if value is None:
        return None
    names = {n.strip() for n in value.split(",") if n.strip()}
    if not names:
        raise NetSuiteError(400, "INVALID_PARAMETER", "Invalid value for the fields query parameter.")
    return names


def _page_url(url: str, limit: int, offset: int, q: str | None) -> str:
    from urllib.parse import urlencode

    params = {"limit": limit, "offset": offset}
    if q:
        params["q"] = q
    return f"{url}?{urlencode(params)}"


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _not_found(record_type: str, key: str) -> NetSuiteError:
    return NetSuiteError(404, "NONEXISTENT_ID", f"{NOT_FOUND_DETAIL} ({record_type} {key[:100]})")


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
        if not 1 <= limit <= MAX_LIMIT:
            raise NetSuiteError(400, "INVALID_PARAMETER", f"Invalid value for limit: 1..{MAX_LIMIT}.", "limit")
        if not 0 <= offset <= MAX_OFFSET:
            raise NetSuiteError(400, "INVALID_PARAMETER", "Invalid value for offset: 0 or more.", "offset")
        query = parse(q) if q else None
        # an AND-only query's equalities narrow it through the store's index to the records that
        # can match; each is still tested with the whole query, so the answer is a full scan's
        records = None
        if query and query.equalities:
            records = await run_in_threadpool(store.candidates, record_type, query.equalities)
        if records is None:
            records = await run_in_threadpool(store.all, record_type)
        matching = [r for r in records if query.predicate(r)] if query else records
        page = matching[offset : offset + limit]
        base = _base(request)
        has_more = offset + limit < len(matching)
        url = f"{base}{RECORD_PATH}/{record_type}"
        links = []
        if offset > 0:
            links.append({"rel": "first", "href": _page_url(url, limit, 0, q)})
            links.append({"rel": "prev", "href": _page_url(url, limit, max(0, offset - limit), q)})
        if has_more:
            links.append({"rel": "next", "href": _page_url(url, limit, offset + limit, q)})
        last = ((len(matching) - 1) // limit) * limit if matching else 0
        links.append({"rel": "last", "href": _page_url(url, limit, last, q)})
        links.append({"rel": "self", "href": _page_url(url, limit, offset, q)})
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
    async def get_record(
        request: Request,
        record_type: str,
        key: str,
        expandSubResources: str | None = None,  # noqa: N803 (NetSuite's parameter name)
        fields: str | None = None,
    ) -> Response:
        check_bearer(request, tokens)
        _record_type(record_type)
        expand = _flag(expandSubResources, "expandSubResources")
        only = _fields(fields)

        def load() -> dict:
            record = _find(store, record_type, key)
            if record is None:
                raise _not_found(record_type, key)
            return render(record_type, record, store, _base(request), expand=expand, fields=only)

        return Response(dumps_exact(await run_in_threadpool(load)), media_type=SINGLE)

    @router.get("/{record_type}/{key}/{sublist}")
    async def get_sublist(request: Request, record_type: str, key: str, sublist: str) -> Response:
        """A sublist as its own resource (NetSuite: `GET .../salesOrder/1/item`)."""
        check_bearer(request, tokens)
        _record_type(record_type)

        def load() -> dict:
            record = _find(store, record_type, key)
            if record is None:
                raise _not_found(record_type, key)
            value = record.get(sublist)
            if sublist not in SUBLISTS or not isinstance(value, dict):
                raise NetSuiteError(
                    404, "INVALID_URL", f"The record {record_type} has no sublist or subrecord '{sublist[:100]}'."
                )
            items = sublist_items(sublist, value)
            href = f"{record_url(_base(request), record_type, record['id'])}/{sublist}"
            return {"links": self_links(href), "items": items, "totalResults": len(items)}

        return Response(dumps_exact(await run_in_threadpool(load)), media_type=COLLECTION)

    @router.post("/{record_type}")
    async def create_record(request: Request, record_type: str) -> Response:
        check_bearer(request, tokens)
        _record_type(record_type, write=True, request=request)
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
        _record_type(record_type, write=True, request=request)
        if not key.startswith("eid:"):
            raise method_not_allowed("PUT", request.url.path)
        if len(key) == 4:
            raise NetSuiteError(400, "INVALID_PARAMETER", "The external ID in the URL is empty (eid:).", "externalId")
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
                if existing is None:
                    fields = validate(record_type, body, store)
                    record_id = store.create(record_type, fields, external_id=eid)
                    finance.after_write(record_type, record_id, fields, store, created=True)
                    return record_id
                # an update, as PATCH: what the request omits stays as it is
                merged = {k: v for k, v in existing.items() if k != "externalId"}
                merged.update(body)
                if finance.unchanged_or_locked(record_type, existing, merged, store):
                    return int(existing["id"])
                fields = validate(record_type, merged, store, existing)
                store.replace(record_type, int(existing["id"]), fields, eid)
                finance.after_write(record_type, int(existing["id"]), fields, store, created=False)
                return int(existing["id"])

        return _created(_base(request), record_type, await run_in_threadpool(upsert))

    @router.patch("/{record_type}/{key}")
    async def update_record(request: Request, record_type: str, key: str) -> Response:
        check_bearer(request, tokens)
        _record_type(record_type, write=True, request=request)
        body = await json_object(request)
        check_fields(record_type, body)

        def update() -> int:
            with store.lock:
                existing = _find(store, record_type, key)
                if existing is None:
                    raise _not_found(record_type, key)
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
