"""`/api/v1/expenses.json` of the Kantata sandbox, and the sandbox-only expense generator.

`GET /expenses.json` as the Kantata API reference documents it ("Fetching a list of
Expenses", developer.kantata.com/tag/Expenses): the envelope of every list (`count`, `meta`,
`results` of `{"key": "expenses", "id"}`, the objects under `expenses` by id), sorted by
`date` descending unless `order` says otherwise. Filters, combined with AND:
- `workspace_id`, `user_id`, `only=1,2,3` (an id that cannot exist matches nothing);
- `approved`: Kantata documents it as a boolean ("expenses that are on approved expense
  reports"): `true`/`1` lists approved expenses, `false`/`0` the others; any other value is
  a 400 naming the parameter (the time-entry filter, by contrast, ignores its value);
- `date_expensed_between=YYYY-MM-DD:YYYY-MM-DD` (either end may be left open);
- `updated_after` / `created_after` (ISO 8601, strictly after);
- `order=<field>:<asc|desc>` for `date`, `created_at`, `updated_at`, `id` (the id breaks ties
  in the same direction, so paging is a total order); an unknown field falls back to the
  default (`date:desc`);
- `include=external_references`: the references under their own top-level key and the id
  list `external_reference_ids` on each expense (an integration's "posted" marking, as for
  time entries: subject_type "Expense");
- paging as every list (`page`/`per_page`, 20 by default, at most 200; `limit`+`offset`).

Writes: `POST /expenses.json {"expense": {workspace_id, user_id, date, category,
amount_in_cents, currency?, is_billable?, reimbursable?, notes?, vendor?, story_id?,
receipt_id? | has_receipt?, approved?}}` and `PUT /expenses/{id}.json` (same fields), each
answering the envelope with the expense; `DELETE /expenses/{id}.json`. Every problem is a
422 naming its field in Kantata's error shape; never a 500. An approved expense is locked
(422 "Expense is locked") except for `{"approved": false}`, which withdraws the approval
(Kantata: an approved expense report submission can be cancelled) and moves `updated_at`.
`approved` on a write stands in for Kantata's expense report submission being approved; a
closed workspace takes no new expenses.

Sandbox only: `POST /__sandbox/expenses/generate {"workspace_id", "start_date",
"end_date", "seed": 0, "per_month": 2, "approve": true, "foreign_currency": "EUR"}` books a
few realistic expenses for the demo (see `generate`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from sandboxes.common.faults import ADMIN_PREFIX
from sandboxes.psa import listing, render
from sandboxes.psa import timekeeping as tk
from sandboxes.psa import validation as v
from sandboxes.psa.models import Expense, ResourceRequest, Story, User, Workspace, utcnow
from sandboxes.psa.render import MAX_ID, KantataError, error
from sandboxes.psa.routes import get_or_404, int_or_none, only_ids
from sandboxes.psa.seed import TOKEN_USER_ID

EXPENSE_SUBJECT = "Expense"
MAX_TEXT = 2000
_CURRENCY = re.compile(r"^[A-Z]{3}$")
RECEIPT_ID_BASE = 800000  # a minted receipt attachment's id: base + the expense id

SORT_FIELDS = {
    "date": Expense.date,
    "created_at": Expense.created_at,
    "updated_at": Expense.updated_at,
    "id": Expense.id,
}
DEFAULT_ORDER = ("date", "desc")


def _flag(value: str | None, name: str) -> bool | None:
    if value is None:
        return None
    text = value.strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise error(400, "system", f"{name} must be true or false", name)


def expense_conditions(params: Any) -> list[Any]:
    conds: list[Any] = []
    for name, column in (("workspace_id", Expense.workspace_id), ("user_id", Expense.user_id)):
        value = int_or_none(params.get(name), name)
        if value is not None:
            conds.append(column == value)
    ids = only_ids(params.get("only"))
    if ids is not None:
        conds.append(col(Expense.id).in_(ids))
    approved = _flag(params.get("approved"), "approved")
    if approved is not None:
        conds.append(Expense.approved == approved)
    conds += listing.range_and_changed(
        params, "date_expensed_between", Expense.date, Expense.updated_at, Expense.created_at
    )
    return conds


def expense_order(value: str | None) -> list[Any]:
    return listing.order_by(value, SORT_FIELDS, DEFAULT_ORDER, Expense.id)


def list_expenses(s: Session, params: Any) -> dict[str, Any]:
    conds = expense_conditions(params)
    total, rows, paging = listing.page(s, Expense, conds, expense_order(params.get("order")), params)
    objects = [render.expense(r) for r in rows]
    included: dict[str, list[dict[str, Any]]] = {}
    names = {n.strip() for n in (params.get("include") or "").split(",")}
    if "external_references" in names:
        listing.include_external_references(s, EXPENSE_SUBJECT, rows, objects, included)
    return render.envelope(
        "expenses", objects, total=total, page=paging.page, per_page=paging.per_page, included=included
    )


# --- validation ---------------------------------------------------------------------------


def _text(problems: v.Problems, data: dict[str, Any], field: str, label: str, *, required: bool = False) -> str | None:
    if field not in data:
        if required:
            problems.add(field, f"{label} can't be blank")
        return None
    value = data[field]
    if required and v.blank(value):
        problems.add(field, f"{label} can't be blank")
        return None
    text = v.text_or_none(value) or ""
    if "\x00" in text:
        problems.add(field, f"{label} is invalid")
        return None
    if len(text) > MAX_TEXT:
        problems.add(field, f"{label} is too long (maximum is {MAX_TEXT} characters)")
        return None
    return text.strip() if required else text


def _cents(problems: v.Problems, data: dict[str, Any], *, required: bool) -> int | None:
    if "amount_in_cents" not in data or data["amount_in_cents"] in (None, ""):
        if required:
            problems.add("amount_in_cents", "Amount in cents can't be blank")
        return None
    raw = data["amount_in_cents"]
    if isinstance(raw, bool) or not isinstance(raw, (int, str)) or not str(raw).strip().isdigit():
        problems.add("amount_in_cents", "Amount in cents must be a whole number of cents greater than 0")
        return None
    value = int(str(raw).strip())
    if not 1 <= value <= MAX_ID:
        problems.add("amount_in_cents", "Amount in cents must be a whole number of cents greater than 0")
        return None
    return value


def _currency(problems: v.Problems, data: dict[str, Any]) -> str | None:
    value = data.get("currency")
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not _CURRENCY.match(value):
        problems.add("currency", "Currency is not a valid ISO 4217 code")
        return None
    return value


def _receipt(problems: v.Problems, data: dict[str, Any]) -> tuple[bool, int | None] | None:
    """(given, receipt id): `receipt_id` (an attachment id or null) or `has_receipt` (true
    mints an attachment id, false removes the receipt); None when neither is given."""
    if "receipt_id" in data:
        raw = data["receipt_id"]
        if v.blank(raw):
            return True, None
        number = v.check_int_id(problems, data, "receipt_id", "Receipt")
        return (True, number) if number is not None else None
    if "has_receipt" in data:
        flag = tk.flag(problems, data, "has_receipt", "Has receipt")
        if flag is None:
            return None
        return True, (-1 if flag else None)  # -1: mint one once the expense has its id
    return None


def _apply(s: Session, row: Expense, data: dict[str, Any], problems: v.Problems, *, creating: bool) -> None:
    """Validate the payload's fields and set them on `row` (problems added, row untouched for
    a field with a problem)."""
    if creating or "date" in data:
        if v.blank(data.get("date")):
            problems.add("date", "Date can't be blank")
        else:
            day = v.check_date(problems, data, "date", "Date")
            if day:
                row.date = day
    if creating or "category" in data:
        category = _text(problems, data, "category", "Category", required=True)
        if category:
            row.category = category[:255]
    cents = _cents(problems, data, required=creating)
    if cents is not None:
        row.amount_in_cents = cents
    currency = _currency(problems, data)
    if currency:
        row.currency = currency
    for field, label in (("notes", "Notes"), ("vendor", "Vendor")):
        text = _text(problems, data, field, label)
        if text is not None:
            setattr(row, field, text)
    billable_field = "is_billable" if "is_billable" in data else "billable"
    billable = tk.flag(problems, data, billable_field, "Billable")
    if billable is not None:
        row.is_billable = billable
    reimbursable = tk.flag(problems, data, "reimbursable", "Reimbursable")
    if reimbursable is not None:
        row.reimbursable = reimbursable
    if not v.blank(data.get("story_id")):
        sid = v.check_int_id(problems, data, "story_id", "Story")
        story = s.get(Story, sid) if sid is not None else None
        if sid is not None and story is None:
            problems.add("story_id", f"Story {sid} does not exist")
        elif story is not None and story.workspace_id != row.workspace_id:
            problems.add("story_id", f"Story {sid} does not belong to workspace {row.workspace_id}")
        elif story is not None:
            row.story_id = story.id
    elif "story_id" in data:
        row.story_id = None
    receipt = _receipt(problems, data)
    if receipt is not None:
        row.receipt_id = receipt[1]
    approved = tk.flag(problems, data, "approved", "Approved")
    if approved is not None:
        row.approved = approved


def new_expense(s: Session, data: dict[str, Any], problems: v.Problems) -> Expense | None:
    before = len(problems.items)
    wid, ws = tk.open_workspace(problems, s, data, "expenses can no longer be added to it")
    uid = v.check_int_id(problems, data, "user_id", "User")
    if uid is not None and s.get(User, uid) is None:
        problems.add("user_id", f"User {uid} does not exist")
    row = Expense(
        workspace_id=wid or 0,
        user_id=uid or 0,
        date="",
        category="",
        amount_in_cents=0,
        currency=ws.currency if ws is not None else "USD",
    )
    _apply(s, row, data, problems, creating=True)
    return None if len(problems.items) > before else row


def _mint_receipt(s: Session, row: Expense) -> None:
    if row.receipt_id == -1:
        s.flush()
        row.receipt_id = RECEIPT_ID_BASE + int(row.id or 0)


def expense_router(engine: Engine, require_auth: Callable[[Request], None]) -> APIRouter:
    router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_auth)])

    def session() -> Session:
        return Session(engine, expire_on_commit=False)

    @router.get("/expenses.json")
    def get_expenses(request: Request) -> dict:
        with session() as s:
            return list_expenses(s, request.query_params)

    @router.get("/expenses/{expense_id}.json")
    def show_expense(expense_id: str) -> dict:
        with session() as s:
            return render.single("expenses", render.expense(get_or_404(s, Expense, expense_id, "Expense")))

    @router.post("/expenses.json")
    def create_expense(payload: Any = Body(None)) -> dict:
        data = v.root(payload, "expense")
        problems = v.Problems()
        with session() as s:
            row = new_expense(s, data, problems)
            problems.raise_if_any()
            assert row is not None
            s.add(row)
            _mint_receipt(s, row)
            s.commit()
            s.refresh(row)
            return render.single("expenses", render.expense(row))

    @router.put("/expenses/{expense_id}.json")
    def update_expense(expense_id: str, payload: Any = Body(None)) -> dict:
        data = v.root(payload, "expense")
        with session() as s:
            row = get_or_404(s, Expense, expense_id, "Expense")
            if row.approved and not (set(data) == {"approved"} and data["approved"] in (False, "false", 0, "0")):
                raise error(422, "validation", "Expense is locked: it is on an approved expense report", "approved")
            ws = s.get(Workspace, row.workspace_id)
            problems = v.Problems()
            if ws is not None and tk.is_closed(ws):
                problems.add("workspace_id", f"Workspace {ws.id} is closed: its expenses can no longer change")
                problems.raise_if_any()
            _apply(s, row, data, problems, creating=False)
            problems.raise_if_any()
            _mint_receipt(s, row)
            row.updated_at = utcnow()
            s.add(row)
            s.commit()
            s.refresh(row)
            return render.single("expenses", render.expense(row))

    @router.delete("/expenses/{expense_id}.json")
    def delete_expense(expense_id: str) -> dict:
        with session() as s:
            row = get_or_404(s, Expense, expense_id, "Expense")
            if row.approved:
                raise error(422, "validation", "Expense is locked: it is on an approved expense report", "approved")
            s.delete(row)
            s.commit()
            return {}

    return router


# --- sandbox-only generator -----------------------------------------------------------------

# (category, vendor, notes, low cents, high cents, billable)
KINDS = (
    ("Airfare", "Delta Air Lines", "Flight to the client site", 28000, 72000, True),
    ("Lodging", "Marriott", "Hotel near the client office", 15000, 42000, True),
    ("Meals", "Client canteen", "Working lunch with the client team", 1800, 9500, True),
    ("Ground Transportation", "Uber", "Taxi from the airport", 2500, 8000, True),
    ("Subcontractor", "Datawise GmbH", "Subcontracted data migration support", 90000, 240000, True),
    ("Software", "JetBrains", "Internal tooling licence", 4900, 24900, False),
)


def _first_weekdays(start: date, end: date) -> list[date]:
    """The 10th of each month in the range (or the range's first day when later), on a weekday."""
    out: list[date] = []
    cursor = start.replace(day=1)
    while cursor <= end:
        day = max(start, cursor.replace(day=10))
        while day.weekday() >= 5:
            day += timedelta(days=1)
        if day <= end:
            out.append(day)
        cursor = (cursor.replace(day=28) + timedelta(days=4)).replace(day=1)
    return out


def generate(s: Session, data: dict[str, Any]) -> dict[str, Any]:
    """A few expenses per month of the range: billable travel on the workspace's staff (users of
    its resource requests' roles, else the token's user), one non-billable software licence a
    month, and in the first month one expense in `foreign_currency` (default EUR) when the
    workspace's currency is another one (the demo's foreign-currency expense). Every expense
    carries a receipt; approved when `approve`. The same seed gives the same expenses; it
    appends (calling it twice books them twice)."""
    wid = data.get("workspace_id")
    ws = s.get(Workspace, int(wid)) if str(wid or "").isdigit() and int(str(wid)) <= MAX_ID else None
    if ws is None:
        raise error(422, "validation", f"Workspace {wid} does not exist", "workspace_id")
    if tk.is_closed(ws):
        raise error(422, "validation", f"Workspace {ws.id} is closed", "workspace_id")
    problems = v.Problems()
    for field, label in (("start_date", "Start date"), ("end_date", "End date")):
        if v.blank(data.get(field)):
            problems.add(field, f"{label} can't be blank")
    start = v.check_date(problems, data, "start_date", "Start date")
    end = v.check_date(problems, data, "end_date", "End date")
    v.check_date_order(problems, start, end, "end_date", "End date")
    per_month = data.get("per_month", 2)
    if isinstance(per_month, bool) or not isinstance(per_month, int) or not 0 <= per_month <= 10:
        problems.add("per_month", "Per month must be a whole number from 0 to 10")
    foreign = data.get("foreign_currency", "EUR")
    if foreign is not None and (not isinstance(foreign, str) or not _CURRENCY.match(foreign)):
        problems.add("foreign_currency", "Foreign currency is not a valid ISO 4217 code")
    problems.raise_if_any()
    assert start and end
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    if (last - first).days > 731:
        raise error(422, "validation", "The range may span at most 731 days", "end_date")
    rng = random.Random(data.get("seed", 0))
    requests = select(ResourceRequest).where(ResourceRequest.workspace_id == ws.id).order_by(col(ResourceRequest.id))
    roles = dict.fromkeys(r.role_id for r in s.exec(requests))
    users = [u for rid in roles for u in s.exec(select(User).where(User.role_id == rid).order_by(col(User.id)))]
    if not users:
        users = [u for u in [s.get(User, TOKEN_USER_ID)] if u is not None]
    approve = bool(data.get("approve", True))
    made: list[Expense] = []
    for month, day in enumerate(_first_weekdays(first, last)):
        kinds = [rng.choice(KINDS[:5]) for _ in range(per_month)] + [KINDS[5]]
        for i, (category, vendor, notes, low, high, billable) in enumerate(kinds):
            currency = ws.currency
            if month == 0 and i == 0 and foreign and foreign != ws.currency:
                currency = foreign
            made.append(
                Expense(
                    workspace_id=ws.id,
                    user_id=rng.choice(users).id,
                    date=min(last, day + timedelta(days=i)).isoformat(),
                    category=category,
                    vendor=vendor,
                    notes=notes,
                    amount_in_cents=rng.randrange(low, high + 1, 5),
                    currency=currency,
                    is_billable=billable,
                    approved=approve,
                    receipt_id=-1,
                )
            )
    s.add_all(made)
    s.flush()
    for e in made:
        e.receipt_id = RECEIPT_ID_BASE + int(e.id or 0)
        s.add(e)
    return {
        "workspace_id": str(ws.id),
        "expense_ids": [str(e.id) for e in made],
        "count": len(made),
        "billable_count": sum(1 for e in made if e.is_billable),
        "currencies": sorted({e.currency for e in made}),
        "approved": approve,
    }


def expense_sandbox_router(engine: Engine) -> APIRouter:
    router = APIRouter(prefix=f"{ADMIN_PREFIX}/expenses", tags=["sandbox-expenses"])

    @router.post("/generate")
    def generate_expenses(payload: Any = Body(None)) -> dict:
        if not isinstance(payload, dict):
            raise KantataError(400, [{"type": "system", "message": "a JSON object body is required"}])
        with Session(engine, expire_on_commit=False) as s:
            result = generate(s, payload)
            s.commit()
            return result

    return router
