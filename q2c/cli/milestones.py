"""`q2c milestone ...`: fixed-fee milestones, accepted (and so invoiced) or waived by a decision.

    q2c milestone accept <opp> <key> [--on YYYY-MM-DD]     # the client accepted it: invoice it, once
    q2c milestone waive <opp> <key> --reason R             # it will not be invoiced, and why

An engagement never closes with a milestone neither invoiced nor waived: at the end date it
waits in the PMO queue for one of these. Both run through the engagement's Updates
(`accept_milestone`, `waive_milestone`), are audited in the ledger with the acting user
(`--by`, default the OS user) and are sent with an Update ID derived from the arguments
(`--request-id` to name it yourself), so running the command again after a lost answer
applies it once. A refused request prints its field errors and exits 1.

    await accept(client, opp, key, user="pmo", accepted_on=None, audit=None, request_id=None) -> UpdateOutcome
    await waive(client, opp, key, reason="...", user="pmo", audit=None, request_id=None)    -> UpdateOutcome
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import typer
from temporalio.client import Client

if TYPE_CHECKING:
    from q2c.engagement.updates import UpdateOutcome

milestone_app = typer.Typer(
    help="Fixed-fee milestones: accept (invoice) or waive.", no_args_is_help=True, add_completion=False
)

REQUEST_ID_HELP = "names this request: the same id again applies once (default: derived from the arguments)"


@milestone_app.callback()
def _group() -> None:
    """Fixed-fee milestones: accept (invoice) or waive."""


async def accept(
    client: Client,
    opportunity_id: str,
    milestone_key: str,
    *,
    user: str,
    accepted_on: str | None = None,
    audit=None,
    request_id: str | None = None,
) -> UpdateOutcome:
    from q2c.cli.steward import _key, _key_errors, _rejected, _service

    if _key_errors(request_id):
        return _rejected(_key_errors(request_id))
    return await _service(client, audit).accept_milestone(
        opportunity_id, milestone_key, user, accepted_on, key=_key(request_id)
    )


async def waive(
    client: Client,
    opportunity_id: str,
    milestone_key: str,
    *,
    reason: str,
    user: str,
    audit=None,
    request_id: str | None = None,
) -> UpdateOutcome:
    from q2c.cli.steward import _key, _key_errors, _rejected, _service

    if _key_errors(request_id):
        return _rejected(_key_errors(request_id))
    return await _service(client, audit).waive_milestone(
        opportunity_id, milestone_key, reason, user, key=_key(request_id)
    )


def format_invoice(milestone_key: str, invoice) -> str:
    if invoice is None:
        return f"accepted: milestone {milestone_key}"
    return (
        f"accepted: milestone {milestone_key}, invoice {invoice.number or invoice.external_id} "
        f"for {invoice.total} {invoice.currency} ({invoice.status.value})"
    )


@milestone_app.command("accept")
def accept_cmd(
    opportunity_id: str = typer.Argument(..., help="CRM opportunity ID (006...)"),
    milestone_key: str = typer.Argument(..., help="the milestone's key (q2c status --json)"),
    on: Optional[str] = typer.Option(None, "--on", help="accepted on YYYY-MM-DD (default: today)"),
    by: Optional[str] = typer.Option(None, "--by", help="who records it (default: OS user)"),
    request_id: Optional[str] = typer.Option(None, "--request-id", help=REQUEST_ID_HELP),
) -> None:
    """The client accepted a fixed-fee milestone: invoice it (once)."""
    from q2c.cli.steward import _audit, _default_user, _report, _run_change

    opp, key, user = opportunity_id.strip(), milestone_key.strip(), by or _default_user()
    outcome = _run_change(
        lambda client, s: accept(client, opp, key, user=user, accepted_on=on, audit=_audit(s), request_id=request_id),
        opp,
    )
    _report(outcome, opp, format_invoice(key, outcome.result) if outcome.ok else "")


@milestone_app.command("waive")
def waive_cmd(
    opportunity_id: str = typer.Argument(..., help="CRM opportunity ID (006...)"),
    milestone_key: str = typer.Argument(..., help="the milestone's key (q2c status --json)"),
    reason: str = typer.Option(..., "--reason", help="why it will not be invoiced"),
    by: Optional[str] = typer.Option(None, "--by", help="who decides (default: OS user)"),
    request_id: Optional[str] = typer.Option(None, "--request-id", help=REQUEST_ID_HELP),
) -> None:
    """Waive a milestone: it will not be invoiced (the decision is kept with who and why)."""
    from q2c.cli.steward import _audit, _default_user, _report, _run_change

    opp, key, user = opportunity_id.strip(), milestone_key.strip(), by or _default_user()
    outcome = _run_change(
        lambda client, s: waive(client, opp, key, reason=reason, user=user, audit=_audit(s), request_id=request_id), opp
    )
    _report(outcome, opp, f"accepted: {outcome.result}")
