"""Start (or find) the engagement workflow for one opportunity. Accepts an injected Client.

Which deliveries start what (workflow id `engagement-<OpportunityId>`):
- no engagement yet: a new one starts;
- one is running: it is reused (USE_EXISTING) and told the CRM spoke again (`crm_changed`), so
  a change order or a fix made in the CRM reaches it;
- the last run ended Failed, Terminated, Cancelled (Temporal's cancel) or TimedOut: it is
  started again (ALLOW_DUPLICATE_FAILED_ONLY). Nothing the business decided ended it, so the
  next delivery or `q2c start` picks the deal up once its cause is fixed; the ERP/PSA writes
  of the new run are upserts keyed by external IDs, so nothing provisioned before is duplicated;
- the last run Completed (the engagement reached Closed, or was Cancelled by a steward): never
  started again, so a redelivered closed-won message cannot provision or bill a deal twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from q2c.domain.budget import BudgetPolicy
from q2c.domain.stage import EngagementStage
from q2c.engagement.messages import CrmChangedInput, DeliveryConfig, EngagementInput, EngagementStatus, RecheckInput
from q2c.engagement.search_attributes import (
    BILLING_MODEL,
    CUSTOMER_NAME,
    ENGAGEMENT_STAGE,
    OPPORTUNITY_ID,
    REGION,
)
from q2c.engagement.workflow import EngagementWorkflow
from q2c.settings import Settings

# a run that ended like this did not end by a business decision: the next start begins a new run
RESTARTABLE = (
    WorkflowExecutionStatus.FAILED,
    WorkflowExecutionStatus.TERMINATED,
    WorkflowExecutionStatus.CANCELED,
    WorkflowExecutionStatus.TIMED_OUT,
)


def delivery_config(settings: Settings) -> DeliveryConfig:
    """The engagement calendar new engagements get (Q2C_PERIOD_SECONDS, Q2C_PAYMENT_POLL_SECONDS)."""
    return DeliveryConfig(
        period_seconds=settings.period_seconds,
        payment_poll_seconds=settings.payment_poll_seconds,
        grace_days=settings.grace_days,
        budget=BudgetPolicy(warn_at=list(settings.budget_warn_at), hold_at_cap=settings.budget_hold),
    )


def workflow_id_for(opportunity_id: str) -> str:
    return f"engagement-{opportunity_id}"


@dataclass(frozen=True)
class StartResult:
    """What a start did: `already_existed` (a run was there: running, or completed for good),
    `restarted` (a new run replaced one that ended `previous_status`), `signalled` (a running
    engagement was told the CRM changed)."""

    workflow_id: str
    run_id: str | None
    already_existed: bool
    restarted: bool = False
    previous_status: str | None = None  # WorkflowExecutionStatus name of the run found, if any
    signalled: bool = False

    @property
    def finished(self) -> bool:
        """The engagement completed (Closed or Cancelled) and will not start again."""
        return self.already_existed and self.previous_status == WorkflowExecutionStatus.COMPLETED.name


async def describe_status(client: Client, opportunity_id: str) -> WorkflowExecutionStatus | None:
    """The status of the engagement's latest run, or None when there never was one."""
    try:
        desc = await client.get_workflow_handle(workflow_id_for(opportunity_id)).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return desc.status


async def start_engagement(
    client: Client,
    opportunity_id: str,
    *,
    task_queue: str,
    source: str = "webhook",
    delivery: DeliveryConfig | None = None,
    notify_existing: bool = True,
) -> StartResult:
    """Start the engagement; a second start for a running one is a no-op (plus `crm_changed`).

    The latest run is described first, so the answer can say whether this start replaced a
    run that failed or was terminated (the start response only says "started" or not).
    """
    wf_id = workflow_id_for(opportunity_id)
    before = await describe_status(client, opportunity_id)
    previous = before.name if before is not None else None
    try:
        handle = await client.start_workflow(
            EngagementWorkflow.run,
            EngagementInput(opportunity_id=opportunity_id, source=source, delivery=delivery or DeliveryConfig()),
            id=wf_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(ENGAGEMENT_STAGE, EngagementStage.RECEIVED.value),
                    SearchAttributePair(OPPORTUNITY_ID, opportunity_id),
                ]
            ),
            static_summary=f"Engagement for opportunity {opportunity_id} (from {source})",
        )
    except WorkflowAlreadyStartedError as err:
        # only a Completed run is refused by the reuse policy
        return StartResult(
            workflow_id=wf_id,
            run_id=err.run_id,
            already_existed=True,
            previous_status=previous or WorkflowExecutionStatus.COMPLETED.name,
        )
    response = getattr(handle, "_start_workflow_response", None)
    started = getattr(response, "started", True) if response is not None else True
    if started:
        restarted = before in RESTARTABLE
        return StartResult(
            workflow_id=wf_id,
            run_id=handle.result_run_id,
            already_existed=False,
            restarted=restarted,
            previous_status=previous if restarted else None,
        )
    signalled = False
    if notify_existing:
        # the CRM spoke again about a running engagement: a change order, or a fix a steward made
        # in the CRM; the engagement reads the opportunity again (a no-op when nothing changed)
        signalled = await notify_engagement(client, opportunity_id, source=source)
    return StartResult(
        workflow_id=wf_id,
        run_id=handle.result_run_id,
        already_existed=True,
        previous_status=WorkflowExecutionStatus.RUNNING.name,
        signalled=signalled,
    )


async def notify_engagement(client: Client, opportunity_id: str, *, source: str = "webhook") -> bool:
    """Send `crm_changed` to the running engagement; False when none is running (never
    started, or already ended), which starts nothing."""
    try:
        await client.get_workflow_handle(workflow_id_for(opportunity_id)).signal(
            "crm_changed", CrmChangedInput(source=source)
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:  # no such workflow, or its run has completed
            return False
        raise
    return True


# ---- status, lists and re-checks: the CLI, the console and the API all come here ------------

DEFAULT_QUERY_TIMEOUT = 10.0
ENGAGEMENT_WORKFLOW_TYPE = "EngagementWorkflow"


class EngagementNotFound(Exception):
    def __init__(self, opportunity_id: str) -> None:
        super().__init__(
            f"no engagement for opportunity {opportunity_id} (workflow {workflow_id_for(opportunity_id)} not found)"
        )
        self.opportunity_id = opportunity_id


class EngagementNotAnswering(Exception):
    def __init__(self, opportunity_id: str, detail: str = "") -> None:
        super().__init__(
            "engagement is not answering queries (is the worker running?)" + (f" [{detail}]" if detail else "")
        )
        self.opportunity_id = opportunity_id


@dataclass(frozen=True)
class EngagementRow:
    opportunity_id: str
    stage: str
    customer: str
    billing_model: str
    region: str
    status: str  # Temporal execution status: RUNNING, COMPLETED, ...
    workflow_id: str


async def get_status(
    client: Client, opportunity_id: str, *, timeout: float = DEFAULT_QUERY_TIMEOUT
) -> EngagementStatus:
    handle = client.get_workflow_handle_for(EngagementWorkflow.run, workflow_id_for(opportunity_id))
    try:
        # A query needs a worker; without one it would wait: bound it.
        return await asyncio.wait_for(
            handle.query(EngagementWorkflow.status, rpc_timeout=timedelta(seconds=timeout)), timeout=timeout + 2
        )
    except RPCError as err:
        raise_for_rpc(opportunity_id, err)
    except TimeoutError:
        raise EngagementNotAnswering(opportunity_id, f"no answer in {timeout:g}s") from None


def stage_query(stage: str | None = None) -> str:
    """Visibility query for engagements, optionally in one stage."""
    # one row per engagement: earlier runs of a long engagement ended in continue-as-new
    query = f"WorkflowType = '{ENGAGEMENT_WORKFLOW_TYPE}' AND ExecutionStatus != 'ContinuedAsNew'"
    if stage:
        query += f" AND {ENGAGEMENT_STAGE.name} = '{parse_stage(stage).value}'"
    return query


def parse_stage(stage: str) -> EngagementStage:
    """Accept a stage value or name, any case ('AwaitingSteward', 'awaiting_steward')."""
    wanted = stage.strip().replace("_", "").replace("-", "").replace(" ", "").lower()
    for s in EngagementStage:
        if wanted in (s.value.lower(), s.name.replace("_", "").lower()):
            return s
    raise ValueError(f"unknown stage '{stage}'; one of: {', '.join(s.value for s in EngagementStage)}")


async def list_engagements(
    client: Client, stage: str | None = None, *, limit: int | None = None
) -> list[EngagementRow]:
    rows = []
    async for wf in client.list_workflows(stage_query(stage), limit=limit):
        sa = wf.typed_search_attributes
        opp = sa.get(OPPORTUNITY_ID) or wf.id.removeprefix("engagement-")
        rows.append(
            EngagementRow(
                opportunity_id=opp,
                stage=sa.get(ENGAGEMENT_STAGE) or "",
                customer=sa.get(CUSTOMER_NAME) or "",
                billing_model=sa.get(BILLING_MODEL) or "",
                region=sa.get(REGION) or "",
                status=wf.status.name if isinstance(wf.status, WorkflowExecutionStatus) else str(wf.status or ""),
                workflow_id=wf.id,
            )
        )
    return rows


async def recheck(client: Client, opportunity_id: str, *, requested_by: str = "cli", note: str | None = None) -> str:
    wf_id = workflow_id_for(opportunity_id)
    handle = client.get_workflow_handle_for(EngagementWorkflow.run, wf_id)
    try:
        await handle.signal(EngagementWorkflow.recheck, RecheckInput(requested_by=requested_by, note=note))
    except RPCError as err:
        raise_for_rpc(opportunity_id, err)
    return wf_id


def raise_for_rpc(opportunity_id: str, err: RPCError) -> None:
    """Temporal's answer, in the engagement's words (one mapping for every caller)."""
    if err.status == RPCStatusCode.NOT_FOUND:  # no such workflow, or its run has completed
        raise EngagementNotFound(opportunity_id) from None
    if err.status in (
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.FAILED_PRECONDITION,
        RPCStatusCode.CANCELLED,
        RPCStatusCode.UNAVAILABLE,
    ):
        raise EngagementNotAnswering(opportunity_id, err.message) from None
    raise err
