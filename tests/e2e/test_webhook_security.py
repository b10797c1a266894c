"""The webhook service as an attacker meets it (issue 10, items 1-3), over real HTTP against a
real Temporal dev server and the CRM sandbox; no mocks.

- Outbound Messages: the path secret (a forged message without it, or with a wrong one, is a
  401 that starts nothing and costs no CRM call), rotation (two secrets at once), the proxy's
  client-certificate header, notification IDs de-duplicated in the ledger (a redelivery is
  acknowledged and does nothing), a flood from one source answered 429;
- Standard Webhooks: a replay of the same `webhook-id` signals nothing, also after the webhook
  service restarts on the same ledger; rotated secrets;
- limits before work, on the service as `python -m q2c.webhook.app` runs it (a subprocess, so
  its memory can be measured): a 100 MB body and a lying `Content-Length` answered 413 at once
  with the process growing by under 10 MB, a stalled body 408, stalled headers cut;
- the ledger's claim on SQLite and PostgreSQL: one winner among concurrent claimers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType

from q2c.engagement.client import workflow_id_for
from q2c.ledger.inbound import InboundLog
from q2c.settings import OUTBOUND_PATH, load_settings
from q2c.webhook.app import create_app
from q2c.webhook.outbound_message import ACK_XML, build_outbound_message
from q2c.webhook.standard_webhooks import signed_headers
from sandboxes.common.server import ServerThread, free_port
from stack.demo_env import DEMO_OUTBOUND_PATH_SECRET
from tests.e2e.test_webhook import exists, new_opportunity_id, workflow_ids_on

ROOT = Path(__file__).resolve().parents[2]
XML = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
NEXT_SECRET = "q2c-test-next-outbound-secret-Zk81"  # the rotation's new secret
MB = 1024 * 1024


def outcome(response) -> dict:
    return json.loads(response.headers["x-q2c-outcome"])


def settings_for(dev_env, state_dir: Path, **overrides):
    """The dev server's settings, two path secrets and a ledger of the test's own."""
    values = dict(
        temporal_address=dev_env.client.service_client.config.target_host,
        temporal_namespace=dev_env.client.namespace,
        task_queue=f"webhook-sec-{uuid.uuid4().hex[:8]}",
        state_dir=state_dir,
        outbound_path_secrets=(DEMO_OUTBOUND_PATH_SECRET, NEXT_SECRET),
    )
    return dataclasses.replace(load_settings(), **{**values, **overrides})


@pytest_asyncio.fixture
async def secured(dev_env, crm_sandbox, tmp_path):
    """The webhook service reading stages from the CRM sandbox, with two path secrets."""
    from tests.fixtures.crm import crm_settings

    settings = settings_for(dev_env, tmp_path, crm=crm_settings(crm_sandbox.url))
    server = ServerThread(create_app(settings)).start()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield settings, http
    server.stop()


def crm_api_calls(crm_sandbox) -> int:
    return httpx.get(f"{crm_sandbox.url}/__sandbox/api-usage", timeout=10).json()["used"]


async def signals_of(client, opportunity_id: str) -> list[str]:
    history = await client.get_workflow_handle(workflow_id_for(opportunity_id)).fetch_history()
    return [
        e.workflow_execution_signaled_event_attributes.signal_name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]


# ---- Outbound Messages: path secret, rotation, client certificate --------------------------------


async def test_forged_outbound_message_without_the_path_secret_is_401_starts_nothing_and_calls_no_crm(
    secured, crm_sandbox, dev_env
):
    settings, http = secured
    opps = [new_opportunity_id() for _ in range(100)]
    # no StageName: a message that got in would cost a CRM read per opportunity
    forged = build_outbound_message(settings.crm.organization_id, opps, extra_fields={})
    before = crm_api_calls(crm_sandbox)
    for path in (
        OUTBOUND_PATH,  # the old path, before the secret
        OUTBOUND_PATH + "/",
        f"{OUTBOUND_PATH}/wrong-secret-of-the-same-size-xx",
        f"{OUTBOUND_PATH}/{DEMO_OUTBOUND_PATH_SECRET[:-1]}",
        f"{OUTBOUND_PATH}/{DEMO_OUTBOUND_PATH_SECRET}x",
        f"{OUTBOUND_PATH}/{DEMO_OUTBOUND_PATH_SECRET}/more",
    ):
        r = await http.post(path, content=forged, headers=XML)
        assert r.status_code == 401, path
        # a SOAP fault Salesforce logs, the same for every wrong secret: nothing to learn from it
        assert r.headers["content-type"].startswith("text/xml") and "not accepted" in r.text and "Ack" not in r.text
    assert crm_api_calls(crm_sandbox) == before
    assert await workflow_ids_on(dev_env.client, settings.task_queue, 0) == []
    assert not await exists(dev_env.client, opps[0])


async def test_both_path_secrets_are_accepted_while_one_rotates(secured, dev_env):
    settings, http = secured
    a, b = new_opportunity_id(), new_opportunity_id()
    org = settings.crm.organization_id
    r = await http.post(
        f"{OUTBOUND_PATH}/{DEMO_OUTBOUND_PATH_SECRET}", content=build_outbound_message(org, [a]), headers=XML
    )
    assert r.status_code == 200 and r.text == ACK_XML
    r = await http.post(f"{OUTBOUND_PATH}/{NEXT_SECRET}", content=build_outbound_message(org, [b]), headers=XML)
    assert r.status_code == 200 and outcome(r)["started"] == [workflow_id_for(b)]
    assert await exists(dev_env.client, a) and await exists(dev_env.client, b)


async def test_client_certificate_header_is_required_when_configured(dev_env, tmp_path):
    settings = settings_for(dev_env, tmp_path, outbound_client_cert_header="X-SSL-Client-Verify")
    server = ServerThread(create_app(settings)).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            a = new_opportunity_id()
            body = build_outbound_message(settings.crm.organization_id, [a])
            url = f"{OUTBOUND_PATH}/{DEMO_OUTBOUND_PATH_SECRET}"
            for verdict in (None, "NONE", "FAILED:unable to verify the first certificate"):
                headers = XML if verdict is None else {**XML, "X-SSL-Client-Verify": verdict}
                r = await http.post(url, content=body, headers=headers)
                assert r.status_code == 403 and "soapenv:Client" in r.text and "<Ack>" not in r.text
            assert not await exists(dev_env.client, a)
            r = await http.post(url, content=body, headers={**XML, "X-SSL-Client-Verify": "SUCCESS"})
            assert r.status_code == 200 and r.text == ACK_XML
            assert await exists(dev_env.client, a)
    finally:
        server.stop()


# ---- Outbound Messages: redeliveries ---------------------------------------------------------------


async def test_redelivered_notification_is_acked_and_does_nothing(secured, crm_sandbox, dev_env):
    from tests.deals import create_deal

    settings, http = secured
    url = f"{OUTBOUND_PATH}/{DEMO_OUTBOUND_PATH_SECRET}"
    org = settings.crm.organization_id
    async with crm_sandbox.client() as crm:
        deal = await create_deal(crm, stage="Closed Won")
    opp = deal.opportunity_id
    first = build_outbound_message(org, [opp])
    r = await http.post(url, content=first, headers=XML)
    assert r.status_code == 200 and outcome(r)["started"] == [workflow_id_for(opp)]
    # a change notification without StageName: taken once, it reads the stage from the CRM and
    # tells the running engagement
    change = build_outbound_message(org, [opp], extra_fields={})
    r = await http.post(url, content=change, headers=XML)
    assert r.status_code == 200 and outcome(r)["signalled"] == [workflow_id_for(opp)]
    assert await signals_of(dev_env.client, opp) == ["crm_changed"]
    calls = crm_api_calls(crm_sandbox)
    for body in (change, first, change):  # Salesforce delivers again (at least once)
        r = await http.post(url, content=body, headers=XML)
        assert r.status_code == 200 and r.text == ACK_XML  # the normal Ack: Salesforce stops
        assert outcome(r)["duplicate_notifications"] == 1
        assert outcome(r)["started"] == outcome(r)["signalled"] == outcome(r)["restarted"] == []
    assert await signals_of(dev_env.client, opp) == ["crm_changed"]  # no second signal
    assert crm_api_calls(crm_sandbox) == calls  # no CRM read
    assert await workflow_ids_on(dev_env.client, settings.task_queue, 1) == [workflow_id_for(opp)]
    # a message holding one notification already taken and a new one: only the new one acts
    b = new_opportunity_id()
    old_id = _notification_ids(first)[0]
    mixed = build_outbound_message(org, [(old_id, opp), ("04l5e00000NEW0001AAA"[:15], b)])
    r = await http.post(url, content=mixed, headers=XML)
    assert r.status_code == 200 and outcome(r)["started"] == [workflow_id_for(b)]
    assert outcome(r)["duplicate_notifications"] == 1 and outcome(r)["signalled"] == []
    assert await signals_of(dev_env.client, opp) == ["crm_changed"]


def _notification_ids(body: str) -> list[str]:
    from q2c.webhook.outbound_message import parse_outbound_message

    return [n.notification_id for n in parse_outbound_message(body).notifications]


async def test_a_notification_not_taken_is_taken_on_the_next_delivery(dev_env, tmp_path):
    """Temporal down: no Ack, and the claim is released, so Salesforce's redelivery starts it."""
    down = settings_for(dev_env, tmp_path, temporal_address=f"127.0.0.1:{free_port()}")
    body = build_outbound_message(down.crm.organization_id, [a := new_opportunity_id()])
    url = f"{OUTBOUND_PATH}/{DEMO_OUTBOUND_PATH_SECRET}"
    server = ServerThread(create_app(down)).start()
    try:
        r = httpx.post(server.url + url, content=body, headers=XML, timeout=30)
        assert r.status_code == 503 and "<Ack>" not in r.text
    finally:
        server.stop()
    up = dataclasses.replace(down, temporal_address=dev_env.client.service_client.config.target_host)
    server = ServerThread(create_app(up)).start()  # the same ledger (state folder)
    try:
        r = httpx.post(server.url + url, content=body, headers=XML, timeout=30)
        assert r.status_code == 200 and outcome(r)["started"] == [workflow_id_for(a)]
    finally:
        server.stop()


async def test_a_flood_from_one_source_is_answered_429_before_temporal(dev_env, tmp_path):
    settings = settings_for(dev_env, tmp_path, webhook_rate_limit="5/minute")
    server = ServerThread(create_app(settings)).start()
    url = f"{OUTBOUND_PATH}/{DEMO_OUTBOUND_PATH_SECRET}"
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            answers = []
            for _ in range(30):
                body = build_outbound_message(settings.crm.organization_id, [new_opportunity_id()])
                answers.append(await http.post(url, content=body, headers=XML))
            # the JSON webhook shares the source's budget, and answers in JSON
            signed = await http.post("/webhooks/closed-won", content=b"{}", headers=JSON)
    finally:
        server.stop()
    codes = [r.status_code for r in answers]
    assert codes == [200] * 5 + [429] * 25
    limited = answers[-1]
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert "soapenv:Server" in limited.text and "<Ack>" not in limited.text  # no Ack: Salesforce retries
    assert signed.status_code == 429 and signed.json()["error"] == "rate_limited"
    started = await workflow_ids_on(dev_env.client, settings.task_queue, 5)
    assert len(started) == 5  # the 25 others never reached Temporal


# ---- Standard Webhooks: replays, rotation ----------------------------------------------------------


JSON = {"Content-Type": "application/json"}


def _signed(secret: str, body: bytes) -> dict[str, str]:
    return {**signed_headers(secret, f"msg_{uuid.uuid4().hex}", body), **JSON}


def _event(opp: str) -> bytes:
    return json.dumps({"type": "opportunity.closed_won", "data": {"opportunity_id": opp}}).encode()


async def test_standard_webhooks_replay_signals_nothing_also_after_a_restart(dev_env, tmp_path):
    settings = settings_for(dev_env, tmp_path)
    opp = new_opportunity_id()
    body = _event(opp)
    headers = _signed(settings.webhook_secret, body)

    server = ServerThread(create_app(settings)).start()
    try:
        r = httpx.post(server.url + "/webhooks/closed-won", content=body, headers=headers, timeout=30)
        assert r.status_code == 202 and r.json()["already_existed"] is False
        for _ in range(2):  # replayed inside the tolerance window
            r = httpx.post(server.url + "/webhooks/closed-won", content=body, headers=headers, timeout=30)
            assert r.status_code == 200
            duplicate = {"duplicate": True, "webhook_id": headers["webhook-id"], "workflow_id": workflow_id_for(opp)}
            assert r.json() == duplicate
        assert await signals_of(dev_env.client, opp) == []
    finally:
        server.stop()

    server = ServerThread(create_app(settings)).start()  # restarted, the same ledger
    try:
        r = httpx.post(server.url + "/webhooks/closed-won", content=body, headers=headers, timeout=30)
        assert r.status_code == 200 and r.json()["duplicate"] is True
        assert await signals_of(dev_env.client, opp) == []
        # a new message (new webhook-id) about the same deal is acted on: the count can move
        again = _signed(settings.webhook_secret, body)
        r = httpx.post(server.url + "/webhooks/closed-won", content=body, headers=again, timeout=30)
        assert r.status_code == 202 and r.json()["already_existed"] is True
        assert await signals_of(dev_env.client, opp) == ["crm_changed"]
    finally:
        server.stop()


async def test_two_replicas_on_one_postgresql_ledger_take_a_message_once(dev_env, postgres_ledger_url, tmp_path):
    """Two webhook services (replicas) on the same PostgreSQL ledger; the same signed message
    sent to both at once: one starts, the other answers duplicate or in-progress."""
    settings = settings_for(dev_env, tmp_path, ledger_db_url=postgres_ledger_url)
    replicas = [ServerThread(create_app(settings)).start() for _ in range(2)]
    try:
        opp = new_opportunity_id()
        body = _event(opp)
        headers = _signed(settings.webhook_secret, body)
        async with httpx.AsyncClient(timeout=30) as http:
            answers = await asyncio.gather(
                *(http.post(s.url + "/webhooks/closed-won", content=body, headers=headers) for s in replicas * 3)
            )
        codes = sorted(r.status_code for r in answers)
        assert codes.count(202) == 1 and set(codes) <= {200, 202, 503}, codes
        assert await signals_of(dev_env.client, opp) == []
    finally:
        for s in replicas:
            s.stop()


async def test_standard_webhooks_secrets_rotate(dev_env, tmp_path):
    old = "whsec_b2xkLXNlY3JldC1rZXktYnl0ZXMtMDEyMzQ1Njc4OQ=="
    new = "whsec_bmV3LXNlY3JldC1rZXktYnl0ZXMtOTg3NjU0MzIxMA=="
    settings = settings_for(dev_env, tmp_path, webhook_secret=f"{new} {old}")
    server = ServerThread(create_app(settings)).start()
    try:
        for secret, status in ((old, 202), (new, 202), ("whsec_" + "dW5rbm93bi1rZXk=", 401)):
            body = _event(new_opportunity_id())
            headers = _signed(secret, body)
            r = httpx.post(server.url + "/webhooks/closed-won", content=body, headers=headers, timeout=30)
            assert r.status_code == status, (secret, r.text)
    finally:
        server.stop()


# ---- the ledger's claim, on SQLite and PostgreSQL --------------------------------------------------


def test_claim_has_one_winner_among_concurrent_claimers(ledger):
    log = InboundLog(ledger.engine)
    ids = [f"msg_{i}" for i in range(50)]
    results, barrier = [], threading.Barrier(4)

    def claimer():
        barrier.wait()
        results.append(log.claim("standard-webhooks", ids))

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [i for r in results for i in r.new]
    assert sorted(won) == sorted(ids)  # each id won exactly once
    assert all(set(r.busy) | set(r.new) == set(ids) for r in results)
    log.finish("standard-webhooks", ids)
    again = log.claim("standard-webhooks", ids)
    assert again.is_duplicate and again.done == ids
    assert log.claim("salesforce-om:00D5e000000Q2CD", ids[:1]).new == ids[:1]  # per source


def test_released_and_expired_claims_are_taken_again_and_old_rows_pruned(ledger):
    from datetime import timedelta

    from sqlalchemy import update

    from q2c.ledger.columns import utcnow
    from q2c.ledger.models import InboundMessage

    log = InboundLog(ledger.engine, lease_seconds=60)
    assert log.claim("s", ["a", "b"]).new == ["a", "b"]
    assert log.claim("s", ["a"]).busy == ["a"]  # in progress elsewhere
    log.release("s", ["a"])
    assert log.claim("s", ["a"]).new == ["a"]  # released: the redelivery acts
    table = InboundMessage.__table__
    with ledger.engine.begin() as conn:  # "b"'s request died two minutes ago
        conn.execute(update(table).where(table.c.message_id == "b").values(received_at=utcnow() - timedelta(minutes=2)))
    assert log.claim("s", ["b"]).new == ["b"]  # lease expired: taken over
    log.finish("s", ["a", "b"])
    with ledger.engine.begin() as conn:
        conn.execute(update(table).where(table.c.message_id == "a").values(received_at=utcnow() - timedelta(hours=1)))
    assert log.prune("s", timedelta(minutes=11)) == 1
    assert log.state("s", "a") is None and log.state("s", "b") == "done"
    with pytest.raises(ValueError):
        log.claim("s", ["x" * 256])


# ---- limits before work, on the service as it runs in production ------------------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def webhook_process(dev_env, tmp_path):
    """`python -m q2c.webhook.app` with short body and header timeouts."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "Q2C_STATE_DIR": str(tmp_path),
        "Q2C_WEBHOOK_PORT": str(port),
        "Q2C_OUTBOUND_PATH_SECRETS": DEMO_OUTBOUND_PATH_SECRET,
        "Q2C_BODY_TIMEOUT_SECONDS": "2",
        "Q2C_HEADER_TIMEOUT_SECONDS": "2",
        "Q2C_WEBHOOK_RATE_LIMIT": "1000/second",
    }
    log = open(tmp_path / "webhook.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "q2c.webhook.app"], cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "webhook.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the webhook service did not start"
            time.sleep(0.2)
        yield proc, port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _request_head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


def _read_response(sock: socket.socket, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines if ":" in h)}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(status_line.split()[1]), headers, rest


def _stream(port: int, path: str, headers: dict[str, str], total: int, *, chunked: bool) -> tuple:
    """Send up to `total` bytes of body, reading the answer as soon as one comes; returns
    (status, headers, body, bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        sock.sendall(_request_head(path, headers))
        piece = b"x" * 65536
        frame = (b"%x\r\n" % len(piece)) + piece + b"\r\n" if chunked else piece
        sent = 0
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        status, answer_headers, body = _read_response(sock)
        return status, answer_headers, body, sent
    finally:
        sock.close()


def test_a_100_mb_body_is_refused_413_quickly_and_memory_stays_flat(webhook_process):
    proc, port = webhook_process
    outbound = f"{OUTBOUND_PATH}/{DEMO_OUTBOUND_PATH_SECRET}"
    # warm up every code path once (imports, first responses), so the measure sees only what
    # the big bodies cost
    for path in ("/webhooks/closed-won", outbound):
        httpx.post(f"http://127.0.0.1:{port}{path}", content=b"x" * 1000, timeout=10)
        _stream(port, path, {"Content-Length": str(8 * MB)}, 8 * MB, chunked=False)
        _stream(port, path, {"Transfer-Encoding": "chunked"}, 8 * MB, chunked=True)
    rss_before = _rss_kib(proc.pid)
    figures = {}
    for path, kind in (("/webhooks/closed-won", "json"), (outbound, "soap")) * 2:
        # honest: Content-Length of 100 MB, answered before a byte of the body is sent
        started = time.monotonic()
        status, headers, body, sent = _stream(
            port, path, {"Content-Length": str(100 * MB), "Content-Type": "application/json"}, 100 * MB, chunked=False
        )
        figures[f"{kind} declared 100 MB"] = (status, round((time.monotonic() - started) * 1000), sent)
        assert status == 413 and headers["connection"] == "close"
        assert sent < 100 * MB  # answered before the sender finished
        if kind == "soap":
            assert b"<faultcode>soapenv:Client</faultcode>" in body and "text/xml" in headers["content-type"]
        else:
            assert json.loads(body)["error"] == "body_too_large"
        # chunked, no length: counted as it arrives and cut at the cap
        started = time.monotonic()
        status, headers, body, sent = _stream(
            port, path, {"Transfer-Encoding": "chunked", "Content-Type": "application/json"}, 100 * MB, chunked=True
        )
        figures[f"{kind} chunked 100 MB"] = (status, round((time.monotonic() - started) * 1000), sent)
        assert status == 413 and sent < 100 * MB
    growth_kib = _rss_kib(proc.pid) - rss_before
    print(f"\nRSS before {rss_before} KiB, growth {growth_kib} KiB; (status, ms to answer, bytes sent): {figures}")
    assert growth_kib < 10 * 1024
    assert all(ms < 5000 for _, ms, _ in figures.values())


def test_a_lying_content_length_is_answered_at_once_or_timed_out(webhook_process):
    _, port = webhook_process
    # declares 100 MB, sends 1 MB, stalls: refused on the declaration, at once
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        started = time.monotonic()
        sock.sendall(_request_head("/webhooks/closed-won", {"Content-Length": str(100 * MB)}))
        try:
            sock.sendall(b"x" * MB)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, _, _ = _read_response(sock)
        assert status == 413 and time.monotonic() - started < 2
    finally:
        sock.close()
    # declares 500 KB (under the cap), sends 100 KB, stalls: 408 once the body timeout (2 s) passes
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        started = time.monotonic()
        sock.sendall(_request_head("/webhooks/closed-won", {"Content-Length": str(500 * 1024)}) + b"x" * 100 * 1024)
        status, headers, body = _read_response(sock)
        elapsed = time.monotonic() - started
        print(f"\nstalled body answered {status} after {elapsed:.2f} s")
        assert status == 408 and json.loads(body)["error"] == "body_timeout" and 1.5 < elapsed < 5
    finally:
        sock.close()
    # the console and the API have their caps too (before any authentication)
    r = httpx.post(f"http://127.0.0.1:{port}/api/engagements/006000000000001/cancel", content=b"{}" + b" " * MB)
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"
    r = httpx.post(f"http://127.0.0.1:{port}/console/login", content=b"token=" + b"x" * 100_000)
    assert r.status_code == 413


def test_stalled_headers_are_cut_after_the_header_timeout(webhook_process):
    _, port = webhook_process
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        started = time.monotonic()
        sock.sendall(b"POST /webhooks/closed-won HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # and nothing more
        sock.settimeout(10)
        assert sock.recv(1024) == b""  # closed by the server
        elapsed = time.monotonic() - started
        print(f"\nstalled headers cut after {elapsed:.2f} s")
        assert 1.5 < elapsed < 5
    finally:
        sock.close()
    # a normal request on the same service still works
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
