"""The steward console and its JSON API over real HTTP, on the real stack (dev server, sandboxes,
worker, q2c API app): access rules, fixes with field errors, audit with the user, queue filters,
amendments and cancel."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from q2c.console.auth import Authenticator, Role, TokenConfigError, parse_tokens, token_digest
from q2c.domain.stage import EngagementStage
from q2c.engagement.client import workflow_id_for
from q2c.stewardship.forms import amendment_from_specs, customer_patch_from, field_key
from tests.engagement_helpers import status_of, wait_for_stage
from tests.fixtures.console import STEWARD_TOKEN, STEWARD_USER, VIEWER_TOKEN, paused_deal

STEWARD = {"Authorization": f"Bearer {STEWARD_TOKEN}"}
VIEWER = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
VALID_US_TAX_ID = "12-3456789"


def q2c_audit(stack, opp: str):
    return [c for c in stack.ledger.api_calls(system="q2c", workflow_id=workflow_id_for(opp))]


async def http(stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.url, timeout=40, follow_redirects=False)


def mutations(opp: str) -> list[tuple[str, dict | None, dict | None]]:
    """(path, json, form) for every mutating endpoint, with bodies that a steward could send."""
    api, web = f"/api/engagements/{opp}", f"/console/engagements/{opp}"
    return [
        (f"{api}/customer-data", {"tax_id": VALID_US_TAX_ID}, None),
        (f"{api}/amendments", {"contract_value": "1", "reason": "x"}, None),
        (f"{api}/cancel", {"reason": "no"}, None),
        (f"{api}/recheck", {}, None),
        (f"{api}/exceptions/replay", {}, None),
        (f"{web}/customer-data", None, {"tax_id": VALID_US_TAX_ID}),
        (f"{web}/amendments", None, {"contract_value": "1", "reason": "x"}),
        (f"{web}/cancel", None, {"reason": "no"}),
        (f"{web}/recheck", None, {}),
        (f"{web}/exceptions/replay", None, {}),
    ]


# ---- pure parts --------------------------------------------------------------------------------


def test_tokens_parse_and_reject_bad_config():
    tokens = parse_tokens(f"alice:steward:t1, victor:viewer:sha256:{token_digest('t2')}")
    assert "t1" not in tokens and "t2" not in tokens  # only digests are kept
    assert (tokens[token_digest("t1")].user, tokens[token_digest("t1")].role) == ("alice", Role.STEWARD)
    assert tokens[token_digest("t2")].role is Role.VIEWER and not tokens[token_digest("t2")].can_change
    for bad in ("alice:admin:t1", "alice:t1", "", "a:steward:t,b:viewer:t", "a:viewer:sha256:xyz"):
        with pytest.raises(TokenConfigError):
            parse_tokens(bad)
    auth = Authenticator(parse_tokens(f"alice:steward:t1,victor:viewer:sha256:{token_digest('t2')}"))
    assert auth.lookup("t1").user == "alice" and auth.lookup("t2").user == "victor" and auth.lookup("nope") is None


def test_forms_map_fields_and_parse_specs():
    assert field_key("customer.tax_id") == "tax_id"
    assert field_key("customer.billing_address.city") == "billing_city"
    assert field_key("rates[1].effective_from") == "rates.1.effective_from"
    patch, errors = customer_patch_from({"tax_id": " 12-3456789 ", "billing_city": ""}, provided_by="a")
    assert errors == [] and patch.tax_id == "12-3456789" and patch.billing_city is None
    assert customer_patch_from({}, provided_by="a")[1][0].field == "_"
    amendment, errors = amendment_from_specs(
        contract_value="130000",
        end_date="2027-06-30",
        rates=["Senior Consultant=210@2027-03-01"],
        milestones=["Go-live=15000@2027-04-30#ms-2", "Extra=500"],
        reason="CO-7",
        requested_by="a",
    )
    assert errors == []
    assert str(amendment.rates[0].rate) == "210" and amendment.milestones[0].key == "ms-2"
    assert amendment.milestones[1].key is None and amendment.milestones[1].due_date is None
    _, errors = amendment_from_specs(
        contract_value="lots", end_date="tomorrow", rates=["oops"], milestones=[], reason="", requested_by="a"
    )
    assert [e.field for e in errors] == ["contract_value", "end_date", "rates[0]"]


# ---- access ------------------------------------------------------------------------------------


async def test_pages_need_a_token(console_stack):
    async with await http(console_stack) as h:
        r = await h.get("/console")
        assert r.status_code == 303 and r.headers["location"].startswith("/console/login")
        assert (await h.get("/api/queue")).status_code == 401
        assert (await h.get("/api/queue", headers={"Authorization": "Bearer wrong"})).status_code == 401
        r = await h.get("/console", headers=VIEWER)
        assert r.status_code == 200 and "Paused engagements" in r.text
        assert (await h.get("/console/login")).status_code == 200
        r = await h.post("/console/login", data={"token": "wrong"})
        assert r.status_code == 401 and "Unknown token" in r.text
        r = await h.post("/console/login", data={"token": VIEWER_TOKEN, "next": "/console"})
        assert r.status_code == 303 and r.headers["location"] == "/console"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert (await h.get("/console")).status_code == 200  # the cookie now


async def test_anonymous_and_viewer_change_nothing(console_stack):
    deal, before = await paused_deal(console_stack)
    opp = deal.opportunity_id
    async with await http(console_stack) as h:
        for path, body, form in mutations(opp):
            for headers, expected in (({}, 401), (VIEWER, 403)):
                r = (
                    await h.post(path, json=body, headers=headers)
                    if body is not None
                    else await h.post(path, data=form, headers=headers)
                )
                assert r.status_code == expected, (path, headers, r.status_code, r.text[:200])
        # a viewer signed in with the console cookie: still 403
        assert (await h.post("/console/login", data={"token": VIEWER_TOKEN})).status_code == 303
        r = await h.post(f"/console/engagements/{opp}/customer-data", data={"tax_id": VALID_US_TAX_ID})
        assert r.status_code == 403
        r = await h.get(f"/console/engagements/{opp}")
        assert r.status_code == 200 and "Read-only" in r.text and "submit-fix" not in r.text
    await asyncio.sleep(1)
    after = await status_of(console_stack.client, opp)
    assert after.stage is EngagementStage.AWAITING_STEWARD and after.rechecks == before.rechecks
    assert after.engagement.customer.tax_id is None and after.cancelled is None
    assert q2c_audit(console_stack, opp) == []
    async with console_stack.crm.client() as crm:
        account = await crm.get_record("Account", deal.account_id)
    assert not account.get("Tax_Id__c")


async def test_console_form_needs_csrf_token(console_stack):
    deal, _ = await paused_deal(console_stack)
    opp = deal.opportunity_id
    async with await http(console_stack) as h:
        assert (await h.post("/console/login", data={"token": STEWARD_TOKEN})).status_code == 303
        page = await h.get(f"/console/engagements/{opp}")
        csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text).group(1)
        r = await h.post(f"/console/engagements/{opp}/customer-data", data={"tax_id": "abc"})
        assert r.status_code == 403 and "CSRF" in r.text
        r = await h.post(
            f"/console/engagements/{opp}/customer-data",
            data={"tax_id": "abc", "csrf_token": csrf},
            headers={"Origin": "http://evil.example"},
        )
        assert r.status_code == 403
        # a same-origin form with the token: the validator's message is shown inline, the value kept
        r = await h.post(
            f"/console/engagements/{opp}/customer-data",
            data={"tax_id": "abc", "billing_city": "Austin", "csrf_token": csrf},
        )
        assert r.status_code == 422
        assert re.search(r'<span class="error" id="err-tax_id"[^>]*>[^<]*not valid', r.text), r.text
        assert 'value="abc"' in r.text and 'value="Austin"' in r.text
        # the JSON API with the cookie needs the header too
        r = await h.post(f"/api/engagements/{opp}/recheck", json={})
        assert r.status_code == 403
        r = await h.post(f"/api/engagements/{opp}/recheck", json={}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200
    # the recheck re-reads the CRM, still without a tax ID: back in the queue
    await asyncio.sleep(0.5)
    status = await wait_for_stage(console_stack.client, opp, EngagementStage.AWAITING_STEWARD)
    assert status.rechecks >= 1 and status.engagement.customer.tax_id is None


# ---- fixes ---------------------------------------------------------------------------------------


async def test_api_fix_rejected_with_field_errors_then_accepted_and_audited(console_stack):
    deal, status = await paused_deal(console_stack)
    opp = deal.opportunity_id
    assert status.pause.queue.value == "master-data"
    assert "customer.tax_id" in [f.field for f in status.pause.fields]
    async with await http(console_stack) as h:
        r = await h.get(f"/api/engagements/{opp}", headers=VIEWER)
        assert r.status_code == 200 and r.json()["stage"] == "AwaitingSteward"
        r = await h.post(f"/api/engagements/{opp}/customer-data", json={"tax_id": "abc"}, headers=STEWARD)
        assert r.status_code == 422
        assert [e["field"] for e in r.json()["errors"]] == ["customer.tax_id"]
        r = await h.post(f"/api/engagements/{opp}/customer-data", json={"tax_idd": "x"}, headers=STEWARD)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "tax_idd"
        assert (await status_of(console_stack.client, opp)).stage is EngagementStage.AWAITING_STEWARD
        r = await h.post(f"/api/engagements/{opp}/customer-data", json={"tax_id": VALID_US_TAX_ID}, headers=STEWARD)
        assert r.status_code == 200, r.text
        assert "tax_id" in r.json()["result"]
    active = await wait_for_stage(console_stack.client, opp, EngagementStage.ACTIVE)
    assert active.engagement.customer.tax_id == VALID_US_TAX_ID
    audit = q2c_audit(console_stack, opp)
    assert [(a.operation, a.outcome, a.actor) for a in audit] == [
        ("provide_customer_data", "rejected", STEWARD_USER),
        ("provide_customer_data", "ok", STEWARD_USER),
    ]
    async with console_stack.crm.client() as crm:
        account = await crm.get_record("Account", deal.account_id)
    assert account["Tax_Id__c"] == VALID_US_TAX_ID


async def test_queue_filters(console_stack):
    (a, _), (b, _) = await asyncio.gather(
        paused_deal(console_stack, account_name="Queue Filter Alpha Ltd"),
        paused_deal(console_stack, account_name="Queue Filter Beta Ltd"),
    )

    async def opps(**params) -> list[str]:
        async with await http(console_stack) as h:
            r = await h.get("/api/queue", params=params, headers=VIEWER)
        assert r.status_code == 200, r.text
        return [row["opportunity_id"] for row in r.json()["engagements"]]

    for _ in range(100):  # visibility is eventually consistent
        if {a.opportunity_id, b.opportunity_id} <= set(await opps(queue="master-data")):
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError("paused engagements never showed in the master-data queue")
    assert set(await opps(customer="queue filter")) >= {a.opportunity_id, b.opportunity_id}
    assert await opps(customer="filter beta") == [b.opportunity_id]
    assert a.opportunity_id not in await opps(queue="pmo")
    assert a.opportunity_id not in await opps(older_than_hours=1)
    assert a.opportunity_id in await opps(older_than_hours=0)
    async with await http(console_stack) as h:
        assert (await h.get("/api/queue", params={"queue": "nope"}, headers=VIEWER)).status_code == 400
        page = await h.get("/console", params={"queue": "master-data", "customer": "filter alpha"}, headers=VIEWER)
    assert page.status_code == 200
    assert a.opportunity_id in page.text and b.opportunity_id not in page.text
    assert "customer.tax_id" in page.text


# ---- change orders and cancel --------------------------------------------------------------------


async def test_api_amendment_and_cancel(console_stack):
    deal, _ = await paused_deal(console_stack)
    opp = deal.opportunity_id
    async with await http(console_stack) as h:
        r = await h.post(
            f"/api/engagements/{opp}/amendments", json={"contract_value": "1", "reason": "x"}, headers=STEWARD
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "stage"  # not Active yet
        r = await h.post(f"/api/engagements/{opp}/customer-data", json={"tax_id": VALID_US_TAX_ID}, headers=STEWARD)
        assert r.status_code == 200
        await wait_for_stage(console_stack.client, opp, EngagementStage.ACTIVE)
        r = await h.post(
            f"/api/engagements/{opp}/amendments", json={"end_date": "2020-01-01", "reason": "CO-1"}, headers=STEWARD
        )
        assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["end_date"]
        r = await h.post(f"/api/engagements/{opp}/amendments", json={"contract_value": "lots"}, headers=STEWARD)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "contract_value"
        r = await h.post(
            f"/api/engagements/{opp}/amendments",
            json={"contract_value": "130000", "end_date": "2027-06-30", "reason": "CO-1"},
            headers=STEWARD,
        )
        assert r.status_code == 200, r.text
        version = r.json()["contract_version"]
        assert version["contract_value"] in ("130000", "130000.00") and version["requested_by"] == STEWARD_USER
        # the console's amendment form: the validator's message next to the field, values kept
        r = await h.post(
            f"/console/engagements/{opp}/amendments",
            headers=STEWARD,
            data={
                "end_date": "2020-01-01",
                "rates.1.role": "Consultant",
                "rates.1.rate": "x",
                "rates.1.effective_from": "2027-02-01",
                "reason": "CO-2",
            },
        )
        assert r.status_code == 422
        assert 'id="err-rates.0.rate"' in r.text and 'value="Consultant"' in r.text  # row moved up
        r = await h.post(
            f"/console/engagements/{opp}/amendments", headers=STEWARD, data={"end_date": "2020-01-01", "reason": "CO-2"}
        )
        assert r.status_code == 422 and 'id="err-end_date"' in r.text and 'value="2020-01-01"' in r.text
        r = await h.post(
            f"/console/engagements/{opp}/amendments",
            headers=STEWARD,
            data={
                "rates.0.role": "Consultant",
                "rates.0.rate": "160",
                "rates.0.effective_from": "2027-02-01",
                "reason": "CO-2",
            },
        )
        assert r.status_code == 303 and "contract%20version%203" in r.headers["location"]
        # replay with nothing parked: rejected, naming the field
        r = await h.post(f"/api/engagements/{opp}/exceptions/replay", json={}, headers=STEWARD)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "psa_ids"
        r = await h.post(f"/api/engagements/{opp}/cancel", json={"reason": " "}, headers=STEWARD)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
        r = await h.post(
            f"/api/engagements/{opp}/cancel", json={"reason": "client ended the programme"}, headers=STEWARD
        )
        assert r.status_code == 200, r.text
        page = await h.get(f"/console/engagements/{opp}", headers=VIEWER)
        assert "CO-1" in page.text  # the contract versions list
        assert (
            await h.post("/api/engagements/006000000000000AAA/cancel", json={"reason": "x"}, headers=STEWARD)
        ).status_code == 404
    status = await status_of(console_stack.client, opp)
    assert status.cancelled is not None and status.cancelled.requested_by == STEWARD_USER
    ops = [(a.operation, a.outcome) for a in q2c_audit(console_stack, opp)]
    assert ("amend_contract", "ok") in ops and ("cancel", "ok") in ops
