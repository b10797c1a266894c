"""The operations dashboard in headless Chromium, and `q2c kpis`, on the console's test stack
(dev server, sandboxes, the real worker, the webhook service with the console).

A closed-won deal reaches Active through the real worker (its provisioning calls are in the
ledger's audit, which gives its activation time). Its posted time and an invoice are then
recorded in the ledger as the delivery activities record them, so the overview's billed,
unbilled and open-balance cells can be compared with the ledger's rows. Screenshots are kept
under .state/screenshots/.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path

from typer.testing import CliRunner

from q2c.cli.main import app as cli_app
from q2c.cli.main import start
from q2c.domain.delivery import Invoice, PostedTime
from q2c.domain.stage import EngagementStage
from tests.deals import create_deal
from tests.e2e.test_console_browser import browser, click_and_load  # noqa: F401 (fixture)
from tests.engagement_helpers import wait_for_stage
from tests.fixtures.console import STEWARD_TOKEN

SCREENSHOTS = Path(__file__).resolve().parents[2] / ".state" / "screenshots"


async def _active_deal_with_money(stack):
    async with stack.crm.client() as crm:
        deal = await create_deal(crm)
    await start(stack.client, deal.opportunity_id, task_queue=stack.settings.task_queue)
    await wait_for_stage(stack.client, deal.opportunity_id, EngagementStage.ACTIVE)
    opp = deal.opportunity_id
    tag = uuid.uuid4().hex[:6]
    posted = [
        PostedTime(
            psa_id=f"te-{tag}-{i}",
            erp_time_bill_id=f"tb-{tag}-{i}",
            role="Senior Consultant",
            date_performed=date(2026, 12, 3 + i),
            minutes=minutes,
            billable=True,
            rate=Decimal("185"),
            currency="USD",
        )
        for i, minutes in enumerate((480, 390, 45))
    ]
    stack.ledger.record_posted_time(posted, opportunity_id=opp)
    invoice = Invoice(
        external_id=f"inv-{opp}-2026-12",
        erp_id=f"erp-{tag}",
        number=f"INV-{tag}",
        period_start=date(2026, 12, 1),
        period_end=date(2026, 12, 31),
        total=Decimal("1480.00"),
        currency="USD",
    )
    stack.ledger.record_invoice(invoice, opportunity_id=opp)
    stack.ledger.mark_time_invoiced([posted[0].psa_id], invoice.external_id)
    return deal


def _ledger_row(stack, opp: str) -> dict:
    uninvoiced = stack.ledger.posted_time(opp, uninvoiced_only=True)
    invoices = stack.ledger.invoices(opp)
    return {
        "billed": sum((i.total for i in invoices), Decimal(0)),
        "open": sum((i.open_balance for i in invoices), Decimal(0)),
        "hours": Decimal(sum(p.minutes for p in uninvoiced)) / 60,
        "amount": sum((p.amount for p in uninvoiced), Decimal(0)),
    }


def _num(text: str) -> Decimal:
    return Decimal(text.split()[0].replace(",", ""))


async def test_overview_and_kpis_in_chromium_show_the_ledger(console_stack, browser):  # noqa: F811
    stack = console_stack
    deal = await _active_deal_with_money(stack)
    opp = deal.opportunity_id
    expected = _ledger_row(stack, opp)
    assert expected["hours"] == Decimal("7.25") and expected["amount"] == Decimal("1341.25")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def drive() -> dict:
        from selenium.webdriver.common.by import By

        browser.get(f"{stack.url}/console/operations")
        assert "/console/login" in browser.current_url
        browser.find_element(By.ID, "f-token").send_keys(STEWARD_TOKEN)
        click_and_load(browser, browser.find_element(By.ID, "login"))
        browser.get(f"{stack.url}/console/operations?q={opp}")
        row = browser.find_element(By.CSS_SELECTOR, f'#overview tr[data-opp="{opp}"]')
        cells = {c.get_attribute("data-col"): c.text for c in row.find_elements(By.CSS_SELECTOR, "td[data-col]")}
        links = [a.get_attribute("href") for a in row.find_elements(By.TAG_NAME, "a")]
        stage = row.find_element(By.CSS_SELECTOR, ".badge").text
        browser.get(f"{stack.url}/console/operations")
        browser.save_screenshot(str(SCREENSHOTS / "operations-overview.png"))
        browser.get(f"{stack.url}/console/operations/kpis")
        kpis = {k: browser.find_element(By.ID, k).text for k in ("kpi-engagements", "kpi-unbilled", "kpi-open")}
        charts = [s.get_attribute("id") for s in browser.find_elements(By.CSS_SELECTOR, "svg[id^=chart-]")]
        refresh = browser.find_element(By.CSS_SELECTOR, 'meta[http-equiv="refresh"]').get_attribute("content")
        browser.save_screenshot(str(SCREENSHOTS / "operations-kpis.png"))
        return dict(cells=cells, links=links, stage=stage, kpis=kpis, charts=charts, refresh=refresh)

    seen = await asyncio.to_thread(drive)
    assert seen["stage"] == "Active"
    assert _num(seen["cells"]["billed"]) == expected["billed"] == Decimal("1480.00")
    assert _num(seen["cells"]["open"]) == expected["open"]
    assert _num(seen["cells"]["unbilled-hours"]) == expected["hours"]
    assert _num(seen["cells"]["unbilled-amount"]) == expected["amount"]
    assert seen["cells"]["burn"] == f"{float(Decimal('1480') / Decimal('120000')) * 100:.1f}%"  # of Amount 120,000
    assert any(link.endswith(f"/console/engagements/{opp}") for link in seen["links"])
    assert any(f"engagement-{opp}" in link for link in seen["links"])  # its Temporal history
    assert {"chart-activation", "chart-aging", "chart-vendors", "chart-stages", "chart-unbilled"} <= set(seen["charts"])
    assert int(seen["refresh"]) > 0
    assert int(seen["kpis"]["kpi-engagements"]) >= 1
    assert "USD" in seen["kpis"]["kpi-unbilled"]
    assert (SCREENSHOTS / "operations-overview.png").stat().st_size > 10_000
    assert (SCREENSHOTS / "operations-kpis.png").stat().st_size > 10_000


async def test_q2c_kpis_prints_the_same_figures(console_stack):
    stack = console_stack
    deal = await _active_deal_with_money(stack)
    expected = _ledger_row(stack, deal.opportunity_id)

    def run():
        env = {**stack.cli_env(), "Q2C_CRM_URL": stack.crm.url}
        return CliRunner().invoke(cli_app, ["kpis", "--engagements"], env=env)

    result = await asyncio.to_thread(run)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Engagements" in out and "Activation cycle (median)" in out and "Receivables aging" in out
    line = next(row for row in out.splitlines() if row.startswith(deal.opportunity_id))
    assert f"{expected['billed']:,.2f}" in line
    assert f"{expected['amount']:,.2f}" in line
    assert "Active" in line
    # the unbilled total per currency is the ledger's, over every engagement of the stack
    from sqlmodel import Session, select

    from q2c.ledger.models import LedgerPostedTime

    with Session(stack.ledger.engine) as s:
        rows = s.exec(
            select(LedgerPostedTime).where(
                LedgerPostedTime.invoice_external_id.is_(None), LedgerPostedTime.currency == "USD"
            )
        ).all()
    total_hours = Decimal(sum(r.minutes for r in rows if r.billable)) / 60
    assert f"USD{'':<29}{total_hours:,.2f} h" in out
