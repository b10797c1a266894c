"""`q2c replay-check` against a real dev server with running engagements (the real worker,
the sandboxes): the working tree's code replays them all; a deliberately incompatible variant
of the workflow is reported per engagement, naming the workflow and the event, exit code 1.
"""

from __future__ import annotations

import asyncio
import time

from typer.testing import CliRunner

from q2c.cli import main as cli
from q2c.cli.replay_check import OPEN_ENGAGEMENTS, check_open_engagements, report
from q2c.domain.stage import EngagementStage
from q2c.engagement.client import start_engagement, workflow_id_for
from q2c.engagement.messages import DeliveryConfig
from tests.deals import create_deal
from tests.engagement_helpers import wait_for_stage
from tests.fixtures.stack import q2c_settings, running_worker
from tests.replay.variants import PeriodMemoRemoved


async def _listed(client, query: str, count: int, timeout: float = 20) -> None:
    """Visibility catches up with the starts (a moment on the dev server)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len([w async for w in client.list_workflows(query)]) >= count:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"fewer than {count} workflows listed for {query}")


async def test_replay_check_finds_open_engagements_compatible_and_a_changed_workflow_not(
    dev_env, crm_sandbox, erp_sandbox, psa_sandbox, crm_client, tmp_path
):
    client = dev_env.client
    settings = q2c_settings(
        crm_url=crm_sandbox.url,
        erp_url=erp_sandbox.url,
        psa_url=psa_sandbox.url,
        state_dir=tmp_path,
        temporal_address=client.service_client.config.target_host,
    )
    query = f'{OPEN_ENGAGEMENTS} AND TaskQueue = "{settings.task_queue}"'
    delivery = DeliveryConfig(period_seconds=3, payment_poll_seconds=3600)
    opportunities = []
    async with running_worker(client, settings):
        for deal in (
            dict(),
            dict(billing_model="Fixed Fee", region="UK"),
            dict(billing_model="Retainer", region="DACH", tax_id="DE123456789"),
        ):
            d = await create_deal(crm_client, start="2026-12-01", end="2027-11-30", **deal)
            await start_engagement(
                client, d.opportunity_id, task_queue=settings.task_queue, source="test", delivery=delivery
            )
            opportunities.append(d.opportunity_id)
        for opp in opportunities:
            await wait_for_stage(client, opp, EngagementStage.ACTIVE)
        await _listed(client, query, len(opportunities))

        try:
            # the operator's command, on this checkout's code: every engagement replays
            env = {
                "TEMPORAL_ADDRESS": client.service_client.config.target_host,
                "TEMPORAL_NAMESPACE": client.namespace,
            }
            done = await asyncio.to_thread(
                CliRunner().invoke, cli.app, ["replay-check", "--all", "--query", query], env=env
            )
            assert done.exit_code == 0, done.output
            for opp in opportunities:
                assert f"ok     {workflow_id_for(opp)} " in done.output
            assert "3 open engagement(s) replayed against this checkout: all compatible" in done.output

            bounded = await asyncio.to_thread(
                CliRunner().invoke, cli.app, ["replay-check", "--limit", "2", "--query", query], env=env
            )
            assert bounded.exit_code == 0, bounded.output
            assert bounded.output.count("ok     engagement-") == 2  # a bounded sample

            # a change that drops a command from the period wait: every engagement would break
            results = await check_open_engagements(client, limit=None, query=query, workflows=[PeriodMemoRemoved])
            assert sorted(r.workflow_id for r in results) == sorted(workflow_id_for(o) for o in opportunities)
            for r in results:
                assert r.error is not None
                assert f"EngagementWorkflow {r.workflow_id} run {r.run_id}" in r.error
                assert "WorkflowPropertiesModified" in r.error and "at event " in r.error
            lines: list[str] = []
            assert report(results, echo=lines.append) == 1
            assert lines[-1].endswith("3 would break")
            assert sum(line.startswith("BREAKS ") for line in lines) == 3
        finally:
            for opp in opportunities:
                await client.get_workflow_handle(workflow_id_for(opp)).terminate("test over")
