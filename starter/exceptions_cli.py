"""`q2c exceptions ...`: the time-entry exception queue, read from the ledger.

    q2c exceptions list [--opportunity 006...] [--status open|resolved|all] [--json]

Reads the ledger named by `Q2C_LEDGER_DB_URL` (default `<state_dir>/ledger.db`, see
`ledger.config.ledger_url`); needs no Temporal. `replay` is added by the main CLI, which
mounts `exceptions_app`. `format_exceptions(rows)` renders the table for other tools.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Optional

import typer

from ledger.config import ledger_url
from ledger.models import TimeException

exceptions_app = typer.Typer(help="Time entries that could not be posted, waiting for a steward.",
                             no_args_is_help=True, add_completion=False)

STATUSES = ("open", "resolved", "all")


@exceptions_app.callback()
def _group() -> None:
    """Time entries that could not be posted, waiting for a steward."""
MESSAGE_WIDTH = 60


def _short(text: str, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_exceptions(rows: Sequence[TimeException]) -> str:
    """A readable table: id, opportunity, entry, reason, status, attempts, last seen, message."""
    if not rows:
        return "no exceptions"
    headers = ("ID", "OPPORTUNITY", "ENTRY", "REASON", "STATUS", "ATTEMPTS", "LAST SEEN (UTC)", "MESSAGE")
    data = [(r.id, r.opportunity_id, r.psa_id, r.reason_code, r.status, str(r.attempts),
             r.last_seen.strftime("%Y-%m-%d %H:%M") if r.last_seen else "-",
             _short(r.message, MESSAGE_WIDTH) or "-") for r in rows]
    widths = [max(len(h), *(len(d[i]) for d in data)) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*line).rstrip() for line in [headers, *data])


def exception_to_json(row: TimeException) -> dict:
    return json.loads(row.model_dump_json())


def open_ledger():
    """The ledger from the environment, tables created if missing (import kept lazy)."""
    from ledger.store import Ledger

    ledger = Ledger.from_url(ledger_url())
    ledger.create_all()
    return ledger


@exceptions_app.command("list")
def list_cmd(opportunity: Optional[str] = typer.Option(None, "--opportunity", "-o",
                                                       help="only this opportunity's exceptions"),
             status: str = typer.Option("open", "--status", help="open, resolved or all"),
             as_json: bool = typer.Option(False, "--json", help="print JSON rows")) -> None:
    """List time-entry exceptions (open ones by default), oldest first."""
    status = status.strip().lower()
    if status not in STATUSES:
        typer.echo(f"error: --status must be one of {', '.join(STATUSES)}", err=True)
        raise typer.Exit(2)
    ledger = open_ledger()
    try:
        rows = ledger.list_exceptions(opportunity.strip() if opportunity else None, status=status)
    finally:
        ledger.dispose()
    if as_json:
        typer.echo(json.dumps([exception_to_json(r) for r in rows], indent=2))
    else:
        typer.echo(format_exceptions(rows))


# --- replay (needs the workflow: runs through the engagement's `replay_exceptions` update) ----

async def replay(client, opportunity_id: str, psa_ids: list[str], *, requested_by: str = "cli"):
    """Ask the engagement to post parked entries again; returns its PostingResult.

    The workflow's validator rejects ids that are not open exceptions (so a second replay of the
    same entries posts nothing), and every posting is keyed by the PSA entry id in the ERP."""
    from starter.start import workflow_id_for
    from workflows.models import PostingResult, ReplayExceptionsInput

    handle = client.get_workflow_handle(workflow_id_for(opportunity_id))
    return await handle.execute_update("replay_exceptions",
                                       ReplayExceptionsInput(psa_ids=psa_ids, requested_by=requested_by),
                                       result_type=PostingResult)


def format_replay(opportunity_id: str, result) -> str:
    lines = [f"{opportunity_id}: examined {result.examined}, posted {result.posted} "
             f"({result.posted_minutes / 60:.2f} h), still parked {len(result.exceptions)}"]
    lines += [f"  {x.psa_id}: {x.reason_code}: {x.message}" for x in result.exceptions]
    return "\n".join(lines)


@exceptions_app.command("replay")
def replay_cmd(exception_ids: list[str] = typer.Argument(None, help="exception ids (exc-<entry>) to replay"),
               all_open: bool = typer.Option(False, "--all", help="every open exception of --opportunity"),
               opportunity: Optional[str] = typer.Option(None, "--opportunity", "-o"),
               requested_by: str = typer.Option("cli", "--by", help="who asks (kept in the history)")) -> None:
    """Post parked time entries once their cause is fixed (period reopened, task mapped, rate added)."""
    from temporalio.client import WorkflowUpdateFailedError

    from starter.cli import _run

    ledger = open_ledger()
    try:
        if all_open:
            if not opportunity:
                typer.echo("error: --all needs --opportunity", err=True)
                raise typer.Exit(2)
            batches = {opportunity.strip(): []}
        else:
            if not exception_ids:
                typer.echo("error: name exception ids, or use --all --opportunity ID", err=True)
                raise typer.Exit(2)
            batches: dict[str, list[str]] = {}
            for exc_id in exception_ids:
                row = ledger.get_exception(exc_id)
                if row is None:
                    typer.echo(f"error: no exception {exc_id}", err=True)
                    raise typer.Exit(1)
                batches.setdefault(row.opportunity_id, []).append(row.psa_id)
    finally:
        ledger.dispose()

    async def run_all(client, _settings):
        out = []
        for opp, ids in batches.items():
            try:
                out.append(format_replay(opp, await replay(client, opp, ids, requested_by=requested_by)))
            except WorkflowUpdateFailedError as err:
                out.append(f"{opp}: replay rejected: {err.cause}")
        return out

    for line in _run(run_all):
        typer.echo(line)
