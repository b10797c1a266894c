"""What the webhook service adds for observability: the root span of each inbound webhook
request and `GET /metrics` (the business figures, the duplicate counter).

    observe(app, settings, get_client)     # in q2c.webhook.app.create_app

/metrics is not behind the console's sign-in: Prometheus scrapes without a session, and the
figures are aggregates (counts and sums by stage, currency, reason), no customer's name or
record. Put the port behind the same network policy as the worker's metrics endpoint.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.responses import Response

from q2c.observability.figures import FiguresSource
from q2c.observability.metrics import CONTENT_TYPE, render
from q2c.observability.tracing import ServerSpanMiddleware, ensure_tracing

log = logging.getLogger("q2c.observability")


def figures_source(app: FastAPI, settings, get_client) -> FiguresSource:
    """The app's one FiguresSource (the dashboard and /metrics share its snapshot)."""
    source = getattr(app.state, "figures", None)
    if source is None:
        source = FiguresSource(settings, get_client)
        app.state.figures = source
    return source


def observe(app: FastAPI, settings, get_client) -> None:
    ensure_tracing("q2c-webhook")
    app.add_middleware(ServerSpanMiddleware)
    source = figures_source(app, settings, get_client)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        try:
            snap = await source.get(max_age=5.0)
        except Exception as err:  # Temporal or the ledger down: the process counters still answer
            log.warning("business figures unavailable for /metrics: %s", err)
            snap = None
        return Response(render(snap), media_type=CONTENT_TYPE)
