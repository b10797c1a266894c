"""The webhook service over real HTTP against a real Temporal dev server (no worker needed:
a started workflow just stays scheduled, which is what we assert on)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import string
import time
import uuid

import httpx
import pytest
import pytest_asyncio
from temporalio.service import RPCError, RPCStatusCode

from sandbox.common.server import ServerThread, free_port
from settings import load_settings
from starter.outbound_message import ACK_XML, build_outbound_message, to_18
from starter.standard_webhooks import signed_headers
from starter.start import workflow_id_for
from starter.webhook import create_app

XML = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}


def new_opportunity_id() -> str:
    return to_18("006" + "".join(random.choices(string.ascii_letters + string.digits, k=12)))


async def exists(client, opportunity_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id_for(opportunity_id)).describe()
        return True
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise


async def workflow_ids_on(client, task_queue: str, expected: int) -> list[str]:
    """Workflow ids on a task queue (visibility is eventually consistent: wait a little)."""
    deadline = time.monotonic() + 5
    while True:
        ids = sorted([wf.id async for wf in client.list_workflows(f"TaskQueue = '{task_queue}'")])
        if len(ids) >= expected or time.monotonic() > deadline:
            return ids
        await asyncio.sleep(0.1)


@pytest_asyncio.fixture
async def service(dev_env):
    settings = dataclasses.replace(load_settings(),
                                   temporal_address=dev_env.client.service_client.config.target_host,
                                   temporal_namespace=dev_env.client.namespace,
                                   task_queue=f"webhook-test-{uuid.uuid4().hex[:8]}")
    server = ServerThread(create_app(settings, client=None)).start()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield settings, http
    server.stop()


async def test_healthz(service):
    _, http = service
    r = await http.get("/healthz")
    assert r.status_code == 200 and r.json()["temporal_connected"] is True


async def test_outbound_two_notifications_start_two_workflows_once(service, dev_env):
    settings, http = service
    a, b = new_opportunity_id(), new_opportunity_id()
    body = build_outbound_message(settings.crm.organization_id, [a, b])
    for _ in range(3):  # at-least-once delivery: the same message three times
        r = await http.post("/webhooks/salesforce/outbound", content=body, headers=XML)
        assert r.status_code == 200
        assert r.text == ACK_XML
        assert r.headers["content-type"].startswith("text/xml")
    ids = await workflow_ids_on(dev_env.client, settings.task_queue, 2)
    assert ids == sorted([workflow_id_for(a), workflow_id_for(b)])
    desc = await dev_env.client.get_workflow_handle(workflow_id_for(a)).describe()
    assert desc.workflow_type == "EngagementWorkflow"


async def test_outbound_15_char_id_is_normalised(service, dev_env):
    settings, http = service
    a = new_opportunity_id()
    r = await http.post("/webhooks/salesforce/outbound",
                        content=build_outbound_message(settings.crm.organization_id, [a[:15]]), headers=XML)
    assert r.status_code == 200
    assert await exists(dev_env.client, a)


@pytest.mark.parametrize("make_body", [
    lambda org, ids: b"<soapenv:Envelope",
    lambda org, ids: build_outbound_message(org, []),
    lambda org, ids: build_outbound_message(org, ids + ["006NOTANID"]),  # valid ones first: none may start
    lambda org, ids: build_outbound_message(org, ids * 101),  # 101 notifications
])
async def test_outbound_malformed_is_400_and_starts_nothing(service, dev_env, make_body):
    settings, http = service
    ids = [new_opportunity_id()]
    r = await http.post("/webhooks/salesforce/outbound", content=make_body(settings.crm.organization_id, ids),
                        headers=XML)
    assert r.status_code == 400
    assert "<faultcode>soapenv:Client</faultcode>" in r.text and "<Ack>" not in r.text
    assert not await exists(dev_env.client, ids[0])


async def test_outbound_wrong_org_is_403_and_starts_nothing(service, dev_env):
    _, http = service
    a = new_opportunity_id()
    r = await http.post("/webhooks/salesforce/outbound",
                        content=build_outbound_message("00D000000000OTHER", [a]), headers=XML)
    assert r.status_code == 403
    assert "Fault" in r.text and "<Ack>" not in r.text
    assert not await exists(dev_env.client, a)


def _signed(settings, payload: dict, *, timestamp: int | None = None) -> tuple[bytes, dict]:
    body = json.dumps(payload).encode()
    headers = signed_headers(settings.webhook_secret, f"msg_{uuid.uuid4().hex}", body, timestamp=timestamp)
    return body, {**headers, "Content-Type": "application/json"}


def _event(opp: str) -> dict:
    return {"type": "opportunity.closed_won", "timestamp": "2025-01-01T00:00:00Z",
            "data": {"opportunity_id": opp}}


async def test_closed_won_starts_then_reports_existing(service, dev_env):
    settings, http = service
    a = new_opportunity_id()
    body, headers = _signed(settings, _event(a))
    r = await http.post("/webhooks/closed-won", content=body, headers=headers)
    assert r.status_code == 202
    assert r.json() == {"workflow_id": workflow_id_for(a), "already_existed": False}
    assert await exists(dev_env.client, a)
    body, headers = _signed(settings, _event(a))
    r = await http.post("/webhooks/closed-won", content=body, headers=headers)
    assert r.status_code == 202 and r.json()["already_existed"] is True
    assert await workflow_ids_on(dev_env.client, settings.task_queue, 1) == [workflow_id_for(a)]


async def test_closed_won_bad_signature_is_401(service, dev_env):
    settings, http = service
    a = new_opportunity_id()
    body, headers = _signed(settings, _event(a))
    tampered = body.replace(b"closed_won", b"closed_won ")
    r = await http.post("/webhooks/closed-won", content=tampered, headers=headers)
    assert r.status_code == 401 and r.json()["reason"] == "no_matching_signature"
    headers.pop("webhook-signature")
    r = await http.post("/webhooks/closed-won", content=body, headers=headers)
    assert r.status_code == 401 and r.json()["reason"] == "missing_headers"
    assert not await exists(dev_env.client, a)


@pytest.mark.parametrize("offset,reason", [(-301, "timestamp_too_old"), (+301, "timestamp_too_new")])
async def test_closed_won_stale_or_future_timestamp_is_401(service, dev_env, offset, reason):
    settings, http = service
    a = new_opportunity_id()
    body, headers = _signed(settings, _event(a), timestamp=int(time.time()) + offset)
    r = await http.post("/webhooks/closed-won", content=body, headers=headers)
    assert r.status_code == 401 and r.json()["reason"] == reason
    assert not await exists(dev_env.client, a)


@pytest.mark.parametrize("payload,field", [
    ({"type": "opportunity.closed_won", "data": {}}, "data.opportunity_id"),
    ({"type": "opportunity.closed_won", "data": {"opportunity_id": "0015e00000ABCDE"}}, "data.opportunity_id"),
    ({"type": "opportunity.updated", "data": {"opportunity_id": "0065e00000ABCDE"}}, "type"),
])
async def test_closed_won_bad_shape_is_400(service, dev_env, payload, field):
    settings, http = service
    body, headers = _signed(settings, payload)
    r = await http.post("/webhooks/closed-won", content=body, headers=headers)
    assert r.status_code == 400
    assert field in [f["field"] for f in r.json()["fields"]]
    assert await workflow_ids_on(dev_env.client, settings.task_queue, 0) == []


async def test_closed_won_not_json_is_400(service):
    settings, http = service
    body, headers = _signed(settings, {})
    body = b"{not json"
    headers.update(signed_headers(settings.webhook_secret, "msg_x", body))
    r = await http.post("/webhooks/closed-won", content=body, headers=headers)
    assert r.status_code == 400 and r.json()["error"] == "invalid_payload"


async def test_temporal_unreachable_is_503_without_ack():
    settings = dataclasses.replace(load_settings(), temporal_address=f"127.0.0.1:{free_port()}")
    server = ServerThread(create_app(settings)).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            r = await http.post("/webhooks/salesforce/outbound", headers=XML,
                                content=build_outbound_message(settings.crm.organization_id,
                                                               [new_opportunity_id()]))
            assert r.status_code == 503 and "<Ack>" not in r.text and "soapenv:Server" in r.text
            body, headers = _signed(settings, _event(new_opportunity_id()))
            r = await http.post("/webhooks/closed-won", content=body, headers=headers)
            assert r.status_code == 503
            assert (await http.get("/healthz")).json()["temporal_connected"] is False
    finally:
        server.stop()
