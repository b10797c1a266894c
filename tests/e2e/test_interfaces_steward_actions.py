"""The new steward actions through the console, the JSON API and the CLI, on the real stack
(dev server, sandboxes, worker, q2c API app): retry a parked step, write off time exceptions,
accept or waive milestones; forms shown by what the pause needs; the pause's vendor fields on
the page and in the queue; every action audited with its user.

Validation-level tests (bad input -> field errors, viewer -> 403, anonymous -> 401) need no
workflow handler and run everywhere. Tests marked `needs_update(...)` drive the workflow's
own handler end to end and are skipped, saying so, while `EngagementWorkflow` lacks it.
"""

from __future__ import annotations

import asyncio
import re
from contextlib import contextmanager

import httpx
import pytest
from temporalio import workflow
from typer.testing import CliRunner

from q2c.cli import main as cli
from q2c.domain.stage import EngagementStage
from q2c.engagement.client import workflow_id_for
from q2c.engagement.messages import DeliveryConfig
from q2c.engagement.workflow import EngagementWorkflow
from tests.deals import create_deal
from tests.engagement_helpers import status_of, wait_for_stage
from tests.fixtures.console import STEWARD_TOKEN, STEWARD_USER, VIEWER_TOKEN, paused_deal

STEWARD = {"Authorization": f"Bearer {STEWARD_TOKEN}"}
VIEWER = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
VALID_US_TAX_ID = "12-3456789"


def needs_update(name: str):
    """Skip, naming the missing piece, until the workflow has this Update handler."""
    known = workflow._Definition.from_class(EngagementWorkflow).updates
    return pytest.mark.skipif(
        name not in known, reason=f"AWAITS WORKFLOW HANDLER: EngagementWorkflow has no `{name}` Update yet"
    )


def http(stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.url, timeout=60, follow_redirects=False)


async def q2c(stack, *args: str):
    return await asyncio.to_thread(CliRunner().invoke, cli.app, list(args), env=stack.cli_env())


def audit_of(stack, opp: str) -> list[tuple[str, str, str]]:
    return [
        (a.operation, a.outcome, a.actor)
        for a in stack.ledger.api_calls(system="q2c", workflow_id=workflow_id_for(opp))
    ]


def new_mutations(opp: str, key: str = "ms-1") -> list[tuple[str, dict | None, dict | None]]:
    api, web = f"/api/engagements/{opp}", f"/console/engagements/{opp}"
    return [
        (f"{api}/retry", {"note": "fixed"}, None),
        (f"{api}/exceptions/write-off", {"reason": "never billable"}, None),
        (f"{api}/milestones/{key}/accept", {}, None),
        (f"{api}/milestones/{key}/waive", {"reason": "not delivered"}, None),
        (f"{web}/retry", None, {"note": "fixed"}),
        (f"{web}/exceptions/write-off", None, {"reason": "never billable"}),
        (f"{web}/milestones/{key}/accept", None, {}),
        (f"{web}/milestones/{key}/waive", None, {"reason": "not delivered"}),
    ]


async def wait_until(client, opp: str, predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await status_of(client, opp)
        if last is not None and predicate(last):
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(
        f"{what} not reached for {opp}; last: {last and last.stage} {last and last.details} pause={last and last.pause}"
    )


@contextmanager
def closed_period(erp_url: str, name: str):
    """Close an ERP accounting period (shared sandbox: always reopened)."""
    url = f"{erp_url}/__sandbox/accounting-periods/by-name/{name}"
    httpx.put(url, json={"closed": True}, timeout=10).raise_for_status()
    try:
        yield lambda: httpx.put(url, json={"closed": False}, timeout=10).raise_for_status()
    finally:
        httpx.put(url, json={"closed": False}, timeout=10).raise_for_status()


# ---- access and validation (no workflow handler needed) -----------------------------------------


async def test_new_actions_refuse_anonymous_and_viewers(console_stack):
    deal, _ = await paused_deal(console_stack)
    opp = deal.opportunity_id
    async with http(console_stack) as h:
        for path, body, form in new_mutations(opp):
            for headers, expected in (({}, 401), (VIEWER, 403)):
                r = (
                    await h.post(path, json=body, headers=headers)
                    if body is not None
                    else await h.post(path, data=form, headers=headers)
                )
                assert r.status_code == expected, (path, headers, r.status_code, r.text[:200])
        # the console cookie without the page's CSRF token: refused too
        assert (await h.post("/console/login", data={"token": STEWARD_TOKEN})).status_code == 303
        r = await h.post(f"/console/engagements/{opp}/retry", data={"note": "x"})
        assert r.status_code == 403 and "CSRF" in r.text
    assert audit_of(console_stack, opp) == []  # refused requests are not changes


async def test_new_actions_bad_input_is_named_field_by_field(console_stack):
    deal, _ = await paused_deal(console_stack)
    opp = deal.opportunity_id
    api = f"/api/engagements/{opp}"
    cases = [
        (f"{api}/exceptions/write-off", {}, ["reason"]),
        (f"{api}/exceptions/write-off", {"reason": "  "}, ["reason"]),
        (f"{api}/exceptions/write-off", {"reason": "x", "psa_ids": "123"}, ["psa_ids"]),
        (f"{api}/exceptions/write-off", {"psa_ids": [1, 2]}, ["psa_ids", "reason"]),
        (f"{api}/exceptions/write-off", {"reason": "x", "reson": "typo"}, ["reson"]),
        (f"{api}/milestones/ms-1/waive", {}, ["reason"]),
        (f"{api}/milestones/ms-1/waive", {"reason": 5}, ["reason"]),
        (f"{api}/milestones/ms-1/accept", {"accepted_on": "tomorrow"}, ["accepted_on"]),
        (f"{api}/milestones/ms-1/accept", {"accepted_by": "someone else"}, ["accepted_by"]),
        (f"{api}/retry", {"note": 7}, ["note"]),
        (f"{api}/exceptions/replay", {"psa_ids": "all"}, ["psa_ids"]),
        (f"{api}/cancel", {"reason": ["x"]}, ["reason"]),
    ]
    async with http(console_stack) as h:
        for path, body, fields in cases:
            r = await h.post(path, json=body, headers=STEWARD)
            assert r.status_code == 422, (path, body, r.status_code, r.text)
            assert sorted(e["field"] for e in r.json()["errors"]) == sorted(fields), (path, body, r.json())
        r = await h.post(f"{api}/retry", json={}, headers={**STEWARD, "Idempotency-Key": "x" * 201})
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == "Idempotency-Key"
        r = await h.post(f"{api}/retry", json={}, headers={**STEWARD, "Idempotency-Key": "has space"})
        assert r.status_code == 400
        assert (await h.post(f"{api}/milestones/bad key!/accept", json={}, headers=STEWARD)).status_code == 404
        # the console form: the reason is required, shown next to its field, nothing sent
        page = await h.get(f"/console/engagements/{opp}", headers=STEWARD)
        request_id = re.search(r'name="request_id" value="([^"]+)"', page.text).group(1)
        r = await h.post(
            f"/console/engagements/{opp}/exceptions/write-off",
            headers=STEWARD,
            data={"reason": " ", "psa_ids": "123", "request_id": request_id},
        )
        assert r.status_code == 422 and "reason: say why this time will never be billed" in r.text
        r = await h.post(f"/console/engagements/{opp}/retry", headers=STEWARD, data={"request_id": "bad id!"})
        assert r.status_code == 400
    # bad input never reached the workflow, so nothing is audited
    assert audit_of(console_stack, opp) == []
    assert (await status_of(console_stack.client, opp)).stage is EngagementStage.AWAITING_STEWARD


async def test_cli_new_commands_check_their_arguments(console_stack):
    deal, _ = await paused_deal(console_stack)
    opp = deal.opportunity_id
    result = await q2c(console_stack, "exceptions", "write-off", "--all", "--reason", "x")
    assert result.exit_code == 2 and "--all needs --opportunity" in result.output
    result = await q2c(console_stack, "exceptions", "write-off", "--all", "-o", opp)
    assert result.exit_code == 2 and "--reason" in result.output  # required
    result = await q2c(console_stack, "exceptions", "write-off", "--all", "-o", opp, "--reason", "  ")
    assert result.exit_code == 2 and "why this time will never be billed" in result.output
    result = await q2c(console_stack, "exceptions", "write-off", "exc-nope", "--reason", "x")
    assert result.exit_code == 1 and "no exception exc-nope" in result.output
    result = await q2c(console_stack, "milestone", "waive", opp, "ms-1")
    assert result.exit_code == 2 and "--reason" in result.output
    result = await q2c(console_stack, "milestone", "waive", opp, "ms-1", "--reason", " ")
    assert result.exit_code == 1 and "reason: say why the milestone is waived" in result.output
    result = await q2c(console_stack, "steward", "retry", opp, "--request-id", "two words")
    assert result.exit_code == 1 and "--request-id" in result.output
    result = await q2c(console_stack, "steward", "retry", "006000000000000AAA")
    assert result.exit_code == 1 and "no engagement" in result.output


async def test_page_and_queue_show_what_the_pause_needs(console_stack):
    deal, _ = await paused_deal(console_stack, account_name="Pause Needs Recheck Ltd")
    opp = deal.opportunity_id
    async with http(console_stack) as h:
        page = (await h.get(f"/console/engagements/{opp}", headers=STEWARD)).text
        assert 'data-action="recheck"' in page and 'id="recheck-form"' in page
        assert 'id="customer-data-form"' in page
        # parked on the customer master: no retry, write-off or milestone forms
        for absent in ('id="retry-form"', 'id="write-off-form"', 'id="replay-all-form"', "/milestones/"):
            assert absent not in page, absent
        assert 'id="exception-count" data-count="0"' in page
        # every form carries its own request id
        forms = re.findall(r'<form method="post" action="/console/engagements/[^"]+"[^>]*>(.*?)</form>', page)
        assert forms and all('name="request_id"' in f for f in forms)
        ids = re.findall(r'name="request_id" value="([^"]+)"', page)
        assert len(set(ids)) == len(ids)
        for _ in range(100):
            r = await h.get("/api/queue", params={"queue": "master-data"}, headers=VIEWER)
            row = next((x for x in r.json()["engagements"] if x["opportunity_id"] == opp), None)
            if row:
                break
            await asyncio.sleep(0.2)
    assert row["action"] == "recheck" and row["open_exceptions"] == 0
    assert {"system", "operation", "vendor_code", "vendor_message"} <= set(row)
    result = await q2c(console_stack, "steward", "queue", "--queue", "master-data")
    line = next(x for x in result.output.splitlines() if opp in x)
    assert "recheck" in line and "NEEDS" in result.output.splitlines()[0]


# ---- the workflow's handlers, end to end -------------------------------------------------------


@needs_update("retry")
async def test_parked_invoice_retried_from_the_cli_and_api(console_stack):
    """A retainer's first invoice is refused by the ERP (its period is closed): the engagement
    parks naming the ERP's code; the console shows a retry form and the vendor's words; a retry
    before the fix parks it again, one after the fix invoices."""
    stack = console_stack
    async with stack.crm.client() as crm:
        deal = await create_deal(
            crm, billing_model="Retainer", account_name="Retry Retainer GmbH", start="2026-12-01", end="2027-05-31"
        )
    opp = deal.opportunity_id
    with closed_period(stack.erp.url, "Dec 2026") as reopen:
        await cli.start(
            stack.client,
            opp,
            task_queue=stack.settings.task_queue,
            delivery=DeliveryConfig(period_seconds=4, payment_poll_seconds=3600),
        )
        parked = await wait_until(
            stack.client,
            opp,
            lambda s: s.pause is not None and s.pause.action.value == "retry",
            timeout=90,
            what="a retry pause",
        )
        pause = parked.pause
        assert pause.system == "erp" and pause.vendor_code and pause.vendor_message
        assert pause.queue.value == "finance-ops"
        async with http(stack) as h:
            page = (await h.get(f"/console/engagements/{opp}", headers=STEWARD)).text
            assert 'data-action="retry"' in page and 'id="retry-form"' in page
            assert 'id="pause-system">ERP<' in page and pause.vendor_code in page
            assert 'id="customer-data-form"' not in page
            viewer_page = (await h.get(f"/console/engagements/{opp}", headers=VIEWER)).text
            assert 'id="retry-form"' not in viewer_page and pause.vendor_code in viewer_page
            for _ in range(100):
                rows = (await h.get("/api/queue", params={"queue": "finance-ops"}, headers=VIEWER)).json()
                row = next((x for x in rows["engagements"] if x["opportunity_id"] == opp), None)
                if row:
                    break
                await asyncio.sleep(0.2)
            assert row["action"] == "retry" and row["system"] == "erp" and row["vendor_code"] == pause.vendor_code
            # a retry before the cause is fixed: accepted, and the step parks again
            r = await h.post(
                f"/api/engagements/{opp}/retry",
                json={"note": "try again"},
                headers={**STEWARD, "Idempotency-Key": f"retry-1-{opp}"},
            )
            assert r.status_code == 200, r.text
            again = await wait_until(
                stack.client, opp, lambda s: s.pause is not None and s.pause.since != pause.since, what="parked again"
            )
            # the same request sent again (same key) does not retry a second time
            r2 = await h.post(
                f"/api/engagements/{opp}/retry",
                json={"note": "try again"},
                headers={**STEWARD, "Idempotency-Key": f"retry-1-{opp}"},
            )
            assert r2.status_code == 200 and r2.json() == r.json()
            assert r2.headers["x-q2c-update-id"] == r.headers["x-q2c-update-id"]
            await asyncio.sleep(1)
            assert (await status_of(stack.client, opp)).pause.since == again.pause.since
        reopen()
        result = await q2c(stack, "steward", "retry", opp, "--note", "Dec 2026 reopened", "--by", "fiona")
        assert result.exit_code == 0, result.output
        assert "accepted" in result.output
        done = await wait_until(stack.client, opp, lambda s: s.invoices and s.pause is None, what="invoiced")
    assert done.invoices[0].period_start.isoformat() == "2026-12-01"
    assert ("retry", "ok", "fiona") in audit_of(stack, opp)
    assert [a for a in audit_of(stack, opp) if a[0] == "retry"][:2] == [("retry", "ok", STEWARD_USER)] * 2
    # the status the CLI prints names the pause while there is one, and stays readable after
    assert "Paused:" not in cli.format_status(done)


@needs_update("write_off_exceptions")
async def test_time_exceptions_written_off_from_api_console_and_cli(console_stack):
    """Time booked into a closed ERP period is parked; a steward writes one entry off through
    the API, replays nothing twice, and writes off the rest from the CLI; the count, not the
    sample's length, is what the page and the CLI say."""
    stack = console_stack
    async with stack.crm.client() as crm:
        deal = await create_deal(crm, account_name="Write Off Consulting LLC", start="2026-12-01", end="2027-05-31")
    opp = deal.opportunity_id
    with closed_period(stack.erp.url, "Dec 2026"):
        await cli.start(
            stack.client,
            opp,
            task_queue=stack.settings.task_queue,
            delivery=DeliveryConfig(period_seconds=12, payment_poll_seconds=3600),
        )
        active = await wait_for_stage(stack.client, opp, EngagementStage.ACTIVE, timeout=90)
        ws = active.psa_workspace.workspace_id
        story = next(t for t in active.psa_workspace.tasks if t.billable)
        user = next(u for u in stack.psa.records("users") if u["role_id"] == "503")
        entries = [
            {
                "workspace_id": ws,
                "story_id": story.psa_story_id,
                "user_id": user["id"],
                "date_performed": day,
                "time_in_minutes": 90,
                "billable": True,
            }
            for day in ("2026-12-08", "2026-12-09", "2026-12-10")
        ]
        created = httpx.post(
            f"{stack.psa.url}/__sandbox/time/bulk", json={"time_entries": entries, "approved": True}, timeout=10
        )
        assert created.status_code < 300, created.text
        psa_ids = created.json()["time_entry_ids"]
        parked = await wait_until(
            stack.client, opp, lambda s: s.open_exception_count == 3, timeout=90, what="three open exceptions"
        )
    assert sorted(x.psa_id for x in parked.open_exceptions) == sorted(psa_ids)
    async with http(stack) as h:
        page = (await h.get(f"/console/engagements/{opp}", headers=STEWARD)).text
        assert 'id="exception-count" data-count="3"' in page and 'id="write-off-form"' in page
        r = await h.post(
            f"/api/engagements/{opp}/exceptions/write-off",
            headers=STEWARD,
            json={"psa_ids": [psa_ids[0]], "reason": "booked to the wrong client"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["write_off"]["written_off"] == 1 and r.json()["write_off"]["psa_ids"] == [psa_ids[0]]
        # sent again without a key: the same request (derived from the body and the entries), once
        r = await h.post(
            f"/api/engagements/{opp}/exceptions/write-off",
            headers=STEWARD,
            json={"reason": "booked to the wrong client", "psa_ids": [psa_ids[0]]},
        )
        assert r.status_code in (200, 422), r.text
    st = await wait_until(stack.client, opp, lambda s: s.open_exception_count == 2, what="two left")
    assert st.written_off_entries == 1
    result = await q2c(
        stack, "exceptions", "write-off", "--all", "-o", opp, "--reason", "client will not pay", "--by", "wanda"
    )
    assert result.exit_code == 0, result.output
    assert "2 entries written off" in result.output
    st = await wait_until(stack.client, opp, lambda s: s.open_exception_count == 0, what="none left")
    assert st.written_off_entries == 3
    assert _bills_for(stack.erp, psa_ids) == []  # written-off time never reaches the ERP
    ops = audit_of(stack, opp)
    assert ("write_off_exceptions", "ok", STEWARD_USER) in ops and ("write_off_exceptions", "ok", "wanda") in ops


def _bills_for(erp, psa_ids: list[str]) -> list[dict]:
    return [b for b in erp.records("timeBill") if b.get("externalId") in {f"psa-{i}" for i in psa_ids}]


@needs_update("waive_milestone")
async def test_milestones_accepted_from_the_cli_and_waived_from_the_console(console_stack):
    stack = console_stack
    async with stack.crm.client() as crm:
        deal = await create_deal(crm, billing_model="Fixed Fee", region="UK", account_name="Milestone Partners Ltd")
    opp = deal.opportunity_id
    await cli.start(stack.client, opp, task_queue=stack.settings.task_queue)
    active = await wait_for_stage(stack.client, opp, EngagementStage.ACTIVE, timeout=90)
    first, second, third = (m.key for m in active.engagement.milestones)

    result = await q2c(stack, "milestone", "accept", opp, first, "--by", "paula")
    assert result.exit_code == 0, result.output
    assert f"accepted: milestone {first}, invoice" in result.output and "GBP" in result.output
    again = await q2c(stack, "milestone", "accept", opp, first, "--by", "paula")  # a re-run: not a second invoice
    st = await status_of(stack.client, opp)
    assert len([i for i in st.invoices if first in i.external_id]) == 1, (again.output, st.invoices)

    async with http(stack) as h:
        page = (await h.get(f"/console/engagements/{opp}", headers=STEWARD)).text
        assert f'id="waive-{second}"' in page and f'id="accept-{third}"' in page
        assert f'id="accept-{first}"' not in page  # invoiced: nothing to do
        request_id = re.search(
            rf'action="/console/engagements/{opp}/milestones/{second}/waive" '
            rf'id="[^"]+"><input type="hidden" name="csrf_token" value="[^"]*">'
            rf'<input type="hidden" name="request_id" value="([^"]+)"',
            page,
        ).group(1)
        r = await h.post(
            f"/console/engagements/{opp}/milestones/{second}/waive",
            headers=STEWARD,
            data={"reason": "", "request_id": request_id},
        )
        assert r.status_code == 422 and f'id="err-waive-{second}"' in r.text
        r = await h.post(
            f"/console/engagements/{opp}/milestones/{second}/waive",
            headers=STEWARD,
            data={"reason": "descoped in CO-12", "request_id": request_id},
        )
        assert r.status_code == 303 and "waived" in r.headers["location"]
        r = await h.post(f"/api/engagements/{opp}/milestones/{third}/waive", headers=STEWARD, json={"reason": "x"})
        assert r.status_code == 200
        r = await h.post(f"/api/engagements/{opp}/milestones/{third}/accept", headers=STEWARD, json={})
        assert r.status_code == 422  # waived: it cannot be invoiced any more
    st = await status_of(stack.client, opp)
    by_key = {m.key: m for m in st.engagement.milestones}
    assert by_key[second].waived and by_key[second].waived_reason == "descoped in CO-12"
    assert not by_key[second].invoiced
    ops = audit_of(stack, opp)
    assert ("accept_milestone", "ok", "paula") in ops and ("waive_milestone", "ok", STEWARD_USER) in ops
