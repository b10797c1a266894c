"""The exception queue: time booked into a closed ERP period is parked with its reason, and
after the period is reopened a replay posts it exactly once."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

import httpx
import pytest
from temporalio.client import WorkflowUpdateFailedError
from typer.testing import CliRunner

from q2c.cli.exceptions import replay
from q2c.cli.main import app as cli_app
from q2c.ledger.config import ledger_url
from q2c.ledger.store import Ledger
from stack.demo_env import DEMO_PSA_TOKEN
from tests.deals import create_deal
from tests.e2e.test_delivery import _start
from tests.engagement_helpers import status_of


@contextmanager
def closed_period(erp_url: str, name: str):
    url = f"{erp_url}/__sandbox/accounting-periods/by-name/{name}"
    httpx.put(url, json={"closed": True}, timeout=10).raise_for_status()
    try:
        yield lambda: httpx.put(url, json={"closed": False}, timeout=10).raise_for_status()
    finally:
        httpx.put(url, json={"closed": False}, timeout=10).raise_for_status()


def _bills_for(erp, psa_ids: list[str]) -> list[dict]:
    return [b for b in erp.records("timeBill") if b.get("externalId") in {f"psa-{i}" for i in psa_ids}]


async def _wait(predicate, client, opp, tries: int = 200):
    import asyncio

    for _ in range(tries):
        st = await status_of(client, opp)
        if st is not None and predicate(st):
            return st
        await asyncio.sleep(0.1)
    raise AssertionError(f"condition not reached; last status {st}")


async def test_closed_period_parks_time_and_replay_posts_it_once(fresh_ts_stack, crm_client, monkeypatch):
    stack = fresh_ts_stack
    deal = await create_deal(crm_client, start="2027-01-01", end="2027-02-28")
    status = await _start(stack, deal.opportunity_id)
    ws = status.psa_workspace.workspace_id
    story = next(t for t in status.psa_workspace.tasks if t.billable)
    user = next(u for u in stack.psa.records("users") if u["role_id"] == "503")  # Consultant, 150/h
    entries = [
        {
            "workspace_id": ws,
            "story_id": story.psa_story_id,
            "user_id": user["id"],
            "date_performed": day,
            "time_in_minutes": 240,
            "billable": True,
        }
        for day in ("2027-01-12", "2027-01-13", "2027-02-03")
    ]

    with closed_period(stack.erp.url, "Jan 2027") as reopen:
        created = httpx.post(
            f"{stack.psa.url}/__sandbox/time/bulk", json={"time_entries": entries, "approved": True}, timeout=10
        )
        assert created.status_code < 300, created.text
        january = created.json()["time_entry_ids"][:2]
        await stack.env.sleep(timedelta(days=70))  # past the end of January
        st = await _wait(lambda s: s.next_period_index >= 1 and s.open_exceptions, stack.client, deal.opportunity_id)
        assert sorted(x.psa_id for x in st.open_exceptions) == sorted(january)
        assert {x.reason_code for x in st.open_exceptions} == {"PERIOD_CLOSED"}
        assert "Jan 2027" in st.open_exceptions[0].message
        assert _bills_for(stack.erp, january) == []  # nothing posted into the closed period

        # the steward's queue, from the ledger
        monkeypatch.setenv("Q2C_LEDGER_DB_URL", ledger_url(stack.settings))
        listed = CliRunner().invoke(cli_app, ["exceptions", "list", "--opportunity", deal.opportunity_id])
        assert listed.exit_code == 0, listed.output
        assert all(f"exc-{i}" in listed.output for i in january) and "PERIOD_CLOSED" in listed.output

        # a replay before the fix parks them again, posting nothing
        still = await replay(stack.client, deal.opportunity_id, january)
        assert still.posted == 0 and len(still.exceptions) == 2

        reopen()
        result = await replay(stack.client, deal.opportunity_id, [])  # --all
        assert result.posted == 2 and result.exceptions == []
        assert len(_bills_for(stack.erp, january)) == 2

        with pytest.raises(WorkflowUpdateFailedError) as again:
            await replay(stack.client, deal.opportunity_id, january)
        assert "not open exceptions" in str(again.value.cause)
        assert len(_bills_for(stack.erp, january)) == 2  # the second replay posted nothing

    st = await status_of(stack.client, deal.opportunity_id)
    assert st.open_exceptions == []
    ledger = Ledger.from_url(ledger_url(stack.settings))
    try:
        assert ledger.list_exceptions(deal.opportunity_id, status="open") == []
        assert {r.psa_id for r in ledger.list_exceptions(deal.opportunity_id, status="resolved")} == set(january)
    finally:
        ledger.dispose()


def _submit_and(psa_url: str, ws: str, user: str, week: tuple[str, str], action: str) -> str:
    """A user's week submitted in the PSA and approved (or the submission id for `action`)."""
    api = f"{psa_url}/api/v1"
    auth = {"Authorization": f"Bearer {DEMO_PSA_TOKEN}"}
    body = {"timesheet_submission": {"workspace_id": ws, "user_id": user, "start_date": week[0], "end_date": week[1]}}
    created = httpx.post(f"{api}/timesheet_submissions.json", json=body, headers=auth, timeout=10)
    assert created.status_code == 200, created.text
    sub = created.json()["results"][0]["id"]
    httpx.put(f"{api}/timesheet_submissions/{sub}/{action}", headers=auth, timeout=10).raise_for_status()
    return sub


async def test_late_approval_edit_and_reapproval_are_posted_once_each(fresh_ts_stack, crm_client):
    """Time approved late is posted at the next close; an approval withdrawn and given again
    without change posts nothing; an entry edited after posting updates its one timeBill
    (non-billable, not invoiced) or, once invoiced, is parked with the ERP's reason. Never two
    timeBills for one entry."""
    stack = fresh_ts_stack
    deal = await create_deal(crm_client, start="2027-01-01", end="2027-03-31")
    status = await _start(stack, deal.opportunity_id)
    ws = status.psa_workspace.workspace_id
    billable = next(t for t in status.psa_workspace.tasks if t.billable).psa_story_id
    internal = next(t for t in status.psa_workspace.tasks if not t.billable).psa_story_id
    consultant = next(u for u in stack.psa.records("users") if u["role_id"] == "503")["id"]  # 150/h
    senior = next(u for u in stack.psa.records("users") if u["role_id"] == "502")["id"]  # 185/h

    def row(story: str, user: str, day: str, minutes: int) -> dict:
        return {
            "workspace_id": ws,
            "story_id": story,
            "user_id": user,
            "date_performed": day,
            "time_in_minutes": minutes,
        }

    approved = httpx.post(
        f"{stack.psa.url}/__sandbox/time/bulk",
        json={
            "time_entries": [
                row(billable, consultant, "2027-01-12", 240),  # billed in January, then edited
                row(internal, consultant, "2027-01-13", 60),  # non-billable: never invoiced
                row(billable, consultant, "2027-01-14", 120),  # withdrawn and re-approved unchanged
            ],
            "approved": True,
        },
        timeout=10,
    )
    assert approved.status_code == 200, approved.text
    billed, internal_id, reapproved = approved.json()["time_entry_ids"]
    late = httpx.post(
        f"{stack.psa.url}/__sandbox/time/bulk",
        json={"time_entries": [row(billable, senior, "2027-01-20", 180)], "approved": False},
        timeout=10,
    ).json()["time_entry_ids"][0]

    await stack.env.sleep(timedelta(days=70))  # past the end of January
    st = await _wait(lambda s: s.next_period_index >= 1, stack.client, deal.opportunity_id)
    closed = st.next_period_index
    assert len(_bills_for(stack.erp, [billed, internal_id, reapproved])) == 3
    assert _bills_for(stack.erp, [late]) == []  # not approved yet

    # in the PSA, after the January close: a late approval, an edit of posted time, a re-approval
    week = ("2027-01-11", "2027-01-17")
    january_sub = next(s for s in stack.psa.records("timesheet_submissions") if str(billed) in s["time_entry_ids"])
    auth = {"Authorization": f"Bearer {DEMO_PSA_TOKEN}"}
    httpx.put(
        f"{stack.psa.url}/api/v1/timesheet_submissions/{january_sub['id']}/cancel", headers=auth, timeout=10
    ).raise_for_status()
    for entry_id, minutes in ((billed, 300), (internal_id, 90)):
        edited = httpx.put(
            f"{stack.psa.url}/api/v1/time_entries/{entry_id}.json",
            json={"time_entry": {"time_in_minutes": minutes}},
            headers=auth,
            timeout=10,
        )
        assert edited.status_code == 200, edited.text
    _submit_and(stack.psa.url, ws, consultant, week, "approve")  # the edits and the unchanged one
    _submit_and(stack.psa.url, ws, senior, ("2027-01-18", "2027-01-24"), "approve")  # approved late

    await stack.env.sleep(timedelta(days=35))
    st = await _wait(lambda s: s.next_period_index > closed, stack.client, deal.opportunity_id)

    bills = {b["externalId"]: b for b in _bills_for(stack.erp, [billed, internal_id, reapproved, late])}
    assert sorted(bills) == sorted(f"psa-{i}" for i in (billed, internal_id, reapproved, late))  # one each
    assert bills[f"psa-{late}"]["custcol_minutes"] == 180  # the late approval, posted once
    assert bills[f"psa-{internal_id}"]["custcol_minutes"] == 90  # edited after posting: updated in place
    assert bills[f"psa-{billed}"]["custcol_minutes"] == 240  # invoiced: the ERP keeps what it billed
    assert {x.psa_id: x.reason_code for x in st.open_exceptions} == {billed: "ERP_REJECTED"}
    assert "billed" in st.open_exceptions[0].message

    ledger = Ledger.from_url(ledger_url(stack.settings))
    try:
        posts = [
            c
            for c in ledger.api_calls(system="erp")
            if c.operation == "post_time_bill" and c.url.endswith(f"eid:psa-{reapproved}")
        ]
        assert len(posts) == 1  # withdrawn and re-approved unchanged: never posted again
        posted = {p.psa_id: p.minutes for p in ledger.posted_time(deal.opportunity_id)}
        assert posted == {billed: 240, internal_id: 90, reapproved: 120, late: 180}
    finally:
        ledger.dispose()
