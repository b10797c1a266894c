"""How Kantata answers: the response envelope, objects as JSON, and the error body.

Envelope (every list, show, create and update answer):

    {"count": 2,
     "meta": {"count": 2, "page_count": 1, "page_number": 1, "page_size": 20},
     "results": [{"key": "workspaces", "id": "7002"}, ...],   # in sorted order
     "workspaces": {"7002": {...}, ...}}                        # objects indexed by id

Included associations (`include=stories`) add their own top-level key (`"stories": {...}`)
and an id list on the parent object (`"story_ids": [...]`); they are not in `results`.

Errors: `{"errors": [{"type": "validation", "message": "Title can't be blank",
"field": "title"}]}`; other types are `oauth` (401), `system` (404/5xx), `rate_limit` (429).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

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
)

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 200


class KantataError(Exception):
    """Raised by handlers; rendered as the Kantata error body with its status."""

    def __init__(self, status: int, errors: list[dict[str, str]]) -> None:
        super().__init__(errors[0]["message"] if errors else str(status))
        self.status = status
        self.errors = errors


def error(status: int, type_: str, message: str, field: str | None = None) -> KantataError:
    item = {"type": type_, "message": message}
    if field:
        item["field"] = field
    return KantataError(status, [item])


def error_body(errors: list[dict[str, str]]) -> dict[str, Any]:
    return {"errors": errors}


def fault_body(status: int, code: str, message: str) -> dict[str, Any]:
    """Body for the shared fault middleware (429 and 5xx), in Kantata's error shape."""
    type_ = "rate_limit" if status == 429 else "system"
    return {"errors": [{"type": type_, "message": message}]}


MAX_ID = 2**63 - 1  # Kantata ids are 64-bit integers; a larger number names no object


@dataclass(frozen=True)
class Paging:
    """Where a list answer starts and how long it is (`meta.page_number`/`page_size`)."""

    page: int
    per_page: int
    offset: int


def _as_int(value: str | None) -> int | None:
    """Brainstem's `to_i` leniency, minus Ruby's prefix parsing: a non-number is "not given"."""
    if value in (None, ""):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def paging(params: Any) -> Paging:
    """Kantata paging, as its API framework (Brainstem, mavenlink/brainstem
    `lib/brainstem/query_strategies/base_strategy.rb`) computes it:

    - `page` from 1 (smaller or unreadable: 1) and `per_page` (default 20, at most 200; smaller
      than 1 or unreadable: 20), the paging the Kantata API reference documents;
    - `limit` and `offset`, only when BOTH are given (`calculate_limit_and_offset`): `limit`
      clamped to 1..200, `offset` to 0 or more; one of them alone is ignored.

    Out-of-range numbers never reach the database: the offset is capped so a page far beyond
    the list answers an empty page, not an error."""
    limit, offset = _as_int(params.get("limit")), _as_int(params.get("offset"))
    if limit is not None and offset is not None:
        size = min(MAX_PER_PAGE, max(1, limit))
        start = min(max(0, offset), MAX_ID)
        return Paging(page=start // size + 1, per_page=size, offset=start)
    size = _as_int(params.get("per_page"))
    size = DEFAULT_PER_PAGE if size is None or size < 1 else min(MAX_PER_PAGE, size)
    page = max(1, _as_int(params.get("page")) or 1)
    page = min(page, MAX_ID // size)
    return Paging(page=page, per_page=size, offset=(page - 1) * size)


def envelope(
    key: str,
    objects: list[dict[str, Any]],
    *,
    total: int,
    page: int,
    per_page: int,
    included: dict[str, list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "count": total,
        "meta": {
            "count": total,
            "page_count": max(1, math.ceil(total / per_page)) if total else 0,
            "page_number": page,
            "page_size": per_page,
        },
        "results": [{"key": key, "id": o["id"]} for o in objects],
        key: {o["id"]: o for o in objects},
    }
    for inc_key, inc_objects in (included or {}).items():
        body.setdefault(inc_key, {}).update({o["id"]: o for o in inc_objects})
    return body


def single(key: str, obj: dict[str, Any], included: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    return envelope(key, [obj], total=1, page=1, per_page=DEFAULT_PER_PAGE, included=included)


def _sid(value: int | None) -> str | None:
    return None if value is None else str(value)


def _hours(text: str) -> int | float:
    d = Decimal(text)
    return int(d) if d == d.to_integral_value() else float(d)


def workspace(w: Workspace) -> dict[str, Any]:
    return {
        "id": _sid(w.id),
        "title": w.title,
        "description": w.description,
        "start_date": w.start_date,
        "due_date": w.due_date,
        "budget_in_cents": w.budget_in_cents,
        "budgeted": w.budget_in_cents is not None,
        "currency": w.currency,
        "creator_role": w.creator_role,
        "status": {"message": w.status},
        "archived": w.archived,
        "created_at": w.created_at,
        "updated_at": w.updated_at,
    }


def story(s: Story) -> dict[str, Any]:
    return {
        "id": _sid(s.id),
        "workspace_id": _sid(s.workspace_id),
        "title": s.title,
        "description": s.description,
        "story_type": s.story_type,
        "billable": s.billable,
        "state": s.state,
        "position": s.position,
        "start_date": s.start_date,
        "due_date": s.due_date,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
    }


def user(u: User) -> dict[str, Any]:
    return {
        "id": _sid(u.id),
        "full_name": u.full_name,
        "email_address": u.email_address,
        "headline": u.headline,
        "role_id": _sid(u.role_id),
    }


def role(r: Role) -> dict[str, Any]:
    return {"id": _sid(r.id), "name": r.name}


def resource_request(r: ResourceRequest) -> dict[str, Any]:
    return {
        "id": _sid(r.id),
        "workspace_id": _sid(r.workspace_id),
        "role_id": _sid(r.role_id),
        "hours": _hours(r.hours),
        "start_date": r.start_date,
        "end_date": r.end_date,
        "status": r.status,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
    }


def workspace_resource(r: WorkspaceResource) -> dict[str, Any]:
    return {
        "id": _sid(r.id),
        "workspace_id": _sid(r.workspace_id),
        "user_id": _sid(r.user_id),
        "role_id": _sid(r.role_id),
        "label": r.label,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
    }


def external_reference(e: ExternalReference) -> dict[str, Any]:
    return {
        "id": _sid(e.id),
        "subject_type": e.subject_type,
        "subject_id": _sid(e.subject_id),
        "service_name": e.service_name,
        "service_model": e.service_model,
        "service_model_ref": e.service_model_ref,
        "status": e.status,
        "external_link": e.external_link,
        "external_status": e.external_status,
        "external_message": e.external_message,
        "last_synced_at": e.last_synced_at,
        "created_at": e.created_at,
        "updated_at": e.updated_at,
    }


def workspace_template(t: WorkspaceTemplate, stories: list[TemplateStory]) -> dict[str, Any]:
    return {
        "id": _sid(t.id),
        "title": t.title,
        "description": t.description,
        "service_line": t.service_line,
        "custom_field_values": [{"name": "Service Line", "value": t.service_line}],
        "stories": [
            {"title": s.title, "story_type": s.story_type, "billable": s.billable, "position": s.position}
            for s in sorted(stories, key=lambda s: s.position)
        ],
    }


def time_entry(t: TimeEntry) -> dict[str, Any]:
    return {
        "id": _sid(t.id),
        "workspace_id": _sid(t.workspace_id),
        "story_id": _sid(t.story_id),
        "user_id": _sid(t.user_id),
        "role_id": _sid(t.role_id),
        "date_performed": t.date_performed,
        "time_in_minutes": t.time_in_minutes,
        "billable": t.billable,
        "approved": t.approved,
        "notes": t.notes,
        "rate_in_cents": t.rate_in_cents,
        "currency": t.currency,
        "timesheet_submission_id": _sid(t.timesheet_submission_id),
        "created_at": t.created_at,
        "updated_at": t.updated_at,
    }


def timesheet_submission(t: TimesheetSubmission) -> dict[str, Any]:
    ids = [i for i in t.time_entry_ids.split(",") if i]
    return {
        "id": _sid(t.id),
        "workspace_id": _sid(t.workspace_id),
        "user_id": _sid(t.user_id),
        "start_date": t.start_date,
        "end_date": t.end_date,
        "status": t.status,
        "time_entry_ids": ids,
        "resolution": ({"description": t.resolution_description} if t.resolution_description else None),
        "resolved_at": t.resolved_at,
        "created_at": t.created_at,
        "updated_at": t.updated_at,
    }


# Kantata's `currency_base_unit`: minor units per major unit (cents per dollar); amounts are
# integers of it (`amount_in_cents`), whatever the currency's exponent.
ZERO_DECIMAL = ("JPY", "KRW")
THREE_DECIMAL = ("BHD", "KWD")


def currency_base_unit(currency: str) -> int:
    return 1 if currency in ZERO_DECIMAL else 1000 if currency in THREE_DECIMAL else 100


def expense(e: Expense) -> dict[str, Any]:
    """An expense as Kantata renders it (plus the sandbox's `approved`, see models.Expense)."""
    return {
        "id": _sid(e.id),
        "workspace_id": _sid(e.workspace_id),
        "story_id": _sid(e.story_id),
        "user_id": _sid(e.user_id),
        "date": e.date,
        "category": e.category,
        "notes": e.notes,
        "vendor": e.vendor,
        "amount_in_cents": e.amount_in_cents,
        "currency": e.currency,
        "currency_base_unit": currency_base_unit(e.currency),
        "is_billable": e.is_billable,
        "reimbursable": e.reimbursable,
        "is_invoiced": e.is_invoiced,
        "receipt_id": _sid(e.receipt_id),
        "approved": e.approved,
        "user_can_edit": not e.approved,
        "created_at": e.created_at,
        "updated_at": e.updated_at,
    }
