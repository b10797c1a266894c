"""`python -m bench.reconcile [--engagements 30] [--months 3] [--lost 3] [--tamper 3] [--void 2]`

A simulated quarter at a larger size than the test's, then the nightly reconciliation, timed.

Setup: N time-and-materials deals closed won in the CRM sandbox, running `--months` billing
months on the demo calendar (`--period-seconds` per month); `--lost` of them never get an
engagement (their Outbound Message "was lost": nothing starts them). The PSA gets approved time
for every engagement's months, customers pay every invoice, every engagement runs to Closed.
Then hand edits: `--tamper` CRM invoice-amount fields overwritten, `--void` ERP invoices voided.

Timed: two reconciliation runs (the first finds and repairs or raises, the second should find
nothing new). Prints the portfolio (engagements, entries, invoices), each run's figures
(deals started, engagements checked, differences, repaired, raised, unexplained), its duration
and vendor calls per engagement, and the checks that must hold: every lost deal started, every
tampered field repaired, every voided invoice raised and not re-invoiced, zero unexplained.
Exit code 0 when every check passes.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import logging
import time
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import httpx

from bench.deals import create_deals
from bench.stack import bench_stack
from q2c.cli.reconcile import run_now
from q2c.domain.stage import EngagementStage
from q2c.engagement.client import get_status, start_engagement
from q2c.engagement.messages import DeliveryConfig
from q2c.temporal import exit_process
from q2c.vendors.kantata.client import KantataClient
from q2c.vendors.salesforce.client import SalesforceClient


@dataclass(frozen=True)
class Options:
    engagements: int = 30
    months: int = 3
    lost: int = 3
    tamper: int = 3
    void: int = 2
    period_seconds: int = 4
    entries_per_week: int = 3
    timeout: float = 900


def _months_from(today: date, months: int) -> tuple[date, date]:
    start = today.replace(day=1)
    y, m = start.year, start.month + months - 1
    y, m = y + (m - 1) // 12, (m - 1) % 12 + 1
    return start, date(y, m, calendar.monthrange(y, m)[1])


async def _pay_everything(erp_url: str, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(base_url=erp_url, timeout=30) as http:
        while not stop.is_set():
            for inv in (await http.get("/__sandbox/records/invoice")).json()["items"]:
                if Decimal(str(inv.get("amountRemaining", "0"))) > 0 and inv.get("status") != "Voided":
                    await http.post("/__sandbox/payments", json={"invoice_id": inv["id"], "date": inv["tranDate"]})
            await asyncio.sleep(0.5)


async def _wait(client, opps: list[str], stage: EngagementStage, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    statuses: dict = {}
    while time.monotonic() < deadline:
        statuses = {o: await get_status(client, o) for o in opps}
        if all(s.stage is stage for s in statuses.values()):
            return statuses
        await asyncio.sleep(1)
    late = {o: s.stage.value for o, s in statuses.items() if s.stage is not stage}
    raise SystemExit(f"not {stage.value} within {timeout:.0f}s: {late}")


async def run(opts: Options, log=print) -> bool:
    start, end = _months_from(date.today(), opts.months)
    delivery = DeliveryConfig(period_seconds=opts.period_seconds, payment_poll_seconds=1)
    async with bench_stack(log=log) as stack:
        client, settings = stack.client, stack.settings
        async with SalesforceClient(settings.crm, timeout=30) as crm:
            deals = await create_deals(crm, opts.engagements, start=start, end=end)
        opps = [d.opportunity_id for d in deals]
        lost, started = opps[: opts.lost], opps[opts.lost :]
        for opp in started:
            await start_engagement(client, opp, task_queue=settings.task_queue, source="bench", delivery=delivery)
        active = await _wait(client, started, EngagementStage.ACTIVE, 120)
        entries = 0
        async with KantataClient(settings.psa, timeout=30) as psa:
            for i, opp in enumerate(started):
                made = await psa.generate_time(
                    active[opp].psa_workspace.workspace_id,
                    start=start,
                    end=end,
                    entries_per_week=opts.entries_per_week,
                    seed=i + 1,
                )
                entries += len(made)
        stop = asyncio.Event()
        payer = asyncio.create_task(_pay_everything(stack.erp_url, stop))
        try:
            closed = await _wait(client, started, EngagementStage.CLOSED, opts.timeout)
        finally:
            stop.set()
            await payer
        invoices = sum(len(s.invoices) for s in closed.values())

        # hand edits
        tampered = started[: opts.tamper]
        async with SalesforceClient(settings.crm, timeout=30) as crm:
            for opp in tampered:
                await crm.update_opportunity(opp, {"Last_Invoice_Amount__c": "1.00"})
        voided = [closed[opp].invoices[0] for opp in started[-opts.void :]] if opts.void else []
        async with httpx.AsyncClient(base_url=stack.erp_url, timeout=30) as http:
            for inv in voided:
                (await http.post(f"/__sandbox/invoices/{inv.erp_id}/void")).raise_for_status()

        log(
            f"portfolio: {opts.engagements} deals ({len(lost)} lost), {entries} approved entries over "
            f"{opts.months} months, {invoices} invoices; hand edits: {len(tampered)} CRM fields, {len(voided)} voids"
        )
        runs = []
        for n in (1, 2):
            t0 = time.monotonic()
            report = await run_now(client, settings)
            runs.append((report, time.monotonic() - t0))
            per = report.vendor_calls / max(1, report.engagements_checked)
            log(
                f"run {n}: {report.deals_seen} closed-won deals seen, {report.deals_started} started, "
                f"{report.engagements_checked} engagements checked, {report.differences} differences "
                f"({report.explained} explained, {report.repaired} repaired, {report.raised} raised, "
                f"{report.unexplained} unexplained), {report.open_tasks} open steward tasks; "
                f"{time.monotonic() - t0:.1f} s, {report.vendor_calls} vendor calls ({per:.1f} per engagement)"
            )
        first, second = runs[0][0], runs[1][0]
        async with SalesforceClient(settings.crm, timeout=30) as crm:
            repaired = [
                opp
                for opp in tampered
                if (await crm.get_record("Opportunity", opp)).get("Last_Invoice_Amount__c") not in (1, 1.0, "1.00")
            ]
        async with httpx.AsyncClient(base_url=stack.erp_url, timeout=30) as http:
            all_invoices = (await http.get("/__sandbox/records/invoice")).json()["items"]
        checks = {
            "every lost deal started": first.deals_started == len(lost),
            "every tampered CRM field repaired from the ERP": len(repaired) == len(tampered),
            "every voided invoice raised, none re-invoiced": first.raised >= len(voided)
            and len(all_invoices) == invoices,
            "zero unexplained differences after repair": second.unexplained == 0 and second.repaired == 0,
        }
        for name, ok in checks.items():
            log(f"  {'PASS' if ok else 'FAIL'}  {name}")
        return all(checks.values())


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("temporalio").setLevel(logging.ERROR)
    p = argparse.ArgumentParser(prog="python -m bench.reconcile", description=__doc__.split("\n\n")[1])
    for name, default in vars(Options()).items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    a = vars(p.parse_args(argv))
    ok = asyncio.run(run(Options(**a), log=lambda m: print(m, flush=True)))
    return 0 if ok else 1


if __name__ == "__main__":
    exit_process(main())
