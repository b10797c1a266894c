"""The demo's outside world, for `make up` only: consultants book approved time in the PSA,
clients accept fixed-fee milestones, and customers pay their invoices (some in two parts);
one client disputes its first fixed-fee invoice, and finance credits part of it (a credit note
with a corrected line re-billed on the next invoice) before it is paid.

It acts only through the systems' own surfaces (the PSA's and ERP's sandbox APIs, the
engagement's `accept_milestone` Update), never through q2c's internals, so what the demo shows
is what q2c does with real-world input.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from datetime import date, timedelta
from decimal import Decimal

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from q2c.domain.delivery import InvoiceStatus
from q2c.domain.engagement import BillingModel
from q2c.domain.stage import EngagementStage
from q2c.engagement.messages import (
    AcceptMilestoneInput,
    CreditInvoiceInput,
    CreditNoteSummary,
    EngagementStatus,
    RebillLine,
)
from q2c.settings import Settings, load_settings
from q2c.temporal import connect, exit_process
from q2c.vendors.kantata.client import KantataClient
from q2c.vendors.kantata.expenses import KantataExpenses
from q2c.vendors.netsuite.client import NetSuiteClient

log = logging.getLogger("q2c.simulator")
TICK_SECONDS = 3.0
PAY_AFTER_SECONDS = 6.0  # customers take a moment to pay
MILESTONE_EVERY_SECONDS = 40.0
CENT = Decimal("0.01")


class World:
    def __init__(self, settings: Settings, client: Client, psa: KantataClient, erp: NetSuiteClient) -> None:
        self.settings = settings
        self.client = client
        self.psa = psa
        self.erp = erp
        self.time_booked: set[str] = set()
        self.invoice_seen: dict[str, float] = {}
        self.last_milestone: dict[str, float] = {}
        self.disputed = False  # one credit note in the demo

    async def engagements(self) -> list[EngagementStatus]:
        out = []
        async for wf in self.client.list_workflows(
            "WorkflowType = 'EngagementWorkflow' AND ExecutionStatus = 'Running'"
        ):
            try:
                out.append(
                    await self.client.get_workflow_handle(wf.id).query(
                        "status", result_type=EngagementStatus, rpc_timeout=timedelta(seconds=5)
                    )
                )
            except RPCError:
                continue
        return out

    async def tick(self) -> None:
        for st in await self.engagements():
            if st.stage not in (EngagementStage.ACTIVE, EngagementStage.COLLECTING) or st.engagement is None:
                continue
            if st.engagement.billing_model is BillingModel.TIME_AND_MATERIALS:
                await self.book_time(st)
            if st.engagement.billing_model is BillingModel.FIXED_FEE:
                await self.accept_next_milestone(st)
            await self.pay(st)

    async def book_time(self, st: EngagementStatus) -> None:
        ws = st.psa_workspace.workspace_id
        if ws in self.time_booked:
            return
        existing, _ = await self.psa.list_approved_time(ws, through=date(9999, 12, 31), per_page=1, unposted_only=False)
        if not existing:
            e = st.engagement
            start = e.start_date
            while start <= e.end_date:  # the generator takes up to two years at a time
                end = min(e.end_date, start + timedelta(days=700))
                made = await self.psa.generate_time(
                    ws, start=start, end=end, entries_per_week=4, seed=int(ws) if ws.isdigit() else 1
                )
                log.info(
                    "booked %s approved entries for %s (%s to %s)", made.get("count"), e.opportunity_name, start, end
                )
                start = end + timedelta(days=1)
            # a few approved expenses in the first three months, one in a foreign currency
            spent = await KantataExpenses(self.psa).generate_expenses(
                ws,
                start=e.start_date,
                end=min(e.end_date, e.start_date + timedelta(days=89)),
                seed=int(ws) if ws.isdigit() else 1,
                foreign_currency="EUR" if e.currency != "EUR" else "GBP",
            )
            log.info("booked %s approved expenses for %s", spent.get("count"), e.opportunity_name)
        self.time_booked.add(ws)

    async def accept_next_milestone(self, st: EngagementStatus) -> None:
        if time.monotonic() - self.last_milestone.get(st.opportunity_id, 0) < MILESTONE_EVERY_SECONDS:
            return
        pending = [m for m in st.engagement.milestones if not m.accepted]
        if not pending:
            return
        self.last_milestone[st.opportunity_id] = time.monotonic()
        try:
            await self.client.get_workflow_handle(f"engagement-{st.opportunity_id}").execute_update(
                "accept_milestone", AcceptMilestoneInput(milestone_key=pending[0].key, accepted_by="client (demo)")
            )
            log.info("client accepted milestone %s of %s", pending[0].name, st.engagement.opportunity_name)
        except WorkflowUpdateFailedError as err:
            log.info("milestone not accepted: %s", err.cause)

    async def dispute(self, st: EngagementStatus) -> bool:
        """The demo's one dispute: 10% of the first open fixed-fee invoice credited, half of it
        re-billed as a corrected line on the next invoice. True when it was made now."""
        if self.disputed or st.engagement.billing_model is not BillingModel.FIXED_FEE or st.credit_notes:
            return False
        inv = next((i for i in st.invoices if i.erp_id and i.amount_paid == 0 and i.open_balance > 0), None)
        if inv is None:
            return False
        self.disputed = True
        credit = (inv.total / 10).quantize(CENT)
        try:
            note = await self.client.get_workflow_handle(f"engagement-{st.opportunity_id}").execute_update(
                "credit_invoice",
                CreditInvoiceInput(
                    invoice=inv.external_id,
                    amount=credit,
                    reason="client disputed workshop 3 (delivered as a half day)",
                    requested_by="finance (demo)",
                    rebill=[RebillLine(description="Workshop 3 (half day)", rate=(credit / 2).quantize(CENT))],
                ),
                id=f"demo-credit-{st.opportunity_id}",
                result_type=CreditNoteSummary,
            )
            log.info("credit memo %s: %s %s on invoice %s", note.number, note.amount, note.currency, inv.number)
        except WorkflowUpdateFailedError as err:
            log.info("credit not made: %s", err.cause)
        return True

    async def pay(self, st: EngagementStatus) -> None:
        if await self.dispute(st):
            return  # paid at a later tick, net of the credit
        now = time.monotonic()
        for inv in st.invoices:
            if inv.status is InvoiceStatus.PAID_IN_FULL or inv.erp_id is None:
                continue
            seen = self.invoice_seen.setdefault(inv.erp_id, now)
            if now - seen < PAY_AFTER_SECONDS:
                continue
            (actual,) = await self.erp.invoice_payment_status([inv.erp_id], as_of=inv.period_end)
            if actual.open_balance <= 0:
                continue  # paid already; q2c will see it at its next payment check
            # every third invoice is paid in two halves, to show partial payments
            half = int(inv.erp_id) % 3 == 0 and actual.amount_paid == 0
            amount = (actual.total / 2).quantize(Decimal("0.01")) if half else None
            try:
                await self.erp.record_payment(inv.erp_id, amount, inv.period_end)
                log.info("customer paid %s %s on invoice %s", amount or "the balance", inv.currency, inv.number)
            except Exception as err:  # the demo goes on; the next tick tries again
                log.warning("payment of invoice %s failed: %s", inv.number, err)
            self.invoice_seen[inv.erp_id] = now


async def run(settings: Settings, stop: asyncio.Event) -> None:
    client = await connect(settings)
    async with KantataClient(settings.psa) as psa, NetSuiteClient(settings.erp) as erp:
        world = World(settings, client, psa, erp)
        while not stop.is_set():
            try:
                await world.tick()
            except Exception:
                log.exception("simulator tick failed; going on")
            try:
                await asyncio.wait_for(stop.wait(), TICK_SECONDS)
            except TimeoutError:
                pass


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = asyncio.Event()

    async def _main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(load_settings(), stop)

    asyncio.run(_main())
    exit_process(0)


if __name__ == "__main__":
    main()
