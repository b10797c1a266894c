"""Waiting on engagements the way a user would: by the `status` query."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from temporalio.client import Client
from temporalio.service import RPCError

from q2c.domain.stage import EngagementStage
from q2c.engagement.client import workflow_id_for
from q2c.engagement.messages import EngagementStatus


async def status_of(client: Client, opportunity_id: str) -> EngagementStatus | None:
    try:
        return await client.get_workflow_handle(workflow_id_for(opportunity_id)).query(
            "status", result_type=EngagementStatus, rpc_timeout=timedelta(seconds=10)
        )
    except RPCError:
        return None


async def wait_for_stage(
    client: Client, opportunity_id: str, *stages: EngagementStage, timeout: float = 60.0
) -> EngagementStatus:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await status_of(client, opportunity_id)
        if last is not None and last.stage in stages:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(
        f"engagement {opportunity_id} did not reach {[s.value for s in stages]} "
        f"within {timeout}s; last status: {last and last.stage} {last and last.details}"
    )
