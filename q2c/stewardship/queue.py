"""The stewards' queue: engagements paused in AwaitingSteward, with why and since when.

Listing comes from Temporal visibility, the same query an engineer can paste into the
Temporal UI:

    WorkflowType='EngagementWorkflow' AND ExecutionStatus='Running'
      AND EngagementStage='AwaitingSteward' AND StewardQueue='master-data'

Each row is then completed with the engagement's `status` query (pause kind, the fields at
fault, since when); if the engagement does not answer (no worker), the row still shows what
visibility knows. Filters: queue (in the visibility query), paused longer than N hours and
a customer-name substring (applied to the rows).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

from temporalio.client import Client

from q2c.domain.stage import EngagementStage
from q2c.engagement.client import EngagementNotAnswering, EngagementNotFound, get_status
from q2c.engagement.messages import EngagementStatus, PauseKind, StewardAction, StewardQueue
from q2c.engagement.search_attributes import (
    BUDGET_STATUS,
    CUSTOMER_NAME,
    ENGAGEMENT_STAGE,
    OPPORTUNITY_ID,
    STEWARD_QUEUE,
)

ENGAGEMENT_WORKFLOW_TYPE = "EngagementWorkflow"
QUEUES = tuple(q.value for q in StewardQueue)
STATUS_TIMEOUT = 5.0


@dataclass
class QueueRow:
    opportunity_id: str
    customer: str
    queue: str
    pause_kind: str
    missing_fields: list[dict] = field(default_factory=list)  # [{field, reason}]
    message: str = ""
    since: datetime | None = None
    workflow_id: str = ""
    # what ends the pause (recheck | retry | replay_or_write_off | accept_or_waive) and, for a
    # vendor's answer, where it came from in that vendor's own words
    action: str = ""
    system: str | None = None
    operation: str | None = None
    vendor_code: str | None = None
    vendor_message: str | None = None
    open_exceptions: int = 0  # the engagement's count (not the status' bounded sample)

    @property
    def where(self) -> str:
        """'ERP create invoice (INVALID_FLD_VALUE)', or '' when no vendor call is involved."""
        text = " ".join(x for x in ((self.system or "").upper(), self.operation or "") if x)
        return f"{text} ({self.vendor_code})" if text and self.vendor_code else text

    def age_hours(self, now: datetime | None = None) -> float | None:
        if self.since is None:
            return None
        now = now or datetime.now(UTC)
        since = self.since if self.since.tzinfo else self.since.replace(tzinfo=UTC)
        return (now - since).total_seconds() / 3600

    def as_dict(self) -> dict:
        return {
            "opportunity_id": self.opportunity_id,
            "customer": self.customer,
            "queue": self.queue,
            "pause_kind": self.pause_kind,
            "missing_fields": self.missing_fields,
            "message": self.message,
            "since": self.since.isoformat() if self.since else None,
            "age_hours": None if self.since is None else round(self.age_hours(), 2),
            "workflow_id": self.workflow_id,
            "action": self.action,
            "system": self.system,
            "operation": self.operation,
            "vendor_code": self.vendor_code,
            "vendor_message": self.vendor_message,
            "open_exceptions": self.open_exceptions,
        }


def parse_queue(queue: str | None) -> str | None:
    """'' / None -> no filter; otherwise one of master-data, finance-ops, pmo (else ValueError)."""
    if queue is None or not queue.strip():
        return None
    value = queue.strip().lower()
    if value not in QUEUES:
        raise ValueError(f"unknown queue '{queue}'; one of: {', '.join(QUEUES)}")
    return value


def queue_query(queue: str | None = None) -> str:
    """Paused engagements of a queue; the PMO's (and the whole list) also holds delivering T&M
    engagements with time held at their not-to-exceed cap, which wait for a decision without a
    pause (delivery goes on)."""
    running = f"WorkflowType = '{ENGAGEMENT_WORKFLOW_TYPE}' AND ExecutionStatus = 'Running'"
    paused = f"{ENGAGEMENT_STAGE.name} = '{EngagementStage.AWAITING_STEWARD.value}'"
    held = f"{BUDGET_STATUS.name} = 'held'"
    queue = parse_queue(queue)
    if queue is None:
        return f"{running} AND ({paused} OR {held})"
    if queue == StewardQueue.PMO.value:
        return f"{running} AND (({paused} AND {STEWARD_QUEUE.name} = '{queue}') OR {held})"
    return f"{running} AND {paused} AND {STEWARD_QUEUE.name} = '{queue}'"


def _row(wf, status: EngagementStatus | None) -> QueueRow:
    sa = wf.typed_search_attributes
    opp = sa.get(OPPORTUNITY_ID) or wf.id.removeprefix("engagement-")
    customer = sa.get(CUSTOMER_NAME) or ""
    row = QueueRow(
        opportunity_id=opp, customer=customer, queue=sa.get(STEWARD_QUEUE) or "", pause_kind="", workflow_id=wf.id
    )
    if status is None:
        return row
    if status.engagement is not None:
        c = status.engagement.customer
        row.customer = c.legal_name or c.name or customer
    pause = status.pause
    if pause is not None:
        row.queue = pause.queue.value
        row.pause_kind = pause.kind.value
        row.message = pause.message
        row.since = pause.since
        row.missing_fields = [{"field": f.field, "reason": f.reason} for f in pause.fields]
        row.action = pause.action.value
        row.system, row.operation = pause.system, pause.operation
        row.vendor_code, row.vendor_message = pause.vendor_code, pause.vendor_message
    b = status.budget
    if pause is None and b is not None and b.held_amount > 0:
        row.queue = StewardQueue.PMO.value
        row.pause_kind = PauseKind.BUDGET_HELD.value
        row.action = StewardAction.DECIDE_BUDGET_HOLD.value
        row.message = (
            f"{b.held_amount} {b.currency} of approved time held at the not-to-exceed cap of {b.money(b.cap)} "
            "(posted, not invoiced): raise the cap by a change order, release it or write it off"
        )
        row.since = b.warnings[-1].at if b.warnings else None
        row.missing_fields = [{"field": "budget.held", "reason": b.status_text()}]
    row.open_exceptions = status.open_exception_count
    if not row.missing_fields:
        row.missing_fields = [{"field": f.field, "reason": f.reason} for f in status.missing_fields]
    return row


async def _status_or_none(client: Client, opportunity_id: str) -> EngagementStatus | None:
    try:
        return await get_status(client, opportunity_id, timeout=STATUS_TIMEOUT)
    except (EngagementNotFound, EngagementNotAnswering):
        return None


async def list_queue(
    client: Client,
    *,
    queue: str | None = None,
    older_than_hours: float | None = None,
    customer: str | None = None,
    limit: int = 500,
    now: datetime | None = None,
) -> list[QueueRow]:
    """Paused engagements, oldest pause first. Raises ValueError for an unknown queue."""
    workflows = [wf async for wf in client.list_workflows(queue_query(queue), limit=limit)]
    statuses = await asyncio.gather(
        *(
            _status_or_none(client, wf.typed_search_attributes.get(OPPORTUNITY_ID) or wf.id.removeprefix("engagement-"))
            for wf in workflows
        )
    )
    rows = [_row(wf, st) for wf, st in zip(workflows, statuses)]
    if queue:  # visibility is eventually consistent: trust the fresher status query
        rows = [r for r in rows if r.queue == parse_queue(queue)]
    if customer and customer.strip():
        needle = customer.strip().lower()
        rows = [r for r in rows if needle in r.customer.lower()]
    if older_than_hours is not None:
        rows = [r for r in rows if (r.age_hours(now) or 0) >= older_than_hours]
    far = datetime.max.replace(tzinfo=UTC)
    rows.sort(key=lambda r: (r.since.replace(tzinfo=r.since.tzinfo or UTC) if r.since else far, r.opportunity_id))
    return rows


def temporal_ui_link(temporal_ui_url: str, namespace: str, opportunity_id: str) -> str:
    return f"{temporal_ui_url.rstrip('/')}/namespaces/{namespace}/workflows/engagement-{opportunity_id}"


def age_text(hours: float | None) -> str:
    if hours is None:
        return "-"
    if hours < 1:
        return f"{max(0, int(hours * 60))} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


__all__ = ["QueueRow", "QUEUES", "list_queue", "parse_queue", "queue_query", "temporal_ui_link", "age_text"]
