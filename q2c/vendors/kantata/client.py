"""Kantata (PSA) connector: templates, roles, and idempotent workspace provisioning.

Kantata API v1 facts this relies on:
- base path `/api/v1/`, resources as `<plural>.json`; auth `Authorization: Bearer <token>`
  (a fixed OAuth/API token: on 401 there is nothing to refresh, so after the base class's
  one retry the call fails as `VendorAuthFailed`, non-retryable);
- errors are `{"errors": [{"type", "message", "field"?}]}` (type: validation, oauth,
  system, rate_limit); 429 means over the rate limit and is retried by the caller;
- lists are paged (`page`, `per_page` up to 200) in the `{count, meta, results, <key>}`
  envelope; filters such as `search=`, `workspace_id=`, `only=`;
- Kantata has no upsert by external id. `provision_workspace` therefore finds what an earlier
  attempt made before it creates anything: the workspace by its `external_references` entry
  (service_name "q2c", service_model "opportunity"), else by the opportunity id in brackets in
  its title (an attempt that died between creating the workspace and its reference), stories
  by title and resource requests by role within the workspace.

Time (delivery to cash), as the Kantata API reference documents `GET /time_entries`
(developer.kantata.com/kantata/specification/time-entries/get-time-entries):
- only *approved* time leaves the PSA. `approved` "is always processed as true; the actual
  value you provide is ignored", so it is sent as `approved=true` and means what it says;
- an entry is priced by the role it was booked under: its `role_id` (Kantata's "project role
  of the user who performed the work"); without one, the user's project role on the workspace
  (`workspace_resources`, when they hold exactly one); never the user's account role, which
  is their role today. Otherwise the entry comes back with no role and a `role_issue`;
- Kantata has no "not yet synced" filter. What q2c posted is known to q2c's ledger (one row
  per posted entry, with the minutes, role, date and billable flag the ERP got); the PSA side
  carries an external reference per posted entry (service_name "q2c", service_model
  "timeBill", service_model_ref = the ERP timeBill id), readable with
  `include=external_references` but never used to filter the list server-side;
- `read_approved_time` finds what changed: approved entries with `updated_after=<watermark>`
  in `order=updated_at:asc` ("Ordering": `order=<sort field>:<direction>`), paged with
  `page`/`per_page=200`. Approving, withdrawing an approval and re-approving all move an
  entry's `updated_at`, so late approvals and re-approved (possibly edited) entries show up;
  the caller compares each with its ledger and posts only what is new or different. Nothing
  q2c writes changes the list (references and the ledger are not entry fields), so the pages
  do not move under the reader; a concurrent change in the PSA appends the changed entry at
  the end (newest `updated_at`), and one that leaves the list shows as a changed `count`,
  which makes the reader read again (see `ApprovedTimeRead.stable`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import httpx
from temporalio.exceptions import ApplicationError

from q2c.domain.delivery import TimeEntry
from q2c.domain.engagement import Engagement
from q2c.domain.project import ProjectTemplate, PsaWorkspace, ResourceDemand, Task
from q2c.settings import PsaSettings
from q2c.vendors.http import READ_RETRIES, REJECTED_TYPE, AuditHook, VendorClient, VendorError
from q2c.vendors.kantata import mapping as m

if TYPE_CHECKING:
    from q2c.ledger.api_budget import ApiBudget

API_PREFIX = "/api/v1"
PAGE_SIZE = 200  # Kantata's maximum per_page
TEMPLATES_TTL_SECONDS = 300.0
EARLIEST_DATE = date(2000, 1, 1)  # lower end of "everything up to `through`"
SANDBOX_PREFIX = "/__sandbox"
ONLY_CHUNK = 200  # ids per `only=` request (Kantata's page size; keeps URLs short)
READ_PASSES = 3  # full passes of read_approved_time while the list keeps changing under it


def _moment(text: str | None) -> datetime | None:
    """A Kantata ISO 8601 timestamp (`2025-03-04T10:00:00Z`) as an aware datetime."""
    if not text:
        return None
    moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class ApprovedTimeRead:
    """What `read_approved_time` saw.

    `entries` by (date_performed, id); `updated_at` is each entry's PSA `updated_at`;
    `server_time` the PSA's clock (its HTTP `Date`) when the last pass began, the base of the
    next watermark; `stable` is true when the last pass saw the same `count` on every page and
    no entry changed in the PSA while it was read (only then is a watermark past this read
    safe); `pages` counts the list requests, for the caller's bound and heartbeat;
    `references` each entry's q2c timeBill references as read (see `PostedMark`)."""

    entries: list[TimeEntry] = field(default_factory=list)
    updated_at: dict[str, datetime] = field(default_factory=dict)
    server_time: datetime | None = None
    stable: bool = False
    pages: int = 0
    references: dict[str, list[dict[str, str]]] = field(default_factory=dict)


def _server_time(response: httpx.Response) -> datetime | None:
    """The PSA's clock from the HTTP `Date` header (RFC 9110), None when it is missing."""
    try:
        moment = parsedate_to_datetime(response.headers.get("date", ""))
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ApprovedList:
    """One of Kantata's lists of approved records (time entries, expenses) as
    `KantataClient.read_changed` reads it. The paging, the passes and the stability rule are the
    same for every such list (they follow from how Kantata pages `order=updated_at:asc`), so what
    sets a list apart is only this: its endpoint, the operation name its requests are audited and
    budgeted under, what it sideloads and the order its records are handed back in."""

    resource: str  # e.g. "time_entries.json"
    operation: str  # e.g. "read_approved_time"
    sort_key: Callable[[Any], Any]  # the order of the records returned
    include: str | None = None  # Kantata's `include=` (the sideloads the page parser reads)
    mark: PostedMark | None = None  # also sideload each record's q2c "posted" references


@dataclass(frozen=True)
class PostedMark:
    """How a record posted to the ERP is marked in Kantata: one external reference on the
    subject (service_name "q2c", service_model `model`, service_model_ref = the ERP record id),
    audited under `<operation>_reference` names (e.g. find_time_reference).

    Posting reads its records with `include=external_references` (the same list requests, one
    per 200 records), so the mark knows each record's references and writes once (a create, an
    update, or nothing) instead of listing them first for every record: at month-end that was one
    PSA request in three."""

    subject_type: str  # e.g. "TimeEntry"
    collection: str  # the subject's key in a list answer, e.g. "time_entries"
    model: str  # e.g. "timeBill"
    operation: str  # e.g. "time": find_time_reference, create_time_reference, update_time_reference


TIME_MARK = PostedMark(m.TIME_ENTRY_SUBJECT, "time_entries", m.TIME_BILL_MODEL, "time")

TIME_ENTRIES = ApprovedList(
    "time_entries.json",
    "read_approved_time",
    lambda e: (e.date_performed, int(e.psa_id)),
    include="user",
    mark=TIME_MARK,
)


@dataclass
class ChangedRead:
    """One reader's result for any Kantata list of approved records (time entries, expenses):
    the records sorted, each one's `updated_at`, the PSA's clock when the last pass began, whether
    the read was stable, and the list requests made (see `ApprovedTimeRead`)."""

    items: list = field(default_factory=list)
    updated_at: dict[str, datetime] = field(default_factory=dict)
    server_time: datetime | None = None
    stable: bool = False
    pages: int = 0
    references: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def without_items(self) -> dict[str, Any]:
        """Every field but the records, for the public read types: `ApprovedTimeRead` and
        `ApprovedExpenseRead` differ only in what they call their records."""
        return {
            "updated_at": self.updated_at,
            "server_time": self.server_time,
            "stable": self.stable,
            "pages": self.pages,
            "references": self.references,
        }


async def _read_pass(
    get: Callable[[dict[str, Any]], Awaitable[httpx.Response]],
    scope: dict[str, Any],
    extra: dict[str, Any],
    parse: Callable[[dict], Awaitable[list]],
    mark: PostedMark | None = None,
) -> ChangedRead:
    """One pass over every page of an approved list in `order=updated_at:asc`: `scope` is sent
    before the paging params and `extra` (`only`, `updated_after`) after them, the order the
    requests have always had."""
    read = ChangedRead(stable=True)
    counts: set[int] = set()
    page = 1
    while True:
        response = await get({**scope, "page": page, "per_page": PAGE_SIZE, **extra})
        read.pages += 1
        if page == 1:
            read.server_time = _server_time(response)
        body = response.json()
        counts.add(int(body.get("count") or 0))
        for obj in m.results(body):
            stamp = _moment(obj.get("updated_at"))
            if stamp is not None:
                read.updated_at[str(obj["id"])] = stamp
        read.items += await parse(body)
        if mark is not None:
            read.references.update(m.q2c_references(body, mark.collection, mark.model))
        if page >= int(body.get("meta", {}).get("page_count") or 0):
            break
        page += 1
    changed_meanwhile = read.server_time is not None and any(
        t >= read.server_time - timedelta(seconds=1) for t in read.updated_at.values()
    )
    # a single page cannot skip anything; over several, a moved count or a record changed
    # while the pass ran means the pages may have shifted
    read.stable = len(counts) <= 1 and not (read.pages > 1 and changed_meanwhile)
    if read.server_time is None:
        read.stable = False  # without the PSA's clock no watermark can be based on this read
    return read


class KantataClient(VendorClient):
    system = "psa"
    in_flight_variable = "Q2C_PSA_MAX_IN_FLIGHT"

    def __init__(
        self,
        settings: PsaSettings,
        *,
        timeout: float = 15.0,
        audit: AuditHook | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        read_retries: int = READ_RETRIES,
        budget: ApiBudget | None = None,
    ) -> None:
        base = settings.base_url.rstrip("/")
        # Accept both "https://api.mavenlink.com" and "https://api.mavenlink.com/api/v1".
        self._prefix = "" if base.endswith(API_PREFIX) else API_PREFIX
        # Kantata rate-limits per token (429 with Retry-After): the gate keeps this process's
        # requests under `PsaSettings.max_in_flight` (Q2C_PSA_MAX_IN_FLIGHT)
        super().__init__(
            base,
            timeout=timeout,
            audit=audit,
            transport=transport,
            read_retries=read_retries,
            max_in_flight=settings.max_in_flight,
            budget=budget,
        )
        self.settings = settings
        self._role_names: dict[str, str] = {}  # role id -> name, filled on first need
        self._templates: tuple[float, list[ProjectTemplate]] | None = None  # (expires, templates)

    # --- VendorClient hooks -------------------------------------------------------------
    async def _fetch_token(self) -> str:
        return self.settings.token

    def _parse_errors(self, response: httpx.Response) -> list[VendorError]:
        items = response.json()["errors"]
        return [
            VendorError(
                code=str(e.get("type") or f"HTTP_{response.status_code}"),
                message=str(e.get("message") or ""),
                fields=(str(e["field"]),) if e.get("field") else (),
            )
            for e in items
        ]

    # --- plumbing ------------------------------------------------------------------------
    def _path(self, resource: str) -> str:
        return f"{self._prefix}/{resource}"

    async def _get(self, resource: str, operation: str, params: dict[str, Any] | None = None) -> dict:
        response = await self.request("GET", self._path(resource), operation=operation, params=params)
        return response.json()

    async def _list_all(
        self, resource: str, operation: str, params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Every object of a filtered list, following `meta.page_count`."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            body = await self._get(resource, operation, {**(params or {}), "page": page, "per_page": PAGE_SIZE})
            out.extend(m.results(body))
            if page >= int(body.get("meta", {}).get("page_count") or 0):
                return out
            page += 1

    async def read_changed(
        self,
        kind: ApprovedList,
        workspace_id: str,
        parse: Callable[[dict], Awaitable[list]],
        *,
        updated_after: datetime | None,
        only_ids: list[str] | None,
        passes: int,
    ) -> ChangedRead:
        """The one paged reader of Kantata's approved lists, in `order=updated_at:asc`.

        `parse` turns a page's body into records that have a `psa_id`. `only_ids`: those
        records in requests of ONLY_CHUNK ids, whatever their date. Otherwise every approved
        record changed after `updated_after` (None: all), one pass over every page, repeated (at
        most `passes` times) only when the pass was not stable: the `count` moved between its
        pages or a record changed while it ran, which shifts later pages, so a record could have
        been skipped. Records seen in several passes are kept once, the latest."""

        def get(params: dict[str, Any]) -> Awaitable[httpx.Response]:
            return self.request("GET", self._path(kind.resource), operation=kind.operation, params=params)

        scope: dict[str, Any] = {"workspace_id": workspace_id, "approved": "true", "order": "updated_at:asc"}
        include = [kind.include] if kind.include else []
        if kind.mark is not None:
            include.append("external_references")
        if include:
            scope["include"] = ",".join(include)
        if only_ids is not None:
            read = ChangedRead(stable=True)
            for start in range(0, len(only_ids), ONLY_CHUNK):
                chunk = only_ids[start : start + ONLY_CHUNK]
                page = await _read_pass(get, scope, {"only": ",".join(chunk)}, parse, kind.mark)
                read.items += page.items
                read.updated_at.update(page.updated_at)
                read.references.update(page.references)
                read.pages += page.pages
            read.items.sort(key=kind.sort_key)
            return read
        extra: dict[str, Any] = {}
        if updated_after is not None:
            extra["updated_after"] = updated_after.astimezone(UTC).isoformat().replace("+00:00", "Z")
        seen: dict[str, Any] = {}
        stamps: dict[str, datetime] = {}
        references: dict[str, list[dict[str, str]]] = {}
        pages = 0
        last = ChangedRead()
        for _ in range(max(1, passes)):
            last = await _read_pass(get, scope, extra, parse, kind.mark)
            pages += last.pages
            for item in last.items:
                seen[item.psa_id] = item
            stamps.update(last.updated_at)
            references.update(last.references)
            if last.stable:
                break
        return ChangedRead(
            items=sorted(seen.values(), key=kind.sort_key),
            updated_at=stamps,
            server_time=last.server_time,
            stable=last.stable,
            pages=pages,
            references=references,
        )

    async def _write(self, method: str, resource: str, payload: dict[str, Any], operation: str) -> dict[str, Any]:
        response = await self.request(
            method, self._path(resource), operation=operation, json=payload, ok_statuses=(200, 201)
        )
        return m.first_result(response.json())

    # --- templates and roles ----------------------------------------------------------------
    async def list_templates(self, *, fresh: bool = False) -> list[ProjectTemplate]:
        """The workspace templates; kept TEMPLATES_TTL_SECONDS per process unless `fresh` (every
        validation read them; a validation that finds none for its service line asks again)."""
        if not fresh and self._templates is not None and self._templates[0] > time.monotonic():
            return self._templates[1]
        objects = await self._list_all("workspace_templates.json", "list_templates")
        templates = [m.template_from_kantata(o) for o in objects]
        self._templates = (time.monotonic() + TEMPLATES_TTL_SECONDS, templates)
        return templates

    async def current_user(self) -> dict[str, Any]:
        """The Kantata user the token acts as (`GET /api/v1/users/me.json`, Kantata's
        "Fetching the current user"): the user object as Kantata renders it (`id`,
        `full_name`, `email_address`, `headline`, `role_id`, ...). A wrong or revoked token
        fails as `VendorAuthFailed` (non-retryable), which is what a pre-flight check needs."""
        return m.first_result(await self._get("users/me.json", "current_user"))

    async def template_for(self, service_line: str) -> ProjectTemplate | None:
        """The template whose service line matches (case and spacing ignored), else None."""
        wanted = m.normalize(service_line)
        for template in await self.list_templates():
            if m.normalize(template.service_line) == wanted:
                return template
        return None

    async def list_roles(self) -> dict[str, str]:
        """Role name -> Kantata role id."""
        return m.roles_by_name(await self._list_all("roles.json", "list_roles"))

    # --- workspaces --------------------------------------------------------------------------
    async def update_workspace(self, workspace_id: str, engagement: Engagement) -> None:
        """A change order reaches the PSA: the workspace's budget and due date follow the contract."""
        body = {
            "workspace": {
                "budget_in_cents": m.to_cents(engagement.contract_value.amount, engagement.currency),
                "currency": engagement.currency,
            }
        }
        if engagement.end_date:
            body["workspace"]["due_date"] = engagement.end_date.isoformat()
        await self.request(
            "PUT", self._path(f"workspaces/{workspace_id}.json"), operation="update_workspace", json=body
        )

    async def get_workspace(self, workspace_id: str) -> dict[str, Any]:
        """The Kantata workspace object, with its `stories`, `resource_requests` and
        `external_references` as lists (404 -> ApplicationError VendorNotFound)."""
        body = await self._get(
            f"workspaces/{workspace_id}.json",
            "get_workspace",
            {"include": "stories,resource_requests,external_references"},
        )
        workspace = dict(m.first_result(body))
        for key, ids in (
            ("stories", "story_ids"),
            ("resource_requests", "resource_request_ids"),
            ("external_references", "external_reference_ids"),
        ):
            workspace[key] = [body.get(key, {})[i] for i in workspace.get(ids, []) if i in body.get(key, {})]
        return workspace

    async def find_workspace(self, opportunity_id: str) -> dict[str, Any] | None:
        """The workspace q2c made for this opportunity: by external reference, else by title."""
        refs = await self._list_all(
            "external_references.json",
            "find_workspace_reference",
            {
                "subject_type": m.WORKSPACE_SUBJECT,
                "service_name": m.SERVICE_NAME,
                "service_model": m.OPPORTUNITY_MODEL,
                "service_model_ref": opportunity_id,
            },
        )
        ids = sorted({r["subject_id"] for r in refs}, key=int)
        if ids:
            found = await self._list_all("workspaces.json", "get_workspaces", {"only": ",".join(ids)})
            if found:
                return found[0]
        candidates = await self._list_all(
            "workspaces.json", "search_workspaces", {"search": m.opportunity_tag(opportunity_id)}
        )
        matching = [w for w in candidates if m.title_matches(w["title"], opportunity_id)]
        return min(matching, key=lambda w: int(w["id"])) if matching else None

    async def provision_workspace(
        self, engagement: Engagement, template: ProjectTemplate, *, erp_project_id: str
    ) -> PsaWorkspace:
        """Workspace, references, template stories and staffing demand; safe to repeat.

        Repeating the call, or calling again after a crash at any point, converges on exactly
        one workspace, one story per template task, one resource request per rate-card role
        and one external reference per kind (opportunity, ERP project).
        """
        demand = m.resource_demand(engagement)
        roles = await self.list_roles()
        unknown = [d.role for d in demand if m.find_role_id(roles, d.role) is None]
        if unknown:
            raise ApplicationError(
                f"psa provision_workspace: rate-card role(s) {unknown} have no Kantata role (known: {sorted(roles)})",
                {
                    "system": self.system,
                    "operation": "provision_workspace",
                    "unknown_roles": unknown,
                    "known_roles": sorted(roles),
                },
                type=REJECTED_TYPE,
                non_retryable=True,
            )

        workspace = await self.find_workspace(engagement.opportunity_id)
        created = workspace is None
        if workspace is None:
            workspace = await self._write(
                "POST",
                "workspaces.json",
                m.workspace_payload(engagement, template, erp_project_id=erp_project_id),
                "create_workspace",
            )
        workspace_id = str(workspace["id"])
        # a workspace this call just created holds nothing yet (Kantata makes no stories,
        # requests or references for a new workspace, and nobody else knows its id): nothing to
        # list before creating them, 3 PSA requests per activation saved; a found one is listed
        await self._ensure_references(workspace_id, m.wanted_references(engagement, erp_project_id), created)
        tasks = await self._ensure_stories(workspace_id, template.tasks, created)
        requests = await self._ensure_requests(workspace_id, engagement, demand, roles, created)
        return PsaWorkspace(workspace_id=workspace_id, title=workspace["title"], tasks=tasks, resource_demand=requests)

    async def _ensure_references(self, workspace_id: str, wanted: dict[str, str], empty: bool = False) -> None:
        existing = (
            []
            if empty
            else await self._list_all(
                "external_references.json",
                "list_external_references",
                {"subject_type": m.WORKSPACE_SUBJECT, "subject_id": workspace_id, "service_name": m.SERVICE_NAME},
            )
        )
        for model, ref in wanted.items():
            same_kind = [r for r in existing if r["service_model"] == model]
            await self._point_reference(same_kind, m.WORKSPACE_SUBJECT, workspace_id, model, ref, "external")

    async def _point_reference(
        self, refs: list[dict], subject_type: str, subject_id: str, model: str, ref: str, operation: str
    ) -> None:
        """One q2c reference of kind `model` on the subject, naming `ref`: `refs` are the ones it
        has (of that kind). Left alone if one names `ref`, else the first re-pointed (e.g. the ERP
        record was recreated), else one created; audited as update_/create_<operation>_reference."""
        if any(r["service_model_ref"] == ref for r in refs):
            return
        if refs:
            await self._write(
                "PUT",
                f"external_references/{refs[0]['id']}.json",
                {"external_reference": {"service_model_ref": ref, "status": "synced"}},
                f"update_{operation}_reference",
            )
            return
        await self._write(
            "POST",
            "external_references.json",
            m.reference_payload(subject_type, subject_id, model, ref),
            f"create_{operation}_reference",
        )

    async def _ensure_stories(self, workspace_id: str, template_tasks: list[Task], empty: bool = False) -> list[Task]:
        existing = [] if empty else await self._list_all("stories.json", "list_stories", {"workspace_id": workspace_id})
        by_title: dict[str, dict[str, Any]] = {}
        for story in existing:
            by_title.setdefault(m.normalize(story["title"]), story)
        tasks: list[Task] = []
        for task in template_tasks:
            story = by_title.get(m.normalize(task.name))
            if story is None:
                story = await self._write("POST", "stories.json", m.story_payload(workspace_id, task), "create_story")
                by_title[m.normalize(task.name)] = story
            tasks.append(Task(name=task.name, billable=task.billable, psa_story_id=str(story["id"])))
        return tasks

    async def _ensure_requests(
        self,
        workspace_id: str,
        engagement: Engagement,
        demand: list[ResourceDemand],
        roles: dict[str, str],
        empty: bool = False,
    ) -> list[ResourceDemand]:
        existing = (
            []
            if empty
            else await self._list_all(
                "resource_requests.json", "list_resource_requests", {"workspace_id": workspace_id}
            )
        )
        by_role: dict[str, dict[str, Any]] = {}
        for request in existing:
            by_role.setdefault(str(request["role_id"]), request)
        out: list[ResourceDemand] = []
        for item in demand:
            role_id = m.find_role_id(roles, item.role)
            assert role_id is not None  # checked before anything was written
            request = by_role.get(role_id)
            if request is None:
                request = await self._write(
                    "POST",
                    "resource_requests.json",
                    m.resource_request_payload(workspace_id, role_id, item, engagement),
                    "create_resource_request",
                )
                by_role[role_id] = request
            out.append(ResourceDemand(role=item.role, hours=item.hours, psa_resource_request_id=str(request["id"])))
        return out

    # --- time (delivery to cash) -----------------------------------------------------------
    async def _role_name_map(self, needed: set[str]) -> dict[str, str]:
        """Role id -> name, read once per client and again when an unknown id shows up."""
        if not needed <= self._role_names.keys():
            objects = await self._list_all("roles.json", "list_roles")
            self._role_names = {str(o["id"]): o["name"] for o in objects}
        return self._role_names

    async def _entries_from(self, workspace_id: str, body: dict[str, Any]) -> list[TimeEntry]:
        """The page's entries as canonical TimeEntry objects, priced by their booked role."""
        objects = m.results(body)
        users = body.get("users", {})
        project_roles: dict[str, set[str]] = {}
        if any(not o.get("role_id") for o in objects):
            # only an entry booked without a role needs the workspace's resources (one read)
            project_roles = m.project_roles(
                await self._list_all(
                    "workspace_resources.json", "list_workspace_resources", {"workspace_id": workspace_id}
                )
            )
        needed = {m.entry_role_id(o, project_roles)[0] for o in objects} - {None}
        roles = await self._role_name_map(needed)
        return [m.time_entry_from_kantata(o, users, roles, project_roles) for o in objects]

    async def list_approved_time(
        self,
        workspace_id: str,
        *,
        through: date,
        page: int = 1,
        per_page: int = PAGE_SIZE,
        unposted_only: bool = False,
        only_ids: list[str] | None = None,
        updated_after: datetime | None = None,
    ) -> tuple[list[TimeEntry], bool]:
        """One page of the workspace's approved time performed on or before `through`, in
        Kantata's `order=date_performed:asc` (id breaking ties), returned sorted by
        (date_performed, id). Returns (entries, has_more): `has_more` is true when the list
        has pages after `page`.

        `only_ids` restricts to those ids (an empty list matches nothing); `updated_after`
        to entries changed after that moment. `unposted_only` leaves out, client-side, the
        entries that carry q2c's timeBill external reference (read with
        `include=external_references`; Kantata has no server-side filter for it), so a page
        may hold fewer than `per_page` entries while `has_more` still describes the whole,
        unfiltered list: pages never move when entries are marked posted.
        """
        if only_ids is not None and not only_ids:
            return [], False
        params: dict[str, Any] = {
            "workspace_id": workspace_id,
            "approved": "true",
            "date_performed_between": f"{EARLIEST_DATE.isoformat()}:{through.isoformat()}",
            "order": "date_performed:asc",
            "include": "user,external_references" if unposted_only else "user",
            "page": max(1, page),
            "per_page": max(1, min(per_page, PAGE_SIZE)),
        }
        if only_ids is not None:
            params["only"] = ",".join(str(i) for i in only_ids)
        if updated_after is not None:
            params["updated_after"] = updated_after.astimezone(UTC).isoformat().replace("+00:00", "Z")
        body = await self._get("time_entries.json", "list_approved_time", params)
        if unposted_only:
            posted = m.posted_entry_ids(body)
            body = {**body, "results": [r for r in body.get("results", []) if str(r["id"]) not in posted]}
        entries = sorted(await self._entries_from(workspace_id, body), key=lambda e: (e.date_performed, int(e.psa_id)))
        page_count = int(body.get("meta", {}).get("page_count") or 0)
        return entries, params["page"] < page_count

    async def read_approved_time(
        self,
        workspace_id: str,
        *,
        updated_after: datetime | None = None,
        only_ids: list[str] | None = None,
        passes: int = READ_PASSES,
    ) -> ApprovedTimeRead:
        """Every approved entry of the workspace changed after `updated_after` (None: every
        approved entry), or only those of `only_ids`, whatever their date.

        Read bound: one `GET time_entries.json` per 200 entries changed in the PSA since
        `updated_after` (approved, re-approved, edited and re-approved), plus one
        `workspace_resources` read when an entry has no booked role; `only_ids` reads 200 ids
        per request. A pass is repeated (at most `passes` times) only when the `count` moved
        between its pages: an entry left the approved list while it was read, which shifts
        later pages back by one, so an entry could have been skipped.
        """
        read = await self.read_changed(
            TIME_ENTRIES,
            workspace_id,
            lambda body: self._entries_from(workspace_id, body),
            updated_after=updated_after,
            only_ids=only_ids,
            passes=passes,
        )
        return ApprovedTimeRead(entries=read.items, **read.without_items())

    async def mark_time_posted(
        self, entry_id: str, erp_time_bill_id: str, *, known: list[dict[str, str]] | None = None
    ) -> None:
        """Mark a time entry posted as an ERP timeBill; repeating the call changes nothing
        (`mark_posted`)."""
        await self.mark_posted(TIME_MARK, entry_id, erp_time_bill_id, known=known)

    async def mark_posted(
        self, mark: PostedMark, subject_id: str, record_id: str, *, known: list[dict[str, str]] | None = None
    ) -> None:
        """One external reference per posted subject: created if missing, re-pointed if it names
        another ERP record (e.g. the ERP record was recreated), left alone if it names this one.

        `known`: the subject's q2c references of this kind as the posting read them (the list's
        `include=external_references`), so no request is needed to find them; None (a retry of a
        mark whose outcome is unknown, or a caller that did not read them) lists them first."""
        refs = known
        if refs is None:
            refs = await self._list_all(
                "external_references.json",
                f"find_{mark.operation}_reference",
                {
                    "subject_type": mark.subject_type,
                    "subject_id": subject_id,
                    "service_name": m.SERVICE_NAME,
                    "service_model": mark.model,
                },
            )
        await self._point_reference(refs, mark.subject_type, subject_id, mark.model, record_id, mark.operation)

    async def workspace_tasks(self, workspace_id: str) -> list[Task]:
        """The workspace's stories as tasks with their billable flag (404 -> VendorNotFound)."""
        workspace = await self.get_workspace(workspace_id)
        stories = sorted(workspace["stories"], key=lambda s: (s.get("position") or 0, int(s["id"])))
        return [m.task_from_story(s) for s in stories]

    async def close_workspace(self, workspace_id: str) -> None:
        """Close the workspace (status "closed"): it takes no more time. Idempotent."""
        body = await self._get(f"workspaces/{workspace_id}.json", "get_workspace")
        if m.workspace_closed(m.first_result(body)):
            return
        await self._write(
            "PUT", f"workspaces/{workspace_id}.json", {"workspace": {"status": "closed"}}, "close_workspace"
        )

    async def generate_time(
        self,
        workspace_id: str,
        *,
        start: date,
        end: date,
        entries_per_week: int = 5,
        seed: int = 0,
        approve: bool = True,
        roles: list[str] | None = None,
        billable_only: bool = False,
    ) -> dict:
        """Sandbox only (`POST /__sandbox/time/generate`): realistic time for a workspace,
        weekly submissions approved when `approve`. Returns the ids and totals."""
        payload: dict[str, Any] = {
            "workspace_id": workspace_id,
            "start_date": start.isoformat(),
            "end_date": end.isoformat(),
            "entries_per_week": entries_per_week,
            "seed": seed,
            "approve": approve,
            "billable_only": billable_only,
        }
        if roles is not None:
            payload["roles"] = roles
        root = self.base_url[: -len(API_PREFIX)] if self.base_url.endswith(API_PREFIX) else self.base_url
        response = await self.request(
            "POST", f"{root}{SANDBOX_PREFIX}/time/generate", operation="generate_time", json=payload, ok_statuses=(200,)
        )
        return response.json()
