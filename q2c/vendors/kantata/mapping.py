"""Pure mapping between the canonical model and Kantata (Mavenlink) API v1 JSON.

Kantata facts used here:
- every answer is the envelope `{count, meta, results: [{key, id}], <key>: {id: object}}`;
  `results` gives the order, the objects sit under their key indexed by id (string ids);
- writes take the object under its root key: `{"workspace": {...}}`, `{"story": {...}}`;
- money is integer minor units (`budget_in_cents`) beside an ISO `currency`;
- `external_references` link a Kantata object (`subject_type`/`subject_id`) to a record of
  another system (`service_name`/`service_model`/`service_model_ref`).

q2c finds its own workspace again without any vendor upsert: the title carries the
opportunity id in brackets ("Acme Data Platform [006...]") and an external reference with
service_model "opportunity" carries it as data.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from q2c.domain.delivery import ApprovalState, TimeEntry
from q2c.domain.engagement import Engagement
from q2c.domain.money import MINOR_UNITS, round_money
from q2c.domain.project import ProjectTemplate, ResourceDemand, Task

SERVICE_NAME = "q2c"
OPPORTUNITY_MODEL = "opportunity"
ERP_PROJECT_MODEL = "erp_project"
WORKSPACE_SUBJECT = "Workspace"
TIME_ENTRY_SUBJECT = "TimeEntry"
TIME_BILL_MODEL = "timeBill"  # service_model of a time entry's reference: the ERP timeBill id
CLOSED_STATUSES = ("closed", "completed", "cancelled", "archived")
TITLE_MAX = 255


def results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The envelope's objects in the order of `results` (included objects are left out)."""
    out = []
    for ref in body.get("results", []):
        obj = body.get(ref["key"], {}).get(str(ref["id"]))
        if obj is not None:
            out.append(obj)
    return out


def q2c_references(body: dict[str, Any], collection: str, model: str) -> dict[str, list[dict[str, str]]]:
    """q2c's references of service_model `model` on each object of `collection` (e.g.
    "time_entries") in an answer read with `include=external_references` (the top-level
    `external_references` collection, `external_reference_ids` on each object), as
    `{"id", "service_model_ref"}` dicts. An object without `external_reference_ids` (the include
    was not applied) is left out: nothing is known about it, which is not the same as none."""
    refs = body.get("external_references", {})
    out: dict[str, list[dict[str, str]]] = {}
    for obj_id, obj in body.get(collection, {}).items():
        if "external_reference_ids" not in obj:
            continue
        mine = []
        for ref_id in obj.get("external_reference_ids") or []:
            ref = refs.get(str(ref_id)) or {}
            if ref.get("service_name") == SERVICE_NAME and ref.get("service_model") == model:
                mine.append({"id": str(ref.get("id", ref_id)), "service_model_ref": str(ref.get("service_model_ref"))})
        out[str(obj_id)] = mine
    return out


def posted_entry_ids(body: dict[str, Any]) -> set[str]:
    """Ids of the time entries in a `time_entries` answer read with
    `include=external_references` that carry q2c's timeBill reference."""
    return {i for i, refs in q2c_references(body, "time_entries", TIME_BILL_MODEL).items() if refs}


def first_result(body: dict[str, Any]) -> dict[str, Any]:
    found = results(body)
    if not found:
        raise ValueError("Kantata answer holds no result")
    return found[0]


def opportunity_tag(opportunity_id: str) -> str:
    return f"[{opportunity_id}]"


def workspace_title(engagement: Engagement) -> str:
    """`<opportunity name> [<opportunity id>]`, the name cut so the whole fits 255 chars."""
    tag = opportunity_tag(engagement.opportunity_id)
    name = engagement.opportunity_name.strip()[: TITLE_MAX - len(tag) - 1].rstrip()
    return f"{name} {tag}" if name else tag


def title_matches(title: str, opportunity_id: str) -> bool:
    """Whether a workspace title is the one q2c gives this opportunity (search is 'contains')."""
    return title.rstrip().endswith(opportunity_tag(opportunity_id))


def to_cents(amount: Decimal, currency: str) -> int:
    """Kantata's `*_in_cents`: the amount in the currency's minor units, rounded half-up."""
    return int(round_money(amount, currency).scaleb(MINOR_UNITS[currency]))


def workspace_payload(engagement: Engagement, template: ProjectTemplate, *, erp_project_id: str) -> dict[str, Any]:
    customer = engagement.customer.legal_name or engagement.customer.name
    description = (
        f"{engagement.opportunity_name} for {customer}. "
        f"Service line: {template.service_line} (template {template.name}). "
        f"Billing: {engagement.billing_model.value.replace('_', ' ')}. "
        f"CRM opportunity {engagement.opportunity_id}; ERP project {erp_project_id}."
    )
    body: dict[str, Any] = {
        "title": workspace_title(engagement),
        "description": description,
        "budget_in_cents": to_cents(engagement.contract_value.amount, engagement.currency),
        "currency": engagement.currency,
        "creator_role": "maven",
    }
    if engagement.start_date:
        body["start_date"] = engagement.start_date.isoformat()
    if engagement.end_date:
        body["due_date"] = engagement.end_date.isoformat()
    return {"workspace": body}


def story_payload(workspace_id: str, task: Task) -> dict[str, Any]:
    return {
        "story": {"title": task.name, "workspace_id": workspace_id, "story_type": "task", "billable": task.billable}
    }


def hours_json(hours: Decimal) -> int | float:
    """Hours as a JSON number (hours are quantities, not money)."""
    return int(hours) if hours == hours.to_integral_value() else float(hours)


def resource_request_payload(
    workspace_id: str, role_id: str, demand: ResourceDemand, engagement: Engagement
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "workspace_id": workspace_id,
        "role_id": role_id,
        "hours": hours_json(demand.hours),
        "status": "open",
    }
    if engagement.start_date:
        body["start_date"] = engagement.start_date.isoformat()
    if engagement.end_date:
        body["end_date"] = engagement.end_date.isoformat()
    return {"resource_request": body}


def external_reference_payload(workspace_id: str, service_model: str, ref: str) -> dict[str, Any]:
    return reference_payload(WORKSPACE_SUBJECT, workspace_id, service_model, ref)


def wanted_references(engagement: Engagement, erp_project_id: str) -> dict[str, str]:
    """service_model -> service_model_ref that a provisioned workspace must carry."""
    return {OPPORTUNITY_MODEL: engagement.opportunity_id, ERP_PROJECT_MODEL: erp_project_id}


def resource_demand(engagement: Engagement) -> list[ResourceDemand]:
    """One demand per rate-card role (first-seen order), estimated hours summed across rows.

    A rate card may list a role twice (a rate change with `effective_from`); staffing asks
    for the role once with all its hours.
    """
    totals: dict[str, Decimal] = {}
    for entry in engagement.rate_card:
        totals[entry.role] = totals.get(entry.role, Decimal("0")) + entry.estimated_hours
    return [ResourceDemand(role=role, hours=hours) for role, hours in totals.items()]


def template_from_kantata(obj: dict[str, Any]) -> ProjectTemplate:
    stories = sorted(obj.get("stories") or [], key=lambda s: s.get("position") or 0)
    return ProjectTemplate(
        template_id=str(obj["id"]),
        service_line=obj.get("service_line") or _custom_value(obj, "Service Line") or "",
        name=obj.get("title") or "",
        tasks=[Task(name=s["title"], billable=bool(s.get("billable", True))) for s in stories],
    )


def _custom_value(obj: dict[str, Any], name: str) -> str | None:
    for cfv in obj.get("custom_field_values") or []:
        if cfv.get("name") == name:
            return cfv.get("value")
    return None


def normalize(name: str) -> str:
    return " ".join(name.split()).casefold()


def roles_by_name(objects: Iterable[dict[str, Any]]) -> dict[str, str]:
    return {o["name"]: str(o["id"]) for o in objects}


def find_role_id(roles: dict[str, str], role: str) -> str | None:
    """A rate-card role name matched to a Kantata role, ignoring case and extra spaces."""
    wanted = normalize(role)
    for name, role_id in roles.items():
        if normalize(name) == wanted:
            return role_id
    return None


# --- time --------------------------------------------------------------------------------


def project_roles(resources: Iterable[dict[str, Any]]) -> dict[str, set[str]]:
    """user id -> the role ids the user holds on the workspace (named `workspace_resources`)."""
    roles: dict[str, set[str]] = {}
    for r in resources:
        if r.get("user_id") and r.get("role_id"):
            roles.setdefault(str(r["user_id"]), set()).add(str(r["role_id"]))
    return roles


def entry_role_id(obj: dict[str, Any], project_roles_by_user: dict[str, set[str]]) -> tuple[str | None, str | None]:
    """(role id, None) for the role a Kantata time entry was booked under, or (None, why not).

    The entry's own `role_id` is the project role Kantata fixed on it when the time was booked.
    Without one, the only role that still describes that work is the user's project role on
    the workspace: their single workspace resource there. The user's account role is never
    used: it is what they are now, not what they were booked as (priced by it, time booked as
    a Consultant by someone promoted since would bill at the new rate)."""
    if obj.get("role_id"):
        return str(obj["role_id"]), None
    user_id = str(obj.get("user_id"))
    held = sorted(project_roles_by_user.get(user_id, set()), key=int)
    if len(held) == 1:
        return held[0], None
    workspace = obj.get("workspace_id")
    if not held:
        return None, (f"the PSA entry carries no role and user {user_id} holds no role on workspace {workspace}")
    return None, (
        f"the PSA entry carries no role and user {user_id} holds several roles on workspace "
        f"{workspace} (role ids {', '.join(held)})"
    )


def time_entry_from_kantata(
    obj: dict[str, Any],
    users: dict[str, dict[str, Any]],
    role_names: dict[str, str],
    project_roles_by_user: dict[str, set[str]] | None = None,
) -> TimeEntry:
    """A Kantata time entry as the canonical TimeEntry.

    `users` is the `users` key of an `include=user` answer (id -> user); `role_names` maps
    role id -> name; `project_roles_by_user` is `project_roles` of the workspace's resources.
    The role is the one the entry was booked under (`entry_role_id`); when it cannot be told,
    `role` is "" and `role_issue` says why, so the entry is parked rather than priced.
    """
    user = users.get(str(obj.get("user_id")), {})
    role_id, issue = entry_role_id(obj, project_roles_by_user or {})
    role = role_names.get(role_id, "") if role_id else ""
    if role_id and not role:
        issue = f"role {role_id} of the PSA entry is not a known Kantata role"
    return TimeEntry(
        psa_id=str(obj["id"]),
        person=str(obj["user_id"]),
        person_name=user.get("full_name"),
        role=role,
        role_issue=issue,
        task_id=str(obj.get("story_id") or ""),
        workspace_id=str(obj.get("workspace_id") or "") or None,
        date_performed=obj["date_performed"],
        minutes=int(obj["time_in_minutes"]),
        billable=bool(obj.get("billable")),
        approval=ApprovalState.APPROVED
        if obj.get("approved")
        else (ApprovalState.SUBMITTED if obj.get("timesheet_submission_id") else ApprovalState.DRAFT),
        notes=obj.get("notes") or None,
    )


def reference_payload(subject_type: str, subject_id: str, model: str, ref: str) -> dict[str, Any]:
    """A new q2c external reference: `subject_type` `subject_id` posted as `model` `ref`."""
    return {
        "external_reference": {
            "subject_type": subject_type,
            "subject_id": subject_id,
            "service_name": SERVICE_NAME,
            "service_model": model,
            "service_model_ref": ref,
            "status": "synced",
        }
    }


def task_from_story(obj: dict[str, Any]) -> Task:
    return Task(name=obj["title"], billable=bool(obj.get("billable", True)), psa_story_id=str(obj["id"]))


def workspace_closed(obj: dict[str, Any]) -> bool:
    """Whether a Kantata workspace is closed: archived, or its status message says so."""
    status = obj.get("status")
    message = status.get("message") if isinstance(status, dict) else status
    return bool(obj.get("archived")) or str(message or "").strip().casefold() in CLOSED_STATUSES
