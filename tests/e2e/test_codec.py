"""Encrypted histories: Temporal holds ciphertext; the codec server gives it back to those allowed.

What an attacker with raw history access (the database, a backup, the gRPC API without the
keys) would see, read the way they would: the raw events, no data converter.
"""

from __future__ import annotations

import base64
import json
import os

import httpx
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest

from q2c.cli.main import start
from q2c.codec import ENCODING, KEY_ID, CodecKeyError, EncryptionCodec, parse_keys
from q2c.domain.stage import EngagementStage
from tests.deals import create_deal
from tests.engagement_helpers import wait_for_stage
from tests.fixtures.console import STEWARD_TOKEN, VIEWER_TOKEN

TAX_ID = "98-7654321"


async def _raw_history(client, workflow_id: str):
    response = await client.workflow_service.get_workflow_execution_history(
        GetWorkflowExecutionHistoryRequest(namespace=client.namespace, execution={"workflow_id": workflow_id})
    )
    return response.history


def _payloads(message) -> list[Payload]:
    """Every Payload anywhere in a protobuf message (inputs, results, failures, memos...)."""
    found: list[Payload] = []

    def walk(m) -> None:
        if isinstance(m, Payload):
            found.append(m)
            return
        for field, value in m.ListFields():
            if field.message_type is None:
                continue
            if hasattr(value, "ListFields"):
                walk(value)
                continue
            items = value.values() if hasattr(value, "keys") else value  # a map or a repeated field
            for item in items:
                if hasattr(item, "ListFields"):
                    walk(item)

    walk(message)
    return found


async def test_history_is_ciphertext_and_the_codec_server_decodes_it_for_signed_in_users(console_stack):
    stack = console_stack
    async with stack.crm.client() as crm:
        deal = await create_deal(crm, tax_id=TAX_ID)
    await start(stack.client, deal.opportunity_id, task_queue=stack.settings.task_queue)
    await wait_for_stage(stack.client, deal.opportunity_id, EngagementStage.ACTIVE)

    history = await _raw_history(stack.client, f"engagement-{deal.opportunity_id}")
    event_payloads = [p for event in history.events for p in _payloads(event)]
    # search attributes are indexed by the server in clear by design (see README, Security)
    search_payloads = {
        id(p) for event in history.events for p in _payloads(event.upsert_workflow_search_attributes_event_attributes)
    }
    search_payloads |= {
        id(p)
        for event in history.events
        for p in _payloads(event.workflow_execution_started_event_attributes.search_attributes)
    }
    # and the SDK's own patch markers (`{"id": "period-memo"}`: the name of a code change)
    search_payloads |= {id(p) for event in history.events for p in _payloads(event.marker_recorded_event_attributes)}
    data_payloads = [p for p in event_payloads if id(p) not in search_payloads]
    assert len(data_payloads) > 10
    assert {p.metadata["encoding"] for p in data_payloads} == {ENCODING}
    assert {p.metadata[KEY_ID] for p in data_payloads} == {b"test-2026"}
    raw = history.SerializeToString()
    assert TAX_ID.encode() not in raw  # the tax ID went CRM -> ERP through this workflow, never in clear
    assert b"Senior Consultant" not in raw  # nor the rate card

    # the codec server: Temporal's remote codec protocol, protobuf JSON in and out
    body = json_format.MessageToJson(Payloads(payloads=data_payloads))
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        refused = await http.post("/codec/decode", content=body, headers={"Content-Type": "application/json"})
        assert refused.status_code == 401
        decoded = await http.post(
            "/codec/decode",
            content=body,
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {VIEWER_TOKEN}",
                "X-Namespace": stack.settings.temporal_namespace,
            },
        )
        assert decoded.status_code == 200, decoded.text
        clear = json_format.Parse(decoded.content, Payloads()).payloads
        assert len(clear) == len(data_payloads)
        assert {p.metadata["encoding"] for p in clear} <= {b"json/plain", b"binary/null"}
        assert any(TAX_ID.encode() in p.data for p in clear)
        started = json.loads(clear[0].data)
        assert deal.opportunity_id in json.dumps(started)

        other_namespace = await http.post(
            "/codec/decode",
            content=body,
            headers={"Authorization": f"Bearer {STEWARD_TOKEN}", "X-Namespace": "someone-else"},
        )
        assert other_namespace.status_code == 400
        garbage = await http.post(
            "/codec/decode", content=b"{nope", headers={"Authorization": f"Bearer {STEWARD_TOKEN}"}
        )
        assert garbage.status_code == 400 and "Payloads" in garbage.json()["detail"]

        # what the Temporal UI's browser does first: a preflight from its origin, no credentials
        ui_origin = stack.settings.temporal_ui_url.rstrip("/")
        preflight = await http.options(
            "/codec/decode",
            headers={
                "Origin": ui_origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == ui_origin
        assert preflight.headers["access-control-allow-credentials"] == "true"
        stranger = await http.options(
            "/codec/decode", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert "access-control-allow-origin" not in stranger.headers

        # encode round trip (the UI encodes what a user types into a signal or start form)
        plain = Payloads(payloads=[Payload(metadata={"encoding": b"json/plain"}, data=b'{"note":"hi"}')])
        encoded = await http.post(
            "/codec/encode",
            content=json_format.MessageToJson(plain),
            headers={"Authorization": f"Bearer {VIEWER_TOKEN}"},
        )
        sealed = json_format.Parse(encoded.content, Payloads()).payloads[0]
        assert sealed.metadata["encoding"] == ENCODING and b"hi" not in sealed.data


async def test_keys_rotate_without_breaking_old_payloads():
    old_spec = os.environ["Q2C_CODEC_KEYS"]
    old = EncryptionCodec(parse_keys(old_spec))
    sealed_long_ago = await old.encode([Payload(metadata={"encoding": b"json/plain"}, data=b'"tax 12-3"')])

    new_key = base64.b64encode(os.urandom(32)).decode()
    rotated = EncryptionCodec(parse_keys(f"next-2027:{new_key},{old_spec}"))
    assert rotated.active_key_id == "next-2027"
    [reopened] = await rotated.decode(sealed_long_ago)
    assert reopened.data == b'"tax 12-3"'
    [fresh] = await rotated.encode([reopened])
    assert fresh.metadata[KEY_ID] == b"next-2027"

    # a process that dropped the old key too early says which key it lacks
    only_new = EncryptionCodec(parse_keys(f"next-2027:{new_key}"))
    try:
        await only_new.decode(sealed_long_ago)
    except CodecKeyError as err:
        assert "test-2026" in str(err)
    else:
        raise AssertionError("decoding with the wrong key must fail")

    # tampering with the key id in the metadata is detected, not decrypted under another key
    forged = Payload()
    forged.CopyFrom(sealed_long_ago[0])
    forged.metadata[KEY_ID] = b"next-2027"
    try:
        await rotated.decode([forged])
    except Exception as err:
        assert type(err).__name__ == "InvalidTag"
    else:
        raise AssertionError("a payload whose key id was altered must not open")

    # payloads written before encryption was turned on still read
    legacy = Payload(metadata={"encoding": b"json/plain"}, data=b"1")
    assert (await rotated.decode([legacy]))[0] == legacy


def test_bad_key_configuration_is_named():
    for spec, words in [
        ("nokey", "expected key-id:base64-key"),
        ("a:!!!", "not base64"),
        ("a:" + base64.b64encode(b"short").decode(), "AES-256 needs 32"),
        ("", "holds no key"),
    ]:
        try:
            parse_keys(spec)
        except CodecKeyError as err:
            assert words in str(err), (spec, err)
        else:
            raise AssertionError(spec)
