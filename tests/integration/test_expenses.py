"""Expenses end to end below the workflow, over real HTTP and a real ledger:

- the Kantata sandbox's `expenses.json` (filters, paging, ordering, 4xx on bad input, the
  approval lock, external references) and its demo generator;
- the NetSuite sandbox's `expenseReport` (an upsert by external ID twice is one record, the
  ERP's own conversion check), `currencyRate` look-ups, invoices billing expenses in `expCost`
  (billed once, refused a second time, unbilled listing);
- the ledger's posted expenses on SQLite and PostgreSQL;
- `ExpenseActivities.post_approved_expenses` run as an activity against both sandboxes:
  posted once, a EUR expense converted at the ERP's recorded rate, a parked expense in the
  shared exception queue, replayed once its cause is fixed; then the invoice lines.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import httpx
import pytest
from temporalio.testing import ActivityEnvironment

from q2c.delivery.expenses import (
    ExpenseActivities,
    PostExpensesInput,
    mark_expenses_invoiced,
    unbilled_expense_lines,
)
from q2c.domain.customer import Address, Customer
from q2c.domain.delivery import Invoice
from q2c.domain.engagement import BillingModel, Engagement
from q2c.domain.expenses import Expense, ExpensePolicy, PostedExpense, convert, expense_invoice_lines
from q2c.domain.money import Money
from q2c.domain.project import Subsidiary
from q2c.ledger.expenses import PostedExpenses
from q2c.vendors.kantata.client import KantataClient
from q2c.vendors.kantata.expenses import KantataExpenses
from q2c.vendors.netsuite.client import NetSuiteClient
from q2c.vendors.netsuite.expenses import NetSuiteExpenses, expense_report_external_id
from q2c.vendors.netsuite.finance_mapping import invoice_payload
from q2c.vendors.netsuite.mapping import dumps_exact
from stack.demo_env import DEMO_PSA_TOKEN
from tests.fixtures.erp import erp_settings
from tests.fixtures.psa import psa_settings

AUTH = {"Authorization": f"Bearer {DEMO_PSA_TOKEN}"}
US = Subsidiary(subsidiary_id="1", name="Q2C Consulting Inc.", region="NA", country="US", currency="USD")
R = "/services/rest/record/v1"


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --- PSA sandbox ------------------------------------------------------------------------------


@pytest.fixture
def api(psa_sandbox):
    with httpx.Client(base_url=f"{psa_sandbox.url}/api/v1", headers=AUTH, timeout=10) as client:
        yield client


def first(body: dict) -> dict:
    ref = body["results"][0]
    return body[ref["key"]][ref["id"]]


def workspace(api: httpx.Client, currency: str = "USD") -> tuple[str, str]:
    """A fresh workspace with one billable story; (workspace id, story id)."""
    ws = first(
        api.post("/workspaces.json", json={"workspace": {"title": uid("Expenses"), "currency": currency}}).json()
    )
    story = first(api.post("/stories.json", json={"story": {"workspace_id": ws["id"], "title": "Delivery"}}).json())
    return ws["id"], story["id"]


def add_expense(api: httpx.Client, ws: str, **fields) -> dict:
    body = {
        "workspace_id": ws,
        "user_id": "202",
        "date": "2027-01-12",
        "category": "Airfare",
        "amount_in_cents": 41235,
        "has_receipt": True,
        "approved": True,
        **fields,
    }
    r = api.post("/expenses.json", json={"expense": body})
    assert r.status_code == 200, r.text
    return first(r.json())


def ids(body: dict) -> list[str]:
    return [r["id"] for r in body["results"]]


def test_psa_expenses_in_kantatas_shape_and_filters(api):
    ws, story = workspace(api)
    a = add_expense(api, ws, notes="Flight to the client", vendor="Delta Air Lines", story_id=story)
    b = add_expense(api, ws, date="2027-01-14", category="Lodging", amount_in_cents=12345, currency="EUR")
    c = add_expense(api, ws, date="2027-01-20", category="Meals", amount_in_cents=1999, approved=False)
    body = api.get("/expenses.json", params={"workspace_id": ws}).json()
    assert body["count"] == 3 and body["meta"]["page_count"] == 1
    assert ids(body) == [c["id"], b["id"], a["id"]]  # Kantata's default: by date, newest first
    assert all(r["key"] == "expenses" for r in body["results"])
    obj = body["expenses"][a["id"]]
    assert {k: obj[k] for k in ("workspace_id", "user_id", "story_id", "date", "category", "amount_in_cents")} == {
        "workspace_id": ws,
        "user_id": "202",
        "story_id": story,
        "date": "2027-01-12",
        "category": "Airfare",
        "amount_in_cents": 41235,
    }
    assert (obj["currency"], obj["currency_base_unit"], obj["is_billable"], obj["is_invoiced"]) == (
        "USD",
        100,
        True,
        False,
    )
    assert obj["receipt_id"] is not None and obj["vendor"] == "Delta Air Lines" and obj["approved"] is True
    assert body["expenses"][b["id"]]["currency"] == "EUR"

    def listed(**params) -> list[str]:
        r = api.get("/expenses.json", params={"workspace_id": ws, **params})
        assert r.status_code == 200, r.text
        return ids(r.json())

    assert listed(approved="true") == [b["id"], a["id"]]
    assert listed(approved="false") == [c["id"]]
    assert listed(only=f"{a['id']},{c['id']},99999999999999999999") == [c["id"], a["id"]]
    assert listed(date_expensed_between="2027-01-13:2027-01-31") == [c["id"], b["id"]]
    assert listed(order="id:asc") == [a["id"], b["id"], c["id"]]
    assert listed(updated_after=b["updated_at"]) == []
    assert listed(updated_after="2020-01-01T00:00:00Z", order="updated_at:asc") == [a["id"], b["id"], c["id"]]
    page1 = api.get("/expenses.json", params={"workspace_id": ws, "per_page": 2, "order": "id:asc"}).json()
    page2 = api.get("/expenses.json", params={"workspace_id": ws, "per_page": 2, "page": 2, "order": "id:asc"}).json()
    assert (ids(page1), ids(page2), page1["meta"]["page_count"]) == ([a["id"], b["id"]], [c["id"]], 2)
    assert api.get("/expenses.json", params={"workspace_id": ws, "per_page": 5000}).json()["meta"]["page_size"] == 200


@pytest.mark.parametrize(
    "params",
    [
        {"approved": "maybe"},
        {"workspace_id": "abc"},
        {"workspace_id": "99999999999999999999999"},
        {"updated_after": "yesterday"},
        {"date_expensed_between": "2027-01-01"},
    ],
)
def test_psa_expense_list_refuses_bad_filters_with_kantatas_error(api, params):
    r = api.get("/expenses.json", params=params)
    assert r.status_code == 400 and r.json()["errors"][0]["type"] == "system"


def test_psa_expense_writes_validate_every_field_and_lock_once_approved(api):
    ws, _ = workspace(api)
    r = api.post(
        "/expenses.json",
        json={"expense": {"workspace_id": ws, "user_id": "999999", "amount_in_cents": -5, "currency": "euro"}},
    )
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"user_id", "date", "category", "amount_in_cents", "currency"}
    assert api.post("/expenses.json", json={"nope": {}}).status_code == 400
    assert api.post("/expenses.json", json={"expense": {"workspace_id": 2**70}}).status_code == 422
    assert api.get("/expenses/99999999999999999999999.json").status_code == 404

    e = add_expense(api, ws)
    locked = api.put(f"/expenses/{e['id']}.json", json={"expense": {"amount_in_cents": 100}})
    assert locked.status_code == 422 and "locked" in locked.json()["errors"][0]["message"]
    assert api.delete(f"/expenses/{e['id']}.json").status_code == 422
    # withdrawing the approval unlocks it (and moves updated_at); edited and approved again
    opened = first(api.put(f"/expenses/{e['id']}.json", json={"expense": {"approved": False}}).json())
    assert opened["approved"] is False and opened["updated_at"] >= e["updated_at"]
    edited = first(
        api.put(f"/expenses/{e['id']}.json", json={"expense": {"amount_in_cents": 41000, "approved": True}}).json()
    )
    assert (edited["amount_in_cents"], edited["approved"]) == (41000, True)


async def test_psa_connector_reads_approved_expenses_and_marks_them_posted(api, psa_sandbox, psa_client):
    ws, _ = workspace(api)
    a = add_expense(api, ws)
    b = add_expense(api, ws, currency="EUR", amount_in_cents=12345, category="Lodging", has_receipt=False)
    add_expense(api, ws, approved=False)
    expenses = KantataExpenses(psa_client)
    read = await expenses.read_approved_expenses(ws)
    assert read.stable and read.server_time is not None and read.pages == 1
    assert [(e.psa_id, e.amount, e.currency, e.has_receipt) for e in read.expenses] == [
        (a["id"], Decimal("412.35"), "USD", True),
        (b["id"], Decimal("123.45"), "EUR", False),
    ]
    only = await expenses.read_approved_expenses(ws, only_ids=[b["id"]])
    assert [e.psa_id for e in only.expenses] == [b["id"]]
    await expenses.mark_expense_posted(a["id"], "14001")
    await expenses.mark_expense_posted(a["id"], "14001")  # again: nothing new
    await expenses.mark_expense_posted(a["id"], "14002")  # the ERP record was recreated: re-pointed
    body = api.get("/expenses.json", params={"only": a["id"], "include": "external_references"}).json()
    (ref_id,) = body["expenses"][a["id"]]["external_reference_ids"]
    ref = body["external_references"][ref_id]
    assert (ref["subject_type"], ref["service_model"], ref["service_model_ref"]) == (
        "Expense",
        "expenseReport",
        "14002",
    )


async def test_psa_demo_generator_books_a_foreign_currency_expense(api, psa_client):
    ws, _ = workspace(api)
    made = await KantataExpenses(psa_client).generate_expenses(
        ws, start=date(2027, 1, 1), end=date(2027, 2, 28), seed=7, per_month=2
    )
    assert made["count"] == 6 and made["billable_count"] == 4 and made["currencies"] == ["EUR", "USD"]
    again = api.get("/expenses.json", params={"workspace_id": ws, "approved": "true", "per_page": 200}).json()
    assert again["count"] == 6 and all(o["receipt_id"] for o in again["expenses"].values())


# --- ERP sandbox ------------------------------------------------------------------------------


async def provision(client: NetSuiteClient, currency: str = "USD") -> tuple[str, str]:
    cust = Customer(
        crm_account_id=uid("001"),
        name="Initech",
        legal_name="Initech LLC",
        region="NA",
        tax_id="US-98-7654321",
        currency=currency,
        payment_terms="Net 30",
        billing_address=Address(street="1 Initech Way", city="Austin", postal_code="78701", country="US"),
    )
    customer_id = await client.upsert_customer(cust, US)
    eng = Engagement(
        opportunity_id=uid("006"),
        opportunity_name="Initech TPS Rollout",
        customer=cust,
        service_line="Data Engineering",
        region="NA",
        billing_model=BillingModel.TIME_AND_MATERIALS,
        contract_value=Money(amount=Decimal("50000.00"), currency=currency),
        start_date=date(2027, 1, 1),
        end_date=date(2027, 12, 31),
    )
    return customer_id, await client.upsert_project(eng, customer_id, US)


def psa_expense(psa_id: str, amount: str, currency: str = "USD", on: date = date(2027, 1, 12), **kw) -> Expense:
    base = dict(
        psa_id=psa_id,
        person="202",
        person_name="Marcus Oyelaran",
        category="Airfare",
        amount=Decimal(amount),
        currency=currency,
        date_incurred=on,
        billable=True,
        has_receipt=True,
    )
    return Expense(**{**base, **kw})


async def test_erp_exchange_rates_from_currency_rate_records(erp_client):
    fx = NetSuiteExpenses(erp_client)
    assert await fx.exchange_rate("EUR", "USD", date(2027, 1, 15)) == Decimal("1.1034")
    assert await fx.exchange_rate("EUR", "USD", date(2026, 12, 31)) == Decimal("1.0912")  # the latest before
    assert await fx.exchange_rate("GBP", "USD", date(2027, 8, 1)) == Decimal("1.2655")
    assert await fx.exchange_rate("USD", "EUR", date(2027, 1, 15)) == Decimal("0.906290")
    assert await fx.exchange_rate("USD", "USD", date(2027, 1, 15)) == Decimal(1)
    assert await fx.exchange_rate("EUR", "USD", date(2024, 12, 31)) is None  # no rate that early
    assert await fx.exchange_rate("JPY", "USD", date(2027, 1, 15)) is None  # not a currency of the account


async def test_erp_expense_report_upserted_twice_is_one_record(erp_sandbox, erp_client):
    _, project = await provision(erp_client)
    fx = NetSuiteExpenses(erp_client)
    eur = psa_expense(uid("x"), "123.45", "EUR", category="Lodging")
    item = (eur, Decimal("1.1034"), convert(Decimal("123.45"), Decimal("1.1034"), "USD"), True)
    (first_post,) = await fx.post_expenses(project_id=project, items=[item], currency="USD")
    (second_post,) = await fx.post_expenses(project_id=project, items=[item], currency="USD")
    assert first_post.ok and first_post.erp_expense_report_id == second_post.erp_expense_report_id
    record = erp_sandbox.record_by_eid("expenseReport", expense_report_external_id(eur.psa_id))
    assert [r["id"] for r in erp_sandbox.records("expenseReport") if r.get("externalId") == record["externalId"]] == [
        record["id"]
    ]
    (line,) = record["expense"]["items"]
    assert (line["foreignAmount"], line["exchangeRate"], line["amount"], line["isBillable"]) == (
        Decimal("123.45"),
        Decimal("1.1034"),
        Decimal("136.21"),
        True,
    )
    assert record["total"] == Decimal("136.21") and record["custbody_unbilled"] is True
    # the ERP checks the conversion itself: another figure is refused, naming the field
    wrong = (psa_expense(uid("x"), "123.45", "EUR"), Decimal("1.1034"), Decimal("136.22"), True)
    (refused,) = await fx.post_expenses(project_id=project, items=[wrong], currency="USD")
    assert not refused.ok and refused.error_field == "expense.items[0].amount" and "136.21" in refused.message
    # a closed period is refused like a timeBill's
    closed = (psa_expense(uid("x"), "10.00", on=date(2026, 10, 5)), Decimal(1), Decimal("10.00"), True)
    (parked,) = await fx.post_expenses(project_id=project, items=[closed], currency="USD")
    assert parked.error_field == "tranDate" and "closed" in parked.message


async def test_erp_invoice_bills_expenses_once_in_exp_cost(erp_sandbox, erp_client):
    customer, project = await provision(erp_client)
    fx = NetSuiteExpenses(erp_client)
    one, two = uid("x"), uid("x")
    outcomes = await fx.post_expenses(
        project_id=project,
        items=[
            (psa_expense(one, "412.35"), Decimal(1), Decimal("412.35"), True),
            (psa_expense(two, "80.00", category="Meals", on=date(2027, 1, 20)), Decimal(1), Decimal("80.00"), True),
        ],
        currency="USD",
    )
    reports = [o.erp_expense_report_id for o in outcomes]
    unbilled = await fx.unbilled_expenses(project, through=date(2027, 1, 31))
    assert [(p.psa_id, p.amount, p.erp_expense_report_id) for p in unbilled] == [
        (one, Decimal("412.35"), reports[0]),
        (two, Decimal("80.00"), reports[1]),
    ]
    assert await fx.unbilled_expenses(project, through=date(2027, 1, 15)) == unbilled[:1]
    lines = expense_invoice_lines(unbilled, "USD", ExpensePolicy(markup_percent=Decimal("10")))
    invoice = Invoice(
        external_id=uid("inv"),
        period_start=date(2027, 1, 1),
        period_end=date(2027, 1, 31),
        lines=lines,
        total=sum(x.amount for x in lines),
        currency="USD",
    )
    issued = await erp_client.upsert_invoice(invoice, customer_id=customer, project_id=project)
    assert issued.total == Decimal("541.59")  # 412.35 + 80.00 + markup 49.235 -> 49.24
    assert sorted((x.description, x.amount, tuple(x.expense_ids)) for x in issued.lines) == sorted(
        (x.description, x.amount, tuple(x.expense_ids)) for x in lines
    )
    by_id = {r["id"]: r for r in erp_sandbox.records("expenseReport")}
    for report in reports:
        (line,) = by_id[report]["expense"]["items"]
        assert line["isBilled"] is True and line["invoice"]["id"] == issued.erp_id
    assert await fx.unbilled_expenses(project, through=date(2027, 1, 31)) == []
    # the same invoice again is the one issued (by the connector, and as a raw identical upsert:
    # a 204 no-op); another invoice billing them is refused
    assert (await erp_client.upsert_invoice(invoice, customer_id=customer, project_id=project)).erp_id == issued.erp_id
    same = httpx.put(
        f"{erp_sandbox.url}{R}/invoice/eid:{invoice.external_id}",
        content=dumps_exact(invoice_payload(invoice, customer, project, "1")),
        headers={"Authorization": f"Bearer {erp_sandbox.token()}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert same.status_code == 204, same.text
    body = {
        "entity": {"id": customer},
        "job": {"id": project},
        "tranDate": "2027-01-31",
        "expCost": {"items": [{"doc": {"id": reports[0]}, "line": 1, "apply": True}]},
    }
    r = httpx.put(
        f"{erp_sandbox.url}{R}/invoice/eid:{uid('inv')}",
        json=body,
        headers={"Authorization": f"Bearer {erp_sandbox.token()}"},
        timeout=10,
    )
    detail = r.json()["o:errorDetails"][0]
    assert r.status_code == 400 and detail["o:errorPath"] == "expCost.items[0].doc"
    assert f"already been billed on invoice {issued.number}" in detail["detail"]
    # a billed expense report can no longer change
    changed = (psa_expense(one, "999.00"), Decimal(1), Decimal("999.00"), True)
    (refused,) = await fx.post_expenses(project_id=project, items=[changed], currency="USD")
    assert not refused.ok and "billed expenses cannot be changed" in refused.message


# --- ledger -------------------------------------------------------------------------------------


def test_ledger_posted_expenses_idempotent_and_exact(ledger):
    store = PostedExpenses(ledger.engine)
    row = PostedExpense(
        psa_id="5001",
        erp_expense_report_id="14001",
        category="Lodging",
        date_incurred=date(2027, 1, 14),
        original_amount=Decimal("123.45"),
        original_currency="EUR",
        exchange_rate=Decimal("0.906290"),
        amount=Decimal("111.88"),
        currency="USD",
        billable=True,
    )
    assert store.record([row], "006A") == 1
    assert store.record([row.model_copy(update={"amount": Decimal("111.89")})], "006A") == 1
    (got,) = store.for_opportunity("006A")
    assert (got.exchange_rate, got.amount, got.original_amount) == (
        Decimal("0.906290"),
        Decimal("111.89"),
        Decimal("123.45"),
    )
    assert store.by_psa_id(["5001", "nope"])["5001"].exchange_rate == Decimal("0.90629")
    assert [p.psa_id for p in store.for_reports(["14001"])] == ["5001"]
    assert store.mark_invoiced(["14001"], "inv-006A-0") == 1
    assert store.for_opportunity("006A", uninvoiced_only=True) == []
    assert store.totals("006A") == (1, Decimal("111.89"), Decimal("111.89"))
    with pytest.raises(Exception, match="8 decimal places"):
        store.record([row.model_copy(update={"psa_id": "5002", "exchange_rate": Decimal("1.123456789")})], "006A")
    # the shared exception queue takes expense ids beside time entries'
    ledger.upsert_exception("006A", "wf", "expense:5003", "NO_RECEIPT", "no receipt")
    ledger.upsert_exception("006A", "wf", "77", "NO_RATE", "no rate")
    assert ledger.open_exception_psa_ids("006A") == ["77", "expense:5003"]
    assert ledger.write_off_exceptions("006A", ["expense:5003"], "client declined", "steward") == ["expense:5003"]
    assert ledger.written_off_among(["expense:5003"]) == {"expense:5003"}


# --- the activity, against both sandboxes --------------------------------------------------------


async def test_activity_posts_once_converts_at_the_erps_rate_parks_and_replays(
    api, psa_sandbox, erp_isolated, sqlite_ledger
):
    async with (
        NetSuiteClient(erp_settings(erp_isolated.url), timeout=10.0) as erp,
        KantataClient(psa_settings(psa_sandbox.url), timeout=10.0) as psa,
    ):
        customer, project = await provision(erp)
        ws, _ = workspace(api)
        usd = add_expense(api, ws)  # 412.35 USD, Jan 12 2027
        eur = add_expense(api, ws, date="2027-01-14", category="Lodging", amount_in_cents=12345, currency="EUR")
        dec = add_expense(api, ws, date="2026-10-05", category="Meals", amount_in_cents=8000)  # Oct 2026: closed
        bare = add_expense(api, ws, date="2027-01-20", category="Lodging", amount_in_cents=30000, has_receipt=False)
        waived = add_expense(api, ws, date="2027-01-21", category="Meals", amount_in_cents=26000, has_receipt=False)
        add_expense(api, ws, approved=False)  # not approved: never leaves the PSA
        acts = ExpenseActivities(crm=None, erp=erp, psa=psa, ledger=sqlite_ledger)
        policy = ExpensePolicy(markup_percent=Decimal("10"), receipt_required_above=Decimal("250"))
        opp = uid("006")
        job = PostExpensesInput(
            opportunity_id=opp,
            workflow_id=f"engagement-{opp}",
            erp_project_id=project,
            psa_workspace_id=ws,
            through=date(2027, 1, 31),
            currency="USD",
            policy=policy,
        )
        env = ActivityEnvironment()
        run1 = await env.run(acts.post_approved_expenses, job)
        assert (run1.examined, run1.posted, run1.exceptions_count) == (5, 2, 3)
        assert {(x.psa_id, x.reason_code) for x in run1.exceptions} == {
            (f"expense:{dec['id']}", "PERIOD_CLOSED"),
            (f"expense:{bare['id']}", "NO_RECEIPT"),
            (f"expense:{waived['id']}", "NO_RECEIPT"),
        }
        assert run1.open_by_reason == {"PERIOD_CLOSED": 1, "NO_RECEIPT": 2}
        # a steward writes one off through the time queue's own action: it is never posted
        closed = sqlite_ledger.write_off_exceptions(opp, [f"expense:{waived['id']}"], "client pays it", "steward@q2c")
        assert closed == [f"expense:{waived['id']}"]
        assert "Oct 2026 is closed" in next(x.message for x in run1.exceptions if x.reason_code == "PERIOD_CLOSED")

        # the EUR expense at the ERP's rate for Jan 14 2027 (1.1034), recorded in the ERP and the ledger
        report = erp_isolated.record_by_eid("expenseReport", f"exp-{eur['id']}")
        (line,) = report["expense"]["items"]
        assert (line["foreignAmount"], line["exchangeRate"], line["amount"]) == (
            Decimal("123.45"),
            Decimal("1.1034"),
            Decimal("136.21"),
        )
        store = PostedExpenses(sqlite_ledger.engine)
        rows = {r.psa_id: r for r in store.for_opportunity(opp)}
        assert (rows[eur["id"]].exchange_rate, rows[eur["id"]].amount, rows[eur["id"]].original_currency) == (
            Decimal("1.1034"),
            Decimal("136.21"),
            "EUR",
        )
        assert (rows[usd["id"]].exchange_rate, rows[usd["id"]].amount) == (Decimal(1), Decimal("412.35"))
        refs = psa_sandbox.records("external_references")
        marked = {r["subject_id"]: r["service_model_ref"] for r in refs if r["subject_type"] == "Expense"}
        assert marked[usd["id"]] == rows[usd["id"]].erp_expense_report_id
        assert marked[eur["id"]] == report["id"]

        # a second run posts nothing (and the parked ones wait for a steward)
        run2 = await env.run(acts.post_approved_expenses, job)
        assert (run2.examined, run2.posted, run2.exceptions_count) == (0, 0, 0)
        assert (
            len([r for r in erp_isolated.records("expenseReport") if r.get("externalId", "").startswith("exp-")]) == 2
        )

        # the cause fixed (the period reopened in the ERP): a replay posts it once, resolved
        httpx.put(
            f"{erp_isolated.url}/__sandbox/accounting-periods/by-name/Oct 2026", json={"closed": False}, timeout=10
        ).raise_for_status()
        replay = await env.run(acts.post_approved_expenses, job.model_copy(update={"replay_open": True}))
        assert (replay.posted, replay.resolved, replay.open_by_reason) == (
            1,
            [f"expense:{dec['id']}"],
            {"NO_RECEIPT": 1},
        )
        again = await env.run(
            acts.post_approved_expenses, job.model_copy(update={"only_psa_ids": [f"expense:{dec['id']}"]})
        )
        assert (again.posted, again.not_open) == (0, [f"expense:{dec['id']}"])
        # the receipt attached in the PSA (approval withdrawn, edited, approved again): replayed by id
        api.put(f"/expenses/{bare['id']}.json", json={"expense": {"approved": False}}).raise_for_status()
        api.put(
            f"/expenses/{bare['id']}.json", json={"expense": {"has_receipt": True, "approved": True}}
        ).raise_for_status()
        fixed = await env.run(acts.post_approved_expenses, job.model_copy(update={"only_psa_ids": [bare["id"]]}))
        assert (fixed.posted, fixed.resolved, fixed.open_count) == (1, [f"expense:{bare['id']}"], 0)
        full = await env.run(acts.post_approved_expenses, job)  # nothing new; the written-off one stays out
        assert (full.examined, full.posted, full.exceptions_count, full.open_count) == (0, 0, 0, 0)
        assert erp_isolated.record_by_eid("expenseReport", f"exp-{waived['id']}") is None

        # the invoice lines: per category at cost, the markup once; then billed once
        lines, report_ids = await unbilled_expense_lines(
            NetSuiteExpenses(erp), sqlite_ledger, project, date(2027, 1, 31), "USD", policy
        )
        assert [(x.description, x.amount) for x in lines] == [
            ("Expenses: Airfare (1 item)", Decimal("412.35")),
            ("Expenses: Lodging (2 items)", Decimal("436.21")),
            ("Expenses: Meals (1 item)", Decimal("80.00")),
            ("Markup 10% on expenses", Decimal("92.86")),  # 928.56 x 10% = 92.856 -> 92.86, once
        ]
        assert len(report_ids) == 4
        invoice = Invoice(
            external_id=f"inv-{opp}-0",
            period_start=date(2027, 1, 1),
            period_end=date(2027, 1, 31),
            lines=lines,
            total=sum(x.amount for x in lines),
            currency="USD",
        )
        issued = await erp.upsert_invoice(invoice, customer_id=customer, project_id=project)
        assert issued.total == Decimal("1021.42")
        assert await mark_expenses_invoiced(sqlite_ledger, report_ids, invoice.external_id) == 4
        assert await unbilled_expense_lines(
            NetSuiteExpenses(erp), sqlite_ledger, project, date(2027, 1, 31), "USD", policy
        ) == ([], [])
        # a fixed fee that excludes expenses bills none
        assert await unbilled_expense_lines(
            NetSuiteExpenses(erp), sqlite_ledger, project, date(2027, 1, 31), "USD", ExpensePolicy(billable=False)
        ) == ([], [])
