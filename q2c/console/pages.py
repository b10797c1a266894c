"""The console's pages, rendered from the queue rows and the engagement's `status` query.

The steward's forms on an engagement page follow what ends its pause (`pause.action`): a
re-check or customer data (`recheck`), a retry of the parked step (`retry`), replaying or
writing off time exceptions (`replay_or_write_off`), accepting or waiving milestones
(`accept_or_waive`). An engagement that delivers without a pause offers replay/write-off and
milestone acceptance/waiver too; one parked on something else offers only the answer to that.

Every form carries a request id minted when the page is rendered (`request_id`): a retried
POST of the same form is sent with the same Update ID and applies once (see `q2c.stewardship.service`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from q2c.console.html import badge, error_text, esc, flash, hidden, page, table, text_input, url
from q2c.domain.engagement import BillingModel
from q2c.domain.stage import EngagementStage
from q2c.engagement.messages import EngagementStatus, StewardAction
from q2c.stewardship.forms import FORM_MILESTONE_ROWS, FORM_RATE_ROWS, PATCH_FIELDS, PATCH_LABELS, field_key
from q2c.stewardship.queue import QUEUES, QueueRow, age_text

TERMINAL = (EngagementStage.CLOSED, EngagementStage.CANCELLED)
REQUEST_ID_FIELD = "request_id"
ACTION_LABELS = {
    StewardAction.RECHECK: "fix the data (here or in the CRM), then re-check",
    StewardAction.RETRY: "fix the cause in the named system, then retry the step",
    StewardAction.REPLAY_OR_WRITE_OFF: "replay the parked time once fixed, or write it off with a reason",
    StewardAction.ACCEPT_OR_WAIVE: "accept each open milestone (it is invoiced) or waive it with a reason",
}


def new_request_id() -> str:
    """A fresh id for one rendered form (unguessable, so no two renders share an Update ID)."""
    return secrets.token_urlsafe(18)


def offered_actions(status: EngagementStatus) -> set[StewardAction]:
    """The steward actions the engagement takes now: the pause's own answer while it is parked;
    replay/write-off and accept/waive while it delivers; nothing before activation or at the end."""
    if status.stage in TERMINAL:
        return set()
    if status.pause is not None:
        return {status.pause.action}
    if status.stage is EngagementStage.AWAITING_STEWARD:
        return {StewardAction.RECHECK}
    if status.active_since is not None and status.engagement is not None:
        return {StewardAction.REPLAY_OR_WRITE_OFF, StewardAction.ACCEPT_OR_WAIVE}
    return set()


@dataclass
class Viewer:
    """Who looks at the page: name, role, whether they may change things, their CSRF token."""

    user: str
    role: str
    can_change: bool
    csrf: str


@dataclass
class FormState:
    """What to show again in a form after a rejection: the values typed and the errors."""

    name: str = ""  # which form: customer-data | amendment | cancel | retry | write-off | waive:<key> ...
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)

    def for_(self, form: str) -> FormState:
        return self if self.name == form else FormState(name=form)


def _shell(title: str, body: str, viewer: Viewer | None) -> str:
    if viewer is None:
        return page(title, body)
    return page(title, body, user=viewer.user, role=viewer.role, csrf=viewer.csrf)


# ---- login / errors --------------------------------------------------------------------------


def login_page(next_url: str = "/console", error: str | None = None) -> str:
    body = (
        f'<section class="card" style="max-width:460px;margin:40px auto">'
        f'<h1>Sign in</h1><p class="muted">Paste your q2c access token (steward or viewer).</p>'
        f"{flash(error, ok=False)}"
        f'<form method="post" action="/console/login">{hidden("next", next_url)}'
        f'<div class="field" style="grid-template-columns:80px 1fr"><label for="f-token">Token</label>'
        f'<input type="password" id="f-token" name="token" autocomplete="current-password" autofocus></div>'
        f'<button class="primary" type="submit" id="login">Sign in</button></form></section>'
    )
    return page("Sign in", body)


def message_page(title: str, message: str, viewer: Viewer | None = None) -> str:
    body = f'<h1>{esc(title)}</h1>{flash(message, ok=False)}<p><a href="/console">Back to the queue</a></p>'
    return _shell(title, body, viewer)


# ---- the queue -----------------------------------------------------------------------------------


def queue_page(
    rows: list[QueueRow],
    viewer: Viewer,
    *,
    queue: str | None,
    older_than_hours: str | None,
    customer: str | None,
    error: str | None = None,
) -> str:
    options = '<option value="">all queues</option>' + "".join(
        f'<option value="{esc(q)}"{" selected" if q == queue else ""}>{esc(q)}</option>' for q in QUEUES
    )
    filters = (
        f'<form method="get" action="/console" class="row filters" id="filters">'
        f'<div><label for="q-queue">Queue</label><select id="q-queue" name="queue">{options}</select></div>'
        f'<div><label for="q-age">Paused longer than (hours)</label>'
        f'<input type="text" id="q-age" name="older_than_hours" size="6" value="{esc(older_than_hours)}"></div>'
        f'<div><label for="q-customer">Customer contains</label>'
        f'<input type="text" id="q-customer" name="customer" value="{esc(customer)}"></div>'
        f'<div><button class="secondary" type="submit">Filter</button> '
        f'<a href="/console" class="muted">clear</a></div></form>'
    )
    data = []
    for r in rows:
        missing = (
            "<br>".join(
                f"<code>{esc(m['field'])}</code> <span class='muted'>{esc(m['reason'])}</span>"
                for m in r.missing_fields
            )
            or '<span class="muted">-</span>'
        )
        if r.vendor_message:
            missing += f'<br><span class="muted vendor-message">{esc(r.vendor_message[:300])}</span>'
        link = f"/console/engagements/{esc(r.opportunity_id)}"
        pause = esc(r.pause_kind.replace("_", " ") if r.pause_kind else "-")
        if r.where:
            pause += f'<br><span class="muted pause-where">{esc(r.where)}</span>'
        if r.action:
            pause += f'<br><span class="badge pause-action" data-action="{esc(r.action)}">{esc(r.action.replace("_", " "))}</span>'  # noqa: E501
        if r.open_exceptions:
            pause += f'<br><span class="muted">{r.open_exceptions} open time exception(s)</span>'
        data.append(
            [
                f'<a href="{link}" class="opp-link">{esc(r.opportunity_id)}</a>',
                esc(r.customer or "-"),
                f'<span style="white-space:nowrap">{esc(r.queue or "-")}</span>',
                pause,
                missing,
                esc(r.since.strftime("%Y-%m-%d %H:%M UTC") if r.since else "-")
                + f'<br><span class="muted">{esc(age_text(r.age_hours()))}</span>',
                f'<a href="{link}">open</a>',
            ]
        )
    body = (
        f'<h1>Paused engagements</h1><p class="muted">Engagements waiting for a steward '
        f"(stage AwaitingSteward), oldest first.</p>{flash(error, ok=False)}"
        f'<section class="card">{filters}</section><section class="card">'
        + table(
            ["Opportunity", "Customer", "Queue", "Pause, needs", "Fields at fault", "Since", ""],
            data,
            empty="No paused engagements match.",
            attrs='id="queue"',
        )
        + f'<p class="muted">{len(rows)} engagement(s)</p></section>'
    )
    return _shell("Queue", body, viewer)


# ---- one engagement --------------------------------------------------------------------------------


def _dl(items: list[tuple[str, str]]) -> str:
    return table([], [[f"<b>{esc(k)}</b>", v] for k, v in items], attrs='class="facts"').replace(
        "<thead><tr></tr></thead>", ""
    )


def _form(action: str, viewer: Viewer, inner: str, form_id: str) -> str:
    return (
        f'<form method="post" action="{esc(action)}" id="{esc(form_id)}">'
        f"{hidden('csrf_token', viewer.csrf)}{hidden(REQUEST_ID_FIELD, new_request_id())}{inner}</form>"
    )


def _general_errors(state: FormState, known: set[str]) -> str:
    msgs = [
        m for k, ms in state.errors.items() if k not in known for m in ([f"{k}: {x}" for x in ms] if k != "_" else ms)
    ]
    return flash("; ".join(msgs), ok=False) if msgs else ""


def _customer_form(status: EngagementStatus, viewer: Viewer, state: FormState, base: str) -> str:
    at_fault = {field_key(f.field) for f in (status.pause.fields if status.pause else status.missing_fields)}
    c = status.engagement.customer if status.engagement else None
    current = {}
    if c is not None:
        a = c.billing_address
        current = {
            "legal_name": c.legal_name or c.name,
            "tax_id": c.tax_id,
            "region": c.region,
            "currency": c.currency,
            "payment_terms": c.payment_terms,
            "billing_street": a.street,
            "billing_city": a.city,
            "billing_state": a.state,
            "billing_postal_code": a.postal_code,
            "billing_country": a.country,
        }
    rows = []
    for name in PATCH_FIELDS:
        errs = state.errors.get(name)
        cls = "field at-fault" if name in at_fault else "field"
        rows.append(
            f'<div class="{cls}"><label for="f-{esc(name)}">{esc(PATCH_LABELS.get(name, name))}</label>'
            + text_input(name, state.values.get(name, ""), errors=errs, placeholder=current.get(name) or "")
            + error_text(name, errs)
            + "</div>"
        )
    inner = (
        _general_errors(state, set(PATCH_FIELDS))
        + '<p class="muted">Fill in only what changes; the current value is shown greyed. '
        "Values are validated before the engagement accepts them.</p>"
        + "".join(rows)
        + '<p><button class="primary" type="submit" id="submit-fix">Submit fix</button></p>'
    )
    return _form(f"{base}/customer-data", viewer, inner, "customer-data-form")


def _pause_section(status: EngagementStatus, viewer: Viewer, state: FormState, base: str) -> str:
    pause = status.pause
    if pause is None and status.stage != EngagementStage.AWAITING_STEWARD:
        return ""
    fields = pause.fields if pause else status.missing_fields
    facts = []
    if pause is not None:
        facts = [
            ("Why", esc(pause.kind.value.replace("_", " "))),
            ("Queue", esc(pause.queue.value)),
            ("Message", esc(pause.message)),
            ("Since", esc(pause.since.strftime("%Y-%m-%d %H:%M UTC") if pause.since else "-")),
            (
                "Needs",
                f'<span id="pause-action" data-action="{esc(pause.action.value)}">'
                f"{esc(ACTION_LABELS.get(pause.action, pause.action.value))}</span>",
            ),
        ]
        vendor = [
            ("System", pause.system and pause.system.upper()),
            ("Operation", pause.operation),
            ("Vendor code", pause.vendor_code),
            ("Vendor message", pause.vendor_message),
        ]
        facts += [(k, f'<span id="pause-{esc(k.lower().replace(" ", "-"))}">{esc(v)}</span>') for k, v in vendor if v]
    fault_rows = [[f"<code>{esc(f.field)}</code>", esc(f.reason)] for f in fields]
    out = f'<section class="card" id="pause"><h2>Why it waits</h2>{_dl(facts)}' + table(
        ["Field at fault", "Reason"], fault_rows, empty="No field named.", attrs='id="fields-at-fault"'
    )
    actions = offered_actions(status)
    if viewer.can_change and StewardAction.RECHECK in actions:
        out += (
            '<h2 style="margin-top:18px">Provide customer data</h2>'
            + _customer_form(status, viewer, state.for_("customer-data"), base)
            + '<h2 style="margin-top:18px">Fixed it in the CRM?</h2>'
            + _form(
                f"{base}/recheck",
                viewer,
                '<div class="row"><div style="flex:1">'
                + text_input("note", "", placeholder="note (optional), e.g. tax ID added in Salesforce")
                + '</div><button class="secondary" type="submit" id="recheck">Recheck the CRM</button></div>',
                "recheck-form",
            )
        )
    if viewer.can_change and StewardAction.RETRY in actions:
        out += '<h2 style="margin-top:18px">Fixed the cause?</h2>' + _retry_form(
            status, viewer, state.for_("retry"), base
        )
    if StewardAction.REPLAY_OR_WRITE_OFF in actions and pause is not None:
        out += (
            '<p class="muted">Replay the parked time below once its cause is fixed, or write it off with a reason.</p>'
        )
    if StewardAction.ACCEPT_OR_WAIVE in actions and pause is not None:
        out += '<p class="muted">Accept or waive each open milestone below.</p>'
    return out + "</section>"


def _retry_form(status: EngagementStatus, viewer: Viewer, state: FormState, base: str) -> str:
    pause = status.pause
    step = " ".join(x for x in ((pause.system or "").upper(), pause.operation or "") if x) if pause else ""
    e = state.errors
    inner = (
        _general_errors(state, {"note"})
        + '<div class="row"><div style="flex:1">'
        + text_input(
            "note",
            state.values.get("note", ""),
            errors=e.get("note"),
            key="retry-note",
            placeholder="what was fixed (optional), e.g. project reopened in NetSuite",
        )
        + error_text("retry-note", e.get("note"))
        + "</div>"
        + f'<button class="primary" type="submit" id="retry">Retry{(" " + esc(step)) if step else ""}</button>'
        + "</div>"
    )
    return _form(f"{base}/retry", viewer, inner, "retry-form")


def _money(value, currency) -> str:
    return esc(f"{value:,.2f} {currency or ''}".strip()) if value is not None else "-"


def _version_changes(v) -> str:
    """What a version changed: its `changes` (the amendment) when it has them, else the size of
    the card it carries (a version holding the whole card, e.g. the closed-won one)."""
    changes = getattr(v, "changes", None) or {}
    if not changes:
        return f"{len(v.rate_card)} rates, {len(v.milestones)} milestones" if v.rate_card or v.milestones else "-"
    parts = []
    for name, value in changes.items():
        if value in (None, [], {}, "") or name in ("reason", "requested_by"):
            continue
        parts.append(
            f"{name.replace('_', ' ')}: {len(value)}"
            if isinstance(value, list)
            else f"{name.replace('_', ' ')}: {value}"
        )
    return "; ".join(parts) or "-"


def _contract_section(status: EngagementStatus, viewer: Viewer, state: FormState, base: str) -> str:
    versions = [
        [
            esc(v.version),
            _money(v.contract_value, status.engagement.contract_value.currency if status.engagement else ""),
            esc(v.end_date or "-"),
            esc(_version_changes(v)),
            esc(v.reason or "-"),
            esc(v.requested_by or "-"),
            esc(v.at.strftime("%Y-%m-%d %H:%M") if v.at else "-"),
        ]
        for v in status.contract_versions
    ]
    out = '<section class="card" id="contract"><h2>Contract versions</h2>' + table(
        ["Version", "Value", "End date", "Changes", "Reason", "By", "At"],
        versions,
        empty="No amendment yet: the contract is as closed-won.",
        attrs='id="versions"',
    )
    if viewer.can_change and status.stage is EngagementStage.ACTIVE:
        out += '<h2 style="margin-top:18px">Amend the contract</h2>' + _amend_form(
            status, viewer, state.for_("amendment"), base
        )
    elif viewer.can_change and status.stage not in TERMINAL:
        out += '<p class="muted">Change orders apply once the engagement is Active.</p>'
    return out + "</section>"


def _amend_form(status: EngagementStatus, viewer: Viewer, state: FormState, base: str) -> str:
    v, e = state.values, state.errors

    def cell(name: str, placeholder: str = "") -> str:
        return (
            f"<div>{text_input(name, v.get(name, ''), errors=e.get(name), placeholder=placeholder)}"
            f"{error_text(name, e.get(name))}</div>"
        )

    known = {"contract_value", "budget_cap", "end_date", "reason"}
    rates = milestones = ""
    for i in range(FORM_RATE_ROWS):
        names = [f"rates.{i}.{n}" for n in ("role", "rate", "effective_from")]
        known |= set(names) | {f"rates.{i}"}
        rates += (
            '<div class="grid4">'
            + cell(names[0], "role, e.g. Consultant")
            + cell(names[1], "new hourly rate")
            + cell(names[2], "effective from YYYY-MM-DD")
            + "</div>"
        )
    keys = [m.key for m in status.engagement.milestones] if status.engagement else []
    for i in range(FORM_MILESTONE_ROWS):
        names = [f"milestones.{i}.{n}" for n in ("key", "name", "amount", "due_date")]
        known |= set(names) | {f"milestones.{i}"}
        chosen = v.get(names[0], "")
        opts = '<option value="">add a new milestone</option>' + "".join(
            f'<option value="{esc(k)}"{" selected" if k == chosen else ""}>replace {esc(k)}</option>' for k in keys
        )
        sel = (
            f'<div><select name="{esc(names[0])}" id="f-{esc(names[0])}">{opts}</select>'
            f"{error_text(names[0], e.get(names[0]))}</div>"
        )
        milestones += (
            '<div class="grid4">'
            + sel
            + cell(names[1], "milestone name")
            + cell(names[2], "amount")
            + cell(names[3], "due YYYY-MM-DD")
            + "</div>"
        )
    model = status.engagement.billing_model if status.engagement else None
    rate_block = (
        '<p><b>Rate changes</b> <span class="muted">(from a date not before the last invoiced '
        "period)</span></p>" + rates
    )
    milestone_block = (
        '<p><b>Milestones</b> <span class="muted">(an invoiced milestone cannot change)</span></p>' + milestones
    )
    current = ""
    if status.engagement is not None:
        eng = status.engagement
        current = f"now {eng.contract_value.amount:,.2f} {eng.contract_value.currency}, ending {eng.end_date or '-'}"
    inner = (
        _general_errors(state, known) + f'<div class="field"><label for="f-contract_value">Contract value</label>'
        f"{text_input('contract_value', v.get('contract_value', ''), errors=e.get('contract_value'))}"
        f"{error_text('contract_value', e.get('contract_value')) or esc(current)}</div>"
        + (
            f'<div class="field"><label for="f-budget_cap">Not-to-exceed cap</label>'
            f"{text_input('budget_cap', v.get('budget_cap', ''), errors=e.get('budget_cap'))}"
            f"{error_text('budget_cap', e.get('budget_cap')) or esc(_cap_text(status))}</div>"
            if model is BillingModel.TIME_AND_MATERIALS
            else ""
        )
        + f'<div class="field"><label for="f-end_date">End date</label>'
        f"{text_input('end_date', v.get('end_date', ''), errors=e.get('end_date'), placeholder='YYYY-MM-DD')}"
        f"{error_text('end_date', e.get('end_date'))}</div>"
        + (rate_block if model in (None, BillingModel.TIME_AND_MATERIALS) else "")
        + (milestone_block if model in (None, BillingModel.FIXED_FEE) else "")
        + f'<div class="field"><label for="f-reason">Reason</label>'
        f"{text_input('reason', v.get('reason', ''), errors=e.get('reason'), placeholder='change order reference')}"
        f"{error_text('reason', e.get('reason'))}</div>"
        + '<p><button class="primary" type="submit" id="submit-amendment">Submit amendment</button></p>'
    )
    return _form(f"{base}/amendments", viewer, inner, "amendment-form")


def _exceptions_section(status: EngagementStatus, viewer: Viewer, state: FormState, base: str) -> str:
    count = status.open_exception_count
    may = viewer.can_change and StewardAction.REPLAY_OR_WRITE_OFF in offered_actions(status)
    rows = []
    for x in status.open_exceptions:
        action = ""
        if may:
            action = _form(
                f"{base}/exceptions/replay",
                viewer,
                hidden("psa_id", x.psa_id) + '<button class="secondary" type="submit">Replay</button>',
                f"replay-{x.psa_id}",
            )
        rows.append([f"<code>{esc(x.psa_id)}</code>", esc(x.reason_code), esc(x.message), action])
    shown = len(status.open_exceptions)
    by_reason = ", ".join(f"{esc(code)}: {n}" for code, n in sorted(status.open_exceptions_by_reason.items()))
    summary = (
        f'<p id="exception-count" data-count="{count}"><b>{count}</b> open'
        + (f" ({by_reason})" if by_reason else "")
        + (
            f"; the first {shown} are listed (all of them: <code>q2c exceptions list -o "
            f"{esc(status.opportunity_id)}</code>)"
            if shown < count
            else ""
        )
        + (f"; {status.written_off_entries} written off" if status.written_off_entries else "")
        + "</p>"
    )
    out = (
        '<section class="card" id="exceptions"><h2>Time exceptions</h2>'
        + summary
        + table(["Time entry", "Reason", "Message", ""], rows, empty="No open time exceptions.")
    )
    if may and count:
        out += _form(
            f"{base}/exceptions/replay",
            viewer,
            f'<p><button class="primary" type="submit" id="replay-all">Replay all {count}</button></p>',
            "replay-all-form",
        )
        out += '<h2 style="margin-top:18px">Write off</h2>' + _write_off_form(
            status, viewer, state.for_("write-off"), base
        )
    return out + "</section>"


def _write_off_form(status: EngagementStatus, viewer: Viewer, state: FormState, base: str) -> str:
    v, e = state.values, state.errors
    inner = (
        _general_errors(state, {"reason", "psa_ids"})
        + '<p class="muted">Time written off is never billed; the decision is kept with your name '
        "and the reason.</p>"
        + '<div class="field"><label for="f-psa_ids">Entries</label>'
        + text_input(
            "psa_ids",
            v.get("psa_ids", ""),
            errors=e.get("psa_ids"),
            placeholder="entry ids, comma-separated; empty: all open",
        )
        + error_text("psa_ids", e.get("psa_ids"))
        + "</div>"
        + '<div class="field"><label for="f-write-off-reason">Reason</label>'
        + text_input(
            "reason",
            v.get("reason", ""),
            errors=e.get("reason"),
            key="write-off-reason",
            placeholder="why this time will never be billed",
        )
        + error_text("write-off-reason", e.get("reason"))
        + "</div>"
        + '<p><button class="danger" type="submit" id="write-off">Write off</button></p>'
    )
    return _form(f"{base}/exceptions/write-off", viewer, inner, "write-off-form")


def _milestone_state(m) -> str:
    if getattr(m, "waived", False):
        return (
            "waived"
            + (f" by {m.waived_by}" if getattr(m, "waived_by", None) else "")
            + (f": {m.waived_reason}" if getattr(m, "waived_reason", None) else "")
        )
    if m.invoiced:
        return "invoiced"
    if m.accepted:
        return "accepted"
    return "open"


def _milestones_section(status: EngagementStatus, viewer: Viewer, state: FormState, base: str) -> str:
    eng = status.engagement
    if eng is None or eng.billing_model is not BillingModel.FIXED_FEE or not eng.milestones:
        return ""
    may = viewer.can_change and StewardAction.ACCEPT_OR_WAIVE in offered_actions(status)
    currency = eng.contract_value.currency
    rows = []
    for m in eng.milestones:
        state_text = _milestone_state(m)
        action = ""
        if may and state_text == "open":
            form = state.for_(f"waive:{m.key}")
            errs = form.errors.get("reason")
            action = _form(
                f"{base}/milestones/{m.key}/accept",
                viewer,
                f'<button class="primary" type="submit" id="accept-{esc(m.key)}">Accept</button>',
                f"accept-{m.key}-form",
            ) + _form(
                f"{base}/milestones/{m.key}/waive",
                viewer,
                _general_errors(form, {"reason"})
                + text_input(
                    "reason",
                    form.values.get("reason", ""),
                    errors=errs,
                    placeholder="why it will not be invoiced",
                    key=f"waive-{m.key}",
                )
                + error_text(f"waive-{m.key}", errs)
                + f'<button class="secondary" type="submit" id="waive-{esc(m.key)}">Waive</button>',
                f"waive-{m.key}-form",
            )
        rows.append(
            [
                f"<code>{esc(m.key)}</code>",
                esc(m.name),
                _money(m.amount, currency),
                esc(m.due_date or "-"),
                f'<span data-milestone-state="{esc(state_text)}">{esc(state_text)}</span>',
                action,
            ]
        )
    accept_errors = _general_errors(state, set()) if state.name.startswith("accept:") else ""
    return (
        '<section class="card" id="milestones"><h2>Milestones</h2>'
        + accept_errors
        + table(["Key", "Milestone", "Amount", "Due", "State", ""], rows, attrs='id="milestone-table"')
        + "</section>"
    )


def _cancel_section(status: EngagementStatus, viewer: Viewer, state: FormState, base: str) -> str:
    if not viewer.can_change or status.stage in TERMINAL:
        return ""
    e = state.errors
    inner = (
        _general_errors(state, {"reason"})
        + '<div class="row"><div style="flex:1">'
        + text_input(
            "reason",
            state.values.get("reason", ""),
            errors=e.get("reason"),
            placeholder="why the engagement ends early",
        )
        + error_text("reason", e.get("reason"))
        + "</div>"
        '<button class="danger" type="submit" id="cancel">Cancel engagement</button></div>'
        '<p class="muted">Stops future billing and issues a final invoice for work done.</p>'
    )
    return (
        '<section class="card" id="cancel-section"><h2>Cancel</h2>'
        + _form(f"{base}/cancel", viewer, inner, "cancel-form")
        + "</section>"
    )


def _invoices_section(
    status: EngagementStatus, viewer: Viewer | None = None, state: FormState | None = None, base: str = ""
) -> str:
    if not status.invoices:
        return ""
    rows = [
        [
            esc(i.number or "-"),
            esc(f"{i.period_start} to {i.period_end}"),
            _money(i.total, i.currency),
            _money(i.credited, i.currency) if i.credited else "-",
            esc(i.status.value),
            _money(i.open_balance, i.currency),
        ]
        for i in status.invoices
    ]
    out = '<section class="card" id="invoices"><h2>Invoices</h2>' + table(
        ["Number", "Period", "Total", "Credited", "Status", "Open"], rows
    )
    if status.credit_notes:
        out += '<h2 style="margin-top:18px">Credit notes</h2>' + table(
            ["Credit memo", "Invoice", "Amount", "Reason", "By", "On"],
            [
                [
                    esc(c.number or c.external_id),
                    esc(c.invoice_number or c.invoice_external_id),
                    _money(c.amount, c.currency),
                    esc(c.reason),
                    esc(c.requested_by),
                    esc(str(c.credited_on or "-")),
                ]
                for c in status.credit_notes
            ],
        )
    if viewer is not None and state is not None:
        out += _credit_form(status, viewer, state.for_("credit"), base)
    return out + "</section>"


def _credit_form(status: EngagementStatus, viewer: Viewer, state: FormState, base: str) -> str:
    """Credit all or part of an issued invoice that still owes something, with a reason (an
    ERP credit memo applied to it); offered while the engagement delivers or collects."""
    creditable = [i for i in status.invoices if i.erp_id and i.open_balance > 0]
    if not viewer.can_change or not creditable or status.stage in TERMINAL or status.pause is not None:
        return ""
    chosen = state.values.get("invoice", "")
    options = "".join(
        f'<option value="{esc(i.external_id)}"{" selected" if chosen in (i.external_id, i.number) else ""}>'
        f"{esc(i.number or i.external_id)} (owes {esc(f'{i.open_balance:,.2f} {i.currency}')})</option>"
        for i in creditable
    )
    errs = state.errors
    inner = (
        _general_errors(state, {"invoice", "amount", "reason"})
        + '<label for="f-credit-invoice">Invoice</label> '
        + f'<select name="invoice" id="f-credit-invoice">{options}</select>'
        + error_text("credit-invoice", errs.get("invoice"))
        + text_input(
            "amount",
            state.values.get("amount", ""),
            errors=errs.get("amount"),
            placeholder="250.00",
            key="credit-amount",
        )
        + error_text("credit-amount", errs.get("amount"))
        + text_input(
            "reason",
            state.values.get("reason", ""),
            errors=errs.get("reason"),
            placeholder="why it is credited",
            key="credit-reason",
        )
        + error_text("credit-reason", errs.get("reason"))
        + '<button class="secondary" type="submit" id="credit-submit">Credit</button>'
    )
    return (
        '<h2 style="margin-top:18px">Credit an invoice</h2>'
        '<p class="muted">An issued invoice cannot change: the ERP records a credit memo applied to it.</p>'
        + _form(f"{base}/credits", viewer, inner, "credit-form")
    )


def _expense_terms(eng) -> str:
    if not eng.bills_expenses:
        return "not billable (posted for cost)"
    if eng.expense_markup_percent:
        return f"billable at cost + {eng.expense_markup_percent.normalize():f}% markup"
    return "billable at cost"


def _cap_text(status: EngagementStatus) -> str:
    b = status.budget
    if b is None:
        return "blank: the contract value"
    return f"now {b.cap:,.2f} {b.currency} (blank: unchanged)"


def _budget_section(status: EngagementStatus, viewer: Viewer, state: FormState, base: str) -> str:
    """T&M not-to-exceed: the cap, what is used, the warnings given, what is held and every
    decision; a steward decides on held time here (release or write off; a higher cap is a
    change order, in the contract section)."""
    b = status.budget
    if b is None:
        return ""
    facts = [
        ("Cap", _money(b.cap, b.currency) + (f" + {_money(b.released, b.currency)} released" if b.released else "")),
        ("Used", f'<span id="budget-used">{esc(f"{b.used_percent}%")}</span> ({_money(b.consumed, b.currency)})'),
        ("Status", f'<span id="budget-status">{esc(b.status_text())}</span>'),
    ]
    out = '<section class="card" id="budget"><h2>Budget (not to exceed)</h2>' + _dl(facts)
    if b.warnings:
        out += table(
            ["Warning", "Used", "Cap", "Invoice", "At"],
            [
                [
                    esc(f"{w.threshold}%"),
                    _money(w.consumed, b.currency),
                    _money(w.cap, b.currency),
                    esc(w.invoice or "-"),
                    esc(w.at.isoformat() if w.at else "-"),
                ]
                for w in b.warnings
            ],
            attrs='id="budget-warnings"',
        )
    if b.decisions:
        out += table(
            ["Decision", "Amount", "Entries", "By", "Reason", "At"],
            [
                [
                    esc(d.action.replace("_", " ")),
                    _money(d.amount, b.currency),
                    esc(d.items),
                    esc(d.requested_by),
                    esc(d.reason),
                    esc(d.at.isoformat() if d.at else "-"),
                ]
                for d in b.decisions
            ],
            attrs='id="budget-decisions"',
        )
    blocked = status.pause is not None and status.pause.kind.value != "budget_held"
    if viewer.can_change and b.held_amount > 0 and status.stage not in TERMINAL and not blocked:
        errs = state.errors
        chosen = state.values.get("action", "")
        options = "".join(
            f'<option value="{v}"{" selected" if chosen == v else ""}>{label}</option>'
            for v, label in (("release", "Release: bill it beyond the cap"), ("write_off", "Write off: never bill it"))
        )
        inner = (
            _general_errors(state, {"action", "reason"})
            + f'<label for="f-budget-action">Decision</label> <select name="action" id="f-budget-action">{options}'
            "</select>"
            + error_text("budget-action", errs.get("action"))
            + text_input(
                "reason",
                state.values.get("reason", ""),
                errors=errs.get("reason"),
                placeholder="why (kept with the engagement)",
                key="budget-reason",
            )
            + error_text("budget-reason", errs.get("reason"))
            + '<button class="secondary" type="submit" id="budget-submit">Decide</button>'
        )
        out += (
            f'<p class="muted">{esc(b.held_amount)} {esc(b.currency)} of approved time is posted but not invoiced: '
            "raise the cap with a change order, or decide here.</p>"
            + _form(f"{base}/budget-decisions", viewer, inner, "budget-form")
        )
    return out + "</section>"


def engagement_page(
    status: EngagementStatus,
    viewer: Viewer,
    *,
    history_url: str,
    message: str | None = None,
    state: FormState | None = None,
) -> str:
    state = state or FormState()
    opp = status.opportunity_id
    base = f"/console/engagements/{opp}"
    eng = status.engagement
    customer = (eng.customer.legal_name or eng.customer.name) if eng else "-"
    facts = [("Stage", badge(status.stage.value)), ("Details", esc(status.details or "-")), ("Customer", esc(customer))]
    if eng is not None:
        facts += [
            (
                "Billing",
                esc(f"{eng.billing_model.value}, {eng.contract_value.amount:,.2f} {eng.contract_value.currency}"),
            ),
            ("Dates", esc(f"{eng.start_date or '-'} to {eng.end_date or '-'}")),
            (
                "Expenses",
                f'<span id="expenses">{esc(_expense_terms(eng))}; '
                f"{esc(status.totals.posted_expenses)} posted to the ERP</span>",
            ),
        ]
    ids = [
        ("ERP customer", status.erp_customer_id),
        ("ERP project", status.erp_project_id),
        ("PSA workspace", status.psa_workspace.workspace_id if status.psa_workspace else None),
    ]
    facts += [(k, f"<code>{esc(v)}</code>") for k, v in ids if v]
    facts.append(
        (
            "History",
            f'<a href="{esc(history_url)}" target="_blank" rel="noopener" id="history">open in the Temporal UI</a>',
        )
    )
    form_name, _, item = state.name.partition(":")
    reasons = "; ".join(f"{k}: {m}" if k != "_" else m for k, ms in state.errors.items() for m in ms)
    rejected = (
        flash(
            f"Not accepted, nothing was changed ({form_name.replace('-', ' ')}"
            + (f" of milestone {item}" if item else "")
            + f"): {reasons}",
            ok=False,
        )
        if state.errors
        else ""
    )
    readonly = "" if viewer.can_change else '<p class="muted">Read-only: you are signed in as a viewer.</p>'
    body = (
        f'<p><a href="/console">&larr; queue</a></p><h1>Engagement <code>{esc(opp)}</code> '
        f'<span id="stage">{badge(status.stage.value)}</span></h1>{flash(message)}{rejected}{readonly}'
        f'<section class="card" id="summary">{_dl(facts)}</section>'
        + _pause_section(status, viewer, state, base)
        + _milestones_section(status, viewer, state, base)
        + _exceptions_section(status, viewer, state, base)
        + _budget_section(status, viewer, state.for_("budget"), base)
        + _contract_section(status, viewer, state, base)
        + _invoices_section(status, viewer, state, base)
        + _cancel_section(status, viewer, state.for_("cancel"), base)
    )
    return _shell(f"Engagement {opp}", body, viewer)


__all__ = ["Viewer", "FormState", "login_page", "message_page", "queue_page", "engagement_page", "url"]
