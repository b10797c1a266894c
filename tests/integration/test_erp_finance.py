"""Delivery to cash in the NetSuite sandbox, through the connector, over real HTTP:
accounting periods, timeBills, invoices, payments, project closure, concurrency."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from q2c.domain.customer import Address, Customer
from q2c.domain.delivery import Invoice, InvoiceLine, InvoiceStatus, TimeEntry
from q2c.domain.engagement import BillingModel, Engagement
from q2c.domain.money import Money
from q2c.domain.project import Subsidiary
from q2c.vendors.http import RATE_LIMITED_TYPE
from q2c.vendors.netsuite.client import NetSuiteClient, TimeBillResult
from q2c.vendors.netsuite.finance_mapping import invoice_payload
from q2c.vendors.netsuite.mapping import dumps_exact
from tests.fixtures.erp import erp_settings

US = Subsidiary(subsidiary_id="1", name="Q2C Consulting Inc.", region="NA", country="US", currency="USD")
R = "/services/rest/record/v1"
JAN = date(2027, 1, 15)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def provision(client: NetSuiteClient) -> tuple[str, str]:
    """A fresh customer (Net 30, USD) and T&M project; their internal IDs."""
    cust = Customer(
        crm_account_id=uid("001"),
        name="Initech",
        legal_name="Initech LLC",
        region="NA",
        tax_id="US-98-7654321",
        currency="USD",
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
        contract_value=Money(amount=Decimal("50000.00"), currency="USD"),
        start_date=date(2027, 1, 1),
        end_date=date(2027, 12, 31),
    )
    return customer_id, await client.upsert_project(eng, customer_id, US)


def entry(on: date = JAN, minutes: int = 90, billable: bool = True, role: str = "Consultant") -> TimeEntry:
    return TimeEntry(
        psa_id=uid("te"),
        person="u-7",
        person_name="Pat Doe",
        role=role,
        task_id="s-1",
        date_performed=on,
        minutes=minutes,
        billable=billable,
    )


def line(description: str, quantity: str, rate: str, amount: str) -> InvoiceLine:
    return InvoiceLine(description=description, quantity=Decimal(quantity), rate=Decimal(rate), amount=Decimal(amount))


def invoice(lines: list[InvoiceLine], bills: list[str], end: date = date(2027, 1, 31)) -> Invoice:
    return Invoice(
        external_id=uid("inv"),
        period_start=end.replace(day=1),
        period_end=end,
        lines=lines,
        total=sum((x.amount for x in lines), Decimal(0)),
        currency="USD",
        time_bill_ids=bills,
    )


def set_period(sandbox, name: str, closed: bool) -> dict:
    response = httpx.put(
        f"{sandbox.url}/__sandbox/accounting-periods/by-name/{name}", json={"closed": closed}, timeout=10
    )
    response.raise_for_status()
    return response.json()


# --- periods ------------------------------------------------------------------------------------


async def test_periods_listed_with_closed_flags(erp_client):
    periods = await erp_client.list_accounting_periods()
    assert len(periods) == 72 and periods[0].name == "Jan 2025" and periods[-1].name == "Dec 2030"
    by_name = {p.name: p for p in periods}
    assert by_name["Jan 2025"].closed and by_name["Oct 2026"].closed
    assert not by_name["Nov 2026"].closed and not by_name["Jan 2027"].closed
    assert by_name["Feb 2028"].start_date == date(2028, 2, 1) and by_name["Feb 2028"].end_date == date(2028, 2, 29)
    recent = await erp_client.list_accounting_periods(ending_on_or_after=date(2030, 10, 1))
    assert [p.name for p in recent] == ["Oct 2030", "Nov 2030", "Dec 2030"]


def test_periods_seeded_once(tmp_path):
    from sandboxes.erp.app import create_app

    url = f"sqlite:///{tmp_path}/periods.db"
    from tests.fixtures.erp import demo_m2m

    create_app(url, m2m_dir=demo_m2m().directory)
    assert len(create_app(url, m2m_dir=demo_m2m().directory).state.store.all("accountingPeriod")) == 72


# --- time bills ---------------------------------------------------------------------------------


async def test_time_bill_upsert_twice_is_one(erp_client, erp_sandbox):
    _, project_id = await provision(erp_client)
    e = entry(minutes=95)
    first = await erp_client.post_time_bills(project_id=project_id, entries=[(e, Decimal("150.00"))], currency="USD")
    again = await erp_client.post_time_bills(project_id=project_id, entries=[(e, Decimal("150.00"))], currency="USD")
    assert first[0].ok and first[0].erp_time_bill_id == again[0].erp_time_bill_id
    bills = [r for r in erp_sandbox.records("timeBill") if r.get("externalId") == f"psa-{e.psa_id}"]
    assert len(bills) == 1
    bill = bills[0]
    assert (bill["hours"], bill["custcol_minutes"], bill["rate"], bill["isBilled"]) == (
        "1:35",
        95,
        Decimal("150.00"),
        False,
    )
    assert bill["customer"]["id"] == project_id and bill["postingPeriod"]["refName"] == "Jan 2027"
    assert bill["custcol_currency"] == "USD" and bill["custcol_role"] == "Consultant"


async def test_closed_period_is_a_result_then_reopen_posts(erp_client, erp_sandbox):
    _, project_id = await provision(erp_client)
    e = entry(on=date(2026, 2, 10))
    [result] = await erp_client.post_time_bills(project_id=project_id, entries=[(e, Decimal("100"))], currency="USD")
    assert isinstance(result, TimeBillResult) and not result.ok
    assert (result.error_code, result.error_field) == ("INVALID_FLD_VALUE", "tranDate")
    assert "Feb 2026 is closed" in result.message
    assert set_period(erp_sandbox, "Feb 2026", False)["closed"] is False
    try:
        [result] = await erp_client.post_time_bills(
            project_id=project_id, entries=[(e, Decimal("100"))], currency="USD"
        )
        assert result.ok
    finally:
        assert set_period(erp_sandbox, "Feb 2026", True)["closed"] is True


async def test_rejections_name_the_field(erp_client):
    _, project_id = await provision(erp_client)
    results = await erp_client.post_time_bills(
        project_id=project_id,
        currency="USD",
        entries=[(entry(), None), (entry(), Decimal("120")), (entry(on=date(2031, 1, 5)), Decimal("120"))],
    )
    assert [(r.ok, r.error_field) for r in results] == [(False, "rate"), (True, None), (False, "postingPeriod")]
    [wrong] = await erp_client.post_time_bills(project_id=project_id, entries=[(entry(), Decimal("1"))], currency="EUR")
    assert wrong.error_field == "custcol_currency"


async def test_closed_job_rejects_new_time_and_close_is_idempotent(erp_client, erp_sandbox):
    _, project_id = await provision(erp_client)
    posted = entry()
    await erp_client.post_time_bills(project_id=project_id, entries=[(posted, Decimal("100"))], currency="USD")
    await erp_client.close_project(project_id)
    await erp_client.close_project(project_id)
    job = await erp_client.get_record("job", project_id)
    assert job["entityStatus"] == {"id": "CLOSED", "refName": "Closed"}
    [late] = await erp_client.post_time_bills(
        project_id=project_id, entries=[(entry(), Decimal("100"))], currency="USD"
    )
    assert (late.error_code, late.error_field) == ("INVALID_FLD_VALUE", "customer") and "closed" in late.message
    [replay] = await erp_client.post_time_bills(
        project_id=project_id, entries=[(posted, Decimal("100"))], currency="USD"
    )
    assert replay.ok  # an identical replay of what was posted before closure changes nothing


# --- invoices -------------------------------------------------------------------------------------


async def test_invoice_bills_time_once(erp_client, erp_sandbox):
    customer_id, project_id = await provision(erp_client)
    a, b = entry(minutes=90), entry(minutes=20, role="Architect")
    later, unbillable = entry(on=date(2027, 2, 3)), entry(billable=False)
    posted = await erp_client.post_time_bills(
        project_id=project_id,
        currency="USD",
        entries=[(a, Decimal("150")), (b, Decimal("175")), (later, Decimal("150")), (unbillable, None)],
    )
    assert all(r.ok for r in posted)
    unbilled = await erp_client.list_unbilled_time(project_id, through=date(2027, 1, 31))
    assert {u.psa_id: (u.minutes, u.rate, u.role, u.currency) for u in unbilled} == {
        a.psa_id: (90, Decimal("150"), "Consultant", "USD"),
        b.psa_id: (20, Decimal("175"), "Architect", "USD"),
    }
    lines = [line("Architect", "0.333333", "175", "58.33"), line("Consultant", "1.5", "150", "225.00")]
    inv = invoice(lines, [u.erp_time_bill_id for u in unbilled])
    issued = await erp_client.upsert_invoice(inv, customer_id=customer_id, project_id=project_id)
    assert issued.number.startswith("INV") and issued.erp_id and issued.total == Decimal("283.33")
    assert issued.status is InvoiceStatus.OPEN and issued.lines == lines
    assert sorted(issued.time_bill_ids) == sorted(u.erp_time_bill_id for u in unbilled)
    again = await erp_client.upsert_invoice(
        inv.model_copy(update={"lines": lines[:1]}), customer_id=customer_id, project_id=project_id
    )
    assert (again.erp_id, again.number, again.total) == (issued.erp_id, issued.number, issued.total)
    assert len([r for r in erp_sandbox.records("invoice") if r.get("externalId") == inv.external_id]) == 1
    record = erp_sandbox.record_by_eid("invoice", inv.external_id)
    assert record["dueDate"] == "2027-03-02" and record["amountRemaining"] == Decimal("283.33")

    bill = erp_sandbox.record_by_eid("timeBill", f"psa-{a.psa_id}")
    assert bill["isBilled"] is True and bill["invoice"] == {
        "links": bill["invoice"]["links"],
        "id": issued.erp_id,
        "refName": issued.number,
    }
    remaining = await erp_client.list_unbilled_time(project_id, through=date(2027, 2, 28))
    assert [u.psa_id for u in remaining] == [later.psa_id]

    with pytest.raises(ApplicationError) as err:
        await erp_client.upsert_invoice(
            invoice(lines[1:], [bill["id"]]), customer_id=customer_id, project_id=project_id
        )
    assert err.value.non_retryable and f"already been billed on invoice {issued.number}" in err.value.message

    [same] = await erp_client.post_time_bills(project_id=project_id, entries=[(a, Decimal("150"))], currency="USD")
    assert same.ok and same.erp_time_bill_id == bill["id"]
    changed = a.model_copy(update={"minutes": 120})
    [locked] = await erp_client.post_time_bills(
        project_id=project_id, entries=[(changed, Decimal("150"))], currency="USD"
    )
    assert locked.error_field == "isBilled" and "billed time cannot be changed" in locked.message


async def test_invoice_line_rounding_is_checked(erp_client):
    customer_id, project_id = await provision(erp_client)
    with pytest.raises(ApplicationError) as err:
        await erp_client.upsert_invoice(
            invoice([line("Architect", "0.333333", "175", "58.34")], []), customer_id=customer_id, project_id=project_id
        )
    assert err.value.non_retryable and "item.items[0].amount" in err.value.message and "58.33" in err.value.message
    with pytest.raises(ApplicationError) as err:
        await erp_client.upsert_invoice(invoice([], []), customer_id=customer_id, project_id=project_id)
    assert "item" in err.value.message


# --- payments -----------------------------------------------------------------------------------


async def test_payments_partial_then_full(erp_client):
    customer_id, project_id = await provision(erp_client)
    issued = await erp_client.upsert_invoice(
        invoice([line("Retainer", "1", "1000.00", "1000.00")], []), customer_id=customer_id, project_id=project_id
    )
    due = date(2027, 3, 2)  # 31 Jan + Net 30
    [status] = await erp_client.invoice_payment_status([issued.erp_id], as_of=date(2027, 2, 10))
    assert (status.status, status.open_balance, status.due_date, status.days_overdue) == (
        InvoiceStatus.OPEN,
        Decimal("1000.00"),
        due,
        0,
    )

    await erp_client.record_payment(issued.erp_id, Decimal("400.10"), date(2027, 3, 1))
    [status] = await erp_client.invoice_payment_status([issued.erp_id], as_of=due + timedelta(days=12))
    assert (status.status, status.amount_paid, status.open_balance, status.days_overdue) == (
        InvoiceStatus.PARTIALLY_PAID,
        Decimal("400.10"),
        Decimal("599.90"),
        12,
    )
    assert status.invoice_number == issued.number and status.currency == "USD"

    await erp_client.record_payment(issued.erp_id, None, date(2027, 3, 20))
    [status] = await erp_client.invoice_payment_status([issued.erp_id], as_of=due + timedelta(days=40))
    assert (status.status, status.amount_paid, status.open_balance, status.days_overdue) == (
        InvoiceStatus.PAID_IN_FULL,
        Decimal("1000.00"),
        Decimal("0.00"),
        0,
    )
    assert await erp_client.unapplied_payments(customer_id) == []
    assert await erp_client.customer_credit(customer_id) == Decimal(0)


async def test_overpayment_applies_the_balance_and_leaves_the_rest_as_credit(erp_client, erp_sandbox):
    """NetSuite accepts a payment larger than what it applies to: the invoice is paid in full
    and the rest stays `unapplied` on the payment, the customer's credit."""
    customer_id, project_id = await provision(erp_client)
    first = await erp_client.upsert_invoice(
        invoice([line("Retainer", "1", "300.00", "300.00")], []), customer_id=customer_id, project_id=project_id
    )
    second = await erp_client.upsert_invoice(
        invoice([line("Retainer", "1", "99.99", "99.99")], [], end=date(2027, 2, 28)),
        customer_id=customer_id,
        project_id=project_id,
    )
    await erp_client.record_payment(first.erp_id, Decimal("100.00"), date(2027, 2, 15))
    r = httpx.post(
        f"{erp_sandbox.url}/__sandbox/payments",
        json={"invoice_id": first.erp_id, "amount": "250.50", "date": "2027-03-01"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (Decimal(str(body["payment"])), Decimal(str(body["applied"])), Decimal(str(body["unapplied"]))) == (
        Decimal("250.50"),
        Decimal("200.00"),
        Decimal("50.50"),
    )
    assert (body["invoice"]["status"], Decimal(str(body["invoice"]["amountRemaining"]))) == ("Paid In Full", 0)

    statuses = await erp_client.invoice_payment_status([first.erp_id, second.erp_id], as_of=date(2027, 3, 1))
    assert [(s.status, s.amount_paid, s.open_balance) for s in statuses] == [
        (InvoiceStatus.PAID_IN_FULL, Decimal("300.00"), Decimal("0.00")),
        (InvoiceStatus.OPEN, Decimal("0"), Decimal("99.99")),
    ]  # the credit is not applied by itself
    [credit] = await erp_client.unapplied_payments(customer_id)
    assert (
        credit.payment,
        credit.applied,
        credit.unapplied,
        credit.currency,
        credit.applied_to,
        credit.received_on,
    ) == (Decimal("250.50"), Decimal("200.00"), Decimal("50.50"), "USD", [first.erp_id], date(2027, 3, 1))

    # paying an invoice that is already paid in full applies nothing: all of it is credit
    r = httpx.post(
        f"{erp_sandbox.url}/__sandbox/payments",
        json={"invoice_id": first.erp_id, "amount": "10.00", "date": "2027-03-02"},
        timeout=10,
    )
    assert r.status_code == 200 and Decimal(str(r.json()["unapplied"])) == Decimal("10.00"), r.text
    assert await erp_client.customer_credit(customer_id) == Decimal("60.50")
    other_customer, _ = await provision(erp_client)
    assert await erp_client.customer_credit(other_customer) == Decimal(0)  # a customer's own credit only

    # an invoice paid in full with no amount given: nothing to pay (400, nothing recorded)
    r = httpx.post(f"{erp_sandbox.url}/__sandbox/payments", json={"invoice_id": first.erp_id}, timeout=10)
    assert r.status_code == 400
    assert await erp_client.customer_credit(customer_id) == Decimal("60.50")


async def test_record_api_payment_and_error_shapes(erp_client, erp_sandbox):
    customer_id, project_id = await provision(erp_client)
    issued = await erp_client.upsert_invoice(
        invoice([line("Fee", "2", "50", "100.00")], []), customer_id=customer_id, project_id=project_id
    )
    http = httpx.Client(
        base_url=erp_sandbox.url, headers={"Authorization": f"Bearer {erp_sandbox.token()}"}, timeout=10
    )
    payload = invoice_payload(invoice([line("Fee", "2", "50", "100.00")], []), customer_id, project_id, "1")
    payload["tranDate"] = issued.period_end.isoformat()
    created_again = http.put(
        f"{R}/invoice/eid:{uid('inv')}", content=dumps_exact(payload), headers={"Content-Type": "application/json"}
    )
    location = created_again.headers["Location"]
    assert created_again.status_code == 204
    eid = http.get(location).json()["externalId"]
    identical = http.put(
        f"{R}/invoice/eid:{eid}", content=dumps_exact(payload), headers={"Content-Type": "application/json"}
    )
    assert identical.status_code == 204 and identical.headers["Location"] == location
    payload["memo"] = "changed"
    changed = http.put(
        f"{R}/invoice/eid:{eid}", content=dumps_exact(payload), headers={"Content-Type": "application/json"}
    )
    assert changed.status_code == 400 and "cannot be changed" in changed.text

    body = {
        "customer": {"id": customer_id},
        "payment": 150,
        "tranDate": "2027-02-01",
        "apply": {"items": [{"doc": {"id": issued.erp_id}, "amount": 150}]},
    }
    over = http.post(f"{R}/customerPayment", json=body)
    assert over.status_code == 400 and over.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_FLD_VALUE"
    body["apply"]["items"][0]["amount"] = 100
    created = http.post(f"{R}/customerPayment", json=body)
    assert created.status_code == 204 and "/customerPayment/" in created.headers["Location"]
    paid = http.get(f"{R}/invoice/{issued.erp_id}").json()
    assert (paid["status"], paid["amountRemaining"]) == ("Paid In Full", 0)
    closed = http.put(
        f"{R}/timeBill/eid:{uid('psa')}",
        json={"customer": {"id": project_id}, "tranDate": "2026-06-30", "hours": "2:00", "isBillable": False},
    )
    detail = closed.json()["o:errorDetails"][0]
    assert closed.status_code == 400 and detail["o:errorPath"] == "tranDate"
    assert "The accounting period Jun 2026 is closed" in detail["detail"]
    page = http.get(f"{R}/timeBill", params={"q": 'tranDate ON_OR_BEFORE "1/31/2027" AND isBilled IS false'})
    assert page.status_code == 200


# --- concurrency ----------------------------------------------------------------------------------


async def test_post_time_bills_stays_under_the_account_limit(erp_isolated):
    async with NetSuiteClient(erp_settings(erp_isolated.url, max_in_flight=None), timeout=10) as client:
        _, project_id = await provision(client)
        erp_isolated.set_faults(latency_ms=60, concurrency_limit=5, retry_after_seconds=1)
        entries = [(entry(minutes=15 + i), Decimal("100")) for i in range(20)]
        results = await client.post_time_bills(
            project_id=project_id, entries=entries, currency="USD", max_concurrency=3
        )
        assert all(r.ok for r in results) and [r.psa_id for r in results] == [e.psa_id for e, _ in entries]
        counters = httpx.get(f"{erp_isolated.url}/__sandbox/faults").json()["counters"]
        assert counters["concurrency_rejections"] == 0 and counters["requests"] == 20

        greedy = [(entry(), Decimal("100")) for _ in range(12)]
        with pytest.raises(ApplicationError) as err:
            await client.post_time_bills(project_id=project_id, entries=greedy, currency="USD", max_concurrency=12)
        assert err.value.type == RATE_LIMITED_TYPE and not err.value.non_retryable
        # A retry of the whole batch is safe: it is keyed by external ID.
        retried = await client.post_time_bills(project_id=project_id, entries=greedy, currency="USD")
        assert all(r.ok for r in retried)
    bills = [r for r in erp_isolated.records("timeBill") if r["customer"]["id"] == project_id]
    assert len(bills) == 32


# --- one rule for time amounts ------------------------------------------------------------------


async def test_time_bill_carries_the_amount_by_the_rule(erp_client, erp_sandbox):
    """61 min at 500.09: the connector sends 508.42 (q2c.domain.money.entry_amount), the ERP computes
    hours x rate itself (hours exact) and keeps the same; a different figure is refused."""
    _, project_id = await provision(erp_client)
    billable, internal = entry(minutes=61), entry(minutes=61, billable=False)
    results = await erp_client.post_time_bills(
        project_id=project_id, currency="USD", entries=[(billable, Decimal("500.09")), (internal, None)]
    )
    assert all(r.ok for r in results)
    bill = erp_sandbox.record_by_eid("timeBill", f"psa-{billable.psa_id}")
    assert (bill["hours"], bill["rate"], bill["custcol_amount"]) == ("1:01", Decimal("500.09"), Decimal("508.42"))
    assert "custcol_amount" not in erp_sandbox.record_by_eid("timeBill", f"psa-{internal.psa_id}")
    [read] = await erp_client.time_bills([bill["id"]])
    assert read.amount == Decimal("508.42")

    http = httpx.Client(
        base_url=erp_sandbox.url, headers={"Authorization": f"Bearer {erp_sandbox.token()}"}, timeout=10
    )
    body = {
        "customer": {"id": project_id},
        "tranDate": "2027-01-15",
        "hours": "1:01",
        "isBillable": True,
        "rate": Decimal("500.09"),
        "custcol_amount": Decimal("508.43"),
    }
    wrong = http.put(
        f"{R}/timeBill/eid:{uid('psa')}", content=dumps_exact(body), headers={"Content-Type": "application/json"}
    )
    assert wrong.status_code == 400 and "custcol_amount" in wrong.text and "508.42" in wrong.text


async def test_a_time_line_bills_the_sum_of_its_time_bills(erp_client, erp_sandbox):
    """Two 61-minute entries: the line bills 508.42 + 508.42 = 1016.84 (each entry rounded once),
    not 2.033333 h x 500.09 = 1016.85; the ERP checks the line against its timeBills."""
    from q2c.domain.billing import time_invoice_lines

    customer_id, project_id = await provision(erp_client)
    a, b = entry(minutes=61), entry(minutes=61)
    await erp_client.post_time_bills(
        project_id=project_id, currency="USD", entries=[(a, Decimal("500.09")), (b, Decimal("500.09"))]
    )
    unbilled = await erp_client.list_unbilled_time(project_id, through=date(2027, 1, 31))
    [line] = time_invoice_lines(unbilled, "USD")
    assert (line.amount, line.quantity, line.description) == (
        Decimal("1016.84"),
        Decimal("2.033333"),
        "Consultant: 2.03 h (122 min) at 500.09/h",
    )
    bills = [u.erp_time_bill_id for u in unbilled]

    for wrong, field in (
        (line.model_copy(update={"amount": Decimal("1016.85")}), "amount"),
        (line.model_copy(update={"quantity": Decimal("2.04")}), "quantity"),
        (line.model_copy(update={"time_bill_ids": ["999999"]}), "custcol_time_bills"),
    ):
        with pytest.raises(ApplicationError) as err:
            await erp_client.upsert_invoice(invoice([wrong], bills), customer_id=customer_id, project_id=project_id)
        assert err.value.non_retryable and f"item.items[0].{field}" in err.value.message

    issued = await erp_client.upsert_invoice(invoice([line], bills), customer_id=customer_id, project_id=project_id)
    assert issued.total == Decimal("1016.84") and issued.lines == [line]
