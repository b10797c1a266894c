"""Exactly once, end to end on the dev server: injected ERP failures force activity retries and
the worker is restarted in the middle of posting; every entry is still posted once and the
period invoiced once."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal

import httpx

from q2c.domain.stage import EngagementStage
from q2c.engagement.client import start_engagement
from q2c.engagement.messages import DeliveryConfig
from q2c.ledger.config import ledger_url
from q2c.ledger.store import Ledger
from tests.billing_oracle import expected_tm_totals
from tests.deals import create_deal
from tests.e2e.test_delivery import TM_RATES, invoices_of
from tests.engagement_helpers import status_of, wait_for_stage
from tests.fixtures.stack import q2c_settings, running_worker

ENTRIES = 120


async def test_worker_restart_and_retries_post_each_entry_once(
    dev_env, crm_sandbox, erp_sandbox, psa_sandbox, crm_client, tmp_path
):
    settings = q2c_settings(
        crm_url=crm_sandbox.url,
        erp_url=erp_sandbox.url,
        psa_url=psa_sandbox.url,
        state_dir=tmp_path,
        temporal_address=dev_env.client.service_client.config.target_host,
    )
    client = dev_env.client
    deal = await create_deal(crm_client, start="2027-01-01", end="2027-01-31")
    stop_first = asyncio.Event()

    async def first_worker() -> None:
        async with running_worker(client, settings, graceful_shutdown=timedelta(0)):
            await stop_first.wait()

    worker_a = asyncio.create_task(first_worker())
    try:
        await start_engagement(
            client,
            deal.opportunity_id,
            task_queue=settings.task_queue,
            source="test",
            delivery=DeliveryConfig(period_seconds=6, payment_poll_seconds=3600),
        )
        status = await wait_for_stage(client, deal.opportunity_id, EngagementStage.ACTIVE)
        ws = status.psa_workspace.workspace_id
        story = next(t for t in status.psa_workspace.tasks if t.billable)
        users = {u["role_id"]: u["id"] for u in psa_sandbox.records("users")}
        entries = [
            {
                "workspace_id": ws,
                "story_id": story.psa_story_id,
                "user_id": users[("501", "502", "503")[i % 3]],
                "date_performed": f"2027-01-{1 + i % 28:02d}",
                "time_in_minutes": 45 + 15 * (i % 7),
                "billable": True,
            }
            for i in range(ENTRIES)
        ]
        r = httpx.post(
            f"{psa_sandbox.url}/__sandbox/time/bulk", json={"time_entries": entries, "approved": True}, timeout=30
        )
        assert r.status_code < 300, r.text
        ids = r.json()["time_entry_ids"]
        erp_sandbox.set_faults(latency_ms=40, error_rate=0.1)

        def posted() -> list[dict]:
            return [b for b in erp_sandbox.records("timeBill") if b["externalId"] in {f"psa-{i}" for i in ids}]

        for _ in range(400):  # wait until posting is under way, then stop the worker mid-batch
            if 10 <= len(posted()) < ENTRIES:
                break
            await asyncio.sleep(0.05)
        midway = len(posted())
        assert 0 < midway < ENTRIES, f"posting was not caught midway ({midway})"
        stop_first.set()
        await worker_a
    finally:
        stop_first.set()
        if not worker_a.done():
            await worker_a

    try:
        async with running_worker(client, settings):  # the restarted worker picks up the posting
            for _ in range(600):
                st = await status_of(client, deal.opportunity_id)
                if st and st.invoices:
                    break
                await asyncio.sleep(0.1)
    finally:
        erp_sandbox.reset_faults()

    bills = posted()
    assert len(bills) == ENTRIES == len({b["externalId"] for b in bills})
    # the engagement's own count is the ledger's, however the attempts split the batch
    assert st.totals.posted_entries == ENTRIES
    assert {str(b["customer"]["id"]) for b in bills} == {status.erp_project_id}
    refs = [
        x
        for x in psa_sandbox.records("external_references")
        if x["subject_type"] == "TimeEntry" and str(x["subject_id"]) in set(ids)
    ]
    assert len(refs) == ENTRIES  # each entry marked once in the PSA
    invoices = invoices_of(erp_sandbox, deal.opportunity_id)
    assert list(invoices) == [f"inv-{deal.opportunity_id}-p000"]
    expected = expected_tm_totals(psa_sandbox, ws, TM_RATES, [(date(2027, 1, 1), date(2027, 1, 31))])
    assert Decimal(str(invoices[f"inv-{deal.opportunity_id}-p000"]["total"])) == expected[0]
    ledger = Ledger.from_url(ledger_url(settings))
    try:
        assert len(ledger.posted_time(deal.opportunity_id)) == ENTRIES
    finally:
        ledger.dispose()
    await client.get_workflow_handle(f"engagement-{deal.opportunity_id}").terminate("test finished")
