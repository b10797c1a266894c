"""The webhook service over real HTTP against a real Temporal dev server (no worker needed:
a started workflow just stays scheduled, which is what we assert on): starts only for Closed
Won, the stage read from the CRM sandbox when a message lacks it, restarts after a failed or
terminated run, never after a completed one."""

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
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from q2c.engagement.client import start_engagement, workflow_id_for
from q2c.settings import OUTBOUND_PATH, load_settings
from q2c.webhook.app import create_app
from q2c.webhook.outbound_message import ACK_XML, build_outbound_message, to_18
from q2c.webhook.standard_webhooks import signed_headers
from sandboxes.common.server import ServerThread, free_port
from stack.demo_env import DEMO_OUTBOUND_PATH_SECRET

XML = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
OUTBOUND = f"{OUTBOUND_PATH}/{DEMO_OUTBOUND_PATH_SECRET}"  # the endpoint URL Salesforce is given


def base_settings(state_dir):
    """This machine's settings with the webhook's secrets set and a ledger of the test's own."""
    return dataclasses.replace(load_settings(), state_dir=state_dir, outbound_path_secrets=(DEMO_OUTBOUND_PATH_SECRET,))


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
async def service(dev_env, tmp_path):
    settings = dataclasses.replace(
        base_settings(tmp_path),
        temporal_address=dev_env.client.service_client.config.target_host,
        temporal_namespace=dev_env.client.namespace,
        task_queue=f"webhook-test-{uuid.uuid4().hex[:8]}",
    )
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
        r = await http.post(OUTBOUND, content=body, headers=XML)
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
    r = await http.post(
        OUTBOUND,
        content=build_outbound_message(settings.crm.organization_id, [a[:15]]),
        headers=XML,
    )
    assert r.status_code == 200
    assert await exists(dev_env.client, a)


@pytest.mark.parametrize(
    "make_body",
    [
        lambda org, ids: b"<soapenv:Envelope",
        lambda org, ids: build_outbound_message(org, []),
        lambda org, ids: build_outbound_message(org, ids + ["006NOTANID"]),  # valid ones first: none may start
        lambda org, ids: build_outbound_message(org, ids * 101),  # 101 notifications
    ],
)
async def test_outbound_malformed_is_400_and_starts_nothing(service, dev_env, make_body):
    settings, http = service
    ids = [new_opportunity_id()]
    r = await http.post(OUTBOUND, content=make_body(settings.crm.organization_id, ids), headers=XML)
    assert r.status_code == 400
    assert "<faultcode>soapenv:Client</faultcode>" in r.text and "<Ack>" not in r.text
    assert not await exists(dev_env.client, ids[0])


async def test_outbound_wrong_org_is_403_and_starts_nothing(service, dev_env):
    _, http = service
    a = new_opportunity_id()
    r = await http.post(OUTBOUND, content=build_outbound_message("00D000000000OTHER", [a]), headers=XML)
    assert r.status_code == 403
    assert "Fault" in r.text and "<Ack>" not in r.text
    assert not await exists(dev_env.client, a)


def _signed(settings, payload: dict, *, timestamp: int | None = None) -> tuple[bytes, dict]:
    body = json.dumps(payload).encode()
    headers = signed_headers(settings.webhook_secret, f"msg_{uuid.uuid4().hex}", body, timestamp=timestamp)
    return body, {**headers, "Content-Type": "application/json"}


def _event(opp: str) -> dict:
    return {"type": "opportunity.closed_won", "timestamp": "2025-01-01T00:00:00Z", "data": {"opportunity_id": opp}}


async def test_closed_won_starts_then_reports_existing(service, dev_env):
    settings, http = service
    a = new_opportunity_id()
    body, headers = _signed(settings, _event(a))
    r = await http.post("/webhooks/closed-won", content=body, headers=headers)
    assert r.status_code == 202
    assert r.json() == {
        "workflow_id": workflow_id_for(a),
        "already_existed": False,
        "restarted": False,
        "previous_status": None,
    }
    assert await exists(dev_env.client, a)
    body, headers = _signed(settings, _event(a))
    r = await http.post("/webhooks/closed-won", content=body, headers=headers)
    assert r.status_code == 202 and r.json()["already_existed"] is True and r.json()["restarted"] is False
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


@pytest.mark.parametrize("offset,reason", [(-330, "timestamp_too_old"), (+330, "timestamp_too_new")])
async def test_closed_won_stale_or_future_timestamp_is_401(service, dev_env, offset, reason):
    settings, http = service
    a = new_opportunity_id()
    body, headers = _signed(settings, _event(a), timestamp=int(time.time()) + offset)
    r = await http.post("/webhooks/closed-won", content=body, headers=headers)
    assert r.status_code == 401 and r.json()["reason"] == reason
    assert not await exists(dev_env.client, a)


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"type": "opportunity.closed_won", "data": {}}, "data.opportunity_id"),
        ({"type": "opportunity.closed_won", "data": {"opportunity_id": "0015e00000ABCDE"}}, "data.opportunity_id"),
        ({"type": "opportunity.updated", "data": {"opportunity_id": "0065e00000ABCDE"}}, "type"),
    ],
)
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


async def test_temporal_unreachable_is_503_without_ack(tmp_path):
    settings = dataclasses.replace(base_settings(tmp_path), temporal_address=f"127.0.0.1:{free_port()}")
    server = ServerThread(create_app(settings)).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            r = await http.post(
                OUTBOUND,
                headers=XML,
                content=build_outbound_message(settings.crm.organization_id, [new_opportunity_id()]),
            )
            assert r.status_code == 503 and "<Ack>" not in r.text and "soapenv:Server" in r.text
            body, headers = _signed(settings, _event(new_opportunity_id()))
            r = await http.post("/webhooks/closed-won", content=body, headers=headers)
            assert r.status_code == 503
            assert (await http.get("/healthz")).json()["temporal_connected"] is False
    finally:
        server.stop()


# ---- only Closed Won starts; the stage from the message, else from the CRM ---------------------


def outcome(response) -> dict:
    """The webhook's account of what a SOAP message did (the ack body itself is fixed)."""
    return json.loads(response.headers["x-q2c-outcome"])


async def signals_of(client, opportunity_id: str) -> list[str]:
    history = await client.get_workflow_handle(workflow_id_for(opportunity_id)).fetch_history()
    return [
        e.workflow_execution_signaled_event_attributes.signal_name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]


async def test_outbound_for_a_deal_not_closed_won_is_acked_and_starts_nothing(service, dev_env):
    settings, http = service
    a = new_opportunity_id()
    negotiating = build_outbound_message(
        settings.crm.organization_id, [a], extra_fields={"StageName": "Negotiation/Review", "IsWon": "false"}
    )
    r = await http.post(OUTBOUND, content=negotiating, headers=XML)
    assert r.status_code == 200 and r.text == ACK_XML  # acknowledged: Salesforce must not redeliver it
    skipped = outcome(r)["skipped"]
    assert [s["opportunity_id"] for s in skipped] == [a] and skipped[0]["stage"] == "Negotiation/Review"
    assert "not 'Closed Won'" in skipped[0]["reason"] and outcome(r)["started"] == []
    assert not await exists(dev_env.client, a)
    # the salesperson closes it: the next notification starts it
    r = await http.post(OUTBOUND, headers=XML, content=build_outbound_message(settings.crm.organization_id, [a]))
    assert r.status_code == 200 and outcome(r)["started"] == [workflow_id_for(a)]
    assert await exists(dev_env.client, a)


async def test_outbound_last_notification_of_a_deal_decides(service, dev_env):
    """Two notifications for one deal in one message: the later one holds its latest stage."""
    settings, http = service
    a, b = new_opportunity_id(), new_opportunity_id()
    won = {"StageName": "Closed Won"}
    # notifications for a (won), b (won), then a again (lost)
    body = build_outbound_message(settings.crm.organization_id, [a, b, a], extra_fields=won)
    head, tail = body.rsplit("<sf:StageName>Closed Won</sf:StageName>", 1)
    body = head + "<sf:StageName>Closed Lost</sf:StageName>" + tail
    r = await http.post(OUTBOUND, content=body, headers=XML)
    assert r.status_code == 200
    assert outcome(r)["started"] == [workflow_id_for(b)]
    assert [s["opportunity_id"] for s in outcome(r)["skipped"]] == [a]
    assert not await exists(dev_env.client, a) and await exists(dev_env.client, b)


async def test_outbound_moved_out_of_closed_won_still_signals_the_running_engagement(service, dev_env):
    settings, http = service
    a = new_opportunity_id()
    org = settings.crm.organization_id
    assert (await http.post(OUTBOUND, headers=XML, content=build_outbound_message(org, [a]))).status_code == 200
    assert await signals_of(dev_env.client, a) == []
    r = await http.post(
        OUTBOUND,
        headers=XML,
        content=build_outbound_message(org, [a], extra_fields={"StageName": "Negotiation/Review"}),
    )
    assert r.status_code == 200 and outcome(r)["signalled"] == [workflow_id_for(a)]
    assert outcome(r)["skipped"] == [] and outcome(r)["started"] == []
    assert await signals_of(dev_env.client, a) == ["crm_changed"]
    # Closed Won again: the same engagement, told once more
    r = await http.post(OUTBOUND, headers=XML, content=build_outbound_message(org, [a]))
    assert outcome(r)["signalled"] == [workflow_id_for(a)]
    assert await signals_of(dev_env.client, a) == ["crm_changed", "crm_changed"]
    assert await workflow_ids_on(dev_env.client, settings.task_queue, 1) == [workflow_id_for(a)]


@pytest_asyncio.fixture
async def crm_service(dev_env, crm_sandbox, tmp_path):
    """The webhook service reading stages from the CRM sandbox."""
    from tests.fixtures.crm import crm_settings

    settings = dataclasses.replace(
        base_settings(tmp_path),
        temporal_address=dev_env.client.service_client.config.target_host,
        temporal_namespace=dev_env.client.namespace,
        task_queue=f"webhook-test-{uuid.uuid4().hex[:8]}",
        crm=crm_settings(crm_sandbox.url),
    )
    server = ServerThread(create_app(settings)).start()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield settings, http
    server.stop()


async def test_outbound_without_stage_reads_it_from_the_crm(crm_service, crm_sandbox, dev_env):
    from tests.deals import create_deal

    settings, http = crm_service
    async with crm_sandbox.client() as crm:
        deal = await create_deal(crm, stage="Negotiation/Review")
        unknown = new_opportunity_id()  # not in the CRM at all
        only_ids = build_outbound_message(settings.crm.organization_id, [deal.opportunity_id, unknown], extra_fields={})
        r = await http.post(OUTBOUND, content=only_ids, headers=XML)
        assert r.status_code == 200 and r.text == ACK_XML, r.text
        result = outcome(r)
        assert result["stages_read_from_crm"] == 2 and result["started"] == []
        reasons = {s["opportunity_id"]: s for s in result["skipped"]}
        assert reasons[deal.opportunity_id]["stage"] == "Negotiation/Review"
        assert "no such opportunity" in reasons[unknown]["reason"]
        assert not await exists(dev_env.client, deal.opportunity_id)
        await crm.set_opportunity_stage(deal.opportunity_id, "Closed Won")
        # the stage change is a new notification (the same one again would be a redelivery)
        only_ids = build_outbound_message(settings.crm.organization_id, [deal.opportunity_id], extra_fields={})
        r = await http.post(OUTBOUND, content=only_ids, headers=XML)
    assert r.status_code == 200 and outcome(r)["started"] == [workflow_id_for(deal.opportunity_id)]
    assert await exists(dev_env.client, deal.opportunity_id)


async def test_outbound_without_stage_and_crm_down_is_503_without_ack(dev_env, tmp_path):
    from tests.fixtures.crm import crm_settings

    settings = dataclasses.replace(
        base_settings(tmp_path),
        temporal_address=dev_env.client.service_client.config.target_host,
        task_queue=f"webhook-test-{uuid.uuid4().hex[:8]}",
        crm=crm_settings(f"http://127.0.0.1:{free_port()}"),
        http_timeout_seconds=2.0,
    )
    server = ServerThread(create_app(settings)).start()
    try:
        a = new_opportunity_id()
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            r = await http.post(
                OUTBOUND,
                headers=XML,
                content=build_outbound_message(settings.crm.organization_id, [a], extra_fields={}),
            )
        assert r.status_code == 503 and "<Ack>" not in r.text and "soapenv:Server" in r.text
        assert not await exists(dev_env.client, a)
    finally:
        server.stop()


# ---- a run that failed or was terminated starts again; a completed one never ---------------------


@workflow.defn(name="EndsAtOnce", sandboxed=False)
class EndsAtOnce:
    """Stands in for an engagement run that ended by itself (completed, or failed)."""

    @workflow.run
    async def run(self, fail: bool) -> str:
        if fail:
            raise ApplicationError("boom", non_retryable=True)
        return "done"


async def end_a_run(client, opportunity_id: str, how: str) -> None:
    """Leave a closed run under the engagement's workflow id: terminated, failed or completed."""
    wf_id = workflow_id_for(opportunity_id)
    if how == "terminated":
        await start_engagement(client, opportunity_id, task_queue=f"idle-{uuid.uuid4().hex[:8]}")
        await client.get_workflow_handle(wf_id).terminate(reason="test: an operator ended it")
        return
    tq = f"ends-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=tq, workflows=[EndsAtOnce]):
        handle = await client.start_workflow("EndsAtOnce", how == "failed", id=wf_id, task_queue=tq)
        try:
            await handle.result()
        except WorkflowFailureError:
            pass


@pytest.mark.parametrize("how,status", [("terminated", "TERMINATED"), ("failed", "FAILED")])
async def test_outbound_restarts_a_failed_or_terminated_engagement(service, dev_env, how, status):
    settings, http = service
    a = new_opportunity_id()
    await end_a_run(dev_env.client, a, how)
    old = await dev_env.client.get_workflow_handle(workflow_id_for(a)).describe()
    r = await http.post(OUTBOUND, headers=XML, content=build_outbound_message(settings.crm.organization_id, [a]))
    assert r.status_code == 200 and r.text == ACK_XML
    assert outcome(r)["restarted"] == [{"workflow_id": workflow_id_for(a), "previous_status": status}]
    new = await dev_env.client.get_workflow_handle(workflow_id_for(a)).describe()
    assert new.run_id != old.run_id and new.status == WorkflowExecutionStatus.RUNNING
    assert new.workflow_type == "EngagementWorkflow" and new.task_queue == settings.task_queue
    # a redelivery now finds it running: no second restart
    r = await http.post(OUTBOUND, headers=XML, content=build_outbound_message(settings.crm.organization_id, [a]))
    assert outcome(r)["restarted"] == [] and outcome(r)["signalled"] == [workflow_id_for(a)]
    assert (await dev_env.client.get_workflow_handle(workflow_id_for(a)).describe()).run_id == new.run_id


async def test_closed_won_event_restarts_terminated_but_never_a_completed_engagement(service, dev_env):
    settings, http = service
    terminated, completed = new_opportunity_id(), new_opportunity_id()
    await end_a_run(dev_env.client, terminated, "terminated")
    await end_a_run(dev_env.client, completed, "completed")
    body, headers = _signed(settings, _event(terminated))
    r = await http.post("/webhooks/closed-won", content=body, headers=headers)
    assert r.status_code == 202
    assert r.json() == {
        "workflow_id": workflow_id_for(terminated),
        "already_existed": False,
        "restarted": True,
        "previous_status": "TERMINATED",
    }
    body, headers = _signed(settings, _event(completed))
    r = await http.post("/webhooks/closed-won", content=body, headers=headers)
    assert r.status_code == 202 and r.json()["already_existed"] is True and r.json()["restarted"] is False
    assert r.json()["previous_status"] == "COMPLETED"
    desc = await dev_env.client.get_workflow_handle(workflow_id_for(completed)).describe()
    assert desc.status == WorkflowExecutionStatus.COMPLETED and desc.workflow_type == "EndsAtOnce"
    # the SOAP path agrees: a completed engagement is reported, not restarted
    r = await http.post(
        OUTBOUND,
        headers=XML,
        content=build_outbound_message(settings.crm.organization_id, [completed]),
    )
    assert r.status_code == 200 and outcome(r)["finished"] == [workflow_id_for(completed)]
