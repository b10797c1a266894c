"""Kantata-style validation of write payloads: every problem at once, each naming its field.

Messages follow Rails conventions as Kantata renders them ("Title can't be blank").
Handlers call these and raise a 422 `KantataError` when the list is not empty.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from sandboxes.psa.render import MAX_ID, KantataError, error

STORY_TYPES = ("task", "deliverable", "milestone", "issue")
REQUEST_STATUSES = ("open", "filled", "cancelled", "closed")
SUBJECT_TYPES = ("Workspace", "Story", "User", "ResourceRequest", "TimeEntry", "TimesheetSubmission", "Expense")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def root(payload: Any, key: str) -> dict[str, Any]:
    """The object under its root key (`{"workspace": {...}}`), else Rails' 400."""
    if not isinstance(payload, dict) or not isinstance(payload.get(key), dict):
        raise error(400, "system", f"param is missing or the value is empty: {key}")
    return payload[key]


class Problems:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append({"type": "validation", "message": message, "field": field})

    def raise_if_any(self) -> None:
        if self.items:
            raise KantataError(422, self.items)


def text_or_none(value: Any) -> str | None:
    """A free-text field as stored: text as given, a number or flag as its text, null as null;
    an object or list (which no text column can hold) as its JSON text, never a database error."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value, sort_keys=True)
    return str(value).lower() if isinstance(value, bool) else str(value)


def blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def check_date(problems: Problems, data: dict[str, Any], field: str, label: str) -> str | None:
    value = data.get(field)
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        problems.add(field, f"{label} is not a valid date")
        return None


def check_date_order(problems: Problems, start: str | None, end: str | None, field: str, label: str) -> None:
    if start and end and end < start:
        problems.add(field, f"{label} must be on or after the start date")


def check_int_id(problems: Problems, data: dict[str, Any], field: str, label: str) -> int | None:
    value = data.get(field)
    if blank(value):
        problems.add(field, f"{label} can't be blank")
        return None
    if isinstance(value, bool):
        problems.add(field, f"{label} is invalid")
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        problems.add(field, f"{label} is invalid")
        return None
    if not 1 <= number <= MAX_ID:
        # a Kantata id is a 64-bit integer: anything beyond names no object
        problems.add(field, f"{label} {value} does not exist")
        return None
    return number


def check_cents(problems: Problems, data: dict[str, Any], field: str) -> int | None:
    value = data.get(field)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
        problems.add(field, "Budget in cents must be a whole number of cents, 0 or more")
        return None
    if int(value) > MAX_ID:
        problems.add(field, "Budget in cents is too large")
        return None
    return int(value)


def check_currency(problems: Problems, data: dict[str, Any]) -> str | None:
    value = data.get("currency")
    if value is None:
        return None
    if not isinstance(value, str) or not _CURRENCY.match(value):
        problems.add("currency", "Currency is not a valid ISO 4217 code")
        return None
    return value


def check_hours(problems: Problems, data: dict[str, Any]) -> str | None:
    value = data.get("hours")
    if value is None or isinstance(value, bool) or value == "":
        problems.add("hours", "Hours can't be blank")
        return None
    try:
        hours = Decimal(str(value))
    except InvalidOperation:
        problems.add("hours", "Hours is not a number")
        return None
    if not hours.is_finite() or hours < 0:
        problems.add("hours", "Hours must be greater than or equal to 0")
        return None
    return str(hours)


def check_choice(
    problems: Problems, data: dict[str, Any], field: str, label: str, choices: tuple[str, ...], default: str
) -> str:
    value = data.get(field, default)
    if value not in choices:
        problems.add(field, f"{label} is not included in the list")
        return default
    return value
