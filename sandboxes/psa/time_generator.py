"""Sandbox-only time data: `POST /__sandbox/time/generate` and `POST /__sandbox/time/bulk`.

Neither exists in Kantata; they stand in for consultants logging time and managers approving
it, so that demos and tests have approved time to invoice.

`generate` body: `{"workspace_id", "start_date", "end_date", "entries_per_week": 5,
"approve": true, "seed": 42, "roles": ["Senior Consultant", ...], "billable_only": false}`.
- one consultant per role (default: the roles of the workspace's resource requests), picked
  among the users holding that role;
- per consultant and calendar week: `entries_per_week` entries on weekdays inside the range
  (distinct days while there are enough), 60-480 minutes in 15-minute steps, on the
  workspace's billable stories (about 85 %) and otherwise its non-billable ones;
- each consultant's week becomes one timesheet submission, approved when `approve`.
The same seed, range and workspace shape give the same entries (dates, minutes, stories by
position, users). It appends: calling it twice logs the time twice.

`bulk` body: `{"time_entries": [{workspace_id, story_id, user_id, date_performed,
time_in_minutes, billable?, notes?, role_id?}], "approved": false}`: exact entries, validated
like `POST /time_entries.json` (all or nothing, the field named `time_entries[i].<field>`);
with `approved`, each user's week in a workspace is submitted and approved.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import date, timedelta
from typing import Any

from fastapi import APIRouter, Body
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from sandboxes.common.faults import ADMIN_PREFIX
from sandboxes.psa import timekeeping as tk
from sandboxes.psa import validation as v
from sandboxes.psa.models import ResourceRequest, Role, Story, TimeEntry, User, Workspace
from sandboxes.psa.render import KantataError, error

BILLABLE_SHARE = 0.85
MAX_RANGE_DAYS = 731
ACTIVITIES = (
    "Working session",
    "Client workshop",
    "Analysis and design",
    "Build and configuration",
    "Review with stakeholders",
    "Documentation",
    "Testing and fixes",
    "Status meeting",
)


def _dates(data: dict[str, Any]) -> tuple[date, date]:
    problems = v.Problems()
    for field, label in (("start_date", "Start date"), ("end_date", "End date")):
        if v.blank(data.get(field)):
            problems.add(field, f"{label} can't be blank")
    start = v.check_date(problems, data, "start_date", "Start date")
    end = v.check_date(problems, data, "end_date", "End date")
    v.check_date_order(problems, start, end, "end_date", "End date")
    if start and end and (date.fromisoformat(end) - date.fromisoformat(start)).days > MAX_RANGE_DAYS:
        problems.add("end_date", f"The range may span at most {MAX_RANGE_DAYS} days")
    problems.raise_if_any()
    return date.fromisoformat(start), date.fromisoformat(end)  # type: ignore[arg-type]


def _weeks(start: date, end: date) -> list[list[date]]:
    """Weekdays of the range, grouped by calendar week (Monday first)."""
    weeks: dict[date, list[date]] = defaultdict(list)
    day = start
    while day <= end:
        if day.weekday() < 5:
            weeks[day - timedelta(days=day.weekday())].append(day)
        day += timedelta(days=1)
    return [weeks[monday] for monday in sorted(weeks)]


def _role_ids(s: Session, ws: Workspace, names: Any) -> list[Role]:
    roles = list(s.exec(select(Role).order_by(col(Role.id))).all())
    if names is None:
        wanted_ids = [
            r.role_id
            for r in s.exec(
                select(ResourceRequest).where(ResourceRequest.workspace_id == ws.id).order_by(col(ResourceRequest.id))
            ).all()
        ]
        chosen = [r for rid in dict.fromkeys(wanted_ids) for r in roles if r.id == rid]
        if not chosen:
            raise error(422, "validation", f"Workspace {ws.id} has no resource requests: name the roles", "roles")
        return chosen
    if not isinstance(names, list) or not names:
        raise error(422, "validation", "Roles must be a non-empty list of role names", "roles")

    def key(name: Any) -> str:
        return " ".join(str(name).split()).casefold()

    by_name = {key(r.name): r for r in roles}
    unknown = [n for n in names if key(n) not in by_name]
    if unknown:
        raise error(422, "validation", f"Unknown role(s) {unknown}; known: {[r.name for r in roles]}", "roles")
    return list({by_name[key(n)].id: by_name[key(n)] for n in names}.values())


def _submit_weeks(s: Session, entries: list[TimeEntry], approve: bool) -> list[int]:
    """One submission per (workspace, user, calendar week) of the given saved entries."""
    groups: dict[tuple[int, int, date], list[TimeEntry]] = defaultdict(list)
    for e in entries:
        day = date.fromisoformat(e.date_performed)
        groups[(e.workspace_id, e.user_id, day - timedelta(days=day.weekday()))].append(e)
    ids: list[int] = []
    for (wid, uid, _monday), group in sorted(groups.items()):
        days = sorted(e.date_performed for e in group)
        sub = tk.submit(s, wid, uid, days[0], days[-1])
        if approve:
            tk.resolve(s, sub, outcome=tk.APPROVED, description="Approved by the sandbox generator")
        assert sub.id is not None
        ids.append(sub.id)
    return ids


def generate(s: Session, data: dict[str, Any]) -> dict[str, Any]:
    wid = data.get("workspace_id")
    ws = s.get(Workspace, int(wid)) if str(wid or "").isdigit() else None
    if ws is None:
        raise error(422, "validation", f"Workspace {wid} does not exist", "workspace_id")
    if tk.is_closed(ws):
        raise error(422, "validation", f"Workspace {ws.id} is closed", "workspace_id")
    start, end = _dates(data)
    per_week = data.get("entries_per_week", 5)
    if isinstance(per_week, bool) or not isinstance(per_week, int) or not 0 <= per_week <= 25:
        raise error(422, "validation", "Entries per week must be a whole number from 0 to 25", "entries_per_week")
    rng = random.Random(data.get("seed", 0))
    roles = _role_ids(s, ws, data.get("roles"))
    stories = list(
        s.exec(select(Story).where(Story.workspace_id == ws.id).order_by(col(Story.position), col(Story.id))).all()
    )
    billable = [x for x in stories if x.billable]
    internal = [] if data.get("billable_only") else [x for x in stories if not x.billable]
    if not billable:
        raise error(422, "validation", f"Workspace {ws.id} has no billable stories", "workspace_id")
    people: list[tuple[Role, User]] = []
    for role in roles:
        holders = list(s.exec(select(User).where(User.role_id == role.id).order_by(col(User.id))).all())
        if not holders:
            raise error(422, "validation", f"No user holds the role {role.name}", "roles")
        people.append((role, rng.choice(holders)))

    made: list[TimeEntry] = []
    for week in _weeks(start, end):
        for role, user in people:
            days = sorted(rng.sample(week, min(per_week, len(week))))
            days += sorted(rng.choice(week) for _ in range(per_week - len(days)))
            for day in days:
                story = rng.choice(internal) if internal and rng.random() >= BILLABLE_SHARE else rng.choice(billable)
                made.append(
                    TimeEntry(
                        workspace_id=ws.id,
                        story_id=story.id,
                        user_id=user.id,
                        role_id=role.id,
                        date_performed=day.isoformat(),
                        time_in_minutes=rng.randrange(60, 481, 15),
                        billable=story.billable,
                        notes=f"{rng.choice(ACTIVITIES)}: {story.title}",
                    )
                )
    s.add_all(made)
    s.flush()
    submissions = _submit_weeks(s, made, bool(data.get("approve", True)))
    by_role: dict[str, int] = defaultdict(int)
    names = {r.id: r.name for r in roles}
    for e in made:
        by_role[names[e.role_id]] += e.time_in_minutes
    return {
        "workspace_id": str(ws.id),
        "time_entry_ids": [str(e.id) for e in made],
        "timesheet_submission_ids": [str(i) for i in submissions],
        "count": len(made),
        "total_minutes": sum(e.time_in_minutes for e in made),
        "billable_minutes": sum(e.time_in_minutes for e in made if e.billable),
        "minutes_by_role": dict(by_role),
        "approved": bool(data.get("approve", True)),
        "users": {role.name: str(user.id) for role, user in people},
    }


def bulk(s: Session, data: dict[str, Any]) -> dict[str, Any]:
    items = data.get("time_entries")
    if not isinstance(items, list) or not items:
        raise error(422, "validation", "Time entries must be a non-empty list", "time_entries")
    problems = v.Problems()
    made: list[TimeEntry] = []
    for i, item in enumerate(items):
        mine = v.Problems()
        row = tk.new_entry(s, item if isinstance(item, dict) else {}, mine)
        for p in mine.items:
            problems.add(f"time_entries[{i}].{p['field']}", p["message"])
        if row is not None:
            made.append(row)
    problems.raise_if_any()
    s.add_all(made)
    s.flush()
    submissions = _submit_weeks(s, made, True) if data.get("approved") else []
    return {
        "time_entry_ids": [str(e.id) for e in made],
        "timesheet_submission_ids": [str(i) for i in submissions],
        "count": len(made),
        "approved": bool(data.get("approved")),
    }


def time_sandbox_router(engine: Engine) -> APIRouter:
    router = APIRouter(prefix=f"{ADMIN_PREFIX}/time", tags=["sandbox-time"])

    def run(fn: Any, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise KantataError(400, [{"type": "system", "message": "a JSON object body is required"}])
        with Session(engine, expire_on_commit=False) as s:
            result = fn(s, payload)
            s.commit()
            return result

    @router.post("/generate")
    def generate_time(payload: Any = Body(None)) -> dict:
        return run(generate, payload)

    @router.post("/bulk")
    def bulk_time(payload: Any = Body(None)) -> dict:
        return run(bulk, payload)

    return router
