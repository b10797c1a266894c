"""`q2c reconcile ...`: the nightly reconciliation, by hand.

    q2c reconcile run [--wait]        # trigger the schedule now (also while paused); --wait prints the report
    q2c reconcile pause [--note N]    # no nightly runs until resumed (a trigger still runs one)
    q2c reconcile resume [--note N]
    q2c reconcile status              # paused or not, the next runs, the recent ones
    q2c reconcile report [--run ID]   # the latest run's table (or that run's), with every difference

The async API (tests and tools call it with their own client):

    await run_now(client, settings, wait=True) -> ReconcileReport | str (the run's workflow ID)
    report_text(store, run_id=None) -> str
"""

from __future__ import annotations

from typing import Optional

import typer
from temporalio.client import Client

from q2c.settings import Settings

reconcile_app = typer.Typer(
    help="Nightly reconciliation: run, pause, resume, report.", no_args_is_help=True, add_completion=False
)


@reconcile_app.callback()
def _group() -> None:
    """Nightly reconciliation: run, pause, resume, report."""


async def run_now(client: Client, settings: Settings, *, wait: bool = True):
    from q2c.engagement.client import delivery_config
    from q2c.reconciliation.api import ReconcileReport, ensure_schedule, trigger

    await ensure_schedule(client, settings, delivery_config(settings))
    # waiting for the report anyway, so give a loaded server a minute to start the run
    run_id = await trigger(client, settings, within=60.0 if wait else 10.0)
    if not wait or run_id is None:
        return run_id
    return await client.get_workflow_handle(run_id, result_type=ReconcileReport).result()


def _store(settings: Settings):
    from q2c.ledger.config import ledger_url
    from q2c.ledger.reconciliation import ReconStore
    from q2c.ledger.store import Ledger

    store = ReconStore(Ledger.from_url(ledger_url(settings)).engine)
    store.create_all()
    return store


def report_text(store, run_id: str | None = None) -> str:
    """The run's report as a table: counts, differences by kind and outcome, then each one."""
    run = store.get_run(run_id) if run_id else store.latest_run()
    if run is None:
        return f"no reconciliation run {run_id}" if run_id else "no reconciliation run yet"
    duration = f"{run.duration_seconds:.1f}s" if run.duration_seconds is not None else "still running"
    per = f"{run.vendor_calls / run.engagements_checked:.1f}" if run.engagements_checked else "-"
    lines = [
        f"Reconciliation run {run.run_id} ({run.trigger}, {run.status}), started {run.started_at:%Y-%m-%d %H:%M:%S} "
        f"UTC, {duration}",
        f"Closed Won deals seen      {run.deals_seen:>6}",
        f"Engagements started        {run.deals_started:>6}  {' '.join(run.started)}".rstrip(),
        f"Engagements checked        {run.engagements_checked:>6}",
        f"Differences                {run.differences:>6}",
        f"  explained                {run.explained:>6}",
        f"  repaired                 {run.repaired:>6}",
        f"  raised to stewards       {run.raised:>6}",
        f"  unexplained              {run.unexplained:>6}",
        f"Vendor calls               {run.vendor_calls:>6}  ({per} per engagement checked)",
        "",
    ]
    kinds = store.kind_counts(run.run_id)
    if kinds:
        lines.append(f"{'KIND':<30} {'EXPLAINED':>9} {'REPAIRED':>9} {'RAISED':>7} {'OPEN':>5}")
        for kind, counts in sorted(kinds.items()):
            lines.append(
                f"{kind:<30} {counts.get('explained', 0):>9} {counts.get('repaired', 0):>9} "
                f"{counts.get('raised', 0):>7} {counts.get('unexplained', 0):>5}"
            )
        lines.append("")
        lines.append(f"{'OPPORTUNITY':<20} {'OUTCOME':<10} {'KIND':<28} RECORD / EXPECTED -> FOUND / WHY")
        for d in store.differences(run.run_id):
            lines.append(
                f"{d.opportunity_id or '-':<20} {d.outcome:<10} {d.kind:<28} {d.record}: "
                f"{d.expected or '-'} -> {d.actual or '-'}"
            )
            if d.explanation:
                lines.append(f"{'':<60} {d.explanation}")
    else:
        lines.append("No differences: CRM, PSA, ERP and the ledger agree.")
    tasks = store.tasks("open")
    lines.append("")
    lines.append(f"Open steward tasks: {len(tasks)}")
    for t in tasks:
        lines.append(f"  {t.key}  {t.opportunity_id or '-'}  {t.message}")
    return "\n".join(lines)


@reconcile_app.command("run")
def run_cmd(wait: bool = typer.Option(False, "--wait", help="wait for the run and print its report")) -> None:
    """Run the reconciliation now (the schedule's trigger)."""
    from q2c.cli.common import _run

    async def go(client, settings):
        result = await run_now(client, settings, wait=wait)
        if result is None:
            typer.echo(
                "error: the schedule did not start a run within the wait (is the Temporal server overloaded?); "
                "`q2c reconcile status` shows whether it started since",
                err=True,
            )
            raise typer.Exit(1)
        if isinstance(result, str):
            typer.echo(f"started reconciliation run {result}")
        else:
            typer.echo(report_text(_store(settings), result.run_id))

    _run(go)


@reconcile_app.command("pause")
def pause_cmd(note: str = typer.Option("paused from the CLI", "--note")) -> None:
    """Pause the nightly runs (an operator's pause survives worker restarts)."""
    from q2c.cli.common import _run
    from q2c.reconciliation.api import pause, schedule_id

    async def go(client, settings):
        await pause(client, settings, note)
        typer.echo(f"paused {schedule_id(settings)}: {note}")

    _run(go)


@reconcile_app.command("resume")
def resume_cmd(note: str = typer.Option("resumed from the CLI", "--note")) -> None:
    """Resume the nightly runs."""
    from q2c.cli.common import _run
    from q2c.reconciliation.api import resume, schedule_id

    async def go(client, settings):
        await resume(client, settings, note)
        typer.echo(f"resumed {schedule_id(settings)}: {note}")

    _run(go)


@reconcile_app.command("status")
def status_cmd() -> None:
    """The schedule: paused or not, its next runs, its recent runs."""
    from q2c.cli.common import _run
    from q2c.reconciliation.api import schedule_state

    async def go(client, settings):
        s = await schedule_state(client, settings)
        typer.echo(f"{s['id']}: {'PAUSED' if s['paused'] else 'active'} {s['note']}")
        typer.echo(f"next:   {', '.join(s['next']) or '-'}")
        typer.echo(f"recent: {', '.join(s['recent']) or '-'}")

    _run(go)


@reconcile_app.command("report")
def report_cmd(run: Optional[str] = typer.Option(None, "--run", help="a run's workflow ID (default: the latest)")):
    """Print a run's report (the latest by default)."""
    from q2c.settings import load_settings

    typer.echo(report_text(_store(load_settings()), run))


def mount(app: typer.Typer) -> None:
    app.add_typer(reconcile_app, name="reconcile")
