"""The console's reconciliation page: the latest run (or any run), its differences with the
records involved, links to each engagement and to the run's history, the open steward
tasks, and the schedule's controls (run now, pause, resume; stewards only, CSRF-checked).

    GET  /console/reconciliation                 latest run
    GET  /console/reconciliation?run=ID&opp=OPP  one run, optionally one engagement's rows
    POST /console/reconciliation/run|pause|resume
    GET  /api/reconciliation/latest              the latest run's report (JSON, viewers too)

Its own router, mounted by `q2c.console.mount_console`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from temporalio.client import Client

from q2c.console.auth import Authenticator, require_viewer
from q2c.console.html import esc, hidden, page
from q2c.console.responses import html_page, to_login
from q2c.settings import Settings


def _store(settings: Settings):
    from q2c.ledger.config import ledger_url
    from q2c.ledger.reconciliation import ReconStore
    from q2c.ledger.store import Ledger

    store = ReconStore(Ledger.from_url(ledger_url(settings)).engine)
    store.create_all()
    return store


def build_router(settings: Settings, auth: Authenticator, get_client: Callable[[], Awaitable[Client]]) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    holder: dict = {}

    def store():
        if "store" not in holder:
            holder["store"] = _store(settings)
        return holder["store"]

    def ui(workflow_id: str) -> str:
        base = settings.temporal_ui_url.rstrip("/")
        return f"{base}/namespaces/{settings.temporal_namespace}/workflows/{quote(workflow_id)}"

    html = html_page  # the console's security headers, stated once (q2c.console.responses)

    @router.get("/console/reconciliation")
    async def reconciliation_page(request: Request, run: str | None = None, opp: str | None = None) -> Response:
        p = auth.principal(request)
        if p is None:
            return to_login(request)
        s = store()
        chosen = s.get_run(run) if run else s.latest_run()
        schedule = ""
        try:
            from q2c.reconciliation.api import schedule_state

            state = await schedule_state(await get_client(), settings)
            schedule = (
                f'<p id="schedule">Schedule <code>{esc(state["id"])}</code>: '
                f"<strong>{'paused' if state['paused'] else 'active'}</strong> {esc(state['note'])}; "
                f"next run {esc(', '.join(state['next'][:1]) or '-')}</p>"
            )
        except Exception as err:  # no Temporal or no schedule yet: say so, show the ledger's runs anyway
            schedule = f'<p id="schedule">Schedule not available: {esc(str(err))}</p>'
        controls = ""
        if p.can_change:
            token = auth.csrf_token(p)
            controls = "".join(
                f'<form method="post" action="/console/reconciliation/{action}" style="display:inline">'
                f'{hidden("csrf_token", token)}<button type="submit" id="recon-{action}">{label}</button></form> '
                for action, label in (("run", "Run now"), ("pause", "Pause"), ("resume", "Resume"))
            )
        body = [f"<h1>Reconciliation</h1>{schedule}{controls}"]
        if chosen is None:
            body.append("<p>No reconciliation run yet.</p>")
        else:
            body.append(_run_table(chosen, ui(chosen.run_id)))
            rows = s.differences(chosen.run_id, opp)
            body.append(_differences(rows, chosen.run_id, opp))
        tasks = s.tasks("open")
        body.append(f"<h2>Open steward tasks ({len(tasks)})</h2>")
        if tasks:
            body.append("<table id='tasks'><tr><th>Task</th><th>Engagement</th><th>What to decide</th></tr>")
            for t in tasks:
                eng = f'<a href="/console/engagements/{esc(t.opportunity_id)}">{esc(t.opportunity_id)}</a>'
                body.append(f"<tr><td>{esc(t.key)}</td><td>{eng}</td><td>{esc(t.message)}</td></tr>")
            body.append("</table>")
        runs = s.runs(limit=10)
        if runs:
            body.append("<h2>Recent runs</h2><ul>")
            for r in runs:
                body.append(
                    f'<li><a href="/console/reconciliation?run={quote(r.run_id)}">{esc(r.run_id)}</a> '
                    f"{r.differences} differences, {r.unexplained} unexplained</li>"
                )
            body.append("</ul>")
        return html(page("Reconciliation", "".join(body), user=p.user, role=p.role.value, csrf=auth.csrf_token(p)))

    async def _control(request: Request, action: str) -> Response:
        p = auth.principal(request)
        if p is None or not p.can_change:
            return html(page("Not allowed", "<p>Only a steward may run or pause reconciliation.</p>"), 403)
        form = await request.form()
        try:
            auth.check_csrf(request, p, str(form.get("csrf_token") or ""))
        except HTTPException as err:
            return html(page("Not allowed", f"<p>{esc(str(err.detail))}</p>"), 403)
        from q2c.reconciliation import api

        client = await get_client()
        if action == "run":
            from q2c.engagement.client import delivery_config

            await api.ensure_schedule(client, settings, delivery_config(settings))
            await api.trigger(client, settings)
        elif action == "pause":
            await api.pause(client, settings, f"paused by {p.user} in the console")
        else:
            await api.resume(client, settings, f"resumed by {p.user} in the console")
        return RedirectResponse("/console/reconciliation", status_code=303)

    @router.post("/console/reconciliation/run")
    async def run_now(request: Request) -> Response:
        return await _control(request, "run")

    @router.post("/console/reconciliation/pause")
    async def pause(request: Request) -> Response:
        return await _control(request, "pause")

    @router.post("/console/reconciliation/resume")
    async def resume(request: Request) -> Response:
        return await _control(request, "resume")

    @router.get("/api/reconciliation/latest")
    async def latest(_principal=Depends(require_viewer)) -> Response:
        from q2c.reconciliation.activities import report_of

        s = store()
        run = s.latest_run()
        if run is None:
            return JSONResponse({"detail": "no reconciliation run yet"}, status_code=404)
        report = report_of(run, open_tasks=len(s.tasks("open"))).model_dump(mode="json")
        report["differences_detail"] = [
            {k: getattr(d, k) for k in ("opportunity_id", "kind", "system", "record", "expected", "actual", "outcome")}
            | {"explanation": d.explanation}
            for d in s.differences(run.run_id)
        ]
        return JSONResponse(report)

    return router


def _run_table(run, history_url: str) -> str:
    per = f"{run.vendor_calls / run.engagements_checked:.1f}" if run.engagements_checked else "-"
    duration = f"{run.duration_seconds:.1f} s" if run.duration_seconds is not None else "running"
    cells = [
        ("Closed Won deals seen", run.deals_seen),
        ("Engagements started", f"{run.deals_started} {' '.join(run.started)}"),
        ("Engagements checked", run.engagements_checked),
        ("Differences", run.differences),
        ("Explained", run.explained),
        ("Repaired", run.repaired),
        ("Raised to stewards", run.raised),
        ("Unexplained", run.unexplained),
        ("Vendor calls", f"{run.vendor_calls} ({per} per engagement)"),
        ("Duration", duration),
    ]
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in cells)
    return (
        f'<h2>Run {esc(run.run_id)}</h2><p><a href="{esc(history_url)}" id="run-history">history in the Temporal '
        f'UI</a></p><table id="run">{rows}</table>'
    )


def _differences(rows, run_id: str, opp: str | None) -> str:
    if not rows:
        return "<p id='differences'>No differences: CRM, PSA, ERP and the ledger agree.</p>"
    out = [
        f"<h2>Differences{' of ' + esc(opp) if opp else ''}</h2><table id='differences'><tr><th>Engagement</th>"
        "<th>Outcome</th><th>Kind</th><th>Record</th><th>System of record</th><th>Found</th>"
        "<th>Why / what was done</th></tr>"
    ]
    for d in rows:
        eng = "-"
        if d.opportunity_id:
            eng = (
                f'<a href="/console/engagements/{esc(d.opportunity_id)}">{esc(d.opportunity_id)}</a> '
                f'(<a href="/console/reconciliation?run={quote(run_id)}&amp;opp={quote(d.opportunity_id)}">rows</a>)'
            )
        out.append(
            f"<tr class='{esc(d.outcome)}'><td>{eng}</td><td>{esc(d.outcome)}</td><td>{esc(d.kind)}</td>"
            f"<td>{esc(d.record)}</td><td>{esc(d.expected)}</td><td>{esc(d.actual)}</td><td>{esc(d.explanation)}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)
