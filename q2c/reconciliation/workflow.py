"""ReconciliationWorkflow: one run of the nightly reconciliation, started by its Schedule.

Deterministic code only. The run pages through the CRM's Closed Won deals, one page per pair
of activities: `start_missed_deals` (engagements for deals that have none, within the run's
start budget) and `check_engagements` (the cross-system checks of the page's engagements).
So a first run over years of history is bounded twice: a page at a time (at most
`page_size` starts and checks per activity) and `max_starts` per run; the rest waits for the
next night. After `pages_per_run` pages it continues as new with its cursor and totals, so
its history stays small. Then the orphan check and the report.

Every activity has a summary that says what it does for the business, and the run's current
details carry the running totals, so its history in the Temporal UI reads like the report.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from q2c.reconciliation.activities import ReconciliationActivities
    from q2c.reconciliation.api import (
        CheckInput,
        FinishInput,
        OrphanInput,
        PageInput,
        ReconcileInput,
        ReconcileReport,
        ReconcileState,
    )

ACTIVITY_TIMEOUT = timedelta(minutes=20)
HEARTBEAT = timedelta(minutes=2)
RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=1), maximum_attempts=10)


@workflow.defn
class ReconciliationWorkflow:
    def __init__(self) -> None:
        self.state: ReconcileState | None = None

    @workflow.query
    def progress(self) -> ReconcileState | None:
        return self.state

    async def _call(self, fn, arg, summary: str):
        return await workflow.execute_activity_method(
            fn,
            arg,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=RETRY,
            summary=summary[:200],
        )

    def _details(self) -> None:
        s = self.state
        workflow.set_current_details(
            f"**Reconciliation {s.run_id}**\n\n"
            f"- Closed Won deals seen: {s.deals_seen} ({s.pages} pages)\n"
            f"- engagements started for missed deals: {len(s.started)}"
            + (f" ({', '.join(s.started[:10])}{' ...' if len(s.started) > 10 else ''})" if s.started else "")
            + f"\n- engagements checked: {s.checked}\n"
            f"- differences: {s.differences} (repaired {s.repaired}, raised to stewards {s.raised}, "
            f"unexplained {s.unexplained})"
        )

    @workflow.run
    async def run(self, input: ReconcileInput) -> ReconcileReport:
        info = workflow.info()
        first = input.state is None
        self.state = input.state or ReconcileState(run_id=info.workflow_id, started_at=workflow.now())
        s = self.state
        if first:
            await self._call(
                ReconciliationActivities.begin_run,
                OrphanInput(run_id=s.run_id, trigger=input.trigger),
                f"Begin reconciliation {s.run_id}",
            )
        pages_this_run = 0
        while not s.done_paging:
            page = await self._call(
                ReconciliationActivities.start_missed_deals,
                PageInput(
                    run_id=s.run_id,
                    cursor=s.cursor,
                    page_size=input.page_size,
                    starts_left=max(0, input.max_starts - len(s.started)),
                    task_queue=info.task_queue,
                    delivery=input.delivery,
                ),
                f"CRM Closed Won page {s.pages + 1}: start an engagement for every deal that has none "
                f"(at most {max(0, input.max_starts - len(s.started))} more this run)",
            )
            s.pages += 1
            pages_this_run += 1
            s.deals_seen += len(page.opportunity_ids)
            s.started.extend(page.started)
            if input.check and page.existing:
                result = await self._call(
                    ReconciliationActivities.check_engagements,
                    CheckInput(run_id=s.run_id, opportunity_ids=page.existing),
                    f"Check {len(page.existing)} engagements of page {s.pages} against CRM, PSA, ERP and the "
                    "ledger; repair CRM reference fields from the ERP, raise money differences to stewards",
                )
                s.checked += result.checked
                s.differences += result.differences
                s.repaired += result.repaired
                s.raised += result.raised
                s.unexplained += result.unexplained
            s.cursor = page.next_cursor
            s.done_paging = page.next_cursor is None
            self._details()
            if not s.done_paging and pages_this_run >= input.pages_per_run:
                workflow.continue_as_new(input.model_copy(update={"state": s}))
        if input.check:
            orphans = await self._call(
                ReconciliationActivities.find_orphans,
                OrphanInput(run_id=s.run_id),
                "Find ERP projects whose external ID names no engagement (raised, never deleted)",
            )
            s.differences += orphans.differences
            s.raised += orphans.raised
            s.unexplained += orphans.unexplained
        report = await self._call(
            ReconciliationActivities.finish_run,
            FinishInput(run_id=s.run_id, engagements_checked=s.checked),
            f"Report: {s.deals_seen} Closed Won deals, {len(s.started)} started, {s.checked} engagements checked, "
            f"{s.differences} differences ({s.repaired} repaired, {s.raised} raised)",
        )
        self._details()
        return report
