"""What the Temporal UI shows of an engagement: stage, details and search attributes."""

from __future__ import annotations

from temporalio import workflow

from q2c.domain.engagement import Engagement
from q2c.domain.stage import EngagementStage
from q2c.engagement.messages import EngagementStatus
from q2c.engagement.search_attributes import (
    BILLING_MODEL,
    BUDGET_STATUS,
    CUSTOMER_NAME,
    ENGAGEMENT_STAGE,
    OPEN_EXCEPTIONS,
    OPPORTUNITY_ID,
    REGION,
    STEWARD_QUEUE,
)


def set_stage(status: EngagementStatus, stage: EngagementStage, details: str) -> None:
    status.stage = stage
    status.details = details
    workflow.upsert_search_attributes([ENGAGEMENT_STAGE.value_set(stage.value)])
    workflow.set_current_details(f"**{stage.value}**: {details}")


def set_details(status: EngagementStatus, details: str) -> None:
    status.details = details
    workflow.set_current_details(f"**{status.stage.value}**: {details}")


def describe_engagement(engagement: Engagement) -> None:
    updates = [
        OPPORTUNITY_ID.value_set(engagement.opportunity_id),
        CUSTOMER_NAME.value_set(engagement.customer.name),
        BILLING_MODEL.value_set(engagement.billing_model.value),
    ]
    if engagement.customer.region:
        updates.append(REGION.value_set(engagement.customer.region))
    workflow.upsert_search_attributes(updates)


def set_open_exceptions(count: int) -> None:
    workflow.upsert_search_attributes([OPEN_EXCEPTIONS.value_set(count)])


def set_steward_queue(queue: str | None) -> None:
    workflow.upsert_search_attributes([STEWARD_QUEUE.value_set(queue) if queue else STEWARD_QUEUE.value_unset()])


def set_budget_status(value: str) -> None:
    """ok | warning | held: the PMO's list of engagements holding time at the cap is a
    visibility query (`BudgetStatus = 'held'`), like the steward queue."""
    workflow.upsert_search_attributes([BUDGET_STATUS.value_set(value)])
