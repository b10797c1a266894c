"""Record engagement histories from real runs, for the replay tests (`tests/replay/`).

    .venv/bin/python -m tools.record_histories                 # every scenario
    .venv/bin/python -m tools.record_histories tm_full_life    # some of them
    .venv/bin/python -m tools.record_histories --label period-memo   # a change not yet released

Each scenario drives the real EngagementWorkflow with the real worker (activities, connectors,
ledger) against the three sandboxes over HTTP, on a time-skipping Temporal server of its own
(month-long timers pass in seconds; its clock starts today and only this scenario moves it),
exactly as the e2e tests do (the helpers are theirs). Every run of the engagement (one per
billing period: continue-as-new) is downloaded, its payloads decoded, and written to
`tests/replay/histories/<q2c version>[+<label>]/<scenario>.json` with a manifest (see
`tools/history_files.py`).

A version folder is never overwritten or pruned: recording into one that already holds a
scenario refuses unless `--replace` is given (only for a version that was never released).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from tools.history_files import (
    HISTORIES,
    ROOT,
    decode_history,
    history_dict,
    manifest_entry,
    q2c_version,
    write_manifest,
)


def _test_environment() -> None:
    """The tests' own configuration (codec key, tokens): the recorded runs are encrypted as
    every test run is, and decoded when written."""
    from tests.conftest import TEST_ENVIRONMENT

    for name, value in TEST_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


@dataclass
class Sandboxes:
    crm: object
    erp: object
    psa: object
    servers: list

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def start_sandboxes(folder: Path) -> Sandboxes:
    """The three sandboxes in this process, over real HTTP, on SQLite files in `folder`."""
    from sandboxes.common.server import ServerThread
    from sandboxes.crm.app import create_app as crm_app
    from sandboxes.erp.app import create_app as erp_app
    from sandboxes.psa.app import create_app as psa_app
    from tests.fixtures.crm import CrmSandbox
    from tests.fixtures.erp import ErpSandbox, demo_m2m
    from tests.fixtures.psa import PsaSandbox

    crm_db = f"sqlite:///{folder}/crm.db"
    crm_server = ServerThread(crm_app(crm_db, id_instance="5f9001")).start()
    erp_server = ServerThread(erp_app(f"sqlite:///{folder}/erp.db", m2m_dir=demo_m2m().directory)).start()
    psa_server = ServerThread(psa_app(f"sqlite:///{folder}/psa.db")).start()
    return Sandboxes(
        crm=CrmSandbox(app=crm_server.server.config.app, server=crm_server, db_url=crm_db),
        erp=ErpSandbox(url=erp_server.url, app=None, server=erp_server),
        psa=PsaSandbox(url=psa_server.url, app=None, server=psa_server),
        servers=[crm_server, erp_server, psa_server],
    )


# --- scenarios ------------------------------------------------------------------------------
# Each takes the stack (tests.fixtures.stack.Stack) and a CRM client, drives one engagement
# and returns (opportunity ID, first run ID). They reuse the e2e tests' helpers, so a scenario
# does what a test already proves works.

Scenario = Callable[..., Awaitable[tuple[str, str]]]
SCENARIOS: dict[str, tuple[str, Scenario]] = {}


def scenario(description: str):
    def register(fn: Scenario) -> Scenario:
        SCENARIOS[fn.__name__] = (description, fn)
        return fn

    return register


async def _start(stack, opp: str, delivery=None):
    from tests.e2e.test_delivery import WEEKLY_POLL, _start_run

    return await _start_run(stack, opp, delivery or WEEKLY_POLL)


@scenario("time and materials, three monthly periods with generated time, paid, to Closed")
async def tm_full_life(stack, crm):
    from tests.deals import create_deal
    from tests.e2e.test_delivery import _run_to_close

    deal = await create_deal(crm, start="2026-12-01", end="2027-02-28")
    status, run_id = await _start(stack, deal.opportunity_id)
    psa = stack.psa_client
    await psa.generate_time(
        status.psa_workspace.workspace_id, start=date(2026, 12, 1), end=date(2027, 2, 28), entries_per_week=4, seed=7
    )
    await _run_to_close(stack, deal.opportunity_id, status.erp_customer_id)
    return deal.opportunity_id, run_id


@scenario("fixed fee, every milestone accepted and invoiced, paid, to Closed")
async def fixed_fee_full_life(stack, crm):
    from q2c.engagement.client import workflow_id_for
    from q2c.engagement.messages import AcceptMilestoneInput
    from tests.deals import create_deal
    from tests.e2e.test_delivery import _run_to_close

    deal = await create_deal(crm, billing_model="Fixed Fee", region="UK", start="2026-12-01", end="2027-01-31")
    status, run_id = await _start(stack, deal.opportunity_id)
    handle = stack.client.get_workflow_handle(workflow_id_for(deal.opportunity_id))
    for m in status.engagement.milestones:
        await handle.execute_update("accept_milestone", AcceptMilestoneInput(milestone_key=m.key))
    await _run_to_close(stack, deal.opportunity_id, status.erp_customer_id)
    return deal.opportunity_id, run_id


@scenario("retainer, four monthly invoices of the fixed amount, paid, to Closed")
async def retainer_full_life(stack, crm):
    from tests.deals import create_deal
    from tests.e2e.test_delivery import _run_to_close

    deal = await create_deal(
        crm,
        billing_model="Retainer",
        region="DACH",
        tax_id="DE123456789",
        start="2026-12-01",
        end="2027-03-31",
        retainer_months=4,
    )
    status, run_id = await _start(stack, deal.opportunity_id)
    await _run_to_close(stack, deal.opportunity_id, status.erp_customer_id)
    return deal.opportunity_id, run_id


@scenario("missing tax ID: paused for master data, a recheck, the steward's fix, Active, closed on request")
async def steward_pause_fix_resume(stack, crm):
    from q2c.domain.stage import EngagementStage
    from q2c.engagement.client import start_engagement, workflow_id_for
    from q2c.engagement.messages import CloseInput, CustomerPatch, RecheckInput
    from tests.deals import create_deal
    from tests.e2e.test_delivery import WEEKLY_POLL, _run_to_close
    from tests.engagement_helpers import wait_for_stage

    deal = await create_deal(crm, tax_id=None, start="2026-12-01", end="2027-02-28")
    opp = deal.opportunity_id
    started = await start_engagement(
        stack.client, opp, task_queue=stack.settings.task_queue, source="test", delivery=WEEKLY_POLL
    )
    await wait_for_stage(stack.client, opp, EngagementStage.AWAITING_STEWARD)
    handle = stack.client.get_workflow_handle(workflow_id_for(opp))
    await handle.signal("recheck", RecheckInput(requested_by="steward@example.com", note="still missing"))
    await asyncio.sleep(1)
    await handle.execute_update("provide_customer_data", CustomerPatch(tax_id="98-7654321", provided_by="alice"))
    status = await wait_for_stage(stack.client, opp, EngagementStage.ACTIVE)
    await handle.execute_update("request_close", CloseInput(requested_by="pmo", reason="delivered early"))
    await _run_to_close(stack, opp, status.erp_customer_id)
    return opp, started.run_id


@scenario("change orders from the CRM: a milestone added and the amount raised (crm_changed, redelivered)")
async def change_order_crm(stack, crm):
    from q2c.engagement.client import start_engagement, workflow_id_for
    from q2c.engagement.messages import CrmChangedInput
    from tests.deals import create_deal
    from tests.e2e.test_parking import wait_until

    deal = await create_deal(crm, billing_model="Fixed Fee", region="UK", start="2026-12-01", end="2027-03-31")
    opp = deal.opportunity_id
    _, run_id = await _start(stack, opp)
    await crm.create_record(
        "OpportunityLineItem",
        {
            "OpportunityId": opp,
            "Name": "Hypercare",
            "Line_Type__c": "Milestone",
            "Quantity": 1,
            "UnitPrice": 10000,
            "Milestone_Date__c": "2027-03-28",
        },
    )
    await crm.update_opportunity(opp, {"Amount": 90000})
    for _ in range(2):  # the Outbound Message, delivered twice
        await start_engagement(stack.client, opp, task_queue=stack.settings.task_queue, source="salesforce-outbound")
    await wait_until(stack, opp, lambda s: s.contract_version == 2, "CRM change order v2")
    await crm.update_opportunity(opp, {"End_Date__c": "2027-04-30"})
    handle = stack.client.get_workflow_handle(workflow_id_for(opp))
    await handle.signal("crm_changed", CrmChangedInput(source="salesforce-outbound"))
    await wait_until(stack, opp, lambda s: s.contract_version == 3, "CRM change order v3")
    return opp, run_id


@scenario("change orders from a steward (amend_contract): a rate raise and a later end date, across a period close")
async def change_order_steward(stack, crm):
    from q2c.engagement.client import workflow_id_for
    from q2c.engagement.messages import Amendment, ContractVersion, RateChange
    from tests.deals import create_deal
    from tests.e2e.test_parking import add_time, midnight, skip_to, wait_until

    deal = await create_deal(crm, start="2027-01-01", end="2027-03-31")
    opp = deal.opportunity_id
    status, run_id = await _start(stack, opp)
    handle = stack.client.get_workflow_handle(workflow_id_for(opp))
    add_time(stack, status, ["2027-01-11", "2027-01-12"])
    await handle.execute_update(
        "amend_contract",
        Amendment(
            rates=[RateChange(role="Consultant", rate=Decimal("175.50"), effective_from=date(2027, 2, 1))],
            reason="annual rate review",
            requested_by="finance-ops",
        ),
        result_type=ContractVersion,
    )
    await skip_to(stack, midnight(date(2027, 2, 2)))
    await wait_until(stack, opp, lambda s: s.next_period_index >= 1, "January closed")
    await handle.execute_update(
        "amend_contract",
        Amendment(end_date=date(2027, 4, 30), reason="extension signed", requested_by="sales-ops"),
        result_type=ContractVersion,
    )
    await wait_until(stack, opp, lambda s: s.contract_version == 3, "steward change order v3")
    return opp, run_id


@scenario("time parked in a closed ERP period: one entry replayed after the fix, one written off")
async def exceptions_replay_write_off(stack, crm):
    from q2c.engagement.client import workflow_id_for
    from q2c.engagement.messages import PostingResult, ReplayExceptionsInput, WriteOffInput, WriteOffResult
    from tests.deals import create_deal
    from tests.e2e.test_parking import add_time, closed_period, midnight, skip_to, wait_until

    deal = await create_deal(crm, start="2027-01-01", end="2027-02-28")
    opp = deal.opportunity_id
    status, run_id = await _start(stack, opp)
    handle = stack.client.get_workflow_handle(workflow_id_for(opp))
    with closed_period(stack.erp.url, "Jan 2027") as reopen:
        first, second = add_time(stack, status, ["2027-01-12", "2027-01-13"])
        await skip_to(stack, midnight(date(2027, 2, 2)))
        await wait_until(stack, opp, lambda s: s.open_exception_count == 2, "two parked entries")
        reopen()
        await handle.execute_update(
            "replay_exceptions", ReplayExceptionsInput(psa_ids=[first]), result_type=PostingResult
        )
        await handle.execute_update(
            "write_off_exceptions",
            WriteOffInput(psa_ids=[second], reason="booked to the wrong client", requested_by="finance-ops"),
            result_type=WriteOffResult,
        )
    await wait_until(stack, opp, lambda s: s.open_exception_count == 0, "no open exceptions")
    return opp, run_id


@scenario("cancelled while Active: the month in progress invoiced, the projects closed, Cancelled")
async def cancellation(stack, crm):
    from q2c.engagement.client import workflow_id_for
    from q2c.engagement.messages import CancelInput
    from tests.deals import create_deal
    from tests.e2e.test_delivery import _run_to_close

    deal = await create_deal(
        crm, billing_model="Retainer", region="DACH", tax_id="DE123456789", start="2026-12-01", end="2027-05-31"
    )
    opp = deal.opportunity_id
    status, run_id = await _start(stack, opp)
    handle = stack.client.get_workflow_handle(workflow_id_for(opp))
    await stack.env.sleep(timedelta(days=40))  # December billed
    await handle.execute_update("cancel", CancelInput(reason="client restructuring", requested_by="bob"))
    await _run_to_close(stack, opp, status.erp_customer_id)
    return opp, run_id


@scenario("cancelled while waiting for a steward during setup: nothing provisioned, Cancelled")
async def cancel_during_setup(stack, crm):
    from q2c.domain.stage import EngagementStage
    from q2c.engagement.client import start_engagement, workflow_id_for
    from q2c.engagement.messages import CancelInput, EngagementSummary
    from tests.deals import create_deal
    from tests.engagement_helpers import wait_for_stage

    deal = await create_deal(crm, tax_id=None)
    opp = deal.opportunity_id
    started = await start_engagement(stack.client, opp, task_queue=stack.settings.task_queue, source="test")
    await wait_for_stage(stack.client, opp, EngagementStage.AWAITING_STEWARD)
    handle = stack.client.get_workflow_handle(workflow_id_for(opp), result_type=EngagementSummary)
    await handle.execute_update("cancel", CancelInput(reason="deal lost to a competitor", requested_by="sales-ops"))
    await asyncio.wait_for(handle.result(), 60)
    return opp, started.run_id


@scenario("six monthly periods of time and materials: six continue-as-new boundaries, payments polled, to Closed")
async def continue_as_new_six_periods(stack, crm):
    from q2c.engagement.messages import DeliveryConfig
    from tests.deals import create_deal
    from tests.e2e.test_delivery import _run_to_close
    from tests.e2e.test_parking import add_time

    deal = await create_deal(crm, start="2027-01-01", end="2027-06-30")
    status, run_id = await _start(stack, deal.opportunity_id, DeliveryConfig(payment_poll_seconds=10 * 86_400))
    add_time(stack, status, [f"2027-{m:02d}-15" for m in range(1, 7)])
    await _run_to_close(stack, deal.opportunity_id, status.erp_customer_id, timeout=240)
    return deal.opportunity_id, run_id


# --- recording ------------------------------------------------------------------------------


@scenario(
    "T&M not-to-exceed: warnings at 80% and 100%, time held at the cap, a change order that bills it, "
    "a release from the PMO, paid, to Closed"
)
async def budget_cap_hold_release(stack, crm):
    from q2c.engagement.client import workflow_id_for
    from q2c.engagement.messages import Amendment, BudgetHoldDecisionInput, BudgetHoldDecisionResult, ContractVersion
    from tests.deals import create_deal
    from tests.e2e.test_delivery import _run_to_close
    from tests.e2e.test_parking import add_time, midnight, skip_until_due, wait_until

    deal = await create_deal(crm, start="2026-12-01", end="2027-03-31", stage="Negotiation/Review", not_to_exceed=None)
    opp = deal.opportunity_id
    await crm.update_record("Opportunity", opp, {"Amount": 1000})
    await crm.set_opportunity_stage(opp, "Closed Won")
    status, run_id = await _start(stack, opp)
    handle = stack.client.get_workflow_handle(workflow_id_for(opp))
    add_time(stack, status, ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"], minutes=60)
    add_time(stack, status, ["2027-01-05", "2027-01-06"], minutes=60)
    add_time(stack, status, ["2027-02-02"], minutes=40)
    add_time(stack, status, ["2027-02-03", "2027-02-04", "2027-03-02", "2027-03-03"], minutes=60)
    for index, day in enumerate((date(2027, 1, 1), date(2027, 2, 1), date(2027, 3, 1))):
        await skip_until_due(stack, midnight(day))
        await wait_until(stack, opp, lambda s, i=index: s.next_period_index > i, f"period {index} closed")
    await wait_until(stack, opp, lambda s: s.budget is not None and s.budget.held_items == 2, "time held at the cap")
    await handle.execute_update(
        "amend_contract",
        Amendment(budget_cap=Decimal("1500"), reason="CO-7 extended discovery", requested_by="pmo"),
        result_type=ContractVersion,
    )
    await skip_until_due(stack, midnight(date(2027, 4, 1)))
    await wait_until(stack, opp, lambda s: s.budget.held_items == 1, "March's second hour held")
    await handle.execute_update(
        "decide_budget_hold",
        BudgetHoldDecisionInput(action="release", reason="client approved by email", requested_by="pmo"),
        result_type=BudgetHoldDecisionResult,
    )
    await _run_to_close(stack, opp, status.erp_customer_id)
    return opp, run_id


@scenario("T&M with billable expenses at a 10% markup, one in EUR at the ERP's rate, paid, to Closed")
async def expenses_markup(stack, crm):
    import httpx

    from stack.demo_env import DEMO_PSA_TOKEN
    from tests.deals import create_deal
    from tests.e2e.test_delivery import _run_to_close

    deal = await create_deal(crm, start="2026-12-01", end="2027-01-31", stage="Negotiation/Review")
    opp = deal.opportunity_id
    await crm.update_record("Opportunity", opp, {"Expense_Markup_Percent__c": 10})
    await crm.set_opportunity_stage(opp, "Closed Won")
    status, run_id = await _start(stack, opp)
    user = stack.psa.records("users")[0]["id"]
    for day, category, cents, currency in (
        ("2026-12-10", "Airfare", 41235, "USD"),
        ("2027-01-12", "Lodging", 20000, "EUR"),
    ):
        r = httpx.post(
            f"{stack.psa.url}/api/v1/expenses.json",
            json={
                "expense": {
                    "workspace_id": status.psa_workspace.workspace_id,
                    "user_id": user,
                    "date": day,
                    "category": category,
                    "amount_in_cents": cents,
                    "currency": currency,
                    "has_receipt": True,
                    "approved": True,
                }
            },
            headers={"Authorization": f"Bearer {DEMO_PSA_TOKEN}"},
            timeout=30,
        )
        r.raise_for_status()
    await _run_to_close(stack, opp, status.erp_customer_id)
    return opp, run_id


@scenario("fixed fee: a milestone credited in part with a corrected line re-billed on the next invoice, to Closed")
async def credit_and_rebill(stack, crm):
    from q2c.engagement.client import workflow_id_for
    from q2c.engagement.messages import AcceptMilestoneInput, CreditInvoiceInput, CreditNoteSummary, RebillLine
    from tests.deals import create_deal
    from tests.e2e.test_delivery import _run_to_close

    deal = await create_deal(crm, billing_model="Fixed Fee", region="UK", start="2026-12-01", end="2027-01-31")
    status, run_id = await _start(stack, deal.opportunity_id)
    handle = stack.client.get_workflow_handle(workflow_id_for(deal.opportunity_id))
    first, *rest = status.engagement.milestones
    invoice = await handle.execute_update("accept_milestone", AcceptMilestoneInput(milestone_key=first.key))
    await handle.execute_update(
        "credit_invoice",
        CreditInvoiceInput(
            invoice=invoice["external_id"],
            amount=Decimal("2500.00"),
            reason="workshop 3 delivered as a half day",
            requested_by="finance-ops",
            rebill=[RebillLine(description="Workshop 3 (half day)", quantity=Decimal("0.5"), rate=Decimal("2000"))],
        ),
        id=f"credit-{deal.opportunity_id}",
        result_type=CreditNoteSummary,
    )
    for m in rest:
        await handle.execute_update("accept_milestone", AcceptMilestoneInput(milestone_key=m.key))
    await _run_to_close(stack, deal.opportunity_id, status.erp_customer_id)
    return deal.opportunity_id, run_id


def code_commit() -> str:
    """HEAD, marked `-dirty` when the workflow code differs from it (the recording then
    reflects uncommitted workflow code: say so rather than pretend)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    workflow_code = [
        "q2c/engagement/workflow.py",
        "q2c/engagement/steps.py",
        "q2c/provisioning/workflow.py",
        "q2c/delivery/workflow.py",
        "q2c/engagement/messages.py",
    ]
    dirty = git("status", "--porcelain", "--", *workflow_code)
    return f"{head}-dirty" if dirty else head


async def record(name: str, sandboxes: Sandboxes, folder: Path, state: Path, log=print) -> dict:
    from q2c.settings import load_settings
    from q2c.temporal import converter_for
    from q2c.vendors.kantata.client import KantataClient
    from q2c.vendors.salesforce.client import SalesforceClient
    from tests.e2e.test_delivery import run_histories
    from tests.fixtures.psa import psa_settings
    from tests.fixtures.stack import Stack, q2c_settings, running_worker
    from tests.fixtures.temporal import start_time_skipping

    description, fn = SCENARIOS[name]
    began = time.monotonic()
    env = await start_time_skipping()
    try:
        settings = q2c_settings(
            crm_url=sandboxes.crm.url,
            erp_url=sandboxes.erp.url,
            psa_url=sandboxes.psa.url,
            state_dir=state / name,
            temporal_address=env.client.service_client.config.target_host,
        )
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        async with running_worker(env.client, settings):
            stack = Stack(
                client=env.client, settings=settings, crm=sandboxes.crm, erp=sandboxes.erp, psa=sandboxes.psa, env=env
            )
            async with (
                SalesforceClient(sandboxes.crm.settings) as crm,
                KantataClient(psa_settings(sandboxes.psa.url)) as psa,
            ):
                stack.psa_client = psa
                opp, first_run = await fn(stack, crm)
            workflow_id = f"engagement-{opp}"
            histories = await run_histories(env.client, workflow_id, first_run)
    finally:
        await env.shutdown()

    codec = converter_for(load_settings()).payload_codec
    runs = []
    for history in histories:
        decoded = await decode_history(_proto(history), codec)
        runs.append({"run_id": _run_id(history), "history": history_dict(decoded)})
    recorded_at = datetime.now(UTC).replace(microsecond=0).isoformat()
    document = {
        "scenario": name,
        "description": description,
        "workflow_id": workflow_id,
        "workflow_type": "EngagementWorkflow",
        "q2c_version": q2c_version(),
        "recorded_at": recorded_at,
        "code_commit": code_commit(),
        "payloads": "decoded",
        "runs": runs,
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(document, indent=1) + "\n")
    entry = manifest_entry(path)
    log(
        f"{name}: {entry['runs']} run(s), {entry['events']} events, {entry['bytes']} bytes, "
        f"patches {entry['patches'] or '-'} ({time.monotonic() - began:.0f} s)"
    )
    return entry


def _proto(history):
    from temporalio.api.history.v1 import History

    return History(events=list(history.events))


def _run_id(history) -> str:
    first = history.events[0].workflow_execution_started_event_attributes
    return first.original_execution_run_id


async def main_async(args: argparse.Namespace) -> int:
    _test_environment()
    if args.manifest:
        for folder in sorted(p for p in HISTORIES.iterdir() if p.is_dir()):
            print(f"{folder.name}: {len(write_manifest(folder)['scenarios'])} scenarios")
        return 0
    names = args.scenarios or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    version = q2c_version() + (f"+{args.label}" if args.label else "")
    folder = Path(args.out) / version if args.out else HISTORIES / version
    folder.mkdir(parents=True, exist_ok=True)
    taken = [n for n in names if (folder / f"{n}.json").exists()]
    if taken and not args.replace:
        print(
            f"{folder} already holds {', '.join(taken)}: histories of a version are never overwritten "
            "(use --label for a change not yet released, or --replace for a version never released)",
            file=sys.stderr,
        )
        return 2
    entries = []
    with tempfile.TemporaryDirectory(prefix="q2c-record-") as tmp:
        sandboxes = start_sandboxes(Path(tmp))
        try:
            for name in names:
                entries.append(await record(name, sandboxes, folder, Path(tmp) / "state"))
                write_manifest(folder)
        finally:
            sandboxes.stop()
    total = sum(e["bytes"] for e in entries)
    print(f"{len(entries)} histories written to {folder} ({total} bytes)")
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.record_histories", description=__doc__.split("\n")[0])
    parser.add_argument("scenarios", nargs="*", help=f"scenarios to record (default: all): {', '.join(SCENARIOS)}")
    parser.add_argument("--label", help="record into <version>+<label>: a workflow change not yet released")
    parser.add_argument("--replace", action="store_true", help="overwrite scenarios of a version never released")
    parser.add_argument("--manifest", action="store_true", help="only rebuild every folder's manifest from its files")
    parser.add_argument("--out", help="another root folder than tests/replay/histories (e.g. to try a recording)")
    args = parser.parse_args(argv)
    raise SystemExit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
