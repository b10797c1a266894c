"""Start (or find) the engagement workflow for one opportunity. Accepts an injected Client."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from domain.stage import EngagementStage
from workflows.engagement import EngagementWorkflow
from settings import Settings
from workflows.models import CrmChangedInput, DeliveryConfig, EngagementInput
from workflows.search_attributes import ENGAGEMENT_STAGE, OPPORTUNITY_ID


def delivery_config(settings: Settings) -> DeliveryConfig:
    """The engagement calendar new engagements get (Q2C_PERIOD_SECONDS, Q2C_PAYMENT_POLL_SECONDS)."""
    return DeliveryConfig(period_seconds=settings.period_seconds,
                          payment_poll_seconds=settings.payment_poll_seconds)


def workflow_id_for(opportunity_id: str) -> str:
    return f"engagement-{opportunity_id}"


@dataclass(frozen=True)
class StartResult:
    workflow_id: str
    run_id: str | None
    already_existed: bool


async def start_engagement(client: Client, opportunity_id: str, *, task_queue: str,
                           source: str = "webhook", delivery: DeliveryConfig | None = None,
                           notify_existing: bool = True) -> StartResult:
    """Start the engagement; a second start for the same opportunity is a no-op.

    A running engagement is reused (USE_EXISTING); a finished one is never started again
    (REJECT_DUPLICATE), so a re-delivered closed-won event cannot provision twice.
    """
    wf_id = workflow_id_for(opportunity_id)
    try:
        handle = await client.start_workflow(
            EngagementWorkflow.run,
            EngagementInput(opportunity_id=opportunity_id, source=source,
                            delivery=delivery or DeliveryConfig()),
            id=wf_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(ENGAGEMENT_STAGE, EngagementStage.RECEIVED.value),
                SearchAttributePair(OPPORTUNITY_ID, opportunity_id),
            ]),
            static_summary=f"Engagement for opportunity {opportunity_id} (from {source})",
        )
    except WorkflowAlreadyStartedError as err:
        return StartResult(workflow_id=wf_id, run_id=err.run_id, already_existed=True)
    existed = getattr(handle, "_start_workflow_response", None)
    started = getattr(existed, "started", True) if existed is not None else True
    if not started and notify_existing:
        # the CRM spoke again about a running engagement: a change order, or a fix a steward made
        # in the CRM; the engagement reads the opportunity again (a no-op when nothing changed)
        await client.get_workflow_handle(wf_id).signal("crm_changed", CrmChangedInput(source=source))
    return StartResult(workflow_id=wf_id, run_id=handle.result_run_id, already_existed=not started)
