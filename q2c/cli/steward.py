"""The stewards' commands: the queue, fixes, retries, change orders and cancellation.

    q2c steward queue [--queue master-data|finance-ops|pmo] [--older-than HOURS] [--customer TEXT] [--json]
    q2c steward fix <opp> --set tax_id=12-3456789 --set billing_city=Austin
    q2c steward retry <opp> [--note "project reopened in NetSuite"]
    q2c amend <opp> [--contract-value X] [--end-date D] [--rate "Role=rate@YYYY-MM-DD" ...]
                    [--milestone "Name=amount[@due][#replace-key]" ...] --reason R
    q2c cancel <opp> --reason R
    q2c credit <opp> <invoice external ID or number> --amount X --reason R [--rebill "Desc=qty@rate" ...]
    q2c budget release|write-off <opp> --reason R      (time held at a T&M not-to-exceed cap)

A rejected change prints one line per field error and exits 1; nothing was changed. Each
accepted (or rejected) change is recorded in the ledger's audit with the acting user (`--by`,
default the OS user). Every change is sent with an Update ID derived from the command's
arguments (see `q2c.stewardship.service`), so running the same command again after a lost answer
applies it once; `--request-id` names the request yourself (a new id applies it again).

The async functions take an injected Temporal client:

    await steward_queue(client, queue=None, older_than_hours=None, customer=None) -> list[QueueRow]
    await steward_fix(client, opp, ["tax_id=..."], user="alice", audit=None)     -> UpdateOutcome
    await steward_retry(client, opp, note="...", user="alice", audit=None)       -> UpdateOutcome
    await amend(client, opp, contract_value=..., end_date=..., rates=[...], milestones=[...],
                reason="...", user="alice", audit=None)                          -> UpdateOutcome
    await cancel(client, opp, reason="...", user="alice", audit=None)            -> UpdateOutcome
    await credit(client, opp, "inv-...", amount="250.00", reason="...", user="alice", audit=None)
                                                                                 -> UpdateOutcome
(each also takes `request_id=None`).
"""

from __future__ import annotations

import getpass
import json
from typing import TYPE_CHECKING, Optional

import typer
from temporalio.client import Client

if TYPE_CHECKING:
    from q2c.engagement.updates import UpdateOutcome

# the stewardship service is imported inside the functions: `q2c --help` stays fast


REQUEST_ID_OPTION = typer.Option(
    None,
    "--request-id",
    help="names this request: the same id again applies once (default: derived from "
    "the arguments, so a re-run after a lost answer applies once)",
)

steward_app = typer.Typer(
    help="The stewards' queue: paused engagements and their fixes.", no_args_is_help=True, add_completion=False
)


@steward_app.callback()
def _group() -> None:
    """The stewards' queue: paused engagements and their fixes."""


def _default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "cli"


def _service(client: Client, audit):
    from q2c.stewardship.service import StewardService

    async def get() -> Client:
        return client

    return StewardService(get, audit if audit is not None else _NoAudit())


def _key(request_id: str | None):
    """The command's own request id, or None: the service derives one from the arguments."""
    from q2c.stewardship.service import RequestKey

    return RequestKey(value=request_id.strip() if request_id else None, source="cli")


def _key_errors(request_id: str | None):
    from q2c.stewardship.service import key_errors

    return key_errors(request_id.strip() if request_id is not None else None, "--request-id")


class _NoAudit:
    async def arecord(self, *args, **kwargs) -> None:
        return None


# ---- async API ------------------------------------------------------------------------------


async def steward_queue(
    client: Client, *, queue: str | None = None, older_than_hours: float | None = None, customer: str | None = None
):
    from q2c.stewardship.queue import list_queue

    return await list_queue(client, queue=queue, older_than_hours=older_than_hours, customer=customer)


def _rejected(errors) -> UpdateOutcome:
    from q2c.engagement.updates import UpdateOutcome

    return UpdateOutcome(errors=errors)


async def steward_fix(
    client: Client, opportunity_id: str, assignments: list[str], *, user: str, audit=None, request_id: str | None = None
) -> UpdateOutcome:
    from q2c.stewardship.forms import parse_assignments

    values, errors = parse_assignments(assignments)
    if errors or _key_errors(request_id):
        return _rejected(errors + _key_errors(request_id))
    return await _service(client, audit).fix(opportunity_id, values, user, _key(request_id))


async def steward_retry(
    client: Client, opportunity_id: str, *, note: str = "", user: str, audit=None, request_id: str | None = None
) -> UpdateOutcome:
    if _key_errors(request_id):
        return _rejected(_key_errors(request_id))
    return await _service(client, audit).retry(opportunity_id, note or "", user, _key(request_id))


async def amend(
    client: Client,
    opportunity_id: str,
    *,
    contract_value: str | None = None,
    end_date: str | None = None,
    rates: list[str] = (),
    milestones: list[str] = (),
    reason: str = "",
    user: str,
    audit=None,
    request_id: str | None = None,
    budget_cap: str | None = None,
) -> UpdateOutcome:
    from q2c.stewardship.forms import amendment_from_specs

    amendment, errors = amendment_from_specs(
        contract_value=contract_value,
        budget_cap=budget_cap,
        end_date=end_date,
        rates=list(rates),
        milestones=list(milestones),
        reason=reason,
        requested_by=user,
    )
    if errors or _key_errors(request_id):
        return _rejected(errors + _key_errors(request_id))
    return await _service(client, audit).amend(opportunity_id, amendment, user, _key(request_id))


async def cancel(
    client: Client, opportunity_id: str, *, reason: str, user: str, audit=None, request_id: str | None = None
) -> UpdateOutcome:
    if _key_errors(request_id):
        return _rejected(_key_errors(request_id))
    return await _service(client, audit).cancel(opportunity_id, reason, user, _key(request_id))


async def credit(
    client: Client,
    opportunity_id: str,
    invoice: str,
    *,
    amount: str,
    reason: str,
    user: str,
    audit=None,
    request_id: str | None = None,
    rebill: list[str] = (),
) -> UpdateOutcome:
    """Credit all or part of an issued invoice (an ERP credit memo applied to it); `rebill`:
    corrected lines ("Description=quantity@rate") for the next invoice."""
    from q2c.stewardship.forms import parse_rebill_spec

    errors = _key_errors(request_id)
    lines = [parse_rebill_spec(spec, i, errors) for i, spec in enumerate(rebill)]
    if errors:
        return _rejected(errors)
    return await _service(client, audit).credit_invoice(
        opportunity_id, invoice, amount, reason, user, _key(request_id), [x for x in lines if x]
    )


async def decide_budget(
    client: Client, opportunity_id: str, action: str, *, reason: str, user: str, audit=None, request_id=None
) -> UpdateOutcome:
    """Release or write off the time held at a T&M engagement's not-to-exceed cap."""
    if _key_errors(request_id):
        return _rejected(_key_errors(request_id))
    return await _service(client, audit).decide_budget_hold(opportunity_id, action, reason, user, _key(request_id))


# ---- formatting (pure) ----------------------------------------------------------------------


def format_queue(rows) -> str:
    from q2c.stewardship.queue import age_text

    if not rows:
        return "no paused engagements"
    headers = ("OPPORTUNITY", "CUSTOMER", "QUEUE", "PAUSE", "NEEDS", "WHERE", "AGE", "FIELDS AT FAULT")
    data = [
        (
            r.opportunity_id,
            r.customer or "-",
            r.queue or "-",
            r.pause_kind or "-",
            r.action or "-",
            r.where or "-",
            age_text(r.age_hours()),
            ", ".join(m["field"] for m in r.missing_fields) or "-",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(d[i]) for d in data)) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*line).rstrip() for line in [headers, *data])


def format_errors(errors) -> str:
    return "\n".join(f"  {e.field}: {e.reason}" if e.field != "_" else f"  {e.reason}" for e in errors)


# ---- commands ---------------------------------------------------------------------------------


def _audit(settings):
    from q2c.stewardship.audit import StewardAudit

    return StewardAudit(settings=settings)


def _report(outcome, opportunity_id: str, accepted: str) -> None:
    if not outcome.ok:
        typer.echo(f"rejected, nothing changed for {opportunity_id}:", err=True)
        typer.echo(format_errors(outcome.errors), err=True)
        raise typer.Exit(1)
    typer.echo(accepted)


def _run_change(coro_fn, opportunity_id: str):
    from q2c.cli.common import _run
    from q2c.engagement.client import EngagementNotAnswering, EngagementNotFound

    try:
        return _run(coro_fn)
    except (EngagementNotFound, EngagementNotAnswering) as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from None


@steward_app.command("queue")
def queue_cmd(
    queue: Optional[str] = typer.Option(None, "--queue", help="master-data, finance-ops or pmo"),
    older_than: Optional[float] = typer.Option(None, "--older-than", help="paused longer than N hours"),
    customer: Optional[str] = typer.Option(None, "--customer", help="customer name contains"),
    as_json: bool = typer.Option(False, "--json", help="print JSON rows"),
) -> None:
    """List engagements waiting for a steward (stage AwaitingSteward), oldest first."""
    from q2c.cli.common import _run
    from q2c.stewardship.queue import parse_queue

    try:
        parse_queue(queue)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    rows = _run(lambda client, s: steward_queue(client, queue=queue, older_than_hours=older_than, customer=customer))
    typer.echo(json.dumps([r.as_dict() for r in rows], indent=2) if as_json else format_queue(rows))


@steward_app.command("fix")
def fix_cmd(
    opportunity_id: str = typer.Argument(..., help="CRM opportunity ID (006...)"),
    assignments: list[str] = typer.Option(..., "--set", help="field=value (CustomerPatch field), repeatable"),
    by: str = typer.Option(None, "--by", help="who supplies the data (default: OS user)"),
    request_id: Optional[str] = REQUEST_ID_OPTION,
) -> None:
    """Supply customer-master data to a paused engagement; it re-validates and resumes."""
    opp, user = opportunity_id.strip(), by or _default_user()
    outcome = _run_change(
        lambda client, s: steward_fix(client, opp, assignments, user=user, audit=_audit(s), request_id=request_id), opp
    )
    _report(outcome, opp, f"accepted: {outcome.result}")


@steward_app.command("retry")
def retry_cmd(
    opportunity_id: str = typer.Argument(..., help="CRM opportunity ID (006...)"),
    note: str = typer.Option("", "--note", help="what was fixed (kept in the history)"),
    by: str = typer.Option(None, "--by", help="who retries (default: OS user)"),
    request_id: Optional[str] = REQUEST_ID_OPTION,
) -> None:
    """Retry the step an engagement is parked on (a vendor said no), once its cause is fixed."""
    opp, user = opportunity_id.strip(), by or _default_user()
    outcome = _run_change(
        lambda client, s: steward_retry(client, opp, note=note, user=user, audit=_audit(s), request_id=request_id), opp
    )
    _report(outcome, opp, f"accepted: {outcome.result}")


def amend_cmd(
    opportunity_id: str = typer.Argument(..., help="CRM opportunity ID (006...)"),
    contract_value: Optional[str] = typer.Option(None, "--contract-value", help="new contract value"),
    budget_cap: Optional[str] = typer.Option(
        None, "--budget-cap", help="new not-to-exceed cap (T&M; default: the contract value)"
    ),
    end_date: Optional[str] = typer.Option(None, "--end-date", help="new end date YYYY-MM-DD"),
    rate: list[str] = typer.Option([], "--rate", help='"Role=rate@YYYY-MM-DD", repeatable'),
    milestone: list[str] = typer.Option(
        [], "--milestone", help='"Name=amount\\[@YYYY-MM-DD]\\[#replace-key]", repeatable'
    ),
    reason: str = typer.Option("", "--reason", help="why (change order reference)"),
    by: str = typer.Option(None, "--by", help="who asks (default: OS user)"),
    request_id: Optional[str] = REQUEST_ID_OPTION,
) -> None:
    """Amend an Active engagement's contract (a change order) through to the ERP and PSA."""
    opp, user = opportunity_id.strip(), by or _default_user()
    outcome = _run_change(
        lambda client, s: amend(
            client,
            opp,
            contract_value=contract_value,
            budget_cap=budget_cap,
            end_date=end_date,
            rates=rate,
            milestones=milestone,
            reason=reason,
            user=user,
            audit=_audit(s),
            request_id=request_id,
        ),
        opp,
    )
    v = outcome.result
    _report(
        outcome,
        opp,
        f"accepted: contract version {v.version}, value {v.contract_value}, end {v.end_date or '-'}"
        if outcome.ok and v is not None
        else "accepted",
    )


def cancel_cmd(
    opportunity_id: str = typer.Argument(..., help="CRM opportunity ID (006...)"),
    reason: str = typer.Option(..., "--reason", help="why the engagement ends"),
    by: str = typer.Option(None, "--by", help="who asks (default: OS user)"),
    request_id: Optional[str] = REQUEST_ID_OPTION,
) -> None:
    """Cancel an engagement: stop billing, invoice the work done, close."""
    opp, user = opportunity_id.strip(), by or _default_user()
    outcome = _run_change(
        lambda client, s: cancel(client, opp, reason=reason, user=user, audit=_audit(s), request_id=request_id), opp
    )
    _report(outcome, opp, f"accepted: {outcome.result}")


def credit_cmd(
    opportunity_id: str = typer.Argument(..., help="CRM opportunity ID (006...)"),
    invoice: str = typer.Argument(..., help="the invoice's external ID (inv-...) or ERP number (INV10001)"),
    amount: str = typer.Option(..., "--amount", help="how much to credit, e.g. 250.00 (at most what it still owes)"),
    reason: str = typer.Option(..., "--reason", help="why the invoice is credited"),
    rebill: list[str] = typer.Option(
        [], "--rebill", help='a corrected line for the next invoice, "Description=quantity@rate", repeatable'
    ),
    by: str = typer.Option(None, "--by", help="who credits (default: OS user)"),
    request_id: Optional[str] = REQUEST_ID_OPTION,
) -> None:
    """Credit all or part of an issued invoice: an ERP credit memo applied to it, once."""
    opp, user = opportunity_id.strip(), by or _default_user()
    outcome = _run_change(
        lambda client, s: credit(
            client,
            opp,
            invoice,
            amount=amount,
            reason=reason,
            user=user,
            audit=_audit(s),
            request_id=request_id,
            rebill=rebill,
        ),
        opp,
    )
    n = outcome.result
    _report(
        outcome,
        opp,
        f"accepted: credit memo {n.number or n.external_id} ({n.external_id}), {n.amount} {n.currency} on invoice "
        f"{n.invoice_number or n.invoice_external_id}; it still owes {n.invoice_open_balance}"
        if outcome.ok and n is not None
        else "accepted",
    )


budget_app = typer.Typer(
    help="Time held at a T&M not-to-exceed cap: release it or write it off (raise the cap with `q2c amend "
    "--budget-cap`).",
    no_args_is_help=True,
    add_completion=False,
)


def _budget_decision(action: str, opportunity_id: str, reason: str, by: str | None, request_id: str | None) -> None:
    opp, user = opportunity_id.strip(), by or _default_user()
    outcome = _run_change(
        lambda client, s: decide_budget(
            client, opp, action, reason=reason, user=user, audit=_audit(s), request_id=request_id
        ),
        opp,
    )
    d = outcome.result
    _report(
        outcome,
        opp,
        f"accepted: {d.action} of {d.amount} {d.budget.currency if d.budget else ''} ({d.items} entries)"
        + (f"; invoice {d.invoice.number or d.invoice.external_id} {d.invoice.total}" if d.invoice else "")
        + (f"; budget {d.budget.status_text()}" if d.budget else "")
        if outcome.ok and d is not None
        else "accepted",
    )


@budget_app.command("release")
def budget_release_cmd(
    opportunity_id: str = typer.Argument(..., help="CRM opportunity ID (006...)"),
    reason: str = typer.Option(..., "--reason", help="why it is billed beyond the cap (kept with the engagement)"),
    by: str = typer.Option(None, "--by", help="who decides (default: OS user)"),
    request_id: Optional[str] = REQUEST_ID_OPTION,
) -> None:
    """Bill the held time now, beyond the cap (the decision is recorded)."""
    _budget_decision("release", opportunity_id, reason, by, request_id)


@budget_app.command("write-off")
def budget_write_off_cmd(
    opportunity_id: str = typer.Argument(..., help="CRM opportunity ID (006...)"),
    reason: str = typer.Option(..., "--reason", help="why it will never be billed (kept with the engagement)"),
    by: str = typer.Option(None, "--by", help="who decides (default: OS user)"),
    request_id: Optional[str] = REQUEST_ID_OPTION,
) -> None:
    """Never bill the held time (it stays posted in the ERP for cost and utilisation)."""
    _budget_decision("write_off", opportunity_id, reason, by, request_id)


def mount(app: typer.Typer) -> None:
    """Add `steward`, `amend`, `cancel`, `credit` and `budget` to the main `q2c` app."""
    app.add_typer(steward_app, name="steward")
    app.add_typer(budget_app, name="budget")
    app.command("amend")(amend_cmd)
    app.command("cancel")(cancel_cmd)
    app.command("credit")(credit_cmd)
