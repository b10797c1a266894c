"""Reconciliation's activities: thin I/O around the pure checks in `checks.py`.

- `start_missed_deals`: one page of the CRM's Closed Won opportunities (SOQL, paged with
  `nextRecordsUrl`), and an engagement started for each one that has none, with the same
  idempotent start as the webhook (`start_engagement`, source `reconciliation`), at most the
  run's remaining start budget;
- `check_engagements`: for each engagement of the page, read the CRM opportunity, the ERP job,
  its invoices and timeBills, the PSA's approved time, the ledger and the engagement's own
  state; classify every difference; repair CRM reference fields from the ERP; raise the rest
  as steward tasks (or time exceptions); store it all in the ledger for the report;
- `find_orphans`: ERP projects whose external ID names no engagement;
- `finish_run`: the run's totals and its vendor calls (from the audit of every call).

Every vendor call goes through the audited connectors, so `q2c_api_call` holds each one under
the reconciliation run's workflow ID.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING

from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.exceptions import ApplicationError

from q2c.domain.billing import billing_periods
from q2c.domain.engagement import BillingModel
from q2c.domain.project import PsaWorkspace
from q2c.domain.stage import EngagementStage
from q2c.domain.text import clip
from q2c.engagement.client import (
    EngagementNotAnswering,
    EngagementNotFound,
    describe_status,
    get_status,
    start_engagement,
)
from q2c.engagement.messages import EngagementStatus
from q2c.ledger.models import EXCEPTION_OPEN
from q2c.ledger.reconciliation import ReconDifference, ReconStore
from q2c.reconciliation import checks
from q2c.reconciliation.api import (
    CheckInput,
    CheckResult,
    FinishInput,
    OrphanInput,
    PageInput,
    PageResult,
    ReconcileReport,
)
from q2c.vendors.salesforce.mapping import soql_quote

if TYPE_CHECKING:
    from q2c.ledger.store import Ledger
    from q2c.vendors.kantata.client import KantataClient
    from q2c.vendors.netsuite.client import NetSuiteClient
    from q2c.vendors.salesforce.client import SalesforceClient

CLOSED_WON_SOQL = "SELECT Id FROM Opportunity WHERE StageName = 'Closed Won'{after} ORDER BY Id"
READ_CONCURRENCY = 3  # below the ERP's account-wide limit, shared with the engagements
FAR = date(2999, 12, 31)
POSTING_STAGES = (EngagementStage.ACTIVE,)
POLLING_STAGES = (EngagementStage.ACTIVE, EngagementStage.COLLECTING)


async def _gather(limit: int, jobs):
    gate = asyncio.Semaphore(limit)

    async def run(job):
        async with gate:
            return await job()

    return await asyncio.gather(*(run(j) for j in jobs))


def _sentence(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "none"


class ReconciliationActivities:
    def __init__(
        self,
        crm: SalesforceClient,
        erp: NetSuiteClient,
        psa: KantataClient,
        ledger: Ledger,
    ) -> None:
        self.crm = crm
        self.erp = erp
        self.psa = psa
        self.ledger = ledger
        self.recon = ReconStore(ledger.engine)
        self.recon.create_all()

    # --- 1. missed deals -----------------------------------------------------------------------
    async def _closed_won_page(self, cursor: str | None, after: str | None, size: int) -> dict:
        headers = {"Sforce-Query-Options": f"batchSize={size}"}
        if cursor:
            try:
                response = await self.crm.request("GET", cursor, operation="query more closed won", headers=headers)
                return json.loads(response.content)
            except ApplicationError as err:
                # a locator expires (15 minutes idle) or is spent once its last page was read, e.g.
                # by this activity's earlier attempt: go on from the last ID seen instead
                if "INVALID_QUERY_LOCATOR" not in str(err) and "locator" not in str(err).lower():
                    raise
        where = f" AND Id > {soql_quote(after)}" if after else ""
        response = await self.crm.request(
            "GET",
            f"{self.crm.api_path}/query",
            operation="query closed won",
            params={"q": CLOSED_WON_SOQL.format(after=where)},
            headers=headers,
        )
        return json.loads(response.content)

    @activity.defn
    async def start_missed_deals(self, input: PageInput) -> PageResult:
        """One page of Closed Won deals; start an engagement for each that has none."""
        after = input.cursor.split("|", 1)[1] if input.cursor and "|" in input.cursor else None
        locator = input.cursor.split("|", 1)[0] if input.cursor else None
        body = await self._closed_won_page(locator or None, after, input.page_size)
        ids = [r["Id"] for r in body.get("records", [])][: max(input.page_size, 1)]
        result = PageResult(opportunity_ids=ids)
        client = activity.client()
        for opp in ids:
            if await describe_status(client, opp) is not None:
                result.existing.append(opp)
            elif len(result.started) < input.starts_left:
                await start_engagement(
                    client,
                    opp,
                    task_queue=input.task_queue,
                    source="reconciliation",
                    delivery=input.delivery,
                    notify_existing=False,
                )
                result.started.append(opp)
            else:
                result.deferred.append(opp)
        if not body.get("done", True) and ids:
            result.next_cursor = f"{body.get('nextRecordsUrl') or ''}|{ids[-1]}"
        await asyncio.to_thread(self.recon.add_started, input.run_id, len(ids), result.started)
        activity.heartbeat(f"{len(ids)} Closed Won deals: {len(result.started)} started")
        return result

    # --- 2. and 3. checks and safe repair ----------------------------------------------------
    async def _snapshot(self, opp: str) -> checks.Snapshot | str:
        """Everything the checks compare, or why the engagement cannot be checked now."""
        client = activity.client()
        ran = await describe_status(client, opp)
        if ran is None:
            return "no engagement"
        if ran == WorkflowExecutionStatus.COMPLETED:
            # an ended engagement: its facts from the systems themselves (no query, which would
            # replay its whole last run on this worker)
            engagement = await self.crm.get_engagement(opp)
            job = await self.erp.get_by_external_id("job", opp)
            if job is None:
                return "ended without an ERP project"
            found = await self.psa.find_workspace(opp)
            status = EngagementStatus(
                opportunity_id=opp,
                stage=EngagementStage.CLOSED,
                engagement=engagement,
                erp_project_id=str(job["id"]),
                psa_workspace=PsaWorkspace(workspace_id=str(found["id"]), title=found.get("title") or "")
                if found
                else None,
                next_period_index=len(billing_periods(engagement.start_date, engagement.end_date)),
                final_posting_done=True,
            )
        else:
            try:
                status = await get_status(client, opp)
            except (EngagementNotFound, EngagementNotAnswering, WorkflowQueryFailedError) as err:
                return str(err)
            if status.erp_project_id is None or status.engagement is None:
                return f"not provisioned yet ({status.stage.value})"
            engagement = status.engagement
            job = await self.erp.get_record("job", status.erp_project_id)
        crm = await self.crm.get_record("Opportunity", opp)
        project = str(job["id"])
        invoice_ids = await self.erp.find_ids("invoice", f"job ANY_OF [{project}]")
        bill_ids = await self.erp.find_ids("timeBill", f"customer ANY_OF [{project}]")
        invoices = await _gather(
            READ_CONCURRENCY, [lambda i=i: self.erp.get_record("invoice", i, expand=True) for i in invoice_ids]
        )
        bills = await _gather(READ_CONCURRENCY, [lambda i=i: self.erp.get_record("timeBill", i) for i in bill_ids])
        entries = []
        workspace = status.psa_workspace.workspace_id if status.psa_workspace else None
        if workspace:
            page = 1
            while True:
                found, more = await self.psa.list_approved_time(workspace, through=FAR, page=page)
                entries.extend(found)
                if not more:
                    break
                page += 1
        posted = await asyncio.to_thread(self.ledger.posted_time, opp)
        ledger_invoices = await asyncio.to_thread(self.ledger.invoices, opp)
        exceptions = await asyncio.to_thread(self.ledger.list_exceptions, opp, EXCEPTION_OPEN)
        tasks = await asyncio.to_thread(self.recon.tasks, "open", opp)
        periods = billing_periods(engagement.start_date, engagement.end_date)
        closed = [(p.index, p.start, p.end) for p in periods[: status.next_period_index]]
        return checks.Snapshot(
            opportunity_id=opp,
            stage=status.stage.value,
            posting=status.stage in POSTING_STAGES and not status.final_posting_done,
            polling=status.stage in POLLING_STAGES,
            bill_time=engagement.billing_model is BillingModel.TIME_AND_MATERIALS,
            retainer=engagement.billing_model is BillingModel.RETAINER,
            erp_customer_id=status.erp_customer_id,
            erp_project_id=project,
            psa_workspace_id=workspace,
            crm=crm,
            erp_job=job,
            erp_invoices=list(invoices),
            erp_time_bills=list(bills),
            psa_entries=entries,
            ledger_posted=[
                checks.PostedRow(p.psa_id, p.erp_time_bill_id, p.minutes, p.billable, p.amount, p.invoice_external_id)
                for p in posted
            ],
            ledger_invoices=[
                checks.LedgerInvoiceRow(
                    i.external_id, i.erp_id, i.number, i.total, i.amount_paid, i.open_balance, i.status
                )
                for i in ledger_invoices
            ],
            open_exceptions={e.psa_id: e.reason_code for e in exceptions},
            open_tasks={t.key for t in tasks},
            closed_periods=closed,
        )

    async def _act(self, run_id: str, opp: str, finding: checks.Finding) -> ReconDifference:
        """Explained: recorded. Unexplained: repaired (a CRM reference field, from the ERP) or
        raised (a steward task, or a time exception the steward replays or writes off)."""
        row = ReconDifference(
            run_id=run_id,
            opportunity_id=finding.opportunity_id or opp,
            kind=finding.kind,
            system=finding.system,
            record=clip(finding.record, 500),
            expected=clip(finding.expected, 500),
            actual=clip(finding.actual, 500),
            outcome="explained" if finding.explained else "unexplained",
            explanation=finding.explanation,
            task_key=finding.task_key,
        )
        if finding.explained:
            return row
        if finding.action == checks.REPAIR and finding.repair:
            r = finding.repair
            value = r["value"]
            await self.crm.update_record(r["sobject"], r["id"], {r["field"]: value if value != "" else None})
            row.outcome = "repaired"
            row.explanation = (
                f"rewritten from the ERP (the system of record) by reconciliation run {run_id}: "
                f"{r['field']} was {finding.actual or 'empty'}, now {finding.expected or 'empty'}"
            )
        elif finding.action == checks.RAISE_EXCEPTION and finding.psa_id:
            message = (
                f"approved in the PSA ({finding.record}) but never posted to the ERP, and the engagement "
                "has done its final posting: replay it to post it, or write it off (reconciliation "
                f"run {run_id} found it; q2c does not post on its own)"
            )
            await asyncio.to_thread(
                self.ledger.upsert_exception, opp, f"engagement-{opp}", finding.psa_id, checks.NOT_POSTED, message
            )
            row.outcome, row.explanation = "raised", f"time exception exc-{finding.psa_id} opened: {message}"
        elif finding.action == checks.RAISE_TASK and finding.task_key:
            message = steward_message(finding)
            await asyncio.to_thread(
                self.recon.raise_task,
                finding.task_key,
                run_id=run_id,
                opportunity_id=opp,
                kind=finding.kind,
                message=message,
                record=finding.record,
            )
            row.outcome, row.explanation = "raised", f"steward task {finding.task_key}: {message}"
        return row

    @activity.defn
    async def check_engagements(self, input: CheckInput) -> CheckResult:
        """Check each engagement against the three systems and the ledger, repair what is
        derived, raise what moves money; one engagement's rows replace its earlier ones in
        this run (a retry does not double them)."""
        result = CheckResult()
        for opp in input.opportunity_ids:
            snap = await self._snapshot(opp)
            if isinstance(snap, str):
                result.skipped.append(f"{opp}: {snap}")
                continue
            rows = [await self._act(input.run_id, opp, f) for f in checks.check(snap)]
            outcomes = [row.outcome for row in rows]
            await asyncio.to_thread(self.recon.record_differences, input.run_id, opp, rows)
            result.checked += 1
            result.differences += len(rows)
            for outcome in outcomes:
                setattr(result, outcome, getattr(result, outcome) + 1)
            activity.heartbeat(f"checked {result.checked} of {len(input.opportunity_ids)}")
        return result

    @activity.defn
    async def find_orphans(self, input: OrphanInput) -> CheckResult:
        """ERP projects (jobs) whose external ID names no engagement: raised, never deleted."""
        client = activity.client()
        ids = await self.erp.find_ids("job")
        jobs = await _gather(READ_CONCURRENCY, [lambda i=i: self.erp.get_record("job", i) for i in ids])
        rows = []
        for job in jobs:
            eid = str(job.get("externalId") or "")
            if not eid or await describe_status(client, eid) is not None:
                continue
            finding = checks.Finding(
                kind="orphan_erp_project",
                system="erp",
                record=f"job {job['id']} {job.get('companyName') or job.get('entityId') or ''} (externalId {eid})",
                expected="an engagement for opportunity " + eid,
                actual="no engagement",
                action=checks.RAISE_TASK,
                task_key=f"orphan-job:{job['id']}",
                opportunity_id=eid,
            )
            if await asyncio.to_thread(self.recon.get_task, finding.task_key):
                finding.explained = True
                finding.explanation = f"steward task {finding.task_key} is open for it (raised by an earlier run)"
            rows.append(await self._act(input.run_id, eid, finding))
        outcomes = [row.outcome for row in rows]
        await asyncio.to_thread(self.recon.record_differences, input.run_id, None, rows)
        result = CheckResult(differences=len(rows))
        for outcome in outcomes:
            setattr(result, outcome, getattr(result, outcome) + 1)
        return result

    # --- 4. the report ---------------------------------------------------------------------------
    @activity.defn
    async def begin_run(self, input: OrphanInput) -> None:
        await asyncio.to_thread(self.recon.begin_run, input.run_id, input.trigger)

    @activity.defn
    async def finish_run(self, input: FinishInput) -> ReconcileReport:
        calls = await asyncio.to_thread(self.ledger.api_calls, workflow_id=input.run_id, limit=None)
        run = await asyncio.to_thread(
            self.recon.finish_run, input.run_id, engagements_checked=input.engagements_checked, vendor_calls=len(calls)
        )
        open_tasks = await asyncio.to_thread(self.recon.tasks, "open")
        return report_of(run, open_tasks=len(open_tasks))

    def all(self) -> list:
        return [self.begin_run, self.start_missed_deals, self.check_engagements, self.find_orphans, self.finish_run]


def report_of(run, *, open_tasks: int = 0) -> ReconcileReport:
    return ReconcileReport(
        run_id=run.run_id,
        deals_seen=run.deals_seen,
        deals_started=run.deals_started,
        started=run.started,
        engagements_checked=run.engagements_checked,
        differences=run.differences,
        explained=run.explained,
        repaired=run.repaired,
        raised=run.raised,
        unexplained=run.unexplained,
        open_tasks=open_tasks,
        vendor_calls=run.vendor_calls,
        duration_seconds=run.duration_seconds,
    )


STEWARD_TEXT = {
    "invoice_voided": "was voided in the ERP by hand. q2c will not re-invoice or credit it on its own: "
    "decide a replacement invoice or a credit memo with the customer, then resolve this task",
    "invoice_not_in_ledger": "exists in the ERP but q2c never issued it: check who made it and whether it "
    "bills what q2c also bills",
    "invoice_total": "has a total in the ERP other than the one q2c issued",
    "invoice_missing_in_erp": "is in the ledger but no longer in the ERP (deleted by hand?)",
    "invoice_time_line": "bills an amount other than its timeBills add up to",
    "payment_not_in_ledger": "shows payments in the ERP the engagement never recorded (or lost): confirm them "
    "with finance",
    "retainer_period_not_invoiced": "was closed without its retainer invoice",
    "orphan_time_bill": "points at no approved entry of the engagement (made by hand in the ERP?): "
    "reverse it in the ERP or link it",
    "time_bill_edited_in_erp": "was changed in the ERP by hand after q2c posted it; the PSA is the system of "
    "record for time: correct the timeBill (or credit it if invoiced)",
    "time_changed_after_posting": "changed in the PSA after it was posted",
    "time_not_invoiced": "is posted and billable but no invoice bills it, and the engagement has issued its "
    "final invoice",
    "time_posted_not_approved": "is posted in the ERP but no longer approved in the PSA: reverse or re-approve",
    "orphan_erp_project": "carries an opportunity ID no engagement has: close it in the ERP, or start the engagement",
}


def steward_message(f: checks.Finding) -> str:
    """What the steward reads: the record, the two values, what to decide."""
    text = STEWARD_TEXT.get(f.kind, "differs between the systems")
    extra = f" ({f.explanation})" if f.explanation else ""
    return f"{f.record} {text}{extra}. Expected {f.expected or '-'}, found {f.actual or '-'}."


def money(value: Decimal | None) -> str:
    return "" if value is None else format(value, ",.2f")
