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

from dataclasses import dataclass

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain.stage import EngagementStage
from settings import Settings
from workflows.engagement import EngagementWorkflow
from workflows.models import CrmChangedInput, DeliveryConfig, EngagementInput
from workflows.search_attributes import ENGAGEMENT_STAGE, OPPORTUNITY_ID

# a run that ended like this did not end by a business decision: the next start begins a new run
RESTARTABLE = (WorkflowExecutionStatus.FAILED, WorkflowExecutionStatus.TERMINATED,
               WorkflowExecutionStatus.CANCELED, WorkflowExecutionStatus.TIMED_OUT)


def delivery_config(settings: Settings) -> DeliveryConfig:
    """The engagement calendar new engagements get (Q2C_PERIOD_SECONDS, Q2C_PAYMENT_POLL_SECONDS)."""
    return DeliveryConfig(period_seconds=settings.period_seconds,
                          payment_poll_seconds=settings.payment_poll_seconds, grace_days=settings.grace_days)


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


async def start_engagement(client: Client, opportunity_id: str, *, task_queue: str,
                           source: str = "webhook", delivery: DeliveryConfig | None = None,
                           notify_existing: bool = True) -> StartResult:
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
            EngagementInput(opportunity_id=opportunity_id, source=source,
                            delivery=delivery or DeliveryConfig()),
            id=wf_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(ENGAGEMENT_STAGE, EngagementStage.RECEIVED.value),
                SearchAttributePair(OPPORTUNITY_ID, opportunity_id),
            ]),
            static_summary=f"Engagement for opportunity {opportunity_id} (from {source})",
        )
    except WorkflowAlreadyStartedError as err:
        # only a Completed run is refused by the reuse policy
        return StartResult(workflow_id=wf_id, run_id=err.run_id, already_existed=True,
                           previous_status=previous or WorkflowExecutionStatus.COMPLETED.name)
    response = getattr(handle, "_start_workflow_response", None)
    started = getattr(response, "started", True) if response is not None else True
    if started:
        restarted = before in RESTARTABLE
        return StartResult(workflow_id=wf_id, run_id=handle.result_run_id, already_existed=False,
                           restarted=restarted, previous_status=previous if restarted else None)
    signalled = False
    if notify_existing:
        # the CRM spoke again about a running engagement: a change order, or a fix a steward made
        # in the CRM; the engagement reads the opportunity again (a no-op when nothing changed)
        signalled = await notify_engagement(client, opportunity_id, source=source)
    return StartResult(workflow_id=wf_id, run_id=handle.result_run_id, already_existed=True,
                       previous_status=WorkflowExecutionStatus.RUNNING.name, signalled=signalled)


async def notify_engagement(client: Client, opportunity_id: str, *, source: str = "webhook") -> bool:
    """Send `crm_changed` to the running engagement; False when none is running (never
    started, or already ended), which starts nothing."""
    try:
        await client.get_workflow_handle(workflow_id_for(opportunity_id)).signal(
            "crm_changed", CrmChangedInput(source=source))
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:  # no such workflow, or its run has completed
            return False
        raise
    return True
