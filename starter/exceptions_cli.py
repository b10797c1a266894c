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
