"""A worker killed in the middle of a provisioning attempt (issue 15): the real worker process
(`python -m q2c.worker`) is SIGKILLed while its ERP customer upsert waits on a slow ERP; the
attempt is retried on another worker after about the heartbeat timeout (20 s), not after the
activity's 60 s start-to-close, and the engagement still gets exactly one ERP customer."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from q2c.domain.stage import EngagementStage
from q2c.engagement.client import start_engagement
from q2c.engagement.steps import VENDOR_HEARTBEAT, VENDOR_TIMEOUT
from tests.deals import create_deal
from tests.engagement_helpers import wait_for_stage
from tests.fixtures.erp import demo_m2m
from tests.fixtures.stack import q2c_settings, running_worker

ROOT = Path(__file__).resolve().parents[2]
CUSTOMER_PATH = "/services/rest/record/v1/customer/eid:"


def _arrived(url: str, prefix: str) -> bool:
    arrivals = httpx.get(f"{url}/__sandbox/faults", timeout=10).json()["counters"]["arrivals"]
    return any(a["path"].startswith(prefix) for a in arrivals)


@pytest.mark.slow  # ~90 s (a worker subprocess killed and waited out): runs beside the rest in make test
async def test_killed_workers_provisioning_attempt_is_retried_within_the_heartbeat_timeout(
    dev_env, crm_sandbox, erp_sandbox, psa_sandbox, crm_client, tmp_path
):
    settings = q2c_settings(
        crm_url=crm_sandbox.url,
        erp_url=erp_sandbox.url,
        psa_url=psa_sandbox.url,
        state_dir=tmp_path,
        temporal_address=dev_env.client.service_client.config.target_host,
    )
    m2m = demo_m2m()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "TEMPORAL_NAMESPACE": settings.temporal_namespace,
        "TEMPORAL_TASK_QUEUE": settings.task_queue,
        "Q2C_STATE_DIR": str(tmp_path),
        "Q2C_CRM_URL": crm_sandbox.url,
        "Q2C_ERP_URL": erp_sandbox.url,
        "Q2C_PSA_URL": psa_sandbox.url,
        "Q2C_ERP_CERTIFICATE_ID": m2m.certificate_id,
        "Q2C_ERP_PRIVATE_KEY_FILE": str(m2m.private_key_path),
        "Q2C_HTTP_TIMEOUT_SECONDS": "10",
    }
    deal = await create_deal(crm_client, start="2027-01-01", end="2027-06-30")
    # the customer upsert hangs (as under a slow ERP) so the kill lands inside that attempt
    erp_sandbox.set_faults(latency_ms=8000, path_prefix=CUSTOMER_PATH)
    log = open(tmp_path / "worker.log", "wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "q2c.worker"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        await start_engagement(dev_env.client, deal.opportunity_id, task_queue=settings.task_queue, source="test")
        deadline = time.monotonic() + 90
        while not _arrived(erp_sandbox.url, CUSTOMER_PATH):
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the customer upsert never reached the ERP"
            await asyncio.sleep(0.1)
        worker.send_signal(signal.SIGKILL)  # no shutdown, no failure reported: the attempt is lost
        worker.wait(timeout=10)
        killed = time.monotonic()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
        log.close()
        erp_sandbox.reset_faults()

    async with running_worker(dev_env.client, settings):  # another worker, on the same queue
        status = await wait_for_stage(dev_env.client, deal.opportunity_id, EngagementStage.ACTIVE, timeout=90)
    retried_after = time.monotonic() - killed

    handle = dev_env.client.get_workflow_handle(f"engagement-{deal.opportunity_id}")
    history = await handle.fetch_history()
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    }
    customer = next(a for a in scheduled.values() if a.activity_type.name == "upsert_erp_customer")
    assert customer.heartbeat_timeout.ToTimedelta() == VENDOR_HEARTBEAT
    started = next(
        e.activity_task_started_event_attributes
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
        and scheduled[e.activity_task_started_event_attributes.scheduled_event_id].activity_type.name
        == "upsert_erp_customer"
    )
    assert started.attempt == 2 and "Heartbeat" in started.last_failure.message
    # the lost attempt was given up after the heartbeat timeout, well before the start-to-close
    print(f"\n  killed mid-attempt -> Active after {retried_after:.1f} s (heartbeat timeout {VENDOR_HEARTBEAT})")
    assert retried_after < VENDOR_TIMEOUT.total_seconds() - 15
    customers = [r for r in erp_sandbox.records("customer") if r.get("externalId") == deal.account_id]
    assert len(customers) == 1 and status.erp_customer_id == str(customers[0]["id"])
    await handle.terminate("test finished")
