"""`q2c steward queue|fix`, `q2c amend`, `q2c cancel` through typer's CliRunner against the real
stack (dev server, sandboxes, worker): what a steward types, what they read, and the audit."""

from __future__ import annotations

import asyncio

from typer.testing import CliRunner

from q2c.cli import main as cli
from q2c.cli.steward import format_queue, steward_queue
from q2c.domain.stage import EngagementStage
from q2c.engagement.client import workflow_id_for
from tests.engagement_helpers import status_of, wait_for_stage
from tests.fixtures.console import paused_deal


async def q2c(stack, *args: str):
    # the commands call asyncio.run(): run them off the test's event loop (the worker runs on it)
    return await asyncio.to_thread(CliRunner().invoke, cli.app, list(args), env=stack.cli_env())


async def test_queue_fix_amend_cancel(console_stack):
    deal, _ = await paused_deal(console_stack, account_name="Steward CLI Consulting GmbH")
    opp = deal.opportunity_id

    for _ in range(100):  # visibility is eventually consistent
        rows = await steward_queue(console_stack.client, queue="master-data")
        if opp in [r.opportunity_id for r in rows]:
            break
        await asyncio.sleep(0.2)
    row = next(r for r in rows if r.opportunity_id == opp)
    assert row.pause_kind == "customer_master_incomplete" and row.queue == "master-data"
    assert "customer.tax_id" in format_queue([row])

    result = await q2c(console_stack, "steward", "queue", "--queue", "master-data")
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if opp in x)
    assert "Steward CLI Consulting GmbH" in line and "master-data" in line and "customer.tax_id" in line
    assert opp not in (await q2c(console_stack, "steward", "queue", "--queue", "pmo")).output
    assert (await q2c(console_stack, "steward", "queue", "--queue", "nope")).exit_code == 2

    # a rejected fix: the field errors, exit 1, still paused
    result = await q2c(console_stack, "steward", "fix", opp, "--set", "tax_id=abc", "--by", "carol")
    assert result.exit_code == 1
    assert "customer.tax_id: 'ABC' is not valid for billing country US" in result.output
    result = await q2c(console_stack, "steward", "fix", opp, "--set", "tax_id")
    assert result.exit_code == 1 and "expected field=value" in result.output
    assert (await status_of(console_stack.client, opp)).stage is EngagementStage.AWAITING_STEWARD

    result = await q2c(console_stack, "steward", "fix", opp, "--set", "tax_id=12-3456789", "--by", "carol")
    assert result.exit_code == 0, result.output
    assert "accepted" in result.output
    await wait_for_stage(console_stack.client, opp, EngagementStage.ACTIVE)

    # change orders
    result = await q2c(console_stack, "amend", opp, "--end-date", "2020-01-01", "--reason", "CO-9", "--by", "carol")
    assert result.exit_code == 1 and "end_date:" in result.output
    result = await q2c(console_stack, "amend", opp, "--rate", "Consultant=abc@2027-01-01", "--reason", "CO-9")
    assert result.exit_code == 1 and "rates[0].rate: 'abc' is not a number" in result.output
    result = await q2c(
        console_stack,
        "amend",
        opp,
        "--contract-value",
        "135000",
        "--rate",
        "Consultant=160@2027-02-01",
        "--reason",
        "CO-9",
        "--by",
        "carol",
    )
    assert result.exit_code == 0, result.output
    assert "contract version 2" in result.output and "135000" in result.output
    status = await status_of(console_stack.client, opp)
    assert status.engagement.contract_value.amount == 135000
    assert status.contract_versions[-1].requested_by == "carol"

    result = await q2c(console_stack, "cancel", opp, "--reason", "client ended the programme", "--by", "carol")
    assert result.exit_code == 0, result.output
    assert (await status_of(console_stack.client, opp)).cancelled.requested_by == "carol"

    audit = console_stack.ledger.api_calls(system="q2c", workflow_id=workflow_id_for(opp))
    assert [(a.operation, a.outcome, a.actor) for a in audit] == [
        ("provide_customer_data", "rejected", "carol"),
        ("provide_customer_data", "ok", "carol"),
        ("amend_contract", "rejected", "carol"),
        ("amend_contract", "ok", "carol"),
        ("cancel", "ok", "carol"),
    ]


async def test_unknown_engagement(console_stack):
    result = await q2c(console_stack, "cancel", "006000000000000AAA", "--reason", "x")
    assert result.exit_code == 1 and "no engagement" in result.output
