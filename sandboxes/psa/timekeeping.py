"""Time rules of the Kantata sandbox, shared by the API and the sandbox-only generator.

Kantata facts mirrored here:
- a time entry belongs to a workspace, a story (task) of that workspace and a user, and
  records `time_in_minutes` (1..1440) on one `date_performed`; `billable` defaults to the
  story's flag and `role_id` to the user's project role on the workspace (their workspace
  resource's role), else their account role. The role is fixed on the entry when it is
  booked: changing the user's role later does not change it. An entry booked by a user with
  no role then has none;
- a closed (or archived) workspace takes no new time;
- time is approved through a timesheet submission: one user's entries in one workspace for a
  date range, `pending` until it is approved (the entries turn `approved` and are locked) or
  rejected (the entries stay unapproved, leave the submission and can be edited and
  submitted again). Entries of a pending submission are locked too until it is resolved.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from sandboxes.psa import validation as v
from sandboxes.psa.models import Role, Story, TimeEntry, TimesheetSubmission, User, Workspace, WorkspaceResource, utcnow
from sandboxes.psa.render import MAX_ID, KantataError, error

CLOSED_STATUSES = ("closed", "completed", "cancelled", "archived")
MAX_MINUTES = 1440


def is_closed(ws: Workspace) -> bool:
    """Closed by `status` ("closed", "completed", ...) or by `archived: true`."""
    return ws.archived or ws.status.strip().casefold() in CLOSED_STATUSES


def open_workspace(
    problems: v.Problems, s: Session, data: dict[str, Any], closed: str
) -> tuple[int | None, Workspace | None]:
    """The payload's `workspace_id` and its workspace: a problem if it does not exist, or if it
    is closed (a closed workspace takes nothing new: `closed` says what, e.g. "time can no
    longer be logged to it")."""
    wid = v.check_int_id(problems, data, "workspace_id", "Workspace")
    ws = s.get(Workspace, wid) if wid is not None else None
    if wid is not None and ws is None:
        problems.add("workspace_id", f"Workspace {wid} does not exist")
    elif ws is not None and is_closed(ws):
        problems.add("workspace_id", f"Workspace {wid} is closed: {closed}")
    return wid, ws


def _minutes(problems: v.Problems, data: dict[str, Any], field: str = "time_in_minutes") -> int | None:
    value = data.get(field)
    if value is None or value == "":
        problems.add(field, "Time in minutes can't be blank")
        return None
    if isinstance(value, bool) or not str(value).strip().isdigit():
        problems.add(field, "Time in minutes must be a whole number")
        return None
    minutes = int(str(value).strip())
    if not 1 <= minutes <= MAX_MINUTES:
        problems.add(field, f"Time in minutes must be between 1 and {MAX_MINUTES}")
        return None
    return minutes


def flag(problems: v.Problems, data: dict[str, Any], field: str, label: str) -> bool | None:
    """A boolean field of a write (`true`/`false`, `1`/`0`, or a JSON boolean); None when absent."""
    value = data.get(field)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    problems.add(field, f"{label} must be true or false")
    return None


def _story_in(problems: v.Problems, s: Session, data: dict[str, Any], wid: int | None) -> Story | None:
    sid = v.check_int_id(problems, data, "story_id", "Story")
    if sid is None:
        return None
    story = s.get(Story, sid)
    if story is None:
        problems.add("story_id", f"Story {sid} does not exist")
    elif wid is not None and story.workspace_id != wid:
        problems.add("story_id", f"Story {sid} does not belong to workspace {wid}")
    return story


def booking_role(s: Session, user: User, workspace_id: int | None) -> int | None:
    """The role a new entry is booked under when none is given: the user's project role on the
    workspace (their one workspace resource's role), else their account role, else none."""
    if workspace_id is not None:
        roles = {
            r.role_id
            for r in s.exec(
                select(WorkspaceResource).where(
                    WorkspaceResource.workspace_id == workspace_id, WorkspaceResource.user_id == user.id
                )
            ).all()
        }
        if len(roles) == 1:
            return roles.pop()
    return user.role_id


def new_entry(s: Session, data: dict[str, Any], problems: v.Problems) -> TimeEntry | None:
    """A validated, unsaved TimeEntry from a create payload (problems added, None if any)."""
    before = len(problems.items)
    wid, ws = open_workspace(problems, s, data, "time can no longer be logged to it")
    story = _story_in(problems, s, data, wid)
    uid = v.check_int_id(problems, data, "user_id", "User")
    user = s.get(User, uid) if uid is not None else None
    if uid is not None and user is None:
        problems.add("user_id", f"User {uid} does not exist")
    role_id = booking_role(s, user, wid) if user is not None else None
    if not v.blank(data.get("role_id")):
        role_id = v.check_int_id(problems, data, "role_id", "Role")
        if role_id is not None and s.get(Role, role_id) is None:
            problems.add("role_id", f"Role {role_id} does not exist")
    if v.blank(data.get("date_performed")):
        problems.add("date_performed", "Date performed can't be blank")
    performed = v.check_date(problems, data, "date_performed", "Date performed")
    minutes = _minutes(problems, data)
    billable = flag(problems, data, "billable", "Billable")
    rate = None
    if data.get("rate_in_cents") not in (None, ""):
        raw = data["rate_in_cents"]
        if isinstance(raw, bool) or not str(raw).isdigit() or int(str(raw)) > MAX_ID:
            problems.add("rate_in_cents", "Rate in cents must be a whole number of cents, 0 or more")
        else:
            rate = int(raw)
    if len(problems.items) > before:
        return None
    assert ws is not None and story is not None and user is not None and performed and minutes
    return TimeEntry(
        workspace_id=ws.id,
        story_id=story.id,
        user_id=user.id,
        role_id=role_id,
        date_performed=performed,
        time_in_minutes=minutes,
        billable=story.billable if billable is None else billable,
        notes=str(data.get("notes") or ""),
        rate_in_cents=rate,
        currency=ws.currency if rate is not None else None,
    )


def update_entry(s: Session, row: TimeEntry, data: dict[str, Any]) -> None:
    """Apply an update payload; 422 "Time entry is locked" once approved or submitted."""
    if row.approved:
        raise error(422, "validation", "Time entry is locked", "approved")
    if row.timesheet_submission_id is not None:
        raise error(422, "validation", "Time entry is locked: it is in a pending timesheet submission", "approved")
    problems = v.Problems()
    if "story_id" in data:
        story = _story_in(problems, s, data, row.workspace_id)
        if story is not None:
            row.story_id = story.id
    if "date_performed" in data:
        performed = v.check_date(problems, data, "date_performed", "Date performed")
        if performed:
            row.date_performed = performed
        elif not problems.items:
            problems.add("date_performed", "Date performed can't be blank")
    if "time_in_minutes" in data:
        minutes = _minutes(problems, data)
        if minutes:
            row.time_in_minutes = minutes
    if "billable" in data:
        billable = flag(problems, data, "billable", "Billable")
        if billable is not None:
            row.billable = billable
    if "notes" in data:
        row.notes = str(data["notes"] or "")
    ws = s.get(Workspace, row.workspace_id)
    if ws is not None and is_closed(ws):
        problems.add("workspace_id", f"Workspace {ws.id} is closed: its time can no longer change")
    problems.raise_if_any()
    row.updated_at = utcnow()


def submit(s: Session, workspace_id: int, user_id: int, start: str, end: str) -> TimesheetSubmission:
    """A pending submission of the user's unsubmitted, unapproved entries in [start, end]."""
    entries = s.exec(
        select(TimeEntry)
        .where(
            TimeEntry.workspace_id == workspace_id,
            TimeEntry.user_id == user_id,
            TimeEntry.date_performed >= start,
            TimeEntry.date_performed <= end,
            TimeEntry.approved == False,  # noqa: E712
            col(TimeEntry.timesheet_submission_id).is_(None),  # noqa: E712
        )
        .order_by(col(TimeEntry.date_performed), col(TimeEntry.id))
    ).all()
    if not entries:
        raise KantataError(
            422,
            [
                {
                    "type": "validation",
                    "field": "start_date",
                    "message": f"User {user_id} has no unsubmitted time in workspace "
                    f"{workspace_id} between {start} and {end}",
                }
            ],
        )
    sub = TimesheetSubmission(
        workspace_id=workspace_id,
        user_id=user_id,
        start_date=start,
        end_date=end,
        time_entry_ids=",".join(str(e.id) for e in entries),
    )
    s.add(sub)
    s.flush()
    now = utcnow()
    for e in entries:
        e.timesheet_submission_id = sub.id
        e.updated_at = now
        s.add(e)
    return sub


def _covered(s: Session, sub: TimesheetSubmission) -> list[TimeEntry]:
    return list(s.exec(select(TimeEntry).where(TimeEntry.timesheet_submission_id == sub.id)).all())


APPROVED, REJECTED, CANCELED = "approved", "rejected", "canceled"


def resolve(s: Session, sub: TimesheetSubmission, *, outcome: str, description: str | None = None) -> None:
    """Approve (entries approved and locked), reject (entries released, still editable) or
    cancel a submission. Approve and reject take a pending submission only; cancel takes a
    pending or an approved one: withdrawing an approval unapproves its entries, which leave
    the submission and can be edited and submitted again. Every entry touched gets a new
    `updated_at`, as any change of an entry does in Kantata."""
    allowed = ("pending", "approved") if outcome == CANCELED else ("pending",)
    if sub.status not in allowed:
        raise error(422, "validation", f"Timesheet submission {sub.id} is already {sub.status}", "status")
    now = utcnow()
    for e in _covered(s, sub):
        if outcome == APPROVED:
            e.approved = True
        else:
            e.approved = False
            e.timesheet_submission_id = None
        e.updated_at = now
        s.add(e)
    sub.status = outcome
    sub.resolution_description = None if description is None else str(description)
    sub.resolved_at = sub.updated_at = now
    s.add(sub)
