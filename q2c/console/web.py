"""The steward console's HTML routes, under /console (server-rendered, plain forms, no JS).

    GET  /console/login, POST /console/login (token -> HttpOnly cookie), POST /console/logout
    GET  /console                                   the queue (?queue=&older_than_hours=&customer=)
    GET  /console/engagements/{opp}                 the engagement page
    POST /console/engagements/{opp}/customer-data   fix (CustomerPatch fields)
    POST /console/engagements/{opp}/recheck         recheck signal
    POST /console/engagements/{opp}/amendments      change order
    POST /console/engagements/{opp}/cancel          cancel (reason)
    POST /console/engagements/{opp}/exceptions/replay  replay one (psa_id) or all
    POST /console/engagements/{opp}/exceptions/write-off  write off (psa_ids, comma-separated, or all; reason)
    POST /console/engagements/{opp}/retry           retry the parked step (note)
    POST /console/engagements/{opp}/milestones/{key}/accept   accept a milestone (it is invoiced)
    POST /console/engagements/{opp}/milestones/{key}/waive    waive it (reason)
    POST /console/engagements/{opp}/credits         credit an issued invoice (invoice, amount, reason)
    POST /console/engagements/{opp}/budget-decisions release or write off time held at the cap (action, reason)

Pages need a viewer or steward token (anonymous GETs are sent to the login page); every POST
needs a steward (401 anonymous, 403 viewer) and the session's CSRF token. A rejected change
re-renders the page with 422, the messages next to their fields and the typed values kept;
an accepted one redirects (303) to the page with a message. Each form's hidden `request_id`
(minted when the page was rendered) names the request: the same form posted again (a retried
click, a browser resend) applies once.
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from q2c.console.auth import SESSION_COOKIE, Authenticator, Principal
from q2c.console.pages import FormState, Viewer, engagement_page, login_page, message_page, queue_page
from q2c.console.responses import html_page, to_login
from q2c.engagement.client import EngagementNotAnswering, EngagementNotFound
from q2c.engagement.updates import UpdateOutcome, replay_text, write_off_text
from q2c.stewardship.forms import compact_rows, errors_by_field
from q2c.stewardship.queue import parse_queue, temporal_ui_link
from q2c.stewardship.service import RequestKey, StewardService, key_errors

OPPORTUNITY_ID = re.compile(r"^[A-Za-z0-9]{15,18}$")
MILESTONE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$")  # CRM line item ids, co<version>-<n>
MAX_FORM_BYTES = 64_000
FORM_CONTROL_FIELDS = ("csrf_token", "request_id")  # the form's own, not the steward's input


class ConsoleUnavailable(Exception):
    """Temporal could not be reached."""


async def form_values(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body -> {name: first value} (no python-multipart needed)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(413, "form too large")
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


def form_key(values: dict[str, str]) -> RequestKey | None:
    """The form's request id (None when malformed: the page refuses it with 400)."""
    value = values.get("request_id")
    if value is not None and key_errors(value, "request_id"):
        return None
    return RequestKey.form(value)


def steward_input(values: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in values.items() if k not in FORM_CONTROL_FIELDS}


def _safe_next(value: str | None) -> str:
    return value if value and value.startswith("/console") and "//" not in value else "/console"


def build_router(service: StewardService, auth: Authenticator, settings) -> APIRouter:
    router = APIRouter(prefix="/console", include_in_schema=False)

    def viewer_of(p: Principal) -> Viewer:
        return Viewer(user=p.user, role=p.role.value, can_change=p.can_change, csrf=auth.csrf_token(p))

    html = html_page  # the console's security headers, stated once (q2c.console.responses)

    def page_guard(request: Request) -> Principal | Response:
        p = auth.principal(request)
        if p is None:
            return to_login(request)
        return p

    async def change_guard(request: Request, values: dict[str, str]) -> Principal | Response:
        p = auth.principal(request)
        if p is None:
            return html(message_page("Sign in required", "A steward token is required to change anything."), 401)
        if not p.can_change:
            return html(
                message_page(
                    "Not allowed", f"{p.user} is a {p.role.value}: only a steward may change engagements.", viewer_of(p)
                ),
                403,
            )
        try:
            auth.check_csrf(request, p, values.get("csrf_token"))
        except HTTPException as err:
            return html(message_page("Not allowed", str(err.detail), viewer_of(p)), 403)
        if form_key(values) is None:
            return html(
                message_page("Bad request", "the form's request id is malformed: reload the page", viewer_of(p)), 400
            )
        return p

    def check_opp(opp: str) -> None:
        if not OPPORTUNITY_ID.match(opp):
            raise HTTPException(404, "not an opportunity id")

    async def render_engagement(
        opp: str, p: Principal, *, message: str | None = None, state: FormState | None = None, status_code: int = 200
    ) -> Response:
        try:
            status = await service.status(opp)
        except EngagementNotFound as err:
            return html(message_page("Not found", str(err), viewer_of(p)), 404)
        except (EngagementNotAnswering, ConsoleUnavailable) as err:
            return html(message_page("Not answering", str(err), viewer_of(p)), 503)
        link = temporal_ui_link(settings.temporal_ui_url, settings.temporal_namespace, opp)
        return html(engagement_page(status, viewer_of(p), history_url=link, message=message, state=state), status_code)

    async def after_change(
        request: Request, opp: str, p: Principal, form: str, values: dict[str, str], run, success
    ) -> Response:
        """Run the change; redirect with a message, or re-render with the errors inline."""
        try:
            outcome: UpdateOutcome = await run()
        except EngagementNotFound as err:
            return html(message_page("Not found", str(err), viewer_of(p)), 404)
        except (EngagementNotAnswering, ConsoleUnavailable) as err:
            return html(message_page("Not answering", str(err), viewer_of(p)), 503)
        if outcome.ok:
            return RedirectResponse(f"/console/engagements/{opp}?msg={quote(success(outcome.result))}", status_code=303)
        state = FormState(name=form, values=steward_input(values), errors=errors_by_field(outcome.errors))
        return await render_engagement(opp, p, state=state, status_code=422)

    # ---- login ----------------------------------------------------------------------------
    @router.get("/login")
    async def login_form(next: str = "/console") -> Response:
        return html(login_page(_safe_next(next)))

    @router.post("/login")
    async def login(request: Request) -> Response:
        values = await form_values(request)
        origin = request.headers.get("origin")
        if origin and origin != "null" and origin.split("://", 1)[-1] != request.headers.get("host"):
            return html(login_page(error="cross-origin sign-in refused"), 403)
        p = auth.lookup(values.get("token", "").strip())
        if p is None:
            return html(login_page(_safe_next(values.get("next")), error="Unknown token."), 401)
        session_id = await asyncio.to_thread(auth.start_session, p)  # opaque, server-side, expiring
        response = RedirectResponse(_safe_next(values.get("next")), status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            session_id,
            httponly=True,
            samesite="strict",
            path="/",
            # Secure behind TLS, including a TLS-terminating proxy that says so
            secure=request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https",
            max_age=int(auth.session_lifetime.total_seconds()),
        )
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        # revoked server-side: the cookie is worthless from now on, wherever it was copied to
        await asyncio.to_thread(auth.end_session, request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/console/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # ---- pages ---------------------------------------------------------------------------------
    @router.get("")
    @router.get("/")
    async def queue(
        request: Request, queue: str | None = None, older_than_hours: str | None = None, customer: str | None = None
    ) -> Response:
        p = page_guard(request)
        if isinstance(p, Response):
            return p
        error, rows, hours = None, [], None
        try:
            parse_queue(queue)
            if older_than_hours and older_than_hours.strip():
                hours = float(older_than_hours)
        except ValueError as err:
            error = str(err) if "queue" in str(err) else f"'{older_than_hours}' is not a number of hours"
        if error is None:
            try:
                rows = await service.queue(queue=queue or None, older_than_hours=hours, customer=customer)
            except ConsoleUnavailable as err:
                error = str(err)
        return html(
            queue_page(
                rows, viewer_of(p), queue=queue, older_than_hours=older_than_hours, customer=customer, error=error
            ),
            400 if error else 200,
        )

    @router.get("/engagements/{opp}")
    async def engagement(request: Request, opp: str, msg: str | None = None) -> Response:
        check_opp(opp)
        p = page_guard(request)
        if isinstance(p, Response):
            return p
        return await render_engagement(opp, p, message=msg)

    # ---- changes ---------------------------------------------------------------------------------
    async def change(request: Request, opp: str, form: str, run, done, *, prepare=None) -> Response:
        """Every change the console makes: the same guard (session, steward role, CSRF), the
        service call with the form's update ID, then the page again with the outcome."""
        check_opp(opp)
        values = await form_values(request)
        p = await change_guard(request, values)
        if isinstance(p, Response):
            return p
        key = form_key(values)
        shown = prepare(values) if prepare else values
        return await after_change(request, opp, p, form, shown, lambda: run(shown, p, key), done)

    @router.post("/engagements/{opp}/customer-data")
    async def fix(request: Request, opp: str) -> Response:
        return await change(
            request,
            opp,
            "customer-data",
            lambda v, p, key: service.fix(opp, steward_input(v), p.user, key),
            lambda r: f"Customer data accepted: {r or 'the engagement resumes'}",
        )

    @router.post("/engagements/{opp}/amendments")
    async def amend(request: Request, opp: str) -> Response:
        return await change(
            request,
            opp,
            "amendment",
            lambda v, p, key: service.amend(opp, steward_input(v), p.user, key),
            lambda v: f"Amendment accepted: contract version {getattr(v, 'version', '?')}",
            prepare=compact_rows,
        )

    @router.post("/engagements/{opp}/cancel")
    async def cancel(request: Request, opp: str) -> Response:
        return await change(
            request,
            opp,
            "cancel",
            lambda v, p, key: service.cancel(opp, v.get("reason", ""), p.user, key),
            lambda r: f"Cancellation accepted: {r or 'final invoice follows'}",
        )

    @router.post("/engagements/{opp}/exceptions/replay")
    async def replay(request: Request, opp: str) -> Response:
        return await change(
            request,
            opp,
            "replay",
            lambda v, p, key: service.replay(opp, [v["psa_id"]] if v.get("psa_id") else [], p.user, key),
            lambda r: f"Replayed: {replay_text(r)}" if r is not None else "Replayed",
        )

    @router.post("/engagements/{opp}/recheck")
    async def recheck(request: Request, opp: str) -> Response:
        async def run(v, p, key) -> UpdateOutcome:  # a signal: no update ID
            return UpdateOutcome(result=await service.recheck(opp, v.get("note"), p.user))

        return await change(
            request, opp, "recheck", run, lambda _: "Recheck requested: the engagement reads the CRM again"
        )

    @router.post("/engagements/{opp}/retry")
    async def retry(request: Request, opp: str) -> Response:
        return await change(
            request,
            opp,
            "retry",
            lambda v, p, key: service.retry(opp, v.get("note", ""), p.user, key),
            lambda r: f"Retry accepted: {r or 'the parked step runs again'}",
        )

    @router.post("/engagements/{opp}/exceptions/write-off")
    async def write_off(request: Request, opp: str) -> Response:
        def ids(v) -> list[str]:
            return [i.strip() for i in re.split(r"[,\s]+", v.get("psa_ids", "")) if i.strip()]

        return await change(
            request,
            opp,
            "write-off",
            lambda v, p, key: service.write_off(opp, ids(v), v.get("reason", ""), p.user, key),
            lambda r: f"Written off: {write_off_text(r)}" if r is not None else "Written off",
        )

    def check_milestone(key: str) -> None:
        if not MILESTONE_KEY.match(key):
            raise HTTPException(404, "not a milestone key")

    @router.post("/engagements/{opp}/milestones/{key}/accept")
    async def accept_milestone(request: Request, opp: str, key: str) -> Response:
        check_milestone(key)

        def done(invoice) -> str:
            if invoice is None:
                return f"Milestone {key} accepted"
            return (
                f"Milestone {key} accepted: invoice {invoice.number or invoice.external_id} "
                f"for {invoice.total} {invoice.currency}"
            )

        return await change(
            request,
            opp,
            f"accept:{key}",
            lambda v, p, rkey: service.accept_milestone(opp, key, p.user, key=rkey),
            done,
        )

    @router.post("/engagements/{opp}/milestones/{key}/waive")
    async def waive_milestone(request: Request, opp: str, key: str) -> Response:
        check_milestone(key)
        return await change(
            request,
            opp,
            f"waive:{key}",
            lambda v, p, rkey: service.waive_milestone(opp, key, v.get("reason", ""), p.user, rkey),
            lambda r: f"Milestone {key} waived: {r or 'it will not be invoiced'}",
        )

    @router.post("/engagements/{opp}/credits")
    async def credit_invoice(request: Request, opp: str) -> Response:
        def done(note) -> str:
            if note is None:
                return "Credit accepted"
            return (
                f"Credit memo {note.number or note.external_id}: {note.amount} {note.currency} credited on invoice "
                f"{note.invoice_number or note.invoice_external_id}; it still owes {note.invoice_open_balance}"
            )

        return await change(
            request,
            opp,
            "credit",
            lambda v, p, rkey: service.credit_invoice(
                opp, v.get("invoice", ""), v.get("amount", ""), v.get("reason", ""), p.user, rkey
            ),
            done,
        )

    @router.post("/engagements/{opp}/budget-decisions")
    async def budget_decision(request: Request, opp: str) -> Response:
        def done(d) -> str:
            if d is None:
                return "Decision accepted"
            text = f"{d.action.replace('_', ' ')} of {d.amount} {d.budget.currency if d.budget else ''} accepted"
            return text + (f": invoice {d.invoice.number or d.invoice.external_id}" if d.invoice else "")

        return await change(
            request,
            opp,
            "budget",
            lambda v, p, rkey: service.decide_budget_hold(opp, v.get("action", ""), v.get("reason", ""), p.user, rkey),
            done,
        )

    return router
