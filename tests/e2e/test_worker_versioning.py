"""Worker Deployment Versioning on a real dev server: a rollout and a rollback.

Two builds of the worker (Q2C_DEPLOYMENT_NAME + Q2C_BUILD_ID, as `q2c.worker` reads them) run
side by side on one task queue. Engagements are PINNED to the build that started their run
and continue as new onto the deployment's current build at each period boundary (short
periods: DeliveryConfig.period_seconds), so:

- after the new build is set current, new engagements start on it, and an open engagement
  stays on the old build until its next period boundary, then moves;
- after a rollback (the old build current again, here with the operator's own command, the
  `temporal` CLI), new engagements start on the old build and the moved one comes back at its
  next boundary.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import time
import uuid
from datetime import UTC, datetime

import pytest
from temporalio.api.enums.v1 import EventType, VersioningBehavior
from temporalio.api.workflowservice.v1 import SetWorkerDeploymentCurrentVersionRequest
from temporalio.client import Client
from temporalio.service import RPCError

from q2c.domain.stage import EngagementStage
from q2c.engagement.client import start_engagement, workflow_id_for
from q2c.engagement.messages import DeliveryConfig
from q2c.worker import deployment_config
from tests.deals import create_deal
from tests.engagement_helpers import wait_for_stage
from tests.fixtures.stack import q2c_settings, running_worker
from tests.fixtures.temporal import _binary

PERIOD_SECONDS = 6  # one billing month lasts this long


def _settings(base, deployment: str, build: str):
    return dataclasses.replace(base, deployment_name=deployment, build_id=build)


async def set_current(client: Client, deployment: str, build: str, timeout: float = 30) -> None:
    """Make a build current (client API); retried while the server has not yet seen its pollers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await client.workflow_service.set_worker_deployment_current_version(
                SetWorkerDeploymentCurrentVersionRequest(
                    namespace=client.namespace, deployment_name=deployment, build_id=build, identity="test-rollout"
                )
            )
            return
        except RPCError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


def cli_set_current(client: Client, deployment: str, build: str) -> None:
    """The rollback as an operator runs it: `temporal worker deployment set-current-version`."""
    done = subprocess.run(
        [
            _binary("temporal"),
            "worker",
            "deployment",
            "set-current-version",
            "--address",
            client.service_client.config.target_host,
            "--namespace",
            client.namespace,
            "--deployment-name",
            deployment,
            "--build-id",
            build,
            "--yes",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def build_of(client: Client, opportunity_id: str) -> tuple[str, str, str]:
    """(run ID, versioning behaviour, build) of the engagement's current run."""
    desc = await client.get_workflow_handle(workflow_id_for(opportunity_id)).describe()
    info = desc.raw_description.workflow_execution_info.versioning_info
    build = info.deployment_version.build_id or info.version.rpartition(".")[2]
    return desc.run_id, VersioningBehavior.Name(info.behavior), build


async def wait_for_build(client, opportunity_id: str, build: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await build_of(client, opportunity_id)
        if last[2] == build:
            return last[0]
        await asyncio.sleep(0.3)
    raise AssertionError(f"engagement {opportunity_id} not on build {build} within {timeout}s: {last}")


async def builds_that_ran(client: Client, workflow_id: str, run_id: str) -> set[str]:
    """Which builds completed the run's workflow tasks (the history says, per task)."""
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    return {
        e.workflow_task_completed_event_attributes.deployment_version.build_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    }


def test_deployment_config_comes_from_the_environment(monkeypatch):
    from q2c.settings import load_settings

    monkeypatch.delenv("Q2C_DEPLOYMENT_NAME", raising=False)
    monkeypatch.delenv("Q2C_BUILD_ID", raising=False)
    assert deployment_config(load_settings()) is None  # make up and the tests: unversioned
    monkeypatch.setenv("Q2C_DEPLOYMENT_NAME", "q2c-worker")
    monkeypatch.setenv("Q2C_BUILD_ID", "2026.12.1")
    config = deployment_config(load_settings())
    assert config.use_worker_versioning
    assert (config.version.deployment_name, config.version.build_id) == ("q2c-worker", "2026.12.1")
    monkeypatch.delenv("Q2C_BUILD_ID")
    with pytest.raises(ValueError, match="Q2C_DEPLOYMENT_NAME and Q2C_BUILD_ID"):
        deployment_config(load_settings())


async def test_rollout_moves_engagements_at_their_period_boundary_and_rollback_moves_them_back(
    dev_env, crm_sandbox, erp_sandbox, psa_sandbox, crm_client, tmp_path
):
    client = dev_env.client
    base = q2c_settings(
        crm_url=crm_sandbox.url,
        erp_url=erp_sandbox.url,
        psa_url=psa_sandbox.url,
        state_dir=tmp_path,
        temporal_address=client.service_client.config.target_host,
    )
    deployment = f"q2c-test-{uuid.uuid4().hex[:8]}"
    old, new = _settings(base, deployment, "build-1"), _settings(base, deployment, "build-2")
    delivery = DeliveryConfig(period_seconds=PERIOD_SECONDS, payment_poll_seconds=3600)

    async def start(**deal) -> str:
        d = await create_deal(crm_client, start="2026-12-01", end="2027-11-30", **deal)
        await start_engagement(client, d.opportunity_id, task_queue=base.task_queue, source="test", delivery=delivery)
        await wait_for_stage(client, d.opportunity_id, EngagementStage.ACTIVE)
        return d.opportunity_id

    started: list[str] = []
    async with running_worker(client, old):
        await set_current(client, deployment, "build-1")
        open_one = await start()
        started.append(open_one)
        first_run, behavior, build = await build_of(client, open_one)
        assert (behavior, build) == ("VERSIONING_BEHAVIOR_PINNED", "build-1")

        async with running_worker(client, new):
            # the rollout: build-2 current; build-1 keeps serving what is pinned to it
            await set_current(client, deployment, "build-2")
            rolled_out = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            # CONTRIBUTING's check that no open engagement still runs a run begun before the rollout
            not_moved = (
                f'TaskQueue = "{base.task_queue}" AND ExecutionStatus = "Running" AND StartTime < "{rolled_out}"'
            )
            fresh = await start(billing_model="Retainer", region="DACH", tax_id="DE123456789")
            started.append(fresh)
            assert (await build_of(client, fresh))[1:] == ("VERSIONING_BEHAVIOR_PINNED", "build-2")
            run_id, _, build = await build_of(client, open_one)
            if run_id == first_run:  # mid-period: the open engagement stays where its run began
                assert build == "build-1"
                assert (await client.count_workflows(not_moved)).count == 1  # and the check finds it
            moved_run = await wait_for_build(client, open_one, "build-2", timeout=3 * PERIOD_SECONDS)
            assert moved_run != first_run  # it moved by continuing as new: a new run
            assert await builds_that_ran(client, workflow_id_for(open_one), first_run) == {"build-1"}
            assert (await client.count_workflows(not_moved)).count == 0  # every open run began after it
            await wait_for_stage(client, open_one, EngagementStage.ACTIVE)

            # the rollback, as an operator types it: build-1 current again
            cli_set_current(client, deployment, "build-1")
            after = await start()
            started.append(after)
            assert (await build_of(client, after))[2] == "build-1"  # new work goes to the old build
            back_run = await wait_for_build(client, open_one, "build-1", timeout=3 * PERIOD_SECONDS)
            assert back_run != moved_run
            assert await builds_that_ran(client, workflow_id_for(open_one), moved_run) == {"build-2"}
            status = await wait_for_stage(client, open_one, EngagementStage.ACTIVE)
            assert status.runs >= 3 and status.next_period_index >= 2  # its periods kept closing throughout
        for opp in started:  # leave nothing running on the shared dev server
            await client.get_workflow_handle(workflow_id_for(opp)).terminate("test over")
