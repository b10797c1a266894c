"""The webhook service: closed-won events from the CRM start engagement workflows.

Two ways in:
- `POST /webhooks/salesforce/outbound`: a Salesforce Outbound Message (SOAP, unsigned,
  at-least-once, up to 100 notifications). Authenticity is limited to the OrganizationId
  check (Salesforce signs nothing), which is why starting is idempotent by workflow ID.
  Salesforce redelivers until it gets the exact `<Ack>true</Ack>` response, so we answer
  503 (no ack) whenever Temporal cannot take the start, and Salesforce retries later.
  Only a Closed Won opportunity starts an engagement (see `q2c.webhook.intake`): the stage is
  the notification's `StageName`, or read from the CRM when the message does not carry it.
  Any other stage is acknowledged and starts nothing (a running engagement is still told
  `crm_changed`); the log line and the `X-Q2C-Outcome` response header say what was started,
  restarted (the previous run failed or was terminated), signalled or skipped, and why.
- `POST /webhooks/closed-won`: a JSON event signed per Standard Webhooks, for any CRM
  (or middleware) that can send signed webhooks. Its type is `opportunity.closed_won` only,
  so it starts (or restarts) the engagement and answers whether it did.

The same app serves the steward console (`/console`) and its JSON API (`/api`), see `console`.

Every message is fully validated before any workflow is started: a bad message starts
nothing. `python -m q2c.webhook.app` serves it with uvicorn on settings.webhook_port.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from temporalio.client import Client
from temporalio.service import RPCError

from q2c.engagement.client import StartResult, delivery_config, start_engagement
from q2c.settings import Settings, load_settings
from q2c.temporal import connect
from q2c.vendors.salesforce.client import SalesforceClient
from q2c.webhook.intake import (
    FINISHED,
    RESTARTED,
    SIGNALLED,
    SKIPPED,
    STARTED,
    CrmUnavailable,
    IntakeOutcome,
    crm_stage_lookup,
    take_all,
)
from q2c.webhook.outbound_message import (
    OutboundMessageError,
    ack_response,
    parse_outbound_message,
    soap_fault,
    to_18,
)
from q2c.webhook.standard_webhooks import WebhookVerificationError, verify

log = logging.getLogger("q2c.webhook")

MAX_BODY_BYTES = 1_000_000  # 100 notifications are a few tens of KB
OUTCOME_HEADER = "X-Q2C-Outcome"
MAX_OUTCOME_HEADER = 8_000
SOAP_CONTENT_TYPE = "text/xml; charset=utf-8"
CLOSED_WON_EVENT = "opportunity.closed_won"


class ClosedWonData(BaseModel):
    model_config = ConfigDict(extra="allow")
    opportunity_id: str

    @field_validator("opportunity_id")
    @classmethod
    def _salesforce_opportunity_id(cls, value: str) -> str:
        try:
            value = to_18(value.strip())
        except OutboundMessageError as err:
            raise ValueError(str(err)) from None
        if not value.startswith("006"):
            raise ValueError(f"'{value}' is not an Opportunity ID (prefix 006)")
        return value


class ClosedWonEvent(BaseModel):
    """Standard Webhooks payload shape: {type, timestamp?, data}."""

    model_config = ConfigDict(extra="allow")
    type: Literal["opportunity.closed_won"]
    data: ClosedWonData


def _log(event: str, **fields) -> None:
    log.info(json.dumps({"event": event, **fields}, default=str, sort_keys=True))


def _same_org(received: str, expected: str) -> bool:
    """Org IDs compare on their case-sensitive 15-character form (18 = 15 + checksum)."""
    if received == expected:
        return True
    return len(received) in (15, 18) and len(expected) in (15, 18) and received[:15] == expected[:15]


class TemporalUnavailable(Exception):
    """No Temporal client could be had, or Temporal refused the start."""


class _ClientHolder:
    """The Temporal client: injected, or connected in the lifespan (and retried on demand)."""

    def __init__(self, settings: Settings, client: Client | None) -> None:
        self.settings = settings
        self.client = client
        self._lock = asyncio.Lock()

    async def get(self) -> Client:
        if self.client is not None:
            return self.client
        async with self._lock:
            if self.client is None:
                try:
                    self.client = await connect(self.settings)
                except Exception as err:  # connection refused, DNS, TLS...
                    raise TemporalUnavailable(
                        f"cannot connect to Temporal at {self.settings.temporal_address}: {err}"
                    ) from err
        return self.client


class _CrmHolder:
    """The Salesforce connector the webhook reads a stage with, made on first need (most
    messages carry `StageName`, so most deliveries never call the CRM)."""

    def __init__(self, settings: Settings, crm: SalesforceClient | None) -> None:
        self.settings = settings
        self.crm = crm
        self._own = crm is None

    def get(self) -> SalesforceClient:
        if self.crm is None:
            self.crm = SalesforceClient(self.settings.crm, timeout=self.settings.http_timeout_seconds)
        return self.crm

    async def aclose(self) -> None:
        if self._own and self.crm is not None:
            await self.crm.aclose()
            self.crm = None


def outcome_summary(outcomes: list[IntakeOutcome]) -> dict:
    """started / restarted / signalled / finished workflow ids and the skips with their reasons."""
    by = {a: [o for o in outcomes if o.action == a] for a in (STARTED, RESTARTED, SIGNALLED, FINISHED, SKIPPED)}
    return {
        "started": [o.workflow_id for o in by[STARTED]],
        "restarted": [{"workflow_id": o.workflow_id, "previous_status": o.previous_status} for o in by[RESTARTED]],
        "signalled": [o.workflow_id for o in by[SIGNALLED]],
        "finished": [o.workflow_id for o in by[FINISHED]],
        "skipped": [{"opportunity_id": o.opportunity_id, "stage": o.stage, "reason": o.reason} for o in by[SKIPPED]],
        "stages_read_from_crm": sum(1 for o in outcomes if o.stage_from == "crm"),
    }


def _outcome_header(summary: dict) -> str:
    """The summary as ASCII JSON for a response header (stage labels may be any language);
    skips are kept first when it must be shortened, since they are what a sender asks about."""
    text = json.dumps(summary, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
    if len(text) <= MAX_OUTCOME_HEADER:
        return text
    counts = {k: len(v) if isinstance(v, list) else v for k, v in summary.items()}
    short = {"counts": counts, "skipped": summary["skipped"][:20], "truncated": True}
    return json.dumps(short, ensure_ascii=True, separators=(",", ":"), sort_keys=True)[:MAX_OUTCOME_HEADER]


def create_app(settings: Settings, client: Client | None = None, *, crm: SalesforceClient | None = None) -> FastAPI:
    """The webhook service; `client` (Temporal) and `crm` (the stage lookup) may be injected."""
    holder = _ClientHolder(settings, client)
    crm_holder = _CrmHolder(settings, crm)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if client is None:
            try:
                await holder.get()
                _log("temporal_connected", address=settings.temporal_address)
            except TemporalUnavailable as err:
                # Keep serving: requests answer 503 (Salesforce retries) until Temporal is back.
                _log("temporal_unavailable", error=str(err))
        try:
            yield
        finally:
            await crm_holder.aclose()

    app = FastAPI(title="q2c webhooks", lifespan=lifespan)
    app.state.settings = settings
    app.state.temporal = holder
    from q2c.console import mount_console  # the steward console (/console) and its JSON API (/api)

    mount_console(app, settings, holder.get)

    async def start_all(opportunity_ids: list[str], source: str) -> list[StartResult]:
        try:
            temporal = await holder.get()
            results = []
            for opp in opportunity_ids:
                results.append(
                    await start_engagement(
                        temporal, opp, task_queue=settings.task_queue, source=source, delivery=delivery_config(settings)
                    )
                )
            return results
        except RPCError as err:  # unavailable, deadline exceeded, resource exhausted...
            raise TemporalUnavailable(f"Temporal did not accept the start: {err}") from err

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "temporal_connected": holder.client is not None}

    @app.post("/webhooks/salesforce/outbound")
    async def salesforce_outbound(request: Request) -> Response:
        started_at = time.monotonic()
        body = await request.body()

        def fault(status: int, message: str, code: str = "soapenv:Client") -> Response:
            _log("outbound_rejected", status=status, reason=message)
            return Response(soap_fault(message, code=code), status_code=status, media_type=SOAP_CONTENT_TYPE)

        if len(body) > MAX_BODY_BYTES:
            return fault(400, f"message larger than {MAX_BODY_BYTES} bytes")
        try:
            message = parse_outbound_message(body)
        except OutboundMessageError as err:
            return fault(400, str(err))
        if not _same_org(message.organization_id, settings.crm.organization_id):
            return fault(403, f"OrganizationId {message.organization_id} is not the configured org")
        stages = {opp: n.stage_name for opp, n in message.latest().items()}
        try:
            temporal = await holder.get()
            lookup = crm_stage_lookup(crm_holder.get()) if any(v is None for v in stages.values()) else None
            outcomes = await take_all(
                temporal,
                stages,
                lookup=lookup,
                task_queue=settings.task_queue,
                source="salesforce-outbound",
                delivery=delivery_config(settings),
            )
        except (TemporalUnavailable, RPCError, CrmUnavailable) as err:
            # no ack: Salesforce delivers the message again later, and every action is idempotent
            log.warning("outbound message not taken: %s", err)
            return fault(503, "temporarily unable to accept the message; retry later", code="soapenv:Server")
        summary = outcome_summary(outcomes)
        _log(
            "outbound_accepted",
            action_id=message.action_id,
            notifications=len(message.notifications),
            **summary,
            ms=round((time.monotonic() - started_at) * 1000),
        )
        return Response(
            ack_response(),
            status_code=200,
            media_type=SOAP_CONTENT_TYPE,
            headers={OUTCOME_HEADER: _outcome_header(summary)},
        )

    @app.post("/webhooks/closed-won")
    async def closed_won(request: Request) -> JSONResponse:
        body = await request.body()
        headers = request.headers
        try:
            verify(
                settings.webhook_secret,
                headers.get("webhook-id"),
                headers.get("webhook-timestamp"),
                headers.get("webhook-signature"),
                body,
            )
        except WebhookVerificationError as err:
            _log("closed_won_rejected", status=401, reason=err.reason, webhook_id=headers.get("webhook-id"))
            return JSONResponse(
                {"error": "invalid_signature", "reason": err.reason, "message": err.message}, status_code=401
            )
        try:
            event = ClosedWonEvent.model_validate_json(body)
        except ValidationError as err:
            problems = [
                {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
                for e in err.errors(include_url=False)
            ]
            _log("closed_won_rejected", status=400, reason="invalid_payload", problems=problems)
            return JSONResponse(
                {
                    "error": "invalid_payload",
                    "message": "; ".join(f"{p['field']}: {p['message']}" for p in problems),
                    "fields": problems,
                },
                status_code=400,
            )
        opp = event.data.opportunity_id
        try:
            (result,) = await start_all([opp], "webhook")
        except TemporalUnavailable as err:
            log.warning("closed-won start failed: %s", err)
            return JSONResponse({"error": "temporal_unavailable", "message": "retry later"}, status_code=503)
        answer = {
            "workflow_id": result.workflow_id,
            "already_existed": result.already_existed,
            "restarted": result.restarted,
            "previous_status": result.previous_status,
        }
        _log("closed_won_accepted", webhook_id=headers.get("webhook-id"), opportunity_id=opp, **answer)
        return JSONResponse(answer, status_code=202)

    return app


def main() -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = load_settings()
    uvicorn.run(create_app(settings), host=settings.webhook_host, port=settings.webhook_port)
    from q2c.temporal import exit_process

    exit_process(0)


if __name__ == "__main__":
    main()
