"""The steward console in a real browser: headless Debian Chromium driven by Selenium.

A deal whose account lacks its tax ID pauses in AwaitingSteward (queue master-data). The
steward signs in with the token, finds it in the queue, opens it, submits an invalid fix (the
validator's message shows next to the field, the engagement stays paused), then a valid one:
the page says it resumed and the engagement reaches Active. And a retainer whose invoice the
ERP refused: the page names the ERP's code and message, and one click on Retry invoices.

Needs `chromium` and `chromium-driver` (`make browser` installs them). Selenium calls block,
so they run in a thread: the worker shares this event loop and must keep running meanwhile.
"""

from __future__ import annotations

import asyncio
import shutil
import time

import pytest

from q2c.domain.stage import EngagementStage
from tests.e2e.test_interfaces_steward_actions import closed_period, needs_update, wait_until
from tests.engagement_helpers import status_of, wait_for_stage
from tests.fixtures.console import STEWARD_TOKEN, paused_deal

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREEN = (1280, 1500)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail(
            "chromium and chromedriver are required: run `make browser` (apt-get install chromium chromium-driver)",
            pytrace=False,
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--window-size={SCREEN[0]},{SCREEN[1]}",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _by():
    from selenium.webdriver.common.by import By

    return By


def click_and_load(driver, element) -> None:
    """Click something that navigates and wait until the next page has fully loaded (the old
    document gone stale and the new one complete), so nothing is read from a half-loaded page."""
    from selenium.webdriver.support.expected_conditions import staleness_of
    from selenium.webdriver.support.wait import WebDriverWait

    old = driver.find_element(_by().TAG_NAME, "html")
    element.click()
    wait = WebDriverWait(driver, 30)
    wait.until(staleness_of(old))
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def sign_in_and_open(driver, base: str, opp: str, screenshot=None) -> dict:
    By = _by()
    driver.get(f"{base}/console")
    assert "/console/login" in driver.current_url  # no token yet: the login page
    driver.find_element(By.ID, "f-token").send_keys(STEWARD_TOKEN)
    click_and_load(driver, driver.find_element(By.ID, "login"))
    assert driver.find_element(By.TAG_NAME, "h1").text == "Paused engagements"
    from selenium.webdriver.support.select import Select

    deadline = time.monotonic() + 30
    while True:  # filter the master-data queue until visibility lists the deal
        Select(driver.find_element(By.ID, "q-queue")).select_by_value("master-data")
        click_and_load(driver, driver.find_element(By.CSS_SELECTOR, "#filters button"))
        links = [a for a in driver.find_elements(By.CSS_SELECTOR, "#queue a.opp-link") if a.text == opp]
        if links or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert links, f"{opp} not in the master-data queue: {driver.page_source[:2000]}"
    row = links[0].find_element(By.XPATH, "./ancestor::tr").text
    if screenshot:
        driver.save_screenshot(str(screenshot))
    click_and_load(driver, links[0])
    return {
        "row": row,
        "stage": driver.find_element(By.CSS_SELECTOR, "#stage .badge").text,
        "pause": driver.find_element(By.ID, "pause").text,
    }


def submit_fix(driver, tax_id: str, screenshot=None) -> dict:
    By = _by()
    field = driver.find_element(By.ID, "f-tax_id")
    field.clear()
    field.send_keys(tax_id)
    click_and_load(driver, driver.find_element(By.ID, "submit-fix"))
    errors = driver.find_elements(By.ID, "err-tax_id")
    result = {
        "error": errors[0].text if errors else None,
        "kept": driver.find_element(By.ID, "f-tax_id").get_attribute("value")
        if driver.find_elements(By.ID, "f-tax_id")
        else None,
        "flash": (driver.find_elements(By.ID, "flash") or [None])[0],
        "stage": driver.find_element(By.CSS_SELECTOR, "#stage .badge").text,
    }
    result["flash"] = result["flash"].text if result["flash"] is not None else None
    if screenshot:
        driver.save_screenshot(str(screenshot))
    return result


def reload_stage(driver) -> str:
    driver.refresh()
    return driver.find_element(_by().CSS_SELECTOR, "#stage .badge").text


async def test_steward_fixes_a_paused_engagement_in_the_browser(console_stack, browser, tmp_path):
    deal, _ = await paused_deal(console_stack, account_name="Browser Test Analytics Inc")
    opp = deal.opportunity_id

    opened = await asyncio.to_thread(sign_in_and_open, browser, console_stack.url, opp, tmp_path / "queue.png")
    assert "Browser Test Analytics Inc" in opened["row"] and "customer.tax_id" in opened["row"]
    assert opened["stage"] == "AwaitingSteward"
    assert "master-data" in opened["pause"] and "customer.tax_id" in opened["pause"]

    invalid = await asyncio.to_thread(submit_fix, browser, "abc", tmp_path / "invalid-fix.png")
    assert invalid["error"] and "is not valid for billing country US" in invalid["error"], invalid
    assert invalid["kept"] == "abc" and invalid["stage"] == "AwaitingSteward"
    await asyncio.sleep(0.5)
    assert (await status_of(console_stack.client, opp)).stage is EngagementStage.AWAITING_STEWARD

    valid = await asyncio.to_thread(submit_fix, browser, "12-3456789")
    assert valid["error"] is None and "Customer data accepted" in valid["flash"], valid
    active = await wait_for_stage(console_stack.client, opp, EngagementStage.ACTIVE)
    assert active.engagement.customer.tax_id == "12-3456789"
    assert await asyncio.to_thread(reload_stage, browser) == "Active"
    await asyncio.to_thread(browser.save_screenshot, str(tmp_path / "resumed.png"))
    assert (tmp_path / "invalid-fix.png").stat().st_size > 10_000


def open_engagement(driver, base: str, opp: str) -> None:
    By = _by()
    driver.get(f"{base}/console/login?next=/console/engagements/{opp}")
    driver.find_element(By.ID, "f-token").send_keys(STEWARD_TOKEN)
    click_and_load(driver, driver.find_element(By.ID, "login"))


def retry_in_browser(driver, base: str, opp: str, note: str, screenshot=None) -> dict:
    By = _by()
    open_engagement(driver, base, opp)
    seen = {
        "action": driver.find_element(By.ID, "pause-action").get_attribute("data-action"),
        "system": driver.find_element(By.ID, "pause-system").text,
        "code": driver.find_element(By.ID, "pause-vendor-code").text,
        "message": driver.find_element(By.ID, "pause-vendor-message").text,
    }
    if screenshot:
        driver.save_screenshot(str(screenshot))
    driver.find_element(By.ID, "f-retry-note").send_keys(note)
    click_and_load(driver, driver.find_element(By.ID, "retry"))
    seen["flash"] = driver.find_element(By.ID, "flash").text
    return seen


@needs_update("retry")
async def test_steward_retries_a_parked_invoice_in_the_browser(console_stack, browser, tmp_path):
    """A retainer's first invoice is refused by the ERP (period closed): the page says what the
    ERP answered and offers Retry; after the period is reopened, one click invoices."""
    from q2c.cli.main import start
    from q2c.engagement.messages import DeliveryConfig
    from tests.deals import create_deal

    async with console_stack.crm.client() as crm:
        deal = await create_deal(crm, billing_model="Retainer", account_name="Browser Retry Retainer AG")
    opp = deal.opportunity_id
    with closed_period(console_stack.erp.url, "Dec 2026") as reopen:
        await start(
            console_stack.client,
            opp,
            task_queue=console_stack.settings.task_queue,
            delivery=DeliveryConfig(period_seconds=4, payment_poll_seconds=3600),
        )
        await wait_until(
            console_stack.client,
            opp,
            lambda s: s.pause is not None and s.pause.action.value == "retry",
            timeout=90,
            what="a retry pause",
        )
        reopen()
        seen = await asyncio.to_thread(
            retry_in_browser, browser, console_stack.url, opp, "Dec 2026 reopened", tmp_path / "parked.png"
        )
    assert seen["action"] == "retry" and seen["system"] == "ERP" and seen["code"] and seen["message"]
    assert "Retry accepted" in seen["flash"], seen
    done = await wait_until(console_stack.client, opp, lambda s: s.invoices and s.pause is None, what="invoiced")
    assert done.stage is not EngagementStage.AWAITING_STEWARD
    assert (tmp_path / "parked.png").stat().st_size > 10_000
