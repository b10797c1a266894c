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
