"""The steward console (HTML under /console) and the stewards' JSON API (under /api).

    mount_console(app, settings, get_client)   # in the q2c API app (q2c.webhook.app.create_app)

`get_client` is an async callable returning the Temporal client (the webhook service's holder).
Tokens come from `Q2C_API_TOKENS` (see `q2c.console.auth`); the audit goes to the ledger
(`q2c.ledger.config.ledger_url(settings)`). Nothing happens at import time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from temporalio.client import Client

from q2c.settings import Settings


def mount_console(
    app: FastAPI, settings: Settings, get_client: Callable[[], Awaitable[Client]], *, auth=None, audit=None
) -> None:
    """Add the console and JSON API routers; `app.state.auth`, `app.state.steward` are set."""
    from q2c.console import api, web
    from q2c.console.auth import Authenticator
    from q2c.stewardship.audit import StewardAudit
    from q2c.stewardship.service import StewardService

    auth = auth or Authenticator.from_settings(settings)
    audit = audit or StewardAudit(settings=settings)

    async def client() -> Client:
        try:
            return await get_client()
        except Exception as err:  # no Temporal: the pages say so instead of failing
            raise web.ConsoleUnavailable(str(err)) from err

    service = StewardService(client, audit)
    app.state.auth = auth
    app.state.steward = service
    app.include_router(web.build_router(service, auth, settings))
    app.include_router(api.build_router(service, auth))
    from q2c.console import reconciliation

    app.include_router(reconciliation.build_router(settings, auth, client))  # /console/reconciliation
    from q2c.console import operations  # the operations dashboard (/console/operations)

    app.include_router(operations.build_router(app, auth, settings, client))
    # the Temporal UI's codec server (/codec/encode, /codec/decode): signed-in users and tokens only
    from q2c.codec import codec_from_spec
    from q2c.console import codec_server

    app.include_router(
        codec_server.build_router(
            codec_from_spec(settings.codec_keys), [settings.temporal_ui_url], settings.temporal_namespace
        )
    )
