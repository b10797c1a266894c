"""The `q2c` command line: start, inspect, list and re-check engagements.

Each command is a thin wrapper over an async function that takes a Temporal `Client`, so
tests (and other tools) call those directly with their own client:

    await start(client, opp, task_queue=...)           -> StartResult
    await get_status(client, opp, timeout=...)         -> EngagementStatus
    await list_engagements(client, stage=None)         -> list[EngagementRow]
    await recheck(client, opp, requested_by=..., note=...) -> str (workflow id)

`get_status` and `recheck` raise EngagementNotFound / EngagementNotAnswering.
The commands connect with `settings.load_settings()` (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_TASK_QUEUE).
"""

from __future__ import annotations

from typing import Optional

import typer
from temporalio.client import Client

from q2c.cli.common import _run, connect  # noqa: F401 (connect: re-exported for tools)
from q2c.engagement.client import (  # noqa: F401 (re-exported: the CLI's async API)
    DEFAULT_QUERY_TIMEOUT,
    EngagementNotAnswering,
    EngagementNotFound,
    EngagementRow,
    StartResult,
    delivery_config,
    get_status,
    list_engagements,
    parse_stage,
    recheck,
    stage_query,
    start_engagement,
    workflow_id_for,
)
from q2c.engagement.messages import DeliveryConfig, EngagementStatus

app = typer.Typer(help="q2c: quote-to-cash engagements on Temporal.", no_args_is_help=True, add_completion=False)


# ---- async API (takes an injected client) ----------------------------------------------


async def start(
    client: Client, opportunity_id: str, *, task_queue: str, delivery: DeliveryConfig | None = None
) -> StartResult:
    return await start_engagement(client, opportunity_id, task_queue=task_queue, source="cli", delivery=delivery)


# ---- formatting (pure) -------------------------------------------------------------------


def format_status(status: EngagementStatus) -> str:
    lines = [
        f"Opportunity:  {status.opportunity_id}",
        f"Stage:        {status.stage.value}",
        f"Details:      {status.details or '-'}",
    ]
    e = status.engagement
    if e is not None:
        lines.append(f"Customer:     {e.customer.legal_name or e.customer.name}")
        lines.append(f"Billing:      {e.billing_model.value}, {e.contract_value.amount} {e.contract_value.currency}")
        if e.region:
            lines.append(f"Region:       {e.region}")
    pause = status.pause
    if pause is not None:
        lines.append(f"Paused:       {pause.kind.value} (queue {pause.queue.value}), needs {pause.action.value}")
        where = " ".join(x for x in ((pause.system or "").upper(), pause.operation or "") if x)
        if where or pause.vendor_code:
            lines.append(
                f"Where:        {where or '-'}"
                + (f" ({pause.vendor_code})" if pause.vendor_code else "")
                + (f": {pause.vendor_message}" if pause.vendor_message else "")
            )
    if status.missing_fields:
        lines.append("Missing:")
        lines.extend(f"  - {issue.field}: {issue.reason}" for issue in status.missing_fields)
    ids = [
        ("ERP customer", status.erp_customer_id),
        ("ERP project", status.erp_project_id),
        ("ERP billing schedule", status.erp_billing_schedule_id),
        ("PSA workspace", status.psa_workspace.workspace_id if status.psa_workspace else None),
    ]
    for label, value in ids:
        if value:
            lines.append(f"{label + ':':<22}{value}")
    if status.rechecks:
        lines.append(f"Rechecks:     {status.rechecks}")
    if status.active_since:
        lines.append(f"Active since: {status.active_since.isoformat()}")
    t = status.totals
    if t.posted_entries or status.invoices:
        lines.append(
            f"Time posted:  {t.posted_entries} entries, {t.posted_minutes / 60:.2f} h "
            f"(next billing period #{status.next_period_index})"
        )
        lines.append(f"Billed:       {t.billed} {t.currency or ''}   collected: {t.collected} {t.currency or ''}")
        if t.credited:
            cur = t.currency or ""
            lines.append(f"Credited:     {t.credited} {cur}   net billed: {t.net_billed} {cur}")
    if status.budget is not None:
        lines.append(f"Budget:       {status.budget.status_text()}")
    if status.totals.posted_expenses:
        lines.append(f"Expenses:     {status.totals.posted_expenses} posted to the ERP")
    if status.invoices:
        lines.append("Invoices:")
        lines.extend(
            f"  {i.number or '-':<10} {i.period_start} to {i.period_end}  {i.total} {i.currency}  "
            f"{i.status.value}  open {i.open_balance}" + (f"  {i.days_overdue} days overdue" if i.days_overdue else "")
            for i in status.invoices
        )
    if status.open_exception_count or status.open_exceptions:
        count = max(status.open_exception_count, len(status.open_exceptions))  # the sample is at most 20
        by_reason = ", ".join(f"{k} {v}" for k, v in sorted(status.open_exceptions_by_reason.items()))
        lines.append(
            f"Time exceptions ({count} open{': ' + by_reason if by_reason else ''}; "
            f"q2c exceptions list -o {status.opportunity_id}):"
        )
        lines.extend(f"  {x.psa_id}: {x.reason_code}: {x.message}" for x in status.open_exceptions[:10])
    if status.written_off_entries:
        minutes = getattr(status, "written_off_minutes", None)
        lines.append(
            f"Written off:  {status.written_off_entries} entries"
            + (f", {minutes / 60:.2f} h" if minutes else "")
            + " (never billed)"
        )
    return "\n".join(lines)


def format_table(rows: list[EngagementRow]) -> str:
    headers = ("OPPORTUNITY", "STAGE", "CUSTOMER", "BILLING MODEL", "REGION", "STATUS")
    data = [
        (r.opportunity_id, r.stage or "-", r.customer or "-", r.billing_model or "-", r.region or "-", r.status)
        for r in rows
    ]
    widths = [max(len(h), *(len(d[i]) for d in data)) if data else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*headers)] + [fmt.format(*d) for d in data]).rstrip()


# ---- commands ----------------------------------------------------------------------------


@app.command("start")
def start_cmd(opportunity_id: str = typer.Argument(..., help="CRM opportunity ID (006...)")) -> None:
    """Start the engagement for a closed-won opportunity (a no-op if it runs or has completed;
    started again if its last run failed or was terminated)."""
    result = _run(
        lambda client, s: start(client, opportunity_id.strip(), task_queue=s.task_queue, delivery=delivery_config(s))
    )
    typer.echo(f"workflow id: {result.workflow_id}")
    if result.restarted:
        typer.echo(f"already existed: no, restarted (previous run {result.previous_status})")
    elif result.finished:
        typer.echo("already existed: yes, completed (Closed or Cancelled): not started again")
    else:
        typer.echo(
            "already existed: yes (nothing new started)" if result.already_existed else "already existed: no (started)"
        )


@app.command("status")
def status_cmd(
    opportunity_id: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json", help="print the raw status model"),
    timeout: float = typer.Option(DEFAULT_QUERY_TIMEOUT, help="seconds to wait for an answer"),
) -> None:
    """Show where an engagement is: stage, details, missing fields, ERP/PSA ids."""
    try:
        status = _run(lambda client, s: get_status(client, opportunity_id.strip(), timeout=timeout))
    except (EngagementNotFound, EngagementNotAnswering) as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from None
    typer.echo(status.model_dump_json(indent=2) if as_json else format_status(status))


@app.command("list")
def list_cmd(
    stage: Optional[str] = typer.Option(None, "--stage", help="only engagements in this stage"),
    limit: Optional[int] = typer.Option(None, help="at most this many rows"),
) -> None:
    """List engagements from Temporal visibility (search attributes)."""
    if stage:
        try:
            parse_stage(stage)
        except ValueError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None
    rows = _run(lambda client, s: list_engagements(client, stage, limit=limit))
    if not rows:
        typer.echo("no engagements" + (f" in stage {parse_stage(stage).value}" if stage else ""))
        return
    typer.echo(format_table(rows))


@app.command("recheck")
def recheck_cmd(
    opportunity_id: str = typer.Argument(...),
    note: Optional[str] = typer.Option(None, help="why (shown in the workflow history)"),
    requested_by: str = typer.Option("cli", "--by", help="who asks"),
) -> None:
    """Ask a waiting engagement to read the CRM again and re-validate."""
    try:
        wf_id = _run(lambda client, s: recheck(client, opportunity_id.strip(), requested_by=requested_by, note=note))
    except EngagementNotFound as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"recheck sent to {wf_id}")


def _mount_subcommands() -> None:
    from q2c.cli.exceptions import exceptions_app

    app.add_typer(exceptions_app, name="exceptions")
    from q2c.cli.steward import mount as mount_steward

    mount_steward(app)  # q2c steward queue|fix|retry, q2c amend, q2c cancel
    from q2c.cli.milestones import milestone_app

    app.add_typer(milestone_app, name="milestone")  # q2c milestone accept|waive
    from q2c.cli.doctor import mount as mount_doctor

    mount_doctor(app)  # q2c doctor
    from q2c.cli.replay_check import mount as mount_replay_check

    mount_replay_check(app)  # q2c replay-check
    from q2c.cli.kpis import mount as mount_kpis

    mount_kpis(app)  # q2c kpis
    from q2c.cli.reconcile import mount as mount_reconcile

    mount_reconcile(app)  # q2c reconcile run|pause|resume|status|report


_mount_subcommands()


def main() -> None:
    """The `q2c` entry point: run the command, then exit without racing the SDK's threads."""
    from q2c.temporal import exit_process

    try:
        app(standalone_mode=True)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        exit_process(code)
    exit_process(0)


if __name__ == "__main__":
    main()
