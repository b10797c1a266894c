"""`q2c exceptions ...`: the time-entry exception queue, read from the ledger.

    q2c exceptions list [--opportunity 006...] [--status open|resolved|all] [--json]
    q2c exceptions replay <exc-id>... | --all -o <opp>                  # post them once fixed
    q2c exceptions write-off <exc-id>... | --all -o <opp> --reason R    # never to be billed

`list` reads the ledger named by `Q2C_LEDGER_DB_URL` (default `<state_dir>/ledger.db`, see
`q2c.ledger.config.ledger_url`) and needs no Temporal. `replay` and `write-off` run through the
engagement's Updates (`replay_exceptions`, `write_off_exceptions`), are audited in the ledger
with the acting user (`--by`, default the OS user), and are sent with an Update ID derived
from the arguments and the targeted entries' attempts (`--request-id` to name it yourself), so
running the command again after a lost answer applies it once. `format_exceptions(rows)`
renders the table for other tools.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Optional

import typer

from q2c.ledger.config import ledger_url
from q2c.ledger.models import TimeException

exceptions_app = typer.Typer(
    help="Time entries that could not be posted, waiting for a steward.", no_args_is_help=True, add_completion=False
)

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
    data = [
        (
            r.id,
            r.opportunity_id,
            r.psa_id,
            r.reason_code,
            r.status,
            str(r.attempts),
            r.last_seen.strftime("%Y-%m-%d %H:%M") if r.last_seen else "-",
            _short(r.message, MESSAGE_WIDTH) or "-",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(d[i]) for d in data)) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*line).rstrip() for line in [headers, *data])


def exception_to_json(row: TimeException) -> dict:
    return json.loads(row.model_dump_json())


def open_ledger():
    """The ledger from the environment, tables created if missing (import kept lazy)."""
    from q2c.ledger.store import Ledger

    ledger = Ledger.from_url(ledger_url())
    ledger.create_all()
    return ledger


@exceptions_app.command("list")
def list_cmd(
    opportunity: Optional[str] = typer.Option(None, "--opportunity", "-o", help="only this opportunity's exceptions"),
    status: str = typer.Option("open", "--status", help="open, resolved or all"),
    as_json: bool = typer.Option(False, "--json", help="print JSON rows"),
) -> None:
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
    from q2c.engagement.client import workflow_id_for
    from q2c.engagement.messages import PostingResult, ReplayExceptionsInput

    handle = client.get_workflow_handle(workflow_id_for(opportunity_id))
    return await handle.execute_update(
        "replay_exceptions",
        ReplayExceptionsInput(psa_ids=psa_ids, requested_by=requested_by),
        result_type=PostingResult,
    )


def format_replay(opportunity_id: str, result) -> str:
    from q2c.engagement.updates import counted

    parked = counted(result, "exceptions_count", "exceptions")
    lines = [
        f"{opportunity_id}: examined {result.examined}, posted {result.posted} "
        f"({result.posted_minutes / 60:.2f} h), still parked {parked}"
    ]
    lines += [f"  {x.psa_id}: {x.reason_code}: {x.message}" for x in result.exceptions]
    if parked > len(result.exceptions):
        lines.append(f"  … and {parked - len(result.exceptions)} more (q2c exceptions list -o {opportunity_id})")
    return "\n".join(lines)


def _targets(exception_ids: list[str] | None, all_open: bool, opportunity: str | None) -> dict[str, list[str]]:
    """{opportunity: [psa ids]} from exception ids (looked up in the ledger) or `--all -o OPP`
    (an empty list: every open one). Exits 2 on bad usage, 1 on an unknown exception id."""
    if all_open:
        if not opportunity:
            typer.echo("error: --all needs --opportunity", err=True)
            raise typer.Exit(2)
        if exception_ids:
            typer.echo("error: name exception ids or use --all, not both", err=True)
            raise typer.Exit(2)
        return {opportunity.strip(): []}
    if not exception_ids:
        typer.echo("error: name exception ids, or use --all --opportunity ID", err=True)
        raise typer.Exit(2)
    ledger = open_ledger()
    try:
        batches: dict[str, list[str]] = {}
        for exc_id in exception_ids:
            row = ledger.get_exception(exc_id.strip())
            if row is None:
                typer.echo(f"error: no exception {exc_id}", err=True)
                raise typer.Exit(1)
            if opportunity and row.opportunity_id != opportunity.strip():
                typer.echo(f"error: {exc_id} belongs to {row.opportunity_id}, not {opportunity.strip()}", err=True)
                raise typer.Exit(1)
            batches.setdefault(row.opportunity_id, []).append(row.psa_id)
    finally:
        ledger.dispose()
    return batches


def _default_user() -> str:
    from q2c.cli.steward import _default_user as user

    return user()


REQUEST_ID_HELP = (
    "names this request: the same id again applies once (default: derived from the arguments and the entries' attempts)"
)


def _run_batches(batches: dict[str, list[str]], action, render) -> list[str]:
    """Run `action(service, opp, psa_ids)` per engagement; one line (or block) each; exit 1 if any was refused."""
    from q2c.cli.common import _run
    from q2c.cli.steward import _audit, _service, format_errors
    from q2c.engagement.client import EngagementNotAnswering, EngagementNotFound

    refused = False

    async def run_all(client, settings):
        nonlocal refused
        service = _service(client, _audit(settings))
        out = []
        for opp, ids in batches.items():
            try:
                outcome = await action(service, opp, ids)
            except (EngagementNotFound, EngagementNotAnswering) as err:
                refused = True
                out.append(f"{opp}: {err}")
                continue
            if outcome.ok:
                out.append(render(opp, outcome.result))
            else:
                refused = True
                out.append(f"{opp}: rejected, nothing changed:\n{format_errors(outcome.errors)}")
        return out

    lines = _run(run_all)
    for line in lines:
        typer.echo(line)
    if refused:
        raise typer.Exit(1)
    return lines


@exceptions_app.command("replay")
def replay_cmd(
    exception_ids: list[str] = typer.Argument(None, help="exception ids (exc-<entry>) to replay"),
    all_open: bool = typer.Option(False, "--all", help="every open exception of --opportunity"),
    opportunity: Optional[str] = typer.Option(None, "--opportunity", "-o"),
    requested_by: Optional[str] = typer.Option(None, "--by", help="who asks (default: OS user)"),
    request_id: Optional[str] = typer.Option(None, "--request-id", help=REQUEST_ID_HELP),
) -> None:
    """Post parked time entries once their cause is fixed (period reopened, task mapped, rate added)."""
    from q2c.cli.steward import _key

    batches = _targets(exception_ids, all_open, opportunity)
    user = requested_by or _default_user()
    _run_batches(batches, lambda service, opp, ids: service.replay(opp, ids, user, _key(request_id)), format_replay)


def format_write_off(opportunity_id: str, result) -> str:
    from q2c.engagement.updates import write_off_text

    return f"{opportunity_id}: {write_off_text(result)}"


@exceptions_app.command("write-off")
def write_off_cmd(
    exception_ids: list[str] = typer.Argument(None, help="exception ids (exc-<entry>) to write off"),
    all_open: bool = typer.Option(False, "--all", help="every open exception of --opportunity"),
    opportunity: Optional[str] = typer.Option(None, "--opportunity", "-o"),
    reason: str = typer.Option(..., "--reason", help="why this time will never be billed"),
    requested_by: Optional[str] = typer.Option(None, "--by", help="who decides (default: OS user)"),
    request_id: Optional[str] = typer.Option(None, "--request-id", help=REQUEST_ID_HELP),
) -> None:
    """Write off parked time that will never be billed (closes the exceptions, with who and why)."""
    from q2c.cli.steward import _key

    if not reason.strip():
        typer.echo("error: --reason must say why this time will never be billed", err=True)
        raise typer.Exit(2)
    batches = _targets(exception_ids, all_open, opportunity)
    user = requested_by or _default_user()
    _run_batches(
        batches, lambda service, opp, ids: service.write_off(opp, ids, reason, user, _key(request_id)), format_write_off
    )
