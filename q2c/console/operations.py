"""The operations dashboard's routes (signed-in users, any role: it only reads).

    GET /console/operations            every engagement: filter (stage, model, region), search, sort
    GET /console/operations/kpis       the KPI page (charts)
    GET /console/operations/data.json  the overview's figures as JSON (the same snapshot)

All three read the app's `FiguresSource` (q2c.observability.figures), shared with /metrics:
one visibility listing and a few ledger aggregates per refresh window, whatever the number of
engagements or of open dashboards.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from q2c.console.operations_pages import filter_engagements, kpi_page, overview_page
from q2c.console.pages import Viewer, message_page
from q2c.console.responses import html_page, to_login
from q2c.observability.web import figures_source
from q2c.stewardship.queue import temporal_ui_link


def build_router(app: FastAPI, auth, settings, get_client) -> APIRouter:
    router = APIRouter(prefix="/console/operations", include_in_schema=False)
    source = figures_source(app, settings, get_client)

    html = html_page  # the console's security headers, stated once (q2c.console.responses)

    def viewer(request: Request) -> Viewer | Response:
        p = auth.principal(request)
        if p is None:
            return to_login(request)
        return Viewer(user=p.user, role=p.role.value, can_change=p.can_change, csrf=auth.csrf_token(p))

    async def snap_or_error(v: Viewer):
        try:
            return await source.get(), None
        except Exception as err:  # Temporal or the ledger down: say so
            return None, html(message_page("Not answering", f"figures unavailable: {err}", v), 503)

    def history(opp: str) -> str:
        return temporal_ui_link(settings.temporal_ui_url, settings.temporal_namespace, opp)

    def params_of(request: Request) -> dict[str, str]:
        wanted = ("q", "stage", "model", "region", "sort", "order")
        return {k: request.query_params.get(k, "") for k in wanted if request.query_params.get(k)}

    def filtered(snap, params):
        return filter_engagements(
            snap.engagements,
            q=params.get("q", ""),
            stage=params.get("stage", ""),
            model=params.get("model", ""),
            region=params.get("region", ""),
            sort=params.get("sort", "customer"),
            desc=params.get("order") == "desc",
        )

    @router.get("")
    async def overview(request: Request) -> Response:
        v = viewer(request)
        if isinstance(v, Response):
            return v
        snap, err = await snap_or_error(v)
        if err:
            return err
        params = params_of(request)
        return html(overview_page(snap, filtered(snap, params), v, history_url=history, params=params))

    @router.get("/kpis")
    async def kpis(request: Request) -> Response:
        v = viewer(request)
        if isinstance(v, Response):
            return v
        snap, err = await snap_or_error(v)
        return err or html(kpi_page(snap, v))

    @router.get("/data.json")
    async def data(request: Request) -> Response:
        v = viewer(request)
        if isinstance(v, Response):
            return JSONResponse({"error": "sign in required"}, status_code=401)
        snap, err = await snap_or_error(v)
        if err:
            return JSONResponse({"error": "unavailable"}, status_code=503)
        rows = filtered(snap, params_of(request))
        return JSONResponse(
            {
                "taken_at": snap.taken_at.isoformat(),
                "engagements": [
                    {
                        "opportunity_id": e.opportunity_id,
                        "stage": e.stage,
                        "customer": e.customer,
                        "billing_model": e.billing_model,
                        "region": e.region,
                        "currency": e.currency,
                        "contract_value": str(e.contract_value) if e.contract_value is not None else None,
                        "billed": str(e.billed),
                        "unbilled_hours": str(e.unbilled_hours),
                        "unbilled_amount": str(e.unbilled_amount),
                        "open_balance": str(e.open_balance),
                        "overdue_days": e.overdue_days,
                    }
                    for e in rows
                ],
            }
        )

    return router
