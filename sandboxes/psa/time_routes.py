"""`/api/v1` time endpoints of the Kantata sandbox: time entries and timesheet submissions.

`GET /time_entries.json` as the Kantata API reference documents it ("Fetching a list of Time
Entries", developer.kantata.com/kantata/specification/time-entries/get-time-entries); filters
are optional and combined with AND:
- `workspace_id`, `user_id`, `story_id`, `only=1,2,3` (an id that cannot exist matches nothing);
- `approved`: "When included in your request, this filter is always processed as true; the
  actual value you provide is ignored." So `approved=false` (or any value) lists approved
  entries; leaving the parameter out lists every entry;
- `date_performed_between=YYYY-MM-DD:YYYY-MM-DD`, both ends inclusive (Kantata's colon
  range); the sandbox also accepts an open end (`:2025-03-31`, `2025-03-01:`);
- `updated_after=<ISO 8601 datetime>` (strictly after; `created_after` likewise);
- `include=user,story,external_references`: the associated objects under their own
  top-level keys (`users`, `stories`, `external_references`, indexed by id, never in
  `results`), and on each entry the id list `external_reference_ids` when references are
  included. There is no "without external reference" filter in Kantata: an integration
  tracks what it posted itself (q2c: its ledger) and may read the references to check.
- `order=<field>:<asc|desc>` ("Ordering": supply `order` with a valid sort field and a
  direction, e.g. `order=created_at:desc`) for `date_performed`, `created_at`, `updated_at`
  and `id`; the id breaks ties in the same direction, so paging is a total order. Without
  `order` (or with a field it does not know, which Kantata's framework ignores) entries come
  by `date_performed` descending, Kantata's documented default.
- paging as every list: `page`/`per_page` (20, at most 200), `limit`+`offset` (see render.paging).

Writes: `POST /time_entries.json {"time_entry": {...}}`, `PUT /time_entries/{id}.json`
(422 "Time entry is locked" once approved), `DELETE /time_entries/{id}.json` (same lock).
`POST /timesheet_submissions.json {"timesheet_submission": {workspace_id, user_id,
start_date, end_date}}` submits that user's unsubmitted time in the range (status `pending`);
`PUT /timesheet_submissions/{id}/approve`, `/reject` and `/cancel` (optionally with
`{"resolution": {"description": ...}}`) resolve it: Kantata's Timesheet Submissions "can be
approved, rejected, or canceled". Approve and reject take a pending submission; cancel also
takes an approved one, which withdraws the approval: its entries are unapproved, unlocked
and editable again (and their `updated_at` moves), to be submitted and approved anew.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from sandboxes.psa import listing, render
from sandboxes.psa import timekeeping as tk
from sandboxes.psa import validation as v
from sandboxes.psa.models import Story, TimeEntry, TimesheetSubmission, User, Workspace
from sandboxes.psa.render import error
from sandboxes.psa.routes import get_or_404, int_or_none, list_rows, only_ids

TIME_ENTRY_INCLUDES: dict[str, tuple[str, type, str]] = {
    "user": ("users", User, "user_id"),
    "story": ("stories", Story, "story_id"),
}
RENDER_INCLUDED: dict[str, Callable[[Any], dict[str, Any]]] = {"users": render.user, "stories": render.story}


def time_entry_conditions(params: Any) -> list[Any]:
    conds: list[Any] = []
    for name, column in (
        ("workspace_id", TimeEntry.workspace_id),
        ("user_id", TimeEntry.user_id),
        ("story_id", TimeEntry.story_id),
    ):
        value = int_or_none(params.get(name), name)
        if value is not None:
            conds.append(column == value)
    ids = only_ids(params.get("only"))
    if ids is not None:
        conds.append(col(TimeEntry.id).in_(ids))
    if "approved" in params:
        # Kantata: "always processed as true; the actual value you provide is ignored"
        conds.append(TimeEntry.approved == True)  # noqa: E712
    conds += listing.range_and_changed(
        params, "date_performed_between", TimeEntry.date_performed, TimeEntry.updated_at, TimeEntry.created_at
    )
    return conds


SORT_FIELDS = {
    "date_performed": TimeEntry.date_performed,
    "created_at": TimeEntry.created_at,
    "updated_at": TimeEntry.updated_at,
    "id": TimeEntry.id,
}
DEFAULT_ORDER = ("date_performed", "desc")


def time_entry_order(value: str | None) -> list[Any]:
    """`order=field:direction`, the id after it in the same direction (a total order, so pages
    never overlap or leave gaps while the list is unchanged); an unknown field falls back to
    the default (date_performed descending), an unknown direction to ascending."""
    return listing.order_by(value, SORT_FIELDS, DEFAULT_ORDER, TimeEntry.id)


def list_time_entries(s: Session, params: Any) -> dict[str, Any]:
    conds = time_entry_conditions(params)
    total, rows, paging = listing.page(s, TimeEntry, conds, time_entry_order(params.get("order")), params)
    objects = [render.time_entry(r) for r in rows]
    included: dict[str, list[dict[str, Any]]] = {}
    names = {n.strip() for n in (params.get("include") or "").split(",")}
    for name in names:
        if name in TIME_ENTRY_INCLUDES:
            key, model, fk = TIME_ENTRY_INCLUDES[name]
            ids = sorted({getattr(r, fk) for r in rows if getattr(r, fk) is not None})
            found = s.exec(select(model).where(col(model.id).in_(ids))).all() if ids else []
            included[key] = [RENDER_INCLUDED[key](o) for o in found]
    if "external_references" in names:
        listing.include_external_references(s, "TimeEntry", rows, objects, included)
    return render.envelope(
        "time_entries", objects, total=total, page=paging.page, per_page=paging.per_page, included=included
    )


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
    def show_time_entry(entry_id: str) -> dict:
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
    def update_time_entry(entry_id: str, payload: Any = Body(None)) -> dict:
        data = v.root(payload, "time_entry")
        with session() as s:
            row = get_or_404(s, TimeEntry, entry_id, "Time entry")
            tk.update_entry(s, row, data)
            s.add(row)
            s.commit()
            s.refresh(row)
            return render.single("time_entries", render.time_entry(row))

    @router.delete("/time_entries/{entry_id}.json")
    def delete_time_entry(entry_id: str) -> dict:
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
            for name, column, value in (
                ("workspace_id", TimesheetSubmission.workspace_id, workspace_id),
                ("user_id", TimesheetSubmission.user_id, user_id),
            ):
                number = int_or_none(value, name)
                if number is not None:
                    conds.append(column == number)
            if status:
                conds.append(col(TimesheetSubmission.status).in_([p.strip() for p in status.split(",")]))
            return list_rows(s, "timesheet_submissions", request, conds)

    @router.get("/timesheet_submissions/{submission_id}.json")
    def show_submission(submission_id: str) -> dict:
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

    def resolve(submission_id: str, payload: Any, outcome: str) -> dict:
        resolution = payload.get("resolution") if isinstance(payload, dict) else None
        description = resolution.get("description") if isinstance(resolution, dict) else None
        with session() as s:
            sub = get_or_404(s, TimesheetSubmission, submission_id, "Timesheet submission")
            tk.resolve(s, sub, outcome=outcome, description=description)
            s.commit()
            s.refresh(sub)
            return render.single("timesheet_submissions", render.timesheet_submission(sub))

    @router.put("/timesheet_submissions/{submission_id}/approve")
    @router.put("/timesheet_submissions/{submission_id}/approve.json")
    def approve_submission(submission_id: str, payload: Any = Body(None)) -> dict:
        return resolve(submission_id, payload, tk.APPROVED)

    @router.put("/timesheet_submissions/{submission_id}/reject")
    @router.put("/timesheet_submissions/{submission_id}/reject.json")
    def reject_submission(submission_id: str, payload: Any = Body(None)) -> dict:
        return resolve(submission_id, payload, tk.REJECTED)

    @router.put("/timesheet_submissions/{submission_id}/cancel")
    @router.put("/timesheet_submissions/{submission_id}/cancel.json")
    def cancel_submission(submission_id: str, payload: Any = Body(None)) -> dict:
        """Cancel a pending submission, or withdraw an approved one (its time is unapproved)."""
        return resolve(submission_id, payload, tk.CANCELED)

    return router
