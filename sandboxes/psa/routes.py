"""The `/api/v1` endpoints of the Kantata sandbox.

Lists take `page`/`per_page` (20 by default, at most 200), `only=1,2` (ids) and per-resource
filters; workspaces also `search=` (title contains, case-insensitive) and
`include=stories,resource_requests,external_references`. `workspace_resources` (filters
`workspace_id`, `user_id`) are the people on a workspace and the project role each holds there.
`GET /users/me.json` answers the user the token belongs to. Creates take
the object under its
root key (`{"workspace": {...}}`) and answer 200 with the envelope holding the new object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from sandboxes.psa import render
from sandboxes.psa import validation as v
from sandboxes.psa.models import (
    Expense,
    ExternalReference,
    ResourceRequest,
    Role,
    Story,
    TemplateStory,
    TimeEntry,
    TimesheetSubmission,
    User,
    Workspace,
    WorkspaceResource,
    WorkspaceTemplate,
    utcnow,
)
from sandboxes.psa.render import error
from sandboxes.psa.seed import TOKEN_USER_ID

# Workspace associations that `include=` may name: key -> (model, id list on the workspace).
WORKSPACE_INCLUDES: dict[str, tuple[type, str]] = {
    "stories": (Story, "story_ids"),
    "resource_requests": (ResourceRequest, "resource_request_ids"),
    "external_references": (ExternalReference, "external_reference_ids"),
}

SUBJECT_MODELS: dict[str, type] = {
    "Workspace": Workspace,
    "Story": Story,
    "User": User,
    "ResourceRequest": ResourceRequest,
    "TimeEntry": TimeEntry,
    "TimesheetSubmission": TimesheetSubmission,
    "Expense": Expense,
}


def as_id(value: Any) -> int | None:
    """A Kantata object id (1..2^63-1) from text or a number, else None: a number beyond 64 bits,
    zero, a negative one or anything that is not a whole number names no object."""
    if isinstance(value, bool):
        return None
    text = str(value).strip()
    if not text.isdigit() or not text.isascii():
        return None
    number = int(text)
    return number if 1 <= number <= render.MAX_ID else None


def only_ids(value: str | None) -> list[int] | None:
    """`only=1,2,3`: the ids among them that can exist (others match nothing)."""
    if not value:
        return None
    return [i for i in (as_id(p) for p in value.split(",")) if i is not None]


def int_or_none(value: str | None, name: str = "id") -> int | None:
    """A numeric id filter (`workspace_id=7002`); absent or empty: None. A value that is not a
    64-bit id (text, a fraction, 0 or less, beyond 2^63-1) is malformed input: 400 in
    Kantata's error shape, naming the parameter (the reference types these filters as
    integers), never a database error."""
    if value is None or value == "":
        return None
    number = as_id(value)
    if number is None:
        raise error(400, "system", f"{name} must be a Kantata id (a whole number from 1 to {render.MAX_ID})", name)
    return number


def template_json(session: Session, t: WorkspaceTemplate) -> dict[str, Any]:
    stories = session.exec(select(TemplateStory).where(TemplateStory.template_id == t.id)).all()
    return render.workspace_template(t, list(stories))


RENDERERS: dict[str, tuple[type, Callable[[Session, Any], dict[str, Any]]]] = {
    "workspaces": (Workspace, lambda s, o: render.workspace(o)),
    "stories": (Story, lambda s, o: render.story(o)),
    "users": (User, lambda s, o: render.user(o)),
    "roles": (Role, lambda s, o: render.role(o)),
    "resource_requests": (ResourceRequest, lambda s, o: render.resource_request(o)),
    "workspace_resources": (WorkspaceResource, lambda s, o: render.workspace_resource(o)),
    "external_references": (ExternalReference, lambda s, o: render.external_reference(o)),
    "workspace_templates": (WorkspaceTemplate, template_json),
    "time_entries": (TimeEntry, lambda s, o: render.time_entry(o)),
    "timesheet_submissions": (TimesheetSubmission, lambda s, o: render.timesheet_submission(o)),
    "expenses": (Expense, lambda s, o: render.expense(o)),
}


def render_row(session: Session, key: str, row: Any) -> dict[str, Any]:
    return RENDERERS[key][1](session, row)


def list_rows(session: Session, key: str, request: Request, conditions: list[Any]) -> dict[str, Any]:
    model = RENDERERS[key][0]
    params = request.query_params
    ids = only_ids(params.get("only"))
    if ids is not None:
        conditions = [*conditions, col(model.id).in_(ids)]
    paging = render.paging(params)
    total = session.exec(select(func.count()).select_from(model).where(*conditions)).one()
    rows = (
        session.exec(
            select(model).where(*conditions).order_by(col(model.id)).offset(paging.offset).limit(paging.per_page)
        ).all()
        if paging.offset < total
        else []
    )
    objects = [render_row(session, key, r) for r in rows]
    included = workspace_includes(session, objects, params.get("include")) if key == "workspaces" else None
    return render.envelope(key, objects, total=total, page=paging.page, per_page=paging.per_page, included=included)


def workspace_includes(
    session: Session, workspaces: list[dict[str, Any]], include: str | None
) -> dict[str, list[dict[str, Any]]]:
    included: dict[str, list[dict[str, Any]]] = {}
    names = [n.strip() for n in (include or "").split(",") if n.strip() in WORKSPACE_INCLUDES]
    for name in names:
        model, id_field = WORKSPACE_INCLUDES[name]
        included[name] = []
        for ws in workspaces:
            wid = int(ws["id"])
            if model is ExternalReference:
                cond = [ExternalReference.subject_type == "Workspace", ExternalReference.subject_id == wid]
            else:
                cond = [model.workspace_id == wid]
            rows = session.exec(select(model).where(*cond).order_by(col(model.id))).all()
            objs = [render_row(session, name, r) for r in rows]
            ws[id_field] = [o["id"] for o in objs]
            included[name].extend(objs)
    return included


def get_or_404(session: Session, model: type, obj_id: Any, label: str) -> Any:
    """The row, else Kantata's 404; an id that cannot exist (beyond 64 bits, 0, negative) is a
    404 too, never a database error."""
    number = as_id(obj_id)
    row = session.get(model, number) if number is not None else None
    if row is None:
        raise error(404, "system", f"{label} {obj_id} not found")
    return row


def workspace_fields(problems: v.Problems, data: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if creating or "title" in data:
        if v.blank(data.get("title")):
            problems.add("title", "Title can't be blank")
        else:
            out["title"] = str(data["title"]).strip()
    for field in ("description", "creator_role", "status"):
        if field in data and data[field] is not None:
            out[field] = str(data[field])
    if "archived" in data:
        out["archived"] = bool(data["archived"])
    start = v.check_date(problems, data, "start_date", "Start date")
    due = v.check_date(problems, data, "due_date", "Due date")
    v.check_date_order(problems, start, due, "due_date", "Due date")
    for field, value in (("start_date", start), ("due_date", due)):
        if field in data:
            out[field] = value
    if "budget_in_cents" in data:
        out["budget_in_cents"] = v.check_cents(problems, data, "budget_in_cents")
    currency = v.check_currency(problems, data)
    if currency:
        out["currency"] = currency
    return out


def api_router(engine: Engine, require_auth: Callable[[Request], None]) -> APIRouter:
    router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_auth)])

    def session() -> Session:
        return Session(engine, expire_on_commit=False)

    # --- workspaces ----------------------------------------------------------------
    @router.get("/workspaces.json")
    def list_workspaces(request: Request, search: str | None = None) -> dict:
        with session() as s:
            conds = [col(Workspace.title).contains(search, autoescape=True)] if search else []
            return list_rows(s, "workspaces", request, conds)

    @router.get("/workspaces/{workspace_id}.json")
    def show_workspace(workspace_id: str, request: Request) -> dict:
        with session() as s:
            ws = render.workspace(get_or_404(s, Workspace, workspace_id, "Workspace"))
            included = workspace_includes(s, [ws], request.query_params.get("include"))
            return render.single("workspaces", ws, included)

    @router.post("/workspaces.json")
    def create_workspace(payload: Any = Body(None)) -> dict:
        data = v.root(payload, "workspace")
        problems = v.Problems()
        fields = workspace_fields(problems, data, creating=True)
        problems.raise_if_any()
        with session() as s:
            ws = Workspace(**fields)
            s.add(ws)
            s.commit()
            s.refresh(ws)
            return render.single("workspaces", render.workspace(ws))

    @router.put("/workspaces/{workspace_id}.json")
    def update_workspace(workspace_id: str, payload: Any = Body(None)) -> dict:
        data = v.root(payload, "workspace")
        with session() as s:
            ws = get_or_404(s, Workspace, workspace_id, "Workspace")
            problems = v.Problems()
            fields = workspace_fields(problems, data, creating=False)
            problems.raise_if_any()
            for name, value in fields.items():
                setattr(ws, name, value)
            ws.updated_at = utcnow()
            s.add(ws)
            s.commit()
            s.refresh(ws)
            return render.single("workspaces", render.workspace(ws))

    # --- stories (tasks) -------------------------------------------------------------
    @router.get("/stories.json")
    def list_stories(request: Request, workspace_id: str | None = None) -> dict:
        with session() as s:
            wid = int_or_none(workspace_id, "workspace_id")
            conds = [Story.workspace_id == wid] if wid is not None else []
            return list_rows(s, "stories", request, conds)

    @router.get("/stories/{story_id}.json")
    def show_story(story_id: str) -> dict:
        with session() as s:
            return render.single("stories", render.story(get_or_404(s, Story, story_id, "Story")))

    @router.post("/stories.json")
    def create_story(payload: Any = Body(None)) -> dict:
        data = v.root(payload, "story")
        problems = v.Problems()
        if v.blank(data.get("title")):
            problems.add("title", "Title can't be blank")
        story_type = v.check_choice(problems, data, "story_type", "Story type", v.STORY_TYPES, "task")
        start = v.check_date(problems, data, "start_date", "Start date")
        due = v.check_date(problems, data, "due_date", "Due date")
        v.check_date_order(problems, start, due, "due_date", "Due date")
        with session() as s:
            wid = v.check_int_id(problems, data, "workspace_id", "Workspace")
            if wid is not None and s.get(Workspace, wid) is None:
                problems.add("workspace_id", f"Workspace {wid} does not exist")
            problems.raise_if_any()
            count = s.exec(select(func.count()).select_from(Story).where(Story.workspace_id == wid)).one()
            row = Story(
                workspace_id=wid,
                title=str(data["title"]).strip(),
                story_type=story_type,
                description=str(data.get("description") or ""),
                billable=bool(data.get("billable", True)),
                position=count + 1,
                start_date=start,
                due_date=due,
            )
            s.add(row)
            s.commit()
            s.refresh(row)
            return render.single("stories", render.story(row))

    # --- people ----------------------------------------------------------------------
    @router.get("/users.json")
    def list_users(request: Request) -> dict:
        with session() as s:
            return list_rows(s, "users", request, [])

    @router.get("/users/me.json")
    @router.get("/users/me")
    def current_user() -> dict:
        """Kantata's "Fetching the current user": the user the OAuth token belongs to, in the
        usual envelope under `users`. The sandbox's one token belongs to the seed's
        `TOKEN_USER_ID` (an integration's pre-flight check reads who it acts as)."""
        with session() as s:
            return render.single("users", render.user(get_or_404(s, User, TOKEN_USER_ID, "User")))

    @router.get("/roles.json")
    def list_roles(request: Request) -> dict:
        with session() as s:
            return list_rows(s, "roles", request, [])

    # --- resource requests (staffing demand) ---------------------------------------------
    @router.get("/resource_requests.json")
    def list_resource_requests(request: Request, workspace_id: str | None = None) -> dict:
        with session() as s:
            wid = int_or_none(workspace_id, "workspace_id")
            conds = [ResourceRequest.workspace_id == wid] if wid is not None else []
            return list_rows(s, "resource_requests", request, conds)

    @router.post("/resource_requests.json")
    def create_resource_request(payload: Any = Body(None)) -> dict:
        data = v.root(payload, "resource_request")
        problems = v.Problems()
        hours = v.check_hours(problems, data)
        status = v.check_choice(problems, data, "status", "Status", v.REQUEST_STATUSES, "open")
        start = v.check_date(problems, data, "start_date", "Start date")
        end = v.check_date(problems, data, "end_date", "End date")
        v.check_date_order(problems, start, end, "end_date", "End date")
        with session() as s:
            wid = v.check_int_id(problems, data, "workspace_id", "Workspace")
            if wid is not None and s.get(Workspace, wid) is None:
                problems.add("workspace_id", f"Workspace {wid} does not exist")
            rid = v.check_int_id(problems, data, "role_id", "Role")
            if rid is not None and s.get(Role, rid) is None:
                problems.add("role_id", f"Role {rid} does not exist")
            problems.raise_if_any()
            row = ResourceRequest(
                workspace_id=wid, role_id=rid, hours=hours, status=status, start_date=start, end_date=end
            )
            s.add(row)
            s.commit()
            s.refresh(row)
            return render.single("resource_requests", render.resource_request(row))

    # --- workspace resources (who works on a workspace, in which role) -------------------------
    @router.get("/workspace_resources.json")
    def list_workspace_resources(request: Request, workspace_id: str | None = None, user_id: str | None = None) -> dict:
        with session() as s:
            conds: list[Any] = []
            for name, column, value in (
                ("workspace_id", WorkspaceResource.workspace_id, workspace_id),
                ("user_id", WorkspaceResource.user_id, user_id),
            ):
                number = int_or_none(value, name)
                if number is not None:
                    conds.append(column == number)
            return list_rows(s, "workspace_resources", request, conds)

    @router.post("/workspace_resources.json")
    def create_workspace_resource(payload: Any = Body(None)) -> dict:
        """A named (user_id) or unnamed resource; `role_id` defaults to the user's role."""
        data = v.root(payload, "workspace_resource")
        problems = v.Problems()
        with session() as s:
            wid = v.check_int_id(problems, data, "workspace_id", "Workspace")
            if wid is not None and s.get(Workspace, wid) is None:
                problems.add("workspace_id", f"Workspace {wid} does not exist")
            user = None
            if not v.blank(data.get("user_id")):
                uid = v.check_int_id(problems, data, "user_id", "User")
                user = s.get(User, uid) if uid is not None else None
                if uid is not None and user is None:
                    problems.add("user_id", f"User {uid} does not exist")
            rid = user.role_id if user is not None else None
            if not v.blank(data.get("role_id")):
                rid = v.check_int_id(problems, data, "role_id", "Role")
                if rid is not None and s.get(Role, rid) is None:
                    problems.add("role_id", f"Role {rid} does not exist")
            elif rid is None and not problems.items:
                problems.add("role_id", "Role can't be blank")
            problems.raise_if_any()
            role = s.get(Role, rid)
            row = WorkspaceResource(
                workspace_id=wid,
                user_id=user.id if user else None,
                role_id=rid,
                label=str(data.get("label") or (role.name if role else "")),
            )
            s.add(row)
            s.commit()
            s.refresh(row)
            return render.single("workspace_resources", render.workspace_resource(row))

    # --- external references --------------------------------------------------------------
    @router.get("/external_references.json")
    def list_external_references(
        request: Request,
        subject_type: str | None = None,
        subject_id: str | None = None,
        service_name: str | None = None,
        service_model: str | None = None,
        service_model_ref: str | None = None,
    ) -> dict:
        with session() as s:
            conds: list[Any] = []
            if subject_type:
                conds.append(ExternalReference.subject_type == subject_type)
            sid = int_or_none(subject_id, "subject_id")
            if sid is not None:
                conds.append(ExternalReference.subject_id == sid)
            for column, value in (
                (ExternalReference.service_name, service_name),
                (ExternalReference.service_model, service_model),
                (ExternalReference.service_model_ref, service_model_ref),
            ):
                if value:
                    conds.append(column == value)
            return list_rows(s, "external_references", request, conds)

    @router.post("/external_references.json")
    def create_external_reference(payload: Any = Body(None)) -> dict:
        data = v.root(payload, "external_reference")
        problems = v.Problems()
        subject_type = v.check_choice(problems, data, "subject_type", "Subject type", v.SUBJECT_TYPES, "Workspace")
        for field, label in (
            ("service_name", "Service name"),
            ("service_model", "Service model"),
            ("service_model_ref", "Service model ref"),
        ):
            if v.blank(data.get(field)):
                problems.add(field, f"{label} can't be blank")
        with session() as s:
            sid = v.check_int_id(problems, data, "subject_id", "Subject")
            if sid is not None and s.get(SUBJECT_MODELS[subject_type], sid) is None:
                problems.add("subject_id", f"{subject_type} {sid} does not exist")
            problems.raise_if_any()
            row = ExternalReference(
                subject_type=subject_type,
                subject_id=sid,
                service_name=str(data["service_name"]),
                service_model=str(data["service_model"]),
                service_model_ref=str(data["service_model_ref"]),
                status=v.text_or_none(data.get("status")),
                external_link=v.text_or_none(data.get("external_link")),
                external_status=v.text_or_none(data.get("external_status")),
                external_message=v.text_or_none(data.get("external_message")),
                last_synced_at=utcnow(),
            )
            s.add(row)
            s.commit()
            s.refresh(row)
            return render.single("external_references", render.external_reference(row))

    @router.put("/external_references/{reference_id}.json")
    def update_external_reference(reference_id: str, payload: Any = Body(None)) -> dict:
        data = v.root(payload, "external_reference")
        with session() as s:
            row = get_or_404(s, ExternalReference, reference_id, "External reference")
            problems = v.Problems()
            for field in ("service_model_ref", "service_model", "service_name"):
                if field in data and v.blank(data[field]):
                    problems.add(field, f"{field.replace('_', ' ').capitalize()} can't be blank")
            problems.raise_if_any()
            for field in (
                "service_name",
                "service_model",
                "service_model_ref",
                "status",
                "external_link",
                "external_status",
                "external_message",
            ):
                if field in data:
                    value = v.text_or_none(data[field])
                    if field in ("service_name", "service_model", "service_model_ref") and value is None:
                        continue  # required: a null cannot blank them (checked above for text)
                    setattr(row, field, value)
            row.updated_at = row.last_synced_at = utcnow()
            s.add(row)
            s.commit()
            s.refresh(row)
            return render.single("external_references", render.external_reference(row))

    # --- project templates ---------------------------------------------------------------
    @router.get("/workspace_templates.json")
    def list_templates(request: Request, service_line: str | None = None) -> dict:
        with session() as s:
            conds = [WorkspaceTemplate.service_line == service_line] if service_line else []
            return list_rows(s, "workspace_templates", request, conds)

    return router
