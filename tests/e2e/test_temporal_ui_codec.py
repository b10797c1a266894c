"""The Temporal Web UI shows an engagement's decrypted input, through q2c's codec server.

A real dev server with its UI started the way `make up` starts it (`--ui-codec-endpoint`
pointing at the console's `/codec`), the q2c service (console + codec server) with the UI's
origin allowed, and headless Chromium. The engineer signs in to the console first (its
session cookie is what the codec server accepts), and has turned on "Include cross-origin
credentials" in the UI's codec settings (stored in the browser; set here as the UI stores it).
Temporal itself holds only ciphertext: the same page without the sign-in shows none of it.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from q2c.cli.main import start
from q2c.domain.stage import EngagementStage
from q2c.engagement.search_attributes import ensure_search_attributes
from q2c.webhook.app import create_app as create_webhook_app
from sandboxes.common.server import ServerThread, free_port
from tests.deals import create_deal
from tests.e2e.test_console_browser import _by, click_and_load
from tests.e2e.test_console_browser import browser as browser  # noqa: F401 (the fixture)
from tests.engagement_helpers import wait_for_stage
from tests.fixtures.console import STEWARD_TOKEN
from tests.fixtures.stack import q2c_settings, running_worker
from tests.fixtures.temporal import STARTUP_TIMEOUT, _binary, converter_under_test

SCREENSHOT = Path(__file__).resolve().parents[2] / ".state" / "screenshots" / "temporal-ui-decoded.png"


@pytest_asyncio.fixture
async def ui_stack(crm_sandbox, erp_sandbox, psa_sandbox, tmp_path):
    service_port, ui_port = free_port(), free_port()
    env = await WorkflowEnvironment.start_local(
        data_converter=converter_under_test(),
        dev_server_existing_path=_binary("temporal"),
        dev_server_log_level="error",
        dev_server_startup_timeout=STARTUP_TIMEOUT,
        ui=True,
        ui_port=ui_port,
        dev_server_extra_args=["--ui-codec-endpoint", f"http://127.0.0.1:{service_port}/codec"],
    )
    await ensure_search_attributes(env.client)
    settings = q2c_settings(
        crm_url=crm_sandbox.url,
        erp_url=erp_sandbox.url,
        psa_url=psa_sandbox.url,
        state_dir=tmp_path / "state",
        temporal_address=env.client.service_client.config.target_host,
        webhook_port=service_port,
    )
    import dataclasses

    settings = dataclasses.replace(settings, temporal_ui_url=f"http://127.0.0.1:{ui_port}")
    service = ServerThread(create_webhook_app(settings), port=service_port).start()
    try:
        async with running_worker(env.client, settings):
            yield env, settings, f"http://127.0.0.1:{service_port}", f"http://127.0.0.1:{ui_port}"
    finally:
        service.stop()
        await env.shutdown()


def _input_text(driver, ui: str, workflow_id: str, *, timeout: float = 150, reload_every: float = 30) -> str:
    """The workflow page's body text once the UI has rendered its input section. On a loaded
    machine (the slow tests run beside the rest) the UI's first render can stall on its own
    requests: the page is loaded again every `reload_every` seconds until the deadline."""
    By = _by()
    url = f"{ui}/namespaces/default/workflows/{workflow_id}"
    driver.get(url)
    deadline = time.monotonic() + timeout
    reload_at = time.monotonic() + reload_every
    text = ""
    from selenium.common.exceptions import WebDriverException

    while time.monotonic() < deadline:
        try:
            text = driver.find_element(By.TAG_NAME, "body").text
        except WebDriverException:  # the page was replaced while it was read (a render or our reload)
            time.sleep(0.5)
            continue
        if "opportunity_id" in text or "binary/encrypted" in text or "encryption-key-id" in text:
            return text
        if time.monotonic() > reload_at:
            driver.get(url)
            reload_at = time.monotonic() + reload_every
        time.sleep(0.5)
    return text


async def test_ui_shows_the_decoded_input_to_a_signed_in_engineer(ui_stack, browser, tmp_path):  # noqa: F811
    env, settings, service, ui = ui_stack
    async with crm_sandbox_client(settings) as crm:
        deal = await create_deal(crm)
    await start(env.client, deal.opportunity_id, task_queue=settings.task_queue, delivery=None)
    await wait_for_stage(env.client, deal.opportunity_id, EngagementStage.ACTIVE)
    workflow_id = f"engagement-{deal.opportunity_id}"

    def drive() -> tuple[str, str]:
        By = _by()
        # the UI's own per-browser codec settings, as its settings dialog stores them
        browser.get(f"{ui}/namespaces/default/workflows")
        for key, value in (
            ("endpoint", f"{service}/codec"),
            ("overrideRemoteCodecConfiguration", True),
            ("includeCredentials", True),
        ):
            browser.execute_script("window.localStorage.setItem(arguments[0], arguments[1])", key, json.dumps(value))
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        before = _input_text(browser, ui, workflow_id)
        # sign in to the console: its session cookie is what the codec server accepts
        browser.get(f"{service}/console/login")
        browser.find_element(By.ID, "f-token").send_keys(STEWARD_TOKEN)
        click_and_load(browser, browser.find_element(By.ID, "login"))
        after = _input_text(browser, ui, workflow_id)
        browser.save_screenshot(str(SCREENSHOT))
        return before, after

    before, after = await asyncio.to_thread(drive)
    assert '"opportunity_id"' not in before  # not signed in: the codec server refused, ciphertext only
    assert '"opportunity_id"' in after and deal.opportunity_id in after, after[:2000]
    assert '"source"' in after


def crm_sandbox_client(settings):
    from q2c.vendors.salesforce.client import SalesforceClient

    return SalesforceClient(settings.crm)
