"""The webhook's fast path (issue 15) over real HTTP against a real Temporal dev server (no
worker: a started workflow stays scheduled, which is what is asserted on).

- a 100-notification Outbound Message starts 100 engagements, each exactly once, and is
  acknowledged; the time it took is printed (Salesforce gives up after 10 s; the target is
  1 s), never asserted;
- notifications that repeat the last ones seen (fields and modification stamp) signal no
  running engagement; a moved stamp, or a definition without a stamp, still does
  (`q2c.ledger.notifications` says why).
"""

from __future__ import annotations

import dataclasses
import time
import uuid

import httpx
import pytest_asyncio

from q2c.engagement.client import workflow_id_for
from q2c.webhook.app import create_app
from q2c.webhook.outbound_message import ACK_XML, build_outbound_message
from sandboxes.common.server import ServerThread
from tests.e2e.test_webhook import (
    OUTBOUND,
    XML,
    base_settings,
    new_opportunity_id,
    outcome,
    signals_of,
    workflow_ids_on,
)

WON = {"StageName": "Closed Won", "IsWon": "true"}


@pytest_asyncio.fixture
async def service(dev_env, tmp_path):
    settings = dataclasses.replace(
        base_settings(tmp_path),
        temporal_address=dev_env.client.service_client.config.target_host,
        temporal_namespace=dev_env.client.namespace,
        task_queue=f"fast-path-{uuid.uuid4().hex[:8]}",
        webhook_rate_limit="100/second",
    )
    server = ServerThread(create_app(settings, client=None)).start()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield settings, http
    server.stop()


async def test_a_100_notification_message_starts_each_engagement_once_and_is_acked(service, dev_env):
    settings, http = service
    # a running service has its ledger open and its Temporal connection up: warm it with one
    warm = build_outbound_message(settings.crm.organization_id, [new_opportunity_id()], extra_fields=WON)
    assert (await http.post(OUTBOUND, content=warm, headers=XML)).status_code == 200
    opps = [new_opportunity_id() for _ in range(100)]
    body = build_outbound_message(settings.crm.organization_id, opps, extra_fields=WON)
    started = time.perf_counter()
    r = await http.post(OUTBOUND, content=body, headers=XML)
    elapsed = time.perf_counter() - started
    print(f"\n100-notification Outbound Message acknowledged in {elapsed * 1000:.0f} ms")
    assert r.status_code == 200 and r.text == ACK_XML
    assert sorted(outcome(r)["started"]) == sorted(workflow_id_for(o) for o in opps)
    assert outcome(r)["signalled"] == outcome(r)["restarted"] == outcome(r)["skipped"] == []
    on_queue = await workflow_ids_on(dev_env.client, settings.task_queue, 101)
    assert set(workflow_id_for(o) for o in opps) <= set(on_queue) and len(on_queue) == 101
    # the same message again (a redelivery): recognised by its notification IDs, nothing done
    r = await http.post(OUTBOUND, content=body, headers=XML)
    assert r.status_code == 200 and r.text == ACK_XML
    assert outcome(r)["duplicate_notifications"] == 100 and outcome(r)["started"] == []
    for opp in opps[:5]:
        assert await signals_of(dev_env.client, opp) == []


async def test_a_repeat_of_the_same_content_signals_no_running_engagement(service, dev_env):
    settings, http = service
    org = settings.crm.organization_id
    opps = [new_opportunity_id() for _ in range(20)]
    stamped = {**WON, "SystemModstamp": "2026-11-02T10:00:00.000Z"}
    r = await http.post(OUTBOUND, headers=XML, content=build_outbound_message(org, opps, extra_fields=stamped))
    assert r.status_code == 200 and len(outcome(r)["started"]) == 20
    # new notifications (new IDs) with the very same fields and stamp: nothing changed in the CRM
    r = await http.post(OUTBOUND, headers=XML, content=build_outbound_message(org, opps, extra_fields=stamped))
    assert r.status_code == 200 and r.text == ACK_XML
    assert sorted(outcome(r)["unchanged"]) == sorted(workflow_id_for(o) for o in opps)
    assert outcome(r)["signalled"] == outcome(r)["started"] == []
    for opp in opps:
        assert await signals_of(dev_env.client, opp) == []
    # the stamp moved for one deal (an edit in the CRM): that engagement alone is told
    moved = {**stamped, "SystemModstamp": "2026-11-02T11:00:00.000Z"}
    body = build_outbound_message(org, [opps[0]], extra_fields=moved)
    r = await http.post(OUTBOUND, headers=XML, content=body)
    assert outcome(r)["signalled"] == [workflow_id_for(opps[0])] and outcome(r)["unchanged"] == []
    assert await signals_of(dev_env.client, opps[0]) == ["crm_changed"]
    # no stamp in the message: equal fields prove nothing (a change order keeps them), so it signals
    r = await http.post(OUTBOUND, headers=XML, content=build_outbound_message(org, [opps[1]], extra_fields=WON))
    assert outcome(r)["signalled"] == [workflow_id_for(opps[1])]
    assert await signals_of(dev_env.client, opps[1]) == ["crm_changed"]
