"""Money computed one way (domain/billing.py): an entry's amount is its exact minutes x rate / 60,
rounded half-up once to the currency's minor unit, and the ledger, the ERP timeBill, the ERP
invoice and the test oracle all hold that same figure. Rates come from the role the time was
booked under, never from the person's role of today."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import httpx
import pytest

from q2c.domain.billing import MAX_RATE_PLACES, check_time_entry, entry_amount, rate_issue, time_invoice_lines
from q2c.domain.customer import Address, Customer
from q2c.domain.delivery import AccountingPeriod, PostedTime
from q2c.domain.engagement import BillingModel, Engagement, RateCardEntry
from q2c.domain.money import Money
from q2c.domain.project import ProjectTemplate, Subsidiary, Task
from q2c.domain.validation import validate_engagement
from q2c.ledger.config import ledger_url
from q2c.ledger.store import Ledger
from stack.demo_env import DEMO_PSA_TOKEN
from tests import billing_oracle as oracle
from tests.deals import create_deal
from tests.e2e.test_delivery import _run_to_close, _start, invoices_of

AUTH = {"Authorization": f"Bearer {DEMO_PSA_TOKEN}"}
CONSULTANT, SENIOR = "503", "502"


# --- the rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minutes", "rate", "currency", "amount"),
    [
        (61, "500.09", "USD", "508.42"),  # 508.424833...; hours rounded first (1.016667) gave 508.43
        (60, "150", "USD", "150.00"),
        (40, "150", "USD", "100.00"),  # 2/3 h exactly: 100, not 0.666667 x 150 = 100.00005
        (1, "0.3", "USD", "0.01"),  # 0.005 exactly: half-up
        (7, "100", "USD", "11.67"),  # 11.666...
        (61, "500.09", "JPY", "508"),  # no minor unit
        (90, "12345", "JPY", "18518"),  # 18517.5: half-up
        (61, "500.09", "BHD", "508.425"),  # three decimals
        (1, "0.03", "KWD", "0.001"),  # 0.0005: half-up to the fils
        (480, "185.1234", "EUR", "1480.99"),  # 1480.9872, a rate with MAX_RATE_PLACES decimals
    ],
)
def test_entry_amount_is_exact_minutes_times_rate_rounded_once(minutes, rate, currency, amount):
    result = entry_amount(minutes, Decimal(rate), currency)
    assert result == Decimal(amount) and str(result) == amount
    # the oracle's own arithmetic agrees
    unit = {"JPY": "1", "BHD": "0.001", "KWD": "0.001"}.get(currency, "0.01")
    assert oracle.entry_amount(minutes, Decimal(rate), unit) == Decimal(amount)


def test_entry_amount_refuses_what_is_not_money():
    for minutes, rate in ((-1, Decimal(1)), (1.5, Decimal(1)), (True, Decimal(1)), (1, 1.5), (1, Decimal("NaN"))):
        with pytest.raises(ValueError):
            entry_amount(minutes, rate, "USD")  # type: ignore[arg-type]


def test_invoice_line_is_the_sum_of_entry_amounts():
    entries = [
        PostedTime(
            psa_id=str(i),
            erp_time_bill_id=f"tb{i}",
            role="Consultant",
            date_performed=date(2027, 1, 5),
            minutes=61,
            billable=True,
            rate=Decimal("500.09"),
            currency="USD",
        )
        for i in range(3)
    ]
    [line] = time_invoice_lines(entries, "USD")
    assert line.amount == Decimal("1525.26") == 3 * entry_amount(61, Decimal("500.09"), "USD")
    assert line.description == "Consultant: 3.05 h at 500.09/h"  # exact hours, rate to the cent
    assert line.time_bill_ids == ["tb0", "tb1", "tb2"]


def test_rate_issue_names_what_the_ledger_could_not_store():
    assert MAX_RATE_PLACES == 4
    assert rate_issue(Decimal("150.1234"), "USD") is None
    assert rate_issue(Decimal("150.10000"), "USD") is None  # trailing zeros are not precision
    assert rate_issue(Decimal("15000"), "JPY") is None
    assert "5 decimal places" in rate_issue(Decimal("150.12345"), "USD")
    assert "positive" in rate_issue(Decimal("0"), "USD") and "positive" in rate_issue(Decimal("-5"), "USD")
    assert "too large" in rate_issue(Decimal("123456789012345"), "USD")
    assert "currency" in rate_issue(Decimal("100"), "XYZ")


def test_intake_refuses_an_over_precise_rate_per_rate():
    customer = Customer(
        crm_account_id="001X",
        name="Initech",
        legal_name="Initech LLC",
        region="NA",
        tax_id="US-1",
        currency="USD",
        payment_terms="Net 30",
        billing_address=Address(street="1 Way", city="Austin", postal_code="78701", country="US"),
    )
    engagement = Engagement(
        opportunity_id="006X",
        opportunity_name="Rollout",
        customer=customer,
        service_line="Data & Analytics",
        region="NA",
        billing_model=BillingModel.TIME_AND_MATERIALS,
        contract_value=Money(amount=Decimal("100000"), currency="USD"),
        start_date=date(2027, 1, 1),
        end_date=date(2027, 6, 30),
        rate_card=[
            RateCardEntry(role="Consultant", rate=Decimal("150.12345")),
            RateCardEntry(role="Architect", rate=Decimal("0")),
            RateCardEntry(role="Engagement Manager", rate=Decimal("250.5")),
        ],
    )
    us = Subsidiary(subsidiary_id="1", name="Q2C Consulting Inc.", region="NA", country="US", currency="USD")
    template = ProjectTemplate(template_id="3001", service_line="Data & Analytics", name="D&A", tasks=[])
    report = validate_engagement(engagement, [us], [template])
    assert [(i.field, "5 decimal places" in i.reason or "positive" in i.reason) for i in report.issues] == [
        ("opportunity.rate_card[Consultant].rate", True),
        ("opportunity.rate_card[Architect].rate", True),
    ]


# --- through the real workflow ----------------------------------------------------------------


def _bulk(psa_url: str, entries: list[dict]) -> list[str]:
    r = httpx.post(f"{psa_url}/__sandbox/time/bulk", json={"time_entries": entries, "approved": True}, timeout=10)
    assert r.status_code < 300, r.text
    return r.json()["time_entry_ids"]


def _set_role(psa_url: str, user_id: str, role_id: str | None) -> None:
    httpx.put(f"{psa_url}/__sandbox/users/{user_id}", json={"role_id": role_id}, timeout=10).raise_for_status()


async def test_61_minutes_at_500_09_is_508_42_everywhere(fresh_ts_stack, crm_client):
    stack = fresh_ts_stack
    deal = await create_deal(
        crm_client, start="2027-01-01", end="2027-01-31", rate_lines=[("Consultant", 10, "500.09", None)]
    )
    status = await _start(stack, deal.opportunity_id)
    ws = status.psa_workspace.workspace_id
    story = next(t for t in status.psa_workspace.tasks if t.billable)
    [psa_id] = _bulk(
        stack.psa.url,
        [
            {
                "workspace_id": ws,
                "story_id": story.psa_story_id,
                "user_id": "206",
                "date_performed": "2027-01-12",
                "time_in_minutes": 61,
                "billable": True,
            }
        ],
    )
    summary = await _run_to_close(stack, deal.opportunity_id, status.erp_customer_id)
    exact = Decimal("508.42")

    # the oracle, from the PSA's raw records
    rates = [("Consultant", Decimal("500.09"), None)]
    assert oracle.expected_entry_amounts(stack.psa, ws, rates) == {psa_id: exact}
    assert oracle.expected_tm_totals(stack.psa, ws, rates, [(date(2027, 1, 1), date(2027, 1, 31))]) == [exact]
    # the ERP timeBill
    bill = stack.erp.record_by_eid("timeBill", f"psa-{psa_id}")
    assert (bill["hours"], bill["rate"], bill["custcol_amount"]) == ("1:01", Decimal("500.09"), exact)
    # the ledger row
    ledger = Ledger.from_url(ledger_url(stack.settings))
    try:
        [row] = ledger.posted_time(deal.opportunity_id)
        assert (row.psa_id, row.minutes, row.rate, row.amount) == (psa_id, 61, Decimal("500.09"), exact)
        assert row.invoice_external_id == f"inv-{deal.opportunity_id}-p000"
        [ledger_invoice] = ledger.invoices(deal.opportunity_id)
        assert ledger_invoice.total == exact
    finally:
        ledger.dispose()
    # the ERP invoice: its line and total
    [invoice] = invoices_of(stack.erp, deal.opportunity_id).values()
    [line] = invoice["item"]["items"]
    assert (line["amount"], line["rate"], line["custcol_time_bills"]) == (exact, Decimal("500.09"), [bill["id"]])
    assert line["description"] == "Consultant: 1.02 h (61 min) at 500.09/h"
    assert invoice["total"] == exact and bill["isBilled"] is True
    assert summary.billed == {"USD": exact} and summary.collected == {"USD": exact}


async def test_time_is_priced_at_the_role_it_was_booked_under(fresh_ts_stack, crm_client):
    """Two consultants book time, then are promoted to Senior Consultant: one entry carries its
    role, the other none (its user had no role then; their project role on the workspace was
    recorded afterwards). Both bill at the Consultant rate, not at today's Senior rate."""
    stack = fresh_ts_stack
    deal = await create_deal(
        crm_client,
        start="2027-01-01",
        end="2027-01-31",
        rate_lines=[("Consultant", 10, "150", None), ("Senior Consultant", 10, "185", None)],
    )
    status = await _start(stack, deal.opportunity_id)
    ws = status.psa_workspace.workspace_id
    story = next(t for t in status.psa_workspace.tasks if t.billable).psa_story_id
    api = httpx.Client(base_url=f"{stack.psa.url}/api/v1", headers=AUTH, timeout=10)
    try:
        [booked_as_consultant] = _bulk(
            stack.psa.url,
            [
                {
                    "workspace_id": ws,
                    "story_id": story,
                    "user_id": "206",
                    "date_performed": "2027-01-11",
                    "time_in_minutes": 60,
                }
            ],
        )
        _set_role(stack.psa.url, "203", None)
        [booked_without_role] = _bulk(
            stack.psa.url,
            [
                {
                    "workspace_id": ws,
                    "story_id": story,
                    "user_id": "203",
                    "date_performed": "2027-01-12",
                    "time_in_minutes": 90,
                }
            ],
        )
        api.post(
            "/workspace_resources.json",
            json={"workspace_resource": {"workspace_id": ws, "user_id": "203", "role_id": CONSULTANT}},
        ).raise_for_status()
        _set_role(stack.psa.url, "206", SENIOR)
        _set_role(stack.psa.url, "203", SENIOR)
        entries = {e["id"]: e for e in stack.psa.records("time_entries")}
        assert entries[booked_as_consultant]["role_id"] == CONSULTANT
        assert entries[booked_without_role]["role_id"] is None

        await _run_to_close(stack, deal.opportunity_id, status.erp_customer_id)
    finally:
        _set_role(stack.psa.url, "206", CONSULTANT)
        _set_role(stack.psa.url, "203", CONSULTANT)
        api.close()

    rates = [("Consultant", Decimal("150"), None), ("Senior Consultant", Decimal("185"), None)]
    [invoice] = invoices_of(stack.erp, deal.opportunity_id).values()
    [line] = invoice["item"]["items"]
    assert (line["description"], line["amount"]) == ("Consultant: 2.5 h at 150.00/h", Decimal("375.00"))
    assert (
        oracle.expected_tm_totals(stack.psa, ws, rates, [(date(2027, 1, 1), date(2027, 1, 31))])
        == [Decimal("375.00")]
        == [invoice["total"]]
    )
    bills = {b["externalId"]: b for b in stack.erp.records("timeBill")}
    assert bills[f"psa-{booked_as_consultant}"]["custcol_role"] == "Consultant"
    assert bills[f"psa-{booked_without_role}"]["custcol_role"] == "Consultant"


async def test_an_entry_whose_role_cannot_be_told_is_parked_not_guessed(psa_sandbox, psa_client):
    """No role on the entry and no project role on the workspace: the connector says why, and
    the check parks it as NO_RATE naming what is missing (the user's account role, which they
    hold only since, is not used)."""
    url = psa_sandbox.url
    with httpx.Client(base_url=f"{url}/api/v1", headers=AUTH, timeout=10) as api:

        def first(body: dict) -> dict:
            ref = body["results"][0]
            return body[ref["key"]][ref["id"]]

        ws = first(
            api.post(
                "/workspaces.json",
                json={
                    "workspace": {"title": f"Role test {uuid.uuid4().hex[:8]}", "currency": "USD", "status": "Active"}
                },
            ).json()
        )["id"]
        story = first(
            api.post("/stories.json", json={"story": {"title": "Build", "workspace_id": ws, "billable": True}}).json()
        )["id"]
        _set_role(url, "203", None)
        try:
            [entry_id] = _bulk(
                url,
                [
                    {
                        "workspace_id": ws,
                        "story_id": story,
                        "user_id": "203",
                        "date_performed": "2027-02-03",
                        "time_in_minutes": 60,
                    }
                ],
            )
            _set_role(url, "203", SENIOR)  # promoted since
            [entry], _ = await psa_client.list_approved_time(ws, through=date(2027, 2, 28), unposted_only=False)
        finally:
            _set_role(url, "203", CONSULTANT)
    assert entry.psa_id == entry_id and entry.role == ""
    assert entry.role_issue == f"the PSA entry carries no role and user 203 holds no role on workspace {ws}"
    check = check_time_entry(
        entry,
        tasks={story: Task(name="Build", billable=True, psa_story_id=story)},
        rate_card=[RateCardEntry(role="Senior Consultant", rate=Decimal("185"))],
        periods=[
            AccountingPeriod(period_id="1", name="Feb 2027", start_date=date(2027, 2, 1), end_date=date(2027, 2, 28))
        ],
        currency="USD",
    )
    assert (check.ok, check.reason_code) == (False, "NO_RATE")
    assert f"holds no role on workspace {ws}" in check.message
