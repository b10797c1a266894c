"""A request sent twice applies once: Update IDs from the console form, the API's
Idempotency-Key (or the body), and the CLI's arguments (or --request-id), on the real stack.
Amendments show it best: each applied one is a new contract version."""

from __future__ import annotations

import asyncio
import re

import httpx
from typer.testing import CliRunner

from q2c.cli import main as cli
from q2c.domain.stage import EngagementStage
from q2c.engagement.client import workflow_id_for
from q2c.engagement.messages import Amendment
from q2c.engagement.updates import derive_update_id
from q2c.stewardship.service import RequestKey, StewardService
from tests.engagement_helpers import status_of, wait_for_stage
from tests.fixtures.console import STEWARD_TOKEN, STEWARD_USER, paused_deal

STEWARD = {"Authorization": f"Bearer {STEWARD_TOKEN}"}


async def active_deal(stack):
    deal, _ = await paused_deal(stack)
    async with httpx.AsyncClient(base_url=stack.url, timeout=60) as h:
        r = await h.post(
            f"/api/engagements/{deal.opportunity_id}/customer-data", json={"tax_id": "12-3456789"}, headers=STEWARD
        )
        assert r.status_code == 200, r.text
    status = await wait_for_stage(stack.client, deal.opportunity_id, EngagementStage.ACTIVE)
    return deal.opportunity_id, current_version(status)


def current_version(status) -> int:
    """The contract version now: the latest kept (the list holds the last few), else the counter."""
    return status.contract_versions[-1].version if status.contract_versions else status.contract_version


async def version_of(stack, opp: str) -> int:
    return current_version(await status_of(stack.client, opp))


def amendment_ids(stack, opp: str) -> list[str]:
    return [
        a.correlation_id
        for a in stack.ledger.api_calls(system="q2c", workflow_id=workflow_id_for(opp))
        if a.operation == "amend_contract" and a.outcome == "ok"
    ]


def test_derived_ids_are_stable_and_name_the_request():
    a = Amendment(contract_value="130000", reason="CO-1", requested_by="s")
    b = Amendment.model_validate({"reason": "CO-1", "requested_by": "s", "contract_value": "130000"})
    assert derive_update_id("derived", "s", "006X", "amend_contract", a) == derive_update_id(
        "derived", "s", "006X", "amend_contract", b
    )  # field order does not matter
    assert derive_update_id("derived", "s", "006X", "amend_contract", a) != derive_update_id(
        "derived", "t", "006X", "amend_contract", a
    )  # nor does one user dedupe another's
    c = Amendment(contract_value="130001", reason="CO-1", requested_by="s")
    assert derive_update_id("x", a) != derive_update_id("x", c)
    assert derive_update_id("x", a).startswith("q2c-") and len(derive_update_id("x", a)) <= 64


async def test_key_names_the_request_form_also_its_values():
    async def no_client():
        raise AssertionError("not needed")

    service = StewardService(no_client, audit=None)
    a = Amendment(contract_value="1", reason="r", requested_by="s")
    b = Amendment(contract_value="2", reason="r", requested_by="s")
    api = RequestKey(value="k1", source="api")
    assert await service.update_id(api, "s", "006X", "amend_contract", a) == await service.update_id(
        api, "s", "006X", "amend_contract", b
    )  # the client's key alone names it
    form = RequestKey.form("render-1")
    assert await service.update_id(form, "s", "006X", "amend_contract", a) != await service.update_id(
        form, "s", "006X", "amend_contract", b
    )  # the same form with other values
    assert await service.update_id(form, "s", "006X", "amend_contract", a) == await service.update_id(
        form, "s", "006X", "amend_contract", a
    )


async def test_api_idempotency_key_applies_once(console_stack):
    opp, v0 = await active_deal(console_stack)
    url = f"/api/engagements/{opp}/amendments"
    body = {"contract_value": "130000", "reason": "CO-1"}
    async with httpx.AsyncClient(base_url=console_stack.url, timeout=60) as h:
        first = await h.post(url, json=body, headers={**STEWARD, "Idempotency-Key": f"co-1-{opp}"})
        assert first.status_code == 200, first.text
        assert await version_of(console_stack, opp) == v0 + 1
        # the client did not see the answer and sends it again: the same outcome, nothing applied
        again = await h.post(url, json=body, headers={**STEWARD, "Idempotency-Key": f"co-1-{opp}"})
        assert again.status_code == 200 and again.json() == first.json()
        assert again.headers["x-q2c-update-id"] == first.headers["x-q2c-update-id"]
        assert await version_of(console_stack, opp) == v0 + 1
        # a different key is a second change, even with the same body
        other = await h.post(url, json=body, headers={**STEWARD, "Idempotency-Key": f"co-2-{opp}"})
        assert other.status_code == 200, other.text
        assert other.json()["contract_version"]["version"] == v0 + 2
    status = await status_of(console_stack.client, opp)
    assert current_version(status) == v0 + 2
    assert [v.version for v in status.contract_versions][-2:] == [v0 + 1, v0 + 2]
    ids = amendment_ids(console_stack, opp)  # two requests with one ID, one with another
    assert len(ids) == 3 and ids[0] == ids[1] != ids[2]


async def test_api_without_key_derives_it_from_the_body(console_stack):
    opp, v0 = await active_deal(console_stack)
    url = f"/api/engagements/{opp}/amendments"
    async with httpx.AsyncClient(base_url=console_stack.url, timeout=60) as h:
        first = await h.post(url, json={"contract_value": "140000", "reason": "CO-A"}, headers=STEWARD)
        assert first.status_code == 200, first.text
        # the same body, keys in another order: a blind client retry applies once
        again = await h.post(url, json={"reason": "CO-A", "contract_value": "140000"}, headers=STEWARD)
        assert again.status_code == 200 and again.json() == first.json()
        # another body is another request
        other = await h.post(url, json={"contract_value": "141000", "reason": "CO-B"}, headers=STEWARD)
        assert other.status_code == 200 and other.json()["contract_version"]["version"] == v0 + 2
    assert await version_of(console_stack, opp) == v0 + 2


async def test_console_form_posted_twice_applies_once(console_stack):
    opp, v0 = await active_deal(console_stack)
    async with httpx.AsyncClient(base_url=console_stack.url, timeout=60, follow_redirects=False) as h:
        assert (await h.post("/console/login", data={"token": STEWARD_TOKEN})).status_code == 303
        page = (await h.get(f"/console/engagements/{opp}")).text
        form = re.search(
            r'<form method="post" action="/console/engagements/[^"]+/amendments" id="amendment-form">'
            r"(.*?)</form>",
            page,
        ).group(1)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        request_id = re.search(r'name="request_id" value="([^"]+)"', form).group(1)
        data = {"csrf_token": csrf, "request_id": request_id, "contract_value": "150000", "reason": "CO-F"}
        first = await h.post(f"/console/engagements/{opp}/amendments", data=data)
        assert first.status_code == 303, first.text
        # the browser resends the same POST (a double click, a retried request): applied once
        again = await h.post(f"/console/engagements/{opp}/amendments", data=data)
        assert again.status_code == 303 and again.headers["location"] == first.headers["location"]
        assert await version_of(console_stack, opp) == v0 + 1
        # the same rendered form sent with other values (back, edit, submit) is a new change
        edited = await h.post(f"/console/engagements/{opp}/amendments", data={**data, "contract_value": "151000"})
        assert edited.status_code == 303 and f"version%20{v0 + 2}" in edited.headers["location"]
        # a fresh render has a fresh request id
        fresh = re.search(
            r'name="request_id" value="([^"]+)"', (await h.get(f"/console/engagements/{opp}")).text
        ).group(1)
        assert fresh != request_id
    assert await version_of(console_stack, opp) == v0 + 2


async def test_cli_rerun_applies_once_and_request_id_names_it(console_stack):
    opp, v0 = await active_deal(console_stack)

    async def q2c(*args: str):
        return await asyncio.to_thread(CliRunner().invoke, cli.app, list(args), env=console_stack.cli_env())

    args = ("amend", opp, "--contract-value", "160000", "--reason", "CO-C", "--by", "carol")
    first = await q2c(*args)
    assert first.exit_code == 0 and f"contract version {v0 + 1}" in first.output, first.output
    again = await q2c(*args)  # the answer was lost, the steward runs it again
    assert again.exit_code == 0 and f"contract version {v0 + 1}" in again.output, again.output
    assert await version_of(console_stack, opp) == v0 + 1
    named = await q2c(*args, "--request-id", "co-c-second")  # a deliberate second change
    assert named.exit_code == 0 and f"contract version {v0 + 2}" in named.output, named.output
    repeat = await q2c(*args, "--request-id", "co-c-second")
    assert f"contract version {v0 + 2}" in repeat.output
    assert await version_of(console_stack, opp) == v0 + 2
    audit = console_stack.ledger.api_calls(system="q2c", workflow_id=workflow_id_for(opp))
    assert [a.actor for a in audit if a.operation == "amend_contract"] == ["carol"] * 4
    assert STEWARD_USER in [a.actor for a in audit if a.operation == "provide_customer_data"]


async def test_a_refused_request_sent_again_later_is_judged_again(console_stack):
    """A validator's refusal is not an outcome Temporal keeps: the same request (same derived
    ID) sent once the engagement can take it is accepted, not answered with the old refusal."""
    deal, _ = await paused_deal(console_stack)
    opp = deal.opportunity_id
    body = {"contract_value": "170000", "reason": "CO-early"}
    async with httpx.AsyncClient(base_url=console_stack.url, timeout=60) as h:
        early = await h.post(f"/api/engagements/{opp}/amendments", json=body, headers=STEWARD)
        assert early.status_code == 422 and early.json()["errors"][0]["field"] == "stage"
        r = await h.post(f"/api/engagements/{opp}/customer-data", json={"tax_id": "12-3456789"}, headers=STEWARD)
        assert r.status_code == 200, r.text
        active = await wait_for_stage(console_stack.client, opp, EngagementStage.ACTIVE)
        later = await h.post(f"/api/engagements/{opp}/amendments", json=body, headers=STEWARD)
        assert later.status_code == 200, later.text
        assert later.headers["x-q2c-update-id"] == early.headers["x-q2c-update-id"]
    assert await version_of(console_stack, opp) == current_version(active) + 1
