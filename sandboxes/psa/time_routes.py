"""`/api/v1` time endpoints of the Kantata sandbox: time entries and timesheet submissions.

`GET /time_entries.json` filters (all optional, combined with AND):
- `workspace_id`, `user_id`, `story_id`, `only=1,2,3`;
- `approved=true|false`;
- `date_performed_between=YYYY-MM-DD:YYYY-MM-DD`, both ends inclusive (Kantata's range
  syntax); the sandbox also accepts an open end (`:2025-03-31`, `2025-03-01:`);
- `updated_after=<ISO 8601 datetime>` (strictly after);
- `without_external_reference=<service_name>`: only entries that carry no external reference
  of that service (e.g. `q2c`). A sandbox convenience: a real integration would list with
  `include=external_references` and drop the referenced entries client-side (which makes
  Kantata's page counts describe the unfiltered list); here the filter runs in the query so
  `count`/`meta.page_count` describe exactly the filtered list.
Sorted by `date_performed`, then `id` (`order=date_performed:desc` reverses the dates).
`include=user,story` adds the associated objects under their own top-level keys.

Writes: `POST /time_entries.json {"time_entry": {...}}`, `PUT /time_entries/{id}.json`
(422 "Time entry is locked" once approved), `DELETE /time_entries/{id}.json` (same lock).
`POST /timesheet_submissions.json {"timesheet_submission": {workspace_id, user_id,
start_date, end_date}}` submits that user's unsubmitted time in the range (status `pending`);
`PUT /timesheet_submissions/{id}/approve` and `/reject` (optionally with
`{"resolution": {"description": ...}}`) resolve it, as Kantata's endpoints do.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from sqlalchemy import and_, exists, not_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from sandboxes.psa import render
from sandboxes.psa import timekeeping as tk
from sandboxes.psa import validation as v
from sandboxes.psa.models import ExternalReference, Story, TimeEntry, TimesheetSubmission, User, Workspace
from sandboxes.psa.render import error
from sandboxes.psa.routes import get_or_404, int_or_none, list_rows, only_ids

TIME_ENTRY_INCLUDES: dict[str, tuple[str, type, str]] = {
    "user": ("users", User, "user_id"),
    "story": ("stories", Story, "story_id"),
}
RENDER_INCLUDED: dict[str, Callable[[Any], dict[str, Any]]] = {"users": render.user, "stories": render.story}


def _bool_param(value: str, name: str) -> bool:
    text = value.strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise error(400, "system", f"{name} must be true or false")


def _between(value: str) -> tuple[str | None, str | None]:
    start, sep, end = value.partition(":")
    try:
        if not sep:
            raise ValueError
        return (
            date.fromisoformat(start).isoformat() if start else None,
            date.fromisoformat(end).isoformat() if end else None,
        )
    except ValueError:
        raise error(400, "system", "date_performed_between must be YYYY-MM-DD:YYYY-MM-DD") from None


def _after(value: str) -> str:
    try:
        moment = datetime.fromisoformat(value.strip().replace(" ", "+"))
    except ValueError:
        raise error(400, "system", "updated_after must be an ISO 8601 datetime") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def time_entry_conditions(params: Any) -> list[Any]:
    conds: list[Any] = []
    for name, column in (
        ("workspace_id", TimeEntry.workspace_id),
        ("user_id", TimeEntry.user_id),
        ("story_id", TimeEntry.story_id),
    ):
        value = int_or_none(params.get(name))
        if value is not None:
            conds.append(column == value)
    ids = only_ids(params.get("only"))
    if ids is not None:
        conds.append(col(TimeEntry.id).in_(ids))
    if params.get("approved"):
        conds.append(TimeEntry.approved == _bool_param(params["approved"], "approved"))
    if params.get("date_performed_between"):
        start, end = _between(params["date_performed_between"])
        if start:
            conds.append(TimeEntry.date_performed >= start)
        if end:
            conds.append(TimeEntry.date_performed <= end)
    if params.get("updated_after"):
        conds.append(TimeEntry.updated_at > _after(params["updated_after"]))
    service = params.get("without_external_reference")
    if service:
        conds.append(
            not_(
                exists().where(
                    and_(
                        ExternalReference.subject_type == "TimeEntry",
                        ExternalReference.subject_id == TimeEntry.id,
                        ExternalReference.service_name == service,
                    )
                )
            )
        )
    return conds


def list_time_entries(s: Session, params: Any) -> dict[str, Any]:
    conds = time_entry_conditions(params)
    page, per_page = render.paging(params.get("page"), params.get("per_page"))
    total = s.exec(select(func.count()).select_from(TimeEntry).where(*conds)).one()
    by_date = col(TimeEntry.date_performed)
    order = by_date.desc() if params.get("order") == "date_performed:desc" else by_date.asc()
    rows = s.exec(
        select(TimeEntry).where(*conds).order_by(order, col(TimeEntry.id)).offset((page - 1) * per_page).limit(per_page)
    ).all()
    objects = [render.time_entry(r) for r in rows]
    included: dict[str, list[dict[str, Any]]] = {}
    for name in (n.strip() for n in (params.get("include") or "").split(",")):
        if name in TIME_ENTRY_INCLUDES:
            key, model, fk = TIME_ENTRY_INCLUDES[name]
            ids = sorted({getattr(r, fk) for r in rows if getattr(r, fk) is not None})
            found = s.exec(select(model).where(col(model.id).in_(ids))).all() if ids else []
            included[key] = [RENDER_INCLUDED[key](o) for o in found]
    return render.envelope("time_entries", objects, total=total, page=page, per_page=per_page, included=included)


def time_router(engine: Engine, require_auth: Callable[[Request], None]) -> APIRouter:
    router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_auth)])

    def session() -> Session:
        return Session(engine, expire_on_commit=False)

    # --- time entries -----------------------------------------------------------------
    @router.get("/time_entries.json")
    def get_time_entries(request: Request) -> dict:
        with session() as s:
            return list_time_entries(s, request.query_params)

    @router.get("/time_entries/{entry_id}.json")
    def show_time_entry(entry_id: int) -> dict:
        with session() as s:
            row = get_or_404(s, TimeEntry, entry_id, "Time entry")
            return render.single("time_entries", render.time_entry(row))

    @router.post("/time_entries.json")
    def create_time_entry(payload: Any = Body(None)) -> dict:
        data = v.root(payload, "time_entry")
        problems = v.Problems()
        with session() as s:
            row = tk.new_entry(s, data, problems)
            problems.raise_if_any()
            s.add(row)
            s.commit()
            s.refresh(row)
            return render.single("time_entries", render.time_entry(row))

    @router.put("/time_entries/{entry_id}.json")
    def update_time_entry(entry_id: int, payload: Any = Body(None)) -> dict:
        data = v.root(payload, "time_entry")
        with session() as s:
            row = get_or_404(s, TimeEntry, entry_id, "Time entry")
            tk.update_entry(s, row, data)
            s.add(row)
            s.commit()
            s.refresh(row)
            return render.single("time_entries", render.time_entry(row))

    @router.delete("/time_entries/{entry_id}.json")
    def delete_time_entry(entry_id: int) -> dict:
        with session() as s:
            row = get_or_404(s, TimeEntry, entry_id, "Time entry")
            if row.approved or row.timesheet_submission_id is not None:
                raise error(422, "validation", "Time entry is locked", "approved")
            s.delete(row)
            s.commit()
            return {}

    # --- timesheet submissions ------------------------------------------------------------
    @router.get("/timesheet_submissions.json")
    def list_submissions(
        request: Request, workspace_id: str | None = None, user_id: str | None = None, status: str | None = None
    ) -> dict:
        with session() as s:
            conds: list[Any] = []
            for column, value in (
                (TimesheetSubmission.workspace_id, workspace_id),
                (TimesheetSubmission.user_id, user_id),
            ):
                number = int_or_none(value)
                if number is not None:
                    conds.append(column == number)
            if status:
                conds.append(col(TimesheetSubmission.status).in_([p.strip() for p in status.split(",")]))
            return list_rows(s, "timesheet_submissions", request, conds)

    @router.get("/timesheet_submissions/{submission_id}.json")
    def show_submission(submission_id: int) -> dict:
        with session() as s:
            row = get_or_404(s, TimesheetSubmission, submission_id, "Timesheet submission")
            return render.single("timesheet_submissions", render.timesheet_submission(row))

    @router.post("/timesheet_submissions.json")
    def create_submission(payload: Any = Body(None)) -> dict:
        data = v.root(payload, "timesheet_submission")
        problems = v.Problems()
        start = v.check_date(problems, data, "start_date", "Start date")
        end = v.check_date(problems, data, "end_date", "End date")
        for field, value, label in (("start_date", start, "Start date"), ("end_date", end, "End date")):
            if value is None and v.blank(data.get(field)):
                problems.add(field, f"{label} can't be blank")
        v.check_date_order(problems, start, end, "end_date", "End date")
        with session() as s:
            wid = v.check_int_id(problems, data, "workspace_id", "Workspace")
            if wid is not None and s.get(Workspace, wid) is None:
                problems.add("workspace_id", f"Workspace {wid} does not exist")
            uid = v.check_int_id(problems, data, "user_id", "User")
            if uid is not None and s.get(User, uid) is None:
                problems.add("user_id", f"User {uid} does not exist")
            problems.raise_if_any()
            assert wid is not None and uid is not None and start and end
            sub = tk.submit(s, wid, uid, start, end)
            s.commit()
            s.refresh(sub)
            return render.single("timesheet_submissions", render.timesheet_submission(sub))

    def resolve(submission_id: int, payload: Any, approve: bool) -> dict:
        resolution = payload.get("resolution") if isinstance(payload, dict) else None
        description = resolution.get("description") if isinstance(resolution, dict) else None
        with session() as s:
            sub = get_or_404(s, TimesheetSubmission, submission_id, "Timesheet submission")
            tk.resolve(s, sub, approve=approve, description=description)
            s.commit()
            s.refresh(sub)
            return render.single("timesheet_submissions", render.timesheet_submission(sub))

    @router.put("/timesheet_submissions/{submission_id}/approve")
    @router.put("/timesheet_submissions/{submission_id}/approve.json")
    def approve_submission(submission_id: int, payload: Any = Body(None)) -> dict:
        return resolve(submission_id, payload, True)

    @router.put("/timesheet_submissions/{submission_id}/reject")
    @router.put("/timesheet_submissions/{submission_id}/reject.json")
    def reject_submission(submission_id: int, payload: Any = Body(None)) -> dict:
        return resolve(submission_id, payload, False)

    return router
