"""The demo: close the seeded deals in the CRM sandbox and watch the engagements start.

Deals are closed the way a salesperson would (StageName -> Closed Won through the
Salesforce REST API); the CRM sandbox then delivers Outbound Messages to our webhook, which
starts the workflows. Nothing here talks to the workflows directly except to report.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from temporalio.client import Client
from temporalio.service import RPCError

from q2c.domain.stage import EngagementStage
from q2c.engagement.client import workflow_id_for
from q2c.engagement.messages import EngagementStatus
from q2c.settings import Settings
from q2c.temporal import connect
from q2c.vendors.salesforce.client import SalesforceClient
from sandboxes.crm.seed import DEMO_CLOSE_OPPORTUNITY_IDS

SETTLED = {EngagementStage.ACTIVE, EngagementStage.AWAITING_STEWARD, EngagementStage.CLOSED, EngagementStage.CANCELLED}


async def _status(client: Client, opportunity_id: str) -> EngagementStatus | None:
    try:
        return await client.get_workflow_handle(workflow_id_for(opportunity_id)).query(
            "status", result_type=EngagementStatus, rpc_timeout=timedelta(seconds=5)
        )
    except RPCError:
        return None


async def run_demo(settings: Settings, timeout: float = 60.0) -> dict[str, float | None]:
    """Close every demo deal not yet closed; return seconds from closed-won to settled."""
    client = await connect(settings)
    closed_at: dict[str, float] = {}
    async with SalesforceClient(settings.crm) as crm:
        for opp in DEMO_CLOSE_OPPORTUNITY_IDS:
            record = await crm.get_record("Opportunity", opp)
            if record.get("StageName") != "Closed Won":
                await crm.set_opportunity_stage(opp, "Closed Won")
                closed_at[opp] = time.monotonic()
    if closed_at:
        print(f"Closed {len(closed_at)} demo deals in the CRM sandbox; waiting for the engagements ...")
    else:
        print("Demo deals were closed in an earlier run; engagements resume from their histories.")

    took: dict[str, float | None] = {}
    pending = set(DEMO_CLOSE_OPPORTUNITY_IDS)
    deadline = time.monotonic() + timeout
    statuses: dict[str, EngagementStatus | None] = {}
    while pending and time.monotonic() < deadline:
        for opp in list(pending):
            st = await _status(client, opp)
            statuses[opp] = st
            if st is not None and st.stage in SETTLED:
                pending.discard(opp)
                took[opp] = (time.monotonic() - closed_at[opp]) if opp in closed_at else None
        if pending:
            await asyncio.sleep(0.1)

    print(f"\n  {'opportunity':<20} {'customer':<30} {'model':<20} {'stage':<16} closed-won -> settled")
    for opp in DEMO_CLOSE_OPPORTUNITY_IDS:
        st = statuses.get(opp)
        customer = st.engagement.customer.name if st and st.engagement else "?"
        model = st.engagement.billing_model.value if st and st.engagement else "?"
        stage = st.stage.value if st else "not started"
        secs = took.get(opp)
        timing = f"{secs:.2f}s" if secs is not None else ("(earlier run)" if opp not in closed_at else "not yet")
        print(f"  {opp:<20} {customer[:30]:<30} {model:<20} {stage:<16} {timing}")
        if st and st.stage is EngagementStage.AWAITING_STEWARD:
            for issue in st.missing_fields:
                print(f"      needs {issue.field}: {issue.reason}")
    return took
