"""The q2c CLI: async functions with an injected client, and commands via typer's CliRunner
against the real Temporal dev server (no worker: started workflows stay scheduled)."""

from __future__ import annotations

import asyncio
import json
import random
import string
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from temporalio.api.enums.v1 import EventType
from typer.testing import CliRunner

from q2c.cli import main as cli
from q2c.domain.customer import Customer
from q2c.domain.engagement import BillingModel, Engagement
from q2c.domain.money import Money
from q2c.domain.project import PsaWorkspace
from q2c.domain.stage import EngagementStage
from q2c.domain.validation import FieldIssue
from q2c.engagement.client import workflow_id_for
from q2c.engagement.messages import EngagementStatus
from q2c.webhook.outbound_message import to_18


def new_opportunity_id() -> str:
    return to_18("006" + "".join(random.choices(string.ascii_letters + string.digits, k=12)))


def cli_env(dev_env, task_queue: str) -> dict[str, str]:
    return {
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": dev_env.client.namespace,
        "TEMPORAL_TASK_QUEUE": task_queue,
    }


async def invoke(env: dict[str, str], *args: str):
    # The commands call asyncio.run(): run them off the test's event loop.
    return await asyncio.to_thread(CliRunner().invoke, cli.app, list(args), env=env)


async def test_start_is_idempotent(dev_env):
    opp, tq = new_opportunity_id(), f"cli-{uuid.uuid4().hex[:8]}"
    first = await cli.start(dev_env.client, opp, task_queue=tq)
    second = await cli.start(dev_env.client, opp, task_queue=tq)
    assert (first.workflow_id, first.already_existed) == (workflow_id_for(opp), False)
    assert (second.workflow_id, second.already_existed) == (workflow_id_for(opp), True)
    desc = await dev_env.client.get_workflow_handle(workflow_id_for(opp)).describe()
    assert desc.task_queue == tq


async def test_start_command_via_cli_runner(dev_env):
    opp, tq = new_opportunity_id(), f"cli-{uuid.uuid4().hex[:8]}"
    env = cli_env(dev_env, tq)
    result = await invoke(env, "start", opp)
    assert result.exit_code == 0, result.output
    assert f"workflow id: engagement-{opp}" in result.output and "already existed: no" in result.output
    result = await invoke(env, "start", opp)
    assert "already existed: yes" in result.output
    desc = await dev_env.client.get_workflow_handle(workflow_id_for(opp)).describe()
    assert desc.task_queue == tq


async def test_start_restarts_a_terminated_engagement(dev_env):
    opp, tq = new_opportunity_id(), f"cli-{uuid.uuid4().hex[:8]}"
    first = await cli.start(dev_env.client, opp, task_queue=tq)
    await dev_env.client.get_workflow_handle(workflow_id_for(opp)).terminate(reason="test")
    result = await invoke(cli_env(dev_env, tq), "start", opp)
    assert result.exit_code == 0, result.output
    assert "restarted (previous run TERMINATED)" in result.output
    desc = await dev_env.client.get_workflow_handle(workflow_id_for(opp)).describe()
    assert desc.run_id != first.run_id and desc.status.name == "RUNNING"
    again = await cli.start(dev_env.client, opp, task_queue=tq)
    assert again.already_existed and not again.restarted and again.run_id == desc.run_id


async def test_status_of_unknown_engagement(dev_env):
    opp = new_opportunity_id()
    with pytest.raises(cli.EngagementNotFound):
        await cli.get_status(dev_env.client, opp, timeout=2)
    result = await invoke(cli_env(dev_env, "unused"), "status", opp)
    assert result.exit_code == 1
    assert f"no engagement for opportunity {opp}" in result.output


async def test_list_filters_by_stage(dev_env):
    tq = f"cli-{uuid.uuid4().hex[:8]}"
    opps = {new_opportunity_id(), new_opportunity_id()}
    for opp in opps:
        await cli.start(dev_env.client, opp, task_queue=tq)
    rows = []
    for _ in range(50):  # visibility is eventually consistent
        rows = [r for r in await cli.list_engagements(dev_env.client, "received") if r.opportunity_id in opps]
        if len(rows) == 2:
            break
        await asyncio.sleep(0.1)
    assert {r.opportunity_id for r in rows} == opps
    assert all(r.stage == "Received" and r.status == "RUNNING" for r in rows)
    active = await cli.list_engagements(dev_env.client, "Active")
    assert not [r for r in active if r.opportunity_id in opps]
    result = await invoke(cli_env(dev_env, tq), "list", "--stage", "Received")
    assert result.exit_code == 0, result.output
    assert "OPPORTUNITY" in result.output and all(opp in result.output for opp in opps)
    result = await invoke(cli_env(dev_env, tq), "list", "--stage", "Nope")
    assert result.exit_code == 2 and "unknown stage" in result.output


async def test_recheck_sends_signal(dev_env):
    opp = new_opportunity_id()
    with pytest.raises(cli.EngagementNotFound):
        await cli.recheck(dev_env.client, opp)
    await cli.start(dev_env.client, opp, task_queue=f"cli-{uuid.uuid4().hex[:8]}")
    assert await cli.recheck(
        dev_env.client, opp, requested_by="ops@example.com", note="tax id fixed"
    ) == workflow_id_for(opp)
    history = await dev_env.client.get_workflow_handle(workflow_id_for(opp)).fetch_history()
    signals = [
        e.workflow_execution_signaled_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]
    assert [s.signal_name for s in signals] == ["recheck"]
    [clear] = await dev_env.client.data_converter.payload_codec.decode(signals[0].input.payloads)  # encrypted
    payload = json.loads(clear.data)
    assert payload == {"requested_by": "ops@example.com", "note": "tax id fixed"}
    result = await invoke(cli_env(dev_env, "unused"), "recheck", new_opportunity_id())
    assert result.exit_code == 1 and "no engagement" in result.output


def test_stage_query_and_parse():
    latest = "WorkflowType = 'EngagementWorkflow' AND ExecutionStatus != 'ContinuedAsNew'"
    assert cli.stage_query() == latest
    assert cli.stage_query("awaiting_steward") == f"{latest} AND EngagementStage = 'AwaitingSteward'"
    with pytest.raises(ValueError):
        cli.parse_stage("x' OR 1=1")


def test_format_status_readable():
    status = EngagementStatus(
        opportunity_id="0065e00000ABCDEAAA",
        stage=EngagementStage.AWAITING_STEWARD,
        details="Customer master incomplete",
        missing_fields=[FieldIssue(field="customer.tax_id", reason="tax ID is missing")],
        engagement=Engagement(
            opportunity_id="0065e00000ABCDEAAA",
            opportunity_name="Rollout",
            customer=Customer(crm_account_id="001", name="Acme"),
            billing_model=BillingModel.FIXED_FEE,
            contract_value=Money(amount=Decimal("1000.00"), currency="EUR"),
            region="EMEA",
        ),
        erp_customer_id="123",
        psa_workspace=PsaWorkspace(workspace_id="ws-9", title="Rollout"),
        active_since=datetime(2025, 1, 1, tzinfo=UTC),
    )
    text = cli.format_status(status)
    for needle in [
        "Stage:        AwaitingSteward",
        "customer.tax_id: tax ID is missing",
        "Acme",
        "fixed_fee, 1000.00 EUR",
        "EMEA",
        "ERP customer:",
        "123",
        "PSA workspace:",
        "ws-9",
    ]:
        assert needle in text
    table = cli.format_table([cli.EngagementRow("006X", "Active", "Acme", "retainer", "NA", "RUNNING", "w")])
    assert table.splitlines()[0].startswith("OPPORTUNITY") and "Acme" in table.splitlines()[1]


async def test_status_without_worker_does_not_hang(dev_env):
    opp = new_opportunity_id()
    await cli.start(dev_env.client, opp, task_queue=f"cli-{uuid.uuid4().hex[:8]}")
    with pytest.raises(cli.EngagementNotAnswering):
        await cli.get_status(dev_env.client, opp, timeout=1)
    result = await invoke(cli_env(dev_env, "unused"), "status", opp, "--timeout", "1")
    assert result.exit_code == 1 and "is the worker running?" in result.output
