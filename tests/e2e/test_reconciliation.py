"""Nightly reconciliation end to end on the Temporal dev server, with the sandboxes over HTTP.

A lost Outbound Message is found by the schedule's run; a simulated quarter (a portfolio of
mixed engagements through three months of the demo calendar, ERP faults on, two deals whose
Outbound Messages are lost, hand edits in each system) is reconciled: every lost deal started,
every hand edit found and repaired (CRM reference fields, from the ERP) or raised (money: a
voided invoice, late approved time, an orphan ERP project), and a second run finds nothing
unexplained. The books are checked independently: approved billable time = posted timeBills =
invoiced time lines, each milestone and retainer period invoiced once, payments match.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import date
from decimal import Decimal

import httpx
import pytest_asyncio

from q2c.cli.reconcile import _store, report_text, run_now
from q2c.domain.stage import EngagementStage
from q2c.engagement.client import describe_status, workflow_id_for
from q2c.engagement.messages import AcceptMilestoneInput, EngagementInput
from q2c.reconciliation.api import ReconcileReport, schedule_id, schedule_state
from q2c.settings import OUTBOUND_PATH
from q2c.webhook.app import create_app as create_webhook_app
from sandboxes.common.server import ServerThread, free_port
from stack.demo_env import DEMO_OUTBOUND_PATH_SECRET
from tests.deals import create_deal
from tests.engagement_helpers import status_of, wait_for_stage
from tests.fixtures.erp import _start as start_erp
from tests.fixtures.stack import Stack, q2c_settings, running_worker

PERIOD_SECONDS = 3  # one demo month
START, END = "2026-12-01", "2027-02-28"  # a quarter


@pytest_asyncio.fixture(scope="module")
async def recon(dev_env, make_crm_sandbox, psa_sandbox, tmp_path_factory):
    """Its own CRM org and ERP account (the checks see every ERP project), the webhook, a worker."""
    erp = start_erp(tmp_path_factory, "erp-recon")
    webhook_port = free_port()
    crm = make_crm_sandbox(outbound_url=f"http://127.0.0.1:{webhook_port}{OUTBOUND_PATH}/{DEMO_OUTBOUND_PATH_SECRET}")
    settings = dataclasses.replace(
        q2c_settings(
            crm_url=crm.url,
            erp_url=erp.url,
            psa_url=psa_sandbox.url,
            state_dir=tmp_path_factory.mktemp("q2c-recon"),
            temporal_address=dev_env.client.service_client.config.target_host,
            webhook_port=webhook_port,
        ),
        period_seconds=PERIOD_SECONDS,
        payment_poll_seconds=1,
    )
    webhook = ServerThread(create_webhook_app(settings), port=webhook_port).start()
    try:
        async with running_worker(dev_env.client, settings):
            yield Stack(client=dev_env.client, settings=settings, crm=crm, erp=erp, psa=psa_sandbox)
    finally:
        webhook.stop()
        erp.server.stop()


def _lose_outbound(crm_url: str, opportunity_id: str) -> None:
    httpx.put(f"{crm_url}/__sandbox/outbound/dropped/{opportunity_id}", timeout=10).raise_for_status()


def _outbound_for(crm_url: str, opportunity_id: str) -> list[dict]:
    deliveries = httpx.get(f"{crm_url}/__sandbox/outbound", timeout=10).json()["deliveries"]
    return [d for d in deliveries if opportunity_id in d["payload"]]


async def _closed_lost_deal(stack, **deal) -> str:
    """A deal closed in the CRM whose Outbound Message is lost on the way."""
    async with stack.crm.client() as crm:
        d = await create_deal(crm, stage="Negotiation/Review", **deal)
        _lose_outbound(stack.crm.url, d.opportunity_id)
        await crm.set_opportunity_stage(d.opportunity_id, "Closed Won")
    for _ in range(100):
        if _outbound_for(stack.crm.url, d.opportunity_id):
            break
        await asyncio.sleep(0.1)
    return d.opportunity_id


async def _start_input(client, opp: str) -> EngagementInput:
    """The input the engagement's first run was started with (source: webhook, cli, reconciliation)."""
    history = await client.get_workflow_handle(workflow_id_for(opp)).fetch_history()
    attrs = history.events[0].workflow_execution_started_event_attributes
    [value] = await client.data_converter.decode(attrs.input.payloads, [EngagementInput])
    return value


async def test_a_lost_outbound_message_is_started_by_the_schedule(recon):
    opp = await _closed_lost_deal(recon, start=START, end="2027-05-31")
    [lost] = _outbound_for(recon.crm.url, opp)
    assert lost["status"] == "failed" and lost["attempts"] == 0 and lost["last_error"].startswith("dropped")
    await asyncio.sleep(1)
    assert await describe_status(recon.client, opp) is None  # the webhook never heard of it

    report = await run_now(recon.client, recon.settings)  # `q2c reconcile run --wait`

    assert isinstance(report, ReconcileReport)
    assert opp in report.started
    assert (await _start_input(recon.client, opp)).source == "reconciliation"
    await wait_for_stage(recon.client, opp, EngagementStage.ACTIVE)
    text = report_text(_store(recon.settings), report.run_id)
    assert f"Engagements started             1  {opp}" in text or opp in text.splitlines()[2]
    # the same night again starts nothing new: the start is idempotent
    again = await run_now(recon.client, recon.settings)
    assert opp not in again.started and again.deals_started == 0


async def test_the_schedule_is_created_once_and_pauses_and_resumes(recon):
    from q2c.reconciliation.api import ensure_schedule, pause, resume

    await ensure_schedule(recon.client, recon.settings)
    assert await ensure_schedule(recon.client, recon.settings) is False  # idempotent at every startup
    desc = await recon.client.get_schedule_handle(schedule_id(recon.settings)).describe()
    nightly = desc.info.next_action_times[0]  # the server stores the cron as a calendar spec
    assert (nightly.hour, nightly.minute, nightly.second) == (2, 0, 0)
    assert desc.schedule.policy.catchup_window.total_seconds() == 86_400  # a missed night runs once
    assert desc.schedule.policy.overlap.name == "SKIP"
    await pause(recon.client, recon.settings, "month-end freeze")
    state = await schedule_state(recon.client, recon.settings)
    assert state["paused"] and state["note"] == "month-end freeze"
    assert await ensure_schedule(recon.client, recon.settings) is False
    assert (await schedule_state(recon.client, recon.settings))["paused"]  # a restart keeps the pause
    await resume(recon.client, recon.settings, "freeze over")
    assert not (await schedule_state(recon.client, recon.settings))["paused"]


# --- the simulated quarter ------------------------------------------------------------------


async def _pay_everything(erp_url: str, stop: asyncio.Event) -> None:
    """Customers pay every open invoice on its invoice date."""
    async with httpx.AsyncClient(base_url=erp_url, timeout=10) as http:
        while not stop.is_set():
            for inv in (await http.get("/__sandbox/records/invoice")).json()["items"]:
                if Decimal(str(inv.get("amountRemaining", "0"))) > 0 and inv.get("status") != "Voided":
                    await http.post("/__sandbox/payments", json={"invoice_id": inv["id"], "date": inv["tranDate"]})
            await asyncio.sleep(0.2)


async def _wait_closed(client, opps: list[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stages = {o: (await status_of(client, o)).stage for o in opps}
        if all(s is EngagementStage.CLOSED for s in stages.values()):
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"not closed in {timeout}s: {stages}")


@pytest_asyncio.fixture(scope="module")
async def quarter(recon):
    s = recon
    opps: dict[str, str] = {}
    s.erp.set_faults(error_rate=0.05, rate_429=0.03, retry_after_seconds=1)
    stop = asyncio.Event()
    payer = asyncio.create_task(_pay_everything(s.erp.url, stop))
    try:
        async with s.crm.client() as crm:
            for name, model in (("tm1", "Time and Materials"), ("tm2", "Time and Materials"), ("ff", "Fixed Fee")):
                opps[name] = (await create_deal(crm, billing_model=model, start=START, end=END)).opportunity_id
            opps["ret"] = (
                await create_deal(crm, billing_model="Retainer", start=START, end=END, retainer_months=3)
            ).opportunity_id
        lost = [await _closed_lost_deal(s, start=START, end="2027-05-31") for _ in range(2)]
        generated = {}
        async with httpx.AsyncClient(timeout=10):
            from q2c.vendors.kantata.client import KantataClient

            async with KantataClient(s.settings.psa, timeout=10) as psa:
                for name in ("tm1", "tm2"):
                    st = await wait_for_stage(s.client, opps[name], EngagementStage.ACTIVE, timeout=60)
                    generated[name] = await psa.generate_time(
                        st.psa_workspace.workspace_id,
                        start=date(2026, 12, 1),
                        end=date(2027, 2, 28),
                        entries_per_week=3,
                        seed=len(generated) + 11,
                    )
                ff = await wait_for_stage(s.client, opps["ff"], EngagementStage.ACTIVE, timeout=60)
                handle = s.client.get_workflow_handle(workflow_id_for(opps["ff"]))
                for m in ff.engagement.milestones:
                    await handle.execute_update("accept_milestone", AcceptMilestoneInput(milestone_key=m.key))
                await _wait_closed(s.client, list(opps.values()))
                s.erp.reset_faults()

                # --- hand edits, one or more in each system ---------------------------------
                tm1 = await status_of(s.client, opps["tm1"])
                ret = await status_of(s.client, opps["ret"])
                ffs = await status_of(s.client, opps["ff"])
                async with s.crm.client() as crm:
                    await crm.update_opportunity(opps["tm1"], {"Last_Invoice_Amount__c": "1.00"})
                    await crm.update_opportunity(opps["ret"], {"ERP_Project_Id__c": "999999"})
                voided = ffs.invoices[0]
                r = httpx.post(f"{s.erp.url}/__sandbox/invoices/{voided.erp_id}/void", timeout=10)
                assert r.status_code == 200 and r.json()["status"] == "Voided"
                # a delivery lead reopens the closed PSA project and approves a forgotten week
                await psa._write(
                    "PUT",
                    f"workspaces/{tm1.psa_workspace.workspace_id}.json",
                    {"workspace": {"status": "active"}},
                    "hand edit: reopen workspace",
                )
                late = await psa.generate_time(
                    tm1.psa_workspace.workspace_id,
                    start=date(2027, 2, 22),
                    end=date(2027, 2, 26),
                    entries_per_week=2,
                    seed=99,
                )
        from q2c.vendors.netsuite.client import NetSuiteClient

        async with NetSuiteClient(s.settings.erp, timeout=10) as erp:
            job = await erp.get_record("job", tm1.erp_project_id)
            fields = {
                k: v
                for k, v in job.items()
                if k not in ("id", "externalId", "links", "dateCreated", "lastModifiedDate", "entityStatus")
            }
            fields = {k: ({"id": v["id"]} if isinstance(v, dict) and "id" in v else v) for k, v in fields.items()}
            fields["companyName"] = "Project typed in by hand"
            orphan_id = await erp._upsert("job", "006HANDMADE0000001", fields, "hand edit")
        invoices_before = {o: len(_invoices(s.erp, o)) for o in opps.values()}
        started = time.monotonic()
        first = await run_now(s.client, s.settings)
        first_seconds = time.monotonic() - started
        second = await run_now(s.client, s.settings)
        yield dict(
            opps=opps,
            lost=lost,
            generated=generated,
            late=late,
            voided=voided,
            orphan_id=orphan_id,
            tm1=tm1,
            ret=ret,
            first=first,
            second=second,
            first_seconds=first_seconds,
            invoices_before=invoices_before,
            store=_store(s.settings),
        )
    finally:
        stop.set()
        await payer
        s.erp.reset_faults()


def _invoices(erp, opp: str) -> list[dict]:
    return [r for r in erp.records("invoice") if (r.get("externalId") or "").startswith(f"inv-{opp}-")]


def _rows(q, run: ReconcileReport, outcome: str | None = None):
    return [d for d in q["store"].differences(run.run_id) if outcome is None or d.outcome == outcome]


async def test_quarter_every_lost_deal_is_started(quarter, recon):
    assert set(quarter["lost"]) <= set(quarter["first"].started)
    for opp in quarter["lost"]:
        assert (await _start_input(recon.client, opp)).source == "reconciliation"


async def test_quarter_tampered_crm_fields_are_repaired_from_the_erp_and_audited(quarter, recon):
    q = quarter
    repaired = {(d.opportunity_id, d.record.rsplit(" ", 1)[1]): d for d in _rows(q, q["first"], "repaired")}
    assert set(repaired) == {(q["opps"]["tm1"], "Last_Invoice_Amount__c"), (q["opps"]["ret"], "ERP_Project_Id__c")}
    last = max(_invoices(recon.erp, q["opps"]["tm1"]), key=lambda r: int(r["id"]))
    audit = repaired[(q["opps"]["tm1"], "Last_Invoice_Amount__c")]
    assert (audit.actual, audit.expected) == ("1.00", format(Decimal(str(last["total"])), ".2f"))
    assert audit.explanation.startswith(
        f"rewritten from the ERP (the system of record) by reconciliation run {q['first'].run_id}"
    )
    async with recon.crm.client() as crm:
        tm1 = await crm.get_record("Opportunity", q["opps"]["tm1"])
        ret = await crm.get_record("Opportunity", q["opps"]["ret"])
    assert Decimal(str(tm1["Last_Invoice_Amount__c"])) == Decimal(str(last["total"]))
    assert ret["ERP_Project_Id__c"] == q["ret"].erp_project_id
    # the repair's CRM call is in the audit of every vendor call, under the run's workflow ID
    from q2c.ledger.config import ledger_url
    from q2c.ledger.store import Ledger

    calls = Ledger.from_url(ledger_url(recon.settings)).api_calls(workflow_id=q["first"].run_id, system="crm")
    assert len([c for c in calls if c.method == "PATCH" and q["opps"]["tm1"] in c.url]) == 1


async def test_quarter_a_voided_invoice_is_a_steward_task_and_is_not_reinvoiced(quarter, recon):
    q = quarter
    voided = q["voided"]
    task = q["store"].get_task(f"void:{voided.erp_id}")
    assert task is not None and task.status == "open" and task.opportunity_id == q["opps"]["ff"]
    assert task.message.startswith(f"invoice {voided.number} ({voided.external_id}, ERP id {voided.erp_id})")
    assert "was voided in the ERP by hand. q2c will not re-invoice or credit it on its own" in task.message
    assert {o: len(_invoices(recon.erp, o)) for o in q["opps"].values()} == q["invoices_before"]


async def test_quarter_late_approved_time_and_an_orphan_project_are_raised(quarter, recon):
    q = quarter
    raised = _rows(q, q["first"], "raised")
    late_ids = set(q["late"]["time_entry_ids"])
    not_posted = [d for d in raised if d.kind == "time_not_posted"]
    assert len(not_posted) == q["late"]["count"] and {d.opportunity_id for d in not_posted} == {q["opps"]["tm1"]}
    from q2c.ledger.config import ledger_url
    from q2c.ledger.store import Ledger

    open_exc = Ledger.from_url(ledger_url(recon.settings)).list_exceptions(q["opps"]["tm1"])
    assert len(open_exc) == q["late"]["count"] and {e.reason_code for e in open_exc} == {"NOT_POSTED"}
    assert {e.psa_id for e in open_exc} == late_ids
    [orphan] = [d for d in raised if d.kind == "orphan_erp_project"]
    assert orphan.record.startswith(f"job {q['orphan_id']} Project typed in by hand (externalId 006HANDMADE0000001)")
    assert {d.kind for d in raised} == {"time_not_posted", "orphan_erp_project", "invoice_voided"}


async def test_quarter_after_repair_nothing_is_unexplained(quarter):
    q = quarter
    first, second = q["first"], q["second"]
    assert first.unexplained == 0 and second.unexplained == 0
    assert first.repaired == 2 and second.repaired == 0 and second.raised == 0
    # what the second night still sees is what stewards were asked to decide, nothing else
    assert {d.kind for d in _rows(q, second) if "steward task" in d.explanation or "exception" in d.explanation} >= {
        "invoice_voided",
        "orphan_erp_project",
        "time_not_posted",
    }
    assert first.engagements_checked >= 4 and first.vendor_calls > 0


async def test_quarter_books_agree_to_the_minute_and_the_cent(quarter, recon):
    """Independently of the checks: approved billable time = posted timeBills = invoiced lines."""
    q = quarter
    erp = recon.erp
    for name in ("tm1", "tm2"):
        opp = q["opps"][name]
        st = await status_of(recon.client, opp)
        ws = st.psa_workspace.workspace_id
        entries = [
            e
            for e in recon.psa.records("time_entries")
            if str(e.get("workspace_id")) == ws and e.get("approved") and e.get("billable")
        ]
        late = set(q["late"]["time_entry_ids"]) if name == "tm1" else set()
        approved = sum(e["time_in_minutes"] for e in entries if str(e["id"]) not in late)
        bills = [b for b in erp.records("timeBill") if str(b["customer"]["id"]) == st.erp_project_id]
        posted = sum(b["custcol_minutes"] for b in bills if b.get("isBillable"))
        assert approved == posted > 0
        assert all(b.get("isBilled") for b in bills if b.get("isBillable"))
        posted_amount = sum(Decimal(str(b["custcol_amount"])) for b in bills if b.get("isBillable"))
        invoiced = sum(Decimal(str(i["total"])) for i in _invoices(erp, opp))
        assert posted_amount == invoiced
    ff = _invoices(erp, q["opps"]["ff"])
    assert len(ff) == 3 and len({i["externalId"] for i in ff}) == 3  # each milestone once
    assert sum(Decimal(str(i["total"])) for i in ff) == Decimal("80000")
    ret = _invoices(erp, q["opps"]["ret"])
    assert sorted(i["externalId"][-4:] for i in ret) == ["p000", "p001", "p002"]  # each period once
    assert all(Decimal(str(i["total"])) == Decimal("8500") for i in ret)
    for opp in q["opps"].values():
        assert all(Decimal(str(i["amountRemaining"])) == 0 for i in _invoices(erp, opp))  # payments match
    print(
        f"\nsimulated quarter: {len(q['opps']) + len(q['lost'])} engagements, "
        f"{sum(g['count'] for g in q['generated'].values()) + q['late']['count']} time entries, "
        f"{sum(len(_invoices(erp, o)) for o in q['opps'].values())} invoices; first run "
        f"{q['first'].differences} differences ({q['first'].repaired} repaired, {q['first'].raised} raised, "
        f"{q['first'].explained} explained, {q['first'].unexplained} unexplained) in {q['first_seconds']:.1f}s, "
        f"{q['first'].vendor_calls / max(1, q['first'].engagements_checked):.1f} vendor calls per engagement"
    )


async def test_quarter_the_console_shows_the_run_and_the_voided_invoice_task(quarter, recon):
    """What a finance lead sees after the night's run: the latest run's figures, the steward
    task for the voided invoice, and sign-in required for anyone else."""
    from tests.conftest import VIEWER_TOKEN

    q = quarter
    async with httpx.AsyncClient(base_url=recon.settings.webhook_base_url, timeout=30) as http:
        anonymous = await http.get("/console/reconciliation", follow_redirects=False)
        assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/console/login?next=")
        page = await http.get("/console/reconciliation", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
    assert page.status_code == 200 and page.headers["content-security-policy"].startswith("default-src 'self'")
    assert f"{q['second'].differences} differences, {q['second'].unexplained} unexplained" in page.text
    assert q["voided"].number in page.text  # the open task names the voided invoice
