"""What the Kantata sandbox's time-entry and expense lists share: the date-range and
"changed after" filters, `order=<field>:<asc|desc>` with the id as a tie-breaker, one page of
rows with the total, and `include=external_references`. Each list keeps its own filters and
its own documented quirks (e.g. what `approved` means) in its routes module."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlmodel import Session, col, func, select

from sandboxes.psa import render
from sandboxes.psa.models import ExternalReference
from sandboxes.psa.render import error


def between(value: str, name: str) -> tuple[str | None, str | None]:
    """`YYYY-MM-DD:YYYY-MM-DD` (Kantata's colon range; either end may be left open), as ISO
    dates; anything else is a 400 naming the parameter."""
    start, sep, end = value.partition(":")
    try:
        if not sep:
            raise ValueError
        return (
            date.fromisoformat(start).isoformat() if start else None,
            date.fromisoformat(end).isoformat() if end else None,
        )
    except ValueError:
        raise error(400, "system", f"{name} must be YYYY-MM-DD:YYYY-MM-DD") from None


def after(value: str, name: str) -> str:
    """An ISO 8601 datetime (a naive one is UTC; a `+` the query string turned into a space is
    read back), as the stored UTC form, to compare strictly after."""
    try:
        moment = datetime.fromisoformat(value.strip().replace(" ", "+"))
    except ValueError:
        raise error(400, "system", f"{name} must be an ISO 8601 datetime") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def range_and_changed(params: Any, range_param: str, day: Any, updated_at: Any, created_at: Any) -> list[Any]:
    """The conditions of the date range (`range_param` on the `day` column) and of
    `updated_after` / `created_after`."""
    conds: list[Any] = []
    if params.get(range_param):
        start, end = between(params[range_param], range_param)
        if start:
            conds.append(day >= start)
        if end:
            conds.append(day <= end)
    if params.get("updated_after"):
        conds.append(updated_at > after(params["updated_after"], "updated_after"))
    if params.get("created_after"):
        conds.append(created_at > after(params["created_after"], "created_after"))
    return conds


def order_by(value: str | None, sort_fields: dict[str, Any], default: tuple[str, str], id_column: Any) -> list[Any]:
    """`order=field:direction`, the id after it in the same direction (a total order, so pages
    never overlap or leave gaps while the list is unchanged); an unknown field falls back to
    the default, an unknown direction to ascending."""
    field, _, direction = (value or "").strip().partition(":")
    if field not in sort_fields:
        field, direction = default
    descending = direction.strip().lower() == "desc"
    columns = [col(sort_fields[field])] + ([] if field == "id" else [col(id_column)])
    return [c.desc() if descending else c.asc() for c in columns]


def page(s: Session, model: type, conds: list[Any], order: list[Any], params: Any) -> tuple[int, list[Any], Any]:
    """(total, the rows of the requested page, the paging): no row query past the end."""
    paging = render.paging(params)
    total = s.exec(select(func.count()).select_from(model).where(*conds)).one()
    rows = (
        s.exec(select(model).where(*conds).order_by(*order).offset(paging.offset).limit(paging.per_page)).all()
        if paging.offset < total
        else []
    )
    return total, list(rows), paging


def include_external_references(
    s: Session, subject_type: str, rows: list[Any], objects: list[dict[str, Any]], included: dict[str, list]
) -> None:
    """`include=external_references`: the references of these rows under their own top-level
    key, and the id list `external_reference_ids` on each object."""
    ids = [r.id for r in rows]
    refs = (
        s.exec(
            select(ExternalReference)
            .where(ExternalReference.subject_type == subject_type, col(ExternalReference.subject_id).in_(ids))
            .order_by(col(ExternalReference.id))
        ).all()
        if ids
        else []
    )
    by_subject: dict[str, list[str]] = {}
    for ref in refs:
        by_subject.setdefault(str(ref.subject_id), []).append(str(ref.id))
    for obj in objects:
        obj["external_reference_ids"] = by_subject.get(obj["id"], [])
    included["external_references"] = [render.external_reference(r) for r in refs]
