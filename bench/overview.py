"""The operations overview at scale: how long the dashboard's figures take for N engagements.

    python -m bench.overview [--engagements 5000]

A Temporal dev server (in-memory) gets N engagement workflows with their search attributes
(started by name with no worker: visibility is what the overview reads), and a SQLite ledger
gets, per engagement, two invoices, six posted time entries (two uninvoiced), an exception
for every tenth, and the provisioning calls' audit rows. Then the overview is computed the
way the console does (`figures.snapshot` + filter + the HTML page), several times, and the
figures are printed: visibility, ledger and render times, and the total. Contract values
are given in memory here (the CRM answers one SOQL query, cached for a minute, in the console).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment

from q2c.console.operations_pages import filter_engagements, overview_page
from q2c.engagement.search_attributes import (
    BILLING_MODEL,
    CUSTOMER_NAME,
    ENGAGEMENT_STAGE,
    OPPORTUNITY_ID,
    REGION,
    ensure_search_attributes,
)
from q2c.ledger.models import ApiCall, LedgerInvoice, LedgerPostedTime, TimeException
from q2c.ledger.store import Ledger
from q2c.observability.figures import FiguresSource, snapshot

STAGES = ["Active"] * 6 + ["Collecting"] * 2 + ["AwaitingSteward", "Provisioning", "Closed"]


class _Viewer:
    user, role, can_change, csrf = "bench", "viewer", False, ""


def seed_ledger(ledger: Ledger, opps: list[str]) -> None:
    now = datetime.now(UTC)
    invoices, posted, exceptions, calls = [], [], [], []
    for n, opp in enumerate(opps):
        for k in range(2):
            invoices.append(
                dict(
                    external_id=f"inv-{opp}-{k}",
                    erp_id=f"e{n}-{k}",
                    number=f"INV{n}-{k}",
                    opportunity_id=opp,
                    period_start=date(2026, 10 + k, 1),
                    period_end=date(2026, 10 + k, 28),
                    total=Decimal("1000.00"),
                    currency="USD",
                    status="open",
                    amount_paid=Decimal(0),
                    open_balance=Decimal("1000.00") if k else Decimal(0),
                    days_overdue=(n % 120) if k else 0,
                    updated_at=now,
                )
            )
        for k in range(6):
            posted.append(
                dict(
                    psa_id=f"te-{n}-{k}",
                    erp_time_bill_id=f"tb-{n}-{k}",
                    opportunity_id=opp,
                    role="Consultant",
                    date_performed=date(2026, 11, 1 + k),
                    minutes=480,
                    billable=True,
                    rate=Decimal("150"),
                    amount=Decimal("1200.00"),
                    currency="USD",
                    posted_at=now,
                    invoice_external_id=None if k >= 4 else f"inv-{opp}-0",
                )
            )
        if n % 10 == 0:
            exceptions.append(
                dict(
                    id=f"exc-x{n}",
                    opportunity_id=opp,
                    workflow_id=f"engagement-{opp}",
                    psa_id=f"x{n}",
                    reason_code=random.choice(["PERIOD_CLOSED", "TASK_CLOSED", "NO_RATE"]),
                    message="",
                    status="open",
                    attempts=1,
                    first_seen=now - timedelta(days=n % 14),
                    last_seen=now,
                )
            )
        start = now - timedelta(hours=n % 48)
        for k, (system, activity) in enumerate(
            [("crm", "fetch_engagement"), ("erp", "upsert_erp_customer"), ("psa", "provision_psa_workspace")]
            + [("crm", "write_back_crm")]
        ):
            calls.append(
                dict(
                    at=start + timedelta(seconds=k * (1 + n % 30)),
                    correlation_id=f"c{n}-{k}",
                    system=system,
                    operation="op",
                    method="POST",
                    url="/x",
                    status=200,
                    outcome="ok" if (n + k) % 50 else "retryable",
                    duration_ms=40.0,
                    workflow_id=f"engagement-{opp}",
                    activity_type=activity,
                    attempt=1,
                )
            )
    with ledger.engine.begin() as conn:
        conn.execute(LedgerInvoice.__table__.insert(), invoices)
        conn.execute(LedgerPostedTime.__table__.insert(), posted)
        conn.execute(TimeException.__table__.insert(), exceptions)
        conn.execute(ApiCall.__table__.insert(), calls)


async def start_engagements(client, opps: list[str]) -> None:
    async def one(n: int, opp: str) -> None:
        await client.start_workflow(
            "EngagementWorkflow",
            id=f"engagement-{opp}",
            task_queue="bench-no-worker",
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(ENGAGEMENT_STAGE, STAGES[n % len(STAGES)]),
                    SearchAttributePair(OPPORTUNITY_ID, opp),
                    SearchAttributePair(CUSTOMER_NAME, f"Customer {n:05d}"),
                    SearchAttributePair(BILLING_MODEL, ["time_and_materials", "fixed_fee", "retainer"][n % 3]),
                    SearchAttributePair(REGION, ["NA", "UK", "DACH"][n % 3]),
                ]
            ),
        )

    for i in range(0, len(opps), 200):
        await asyncio.gather(*(one(i + k, o) for k, o in enumerate(opps[i : i + 200])))


async def _value(value):
    return value


async def raw_listing_ms(client) -> float:
    """The visibility listing's RPCs alone (pages of 1,000), to tell the server's share from ours."""
    from temporalio.api.workflowservice.v1 import ListWorkflowExecutionsRequest

    from q2c.engagement.client import stage_query

    started = time.perf_counter()
    token = b""
    while True:
        resp = await client.workflow_service.list_workflow_executions(
            ListWorkflowExecutionsRequest(
                namespace=client.namespace, query=stage_query(), page_size=1000, next_page_token=token
            )
        )
        token = resp.next_page_token
        if not token:
            break
    return (time.perf_counter() - started) * 1000


async def main(count: int, runs: int) -> None:
    opps = [f"006BENCH{n:010d}" for n in range(count)]
    binary = shutil.which("temporal") or shutil.which("temporal", path=str(Path(sys.executable).parent))
    env = await WorkflowEnvironment.start_local(dev_server_log_level="error", ui=False, dev_server_existing_path=binary)
    try:
        await ensure_search_attributes(env.client)
        t0 = time.perf_counter()
        await start_engagements(env.client, opps)
        with tempfile.TemporaryDirectory() as tmp:
            ledger = Ledger.from_url(f"sqlite:///{Path(tmp) / 'ledger.db'}")
            ledger.create_all()
            seed_ledger(ledger, opps)
            print(f"seeded {count} engagements in {time.perf_counter() - t0:.1f}s")
            values = {o: (Decimal("120000"), "USD") for o in opps}

            async def contracts():
                return values

            for _ in range(30):  # visibility is eventually consistent: wait until it lists them all
                snap = await snapshot(env.client, ledger, contracts)
                if len(snap.engagements) >= count:
                    break
                await asyncio.sleep(1)
            totals, parts = [], []
            for _ in range(runs):
                started = time.perf_counter()
                snap = await snapshot(env.client, ledger, contracts)
                rows = filter_engagements(snap.engagements, sort="unbilled", desc=True)
                html = overview_page(snap, rows, _Viewer(), history_url=lambda o: o, params={})
                totals.append((time.perf_counter() - started) * 1000)
                parts.append(dict(snap.timings_ms))
            print(f"engagements listed: {len(snap.engagements)}; page {len(html) // 1024} KiB (first 500 rows)")
            print(f"  visibility RPC alone (server side, no decoding): {await raw_listing_ms(env.client):.0f} ms")
            for key in ("visibility", "ledger", "crm", "join"):
                print(f"  {key:<11} median {statistics.median(p[key] for p in parts):7.1f} ms")
            source = FiguresSource(None, lambda: _value(env.client), ledger=ledger, contract_values=contracts)
            await source.get()  # the first snapshot (what a running service already holds)
            answers = []
            for _ in range(runs * 4):
                started = time.perf_counter()
                snap = await source.get(max_age=0.0)  # stale at once: every answer starts a refresh
                rows = filter_engagements(snap.engagements, sort="unbilled", desc=True)
                overview_page(snap, rows, _Viewer(), history_url=lambda o: o, params={})
                answers.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(0.5)
            print(
                f"overview answer (console, snapshot served while the next is read): median "
                f"{statistics.median(answers):.0f} ms, max {max(answers):.0f} ms over {len(answers)} requests"
            )
            print(
                f"snapshot refresh (cold, what each refresh costs): median {statistics.median(totals):.0f} ms, "
                f"max {max(totals):.0f} ms over {runs} runs (target for the answer: under 1000 ms for {count})"
            )
            ledger.dispose()
    finally:
        await env.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--engagements", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.engagements, args.runs))
