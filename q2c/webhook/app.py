"""The webhook service: closed-won events from the CRM start engagement workflows.

Two ways in:
- `POST /webhooks/salesforce/outbound/{path_secret}`: a Salesforce Outbound Message (SOAP,
  unsigned, at-least-once, up to 100 notifications). Salesforce signs nothing, so the endpoint
  URL itself carries a secret (`Q2C_OUTBOUND_PATH_SECRETS`, several accepted at once so it
  rotates; compared in constant time; a wrong or missing one is answered 401 before the body
  is read, and starts nothing), optionally a client-certificate check done by a TLS-terminating
  proxy (`Q2C_OUTBOUND_REQUIRE_CLIENT_CERT_HEADER`), then the OrganizationId check. Each
  notification `Id` is claimed in the ledger (`q2c.ledger.inbound`): a redelivered one is
  acknowledged and does nothing (no start, no signal, no CRM call). The message is trusted for
  nothing but the opportunity IDs (and the stage, which only decides whether to look further:
  the engagement reads the opportunity from the CRM API).
  Salesforce redelivers until it gets the exact `<Ack>true</Ack>` response, so we answer
  503 (no ack) whenever Temporal cannot take the start, and Salesforce retries later.
  Only a Closed Won opportunity starts an engagement (see `q2c.webhook.intake`): the stage is
  the notification's `StageName`, or read from the CRM when the message does not carry it.
  Any other stage is acknowledged and starts nothing (a running engagement is still told
  `crm_changed`); the log line and the `X-Q2C-Outcome` response header say what was started,
  restarted (the previous run failed or was terminated), signalled, left unchanged or skipped,
  and why. Fast path (issue 15: 100 notifications took 24-66 s, past Salesforce's 10 s
  delivery timeout, so each message was redelivered and re-signalled up to 10 times): the
  notifications are acted on concurrently (Q2C_WEBHOOK_CONCURRENCY), a running engagement is
  not signalled when the notification repeats the last one seen (`q2c.ledger.notifications`),
  and when some notifications fail the others keep their claims, so the redelivery redoes
  only the failed ones.
- `POST /webhooks/closed-won`: a JSON event signed per Standard Webhooks, for any CRM
  (or middleware) that can send signed webhooks. Its type is `opportunity.closed_won` only,
  so it starts (or restarts) the engagement and answers whether it did. `Q2C_WEBHOOK_SECRET`
  may hold several secrets (rotation). The `webhook-id` is claimed in the ledger after the
  signature checks: the same message again (a retry, or a replay inside the 5-minute window,
  on any replica, after a restart) answers 200 `{"duplicate": true, ...}` and does nothing.

Before any of that, `q2c.webhook.limits.RequestLimits` (for the console and API too): a
per-client rate limit on the webhook routes (429 + Retry-After), the path-secret gate before
the body is read, body caps (413, `Content-Length` first, then counted while streaming) and a
body read timeout (408); `main()` adds a header timeout to uvicorn.

The same app serves the steward console (`/console`) and its JSON API (`/api`), see `console`.

Every message is fully validated before any workflow is started: a bad message starts
nothing. `python -m q2c.webhook.app` serves it with uvicorn on settings.webhook_port.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from temporalio.client import Client
from temporalio.service import RPCError

from q2c.engagement.client import StartResult, delivery_config, start_engagement, workflow_id_for
from q2c.ledger.inbound import Claim, InboundLog
from q2c.ledger.notifications import NotificationLog
from q2c.observability.metrics import count_duplicates
from q2c.settings import OUTBOUND_PATH, Settings, load_settings, refuse_unless_configured
from q2c.temporal import connect
from q2c.vendors.salesforce.client import SalesforceClient
from q2c.webhook.intake import (
    FINISHED,
    RESTARTED,
    SIGNALLED,
    SKIPPED,
    STARTED,
    UNCHANGED,
    CrmUnavailable,
    IntakeOutcome,
    crm_stage_lookup,
    take_all,
)
from q2c.webhook.limits import RateLimit, RequestLimits, Route, json_error
from q2c.webhook.outbound_message import (
    OutboundMessage,
    OutboundMessageError,
    ack_response,
    parse_outbound_message,
    soap_fault,
    to_18,
)
from q2c.webhook.standard_webhooks import DEFAULT_TOLERANCE_SECONDS, WebhookVerificationError, verify

log = logging.getLogger("q2c.webhook")

OUTCOME_HEADER = "X-Q2C-Outcome"
MAX_OUTCOME_HEADER = 8_000
SOAP_CONTENT_TYPE = "text/xml; charset=utf-8"
CLOSED_WON_EVENT = "opportunity.closed_won"
CLIENT_CERT_VERIFIED = "SUCCESS"  # nginx's $ssl_client_verify once the certificate checked out
STANDARD_WEBHOOKS_SOURCE = "standard-webhooks"
# a webhook-id is kept while a message with it could still pass the timestamp check: its
# timestamp may be up to the tolerance in the future, and is accepted up to the tolerance after
STANDARD_WEBHOOKS_WINDOW = timedelta(seconds=2 * DEFAULT_TOLERANCE_SECONDS + 60)
# notification IDs are kept well beyond the 24 hours Salesforce retries a message for
OUTBOUND_WINDOW = timedelta(hours=48)
PRUNE_EVERY_SECONDS = 60.0
MIN_PATH_SECRET_LENGTH = 16
_PATH_SECRET_RE = re.compile(r"^[A-Za-z0-9._~-]+$")  # URL path characters that need no escaping


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


def soap_error(status: int, code: str, message: str) -> Response:
    """The limits' errors for the Outbound Message endpoint, as SOAP faults Salesforce logs."""
    fault_code = "soapenv:Server" if status in (429, 503) else "soapenv:Client"
    return Response(soap_fault(message, code=fault_code), status_code=status, media_type=SOAP_CONTENT_TYPE)


class OutboundAuth:
    """Who may post Outbound Messages: the holder of a path secret (any of the configured ones,
    so the endpoint URL in Salesforce can move to a new secret before the old one is dropped),
    and, when configured, only through the proxy that verified Salesforce's client certificate."""

    def __init__(self, secrets: tuple[str, ...], client_cert_header: str | None) -> None:
        for secret in secrets:
            if len(secret) < MIN_PATH_SECRET_LENGTH or not _PATH_SECRET_RE.match(secret):
                raise ValueError(
                    f"Q2C_OUTBOUND_PATH_SECRETS: each secret needs at least {MIN_PATH_SECRET_LENGTH} characters "
                    "of A-Z a-z 0-9 . _ ~ -"
                )
        # digests of equal length: compare_digest's time does not depend on the secret's length
        self._digests = [hashlib.sha256(s.encode()).digest() for s in secrets]
        self.client_cert_header = client_cert_header.lower().encode() if client_cert_header else None

    def path_secret_ok(self, candidate: str) -> bool:
        digest = hashlib.sha256(candidate.encode("utf-8", errors="replace")).digest()
        return sum(hmac.compare_digest(digest, d) for d in self._digests) > 0  # every secret compared

    def client_cert_ok(self, headers: list[tuple[bytes, bytes]]) -> bool:
        if self.client_cert_header is None:
            return True
        values = [v for k, v in headers if k.lower() == self.client_cert_header]
        return values == [CLIENT_CERT_VERIFIED.encode()]

    def refusal(self, path: str, headers: list[tuple[bytes, bytes]]) -> Response | None:
        """None when the request may go on; else the answer (401 for a wrong path secret)."""
        secret = path[len(OUTBOUND_PATH) + 1 :] if path.startswith(OUTBOUND_PATH + "/") else ""
        if not secret or "/" in secret or not self.path_secret_ok(secret):
            # 401 before a byte of the body is read: nothing started, no CRM call. The same
            # answer for a missing, wrong or retired secret (it says nothing about which).
            return soap_error(401, "unauthorized", "unknown endpoint: the URL's path secret is not accepted")
        if not self.client_cert_ok(headers):
            return soap_error(403, "client_certificate_required", "a verified client certificate is required")
        return None


class _Inbound:
    """The ledger's inbound-message log, opened on first need (from async code, in a thread),
    pruned of each source's expired rows at most once a minute."""

    def __init__(self, settings: Settings, log: InboundLog | None) -> None:
        self.settings = settings
        self.log = log
        self._lock = asyncio.Lock()
        self._pruned: dict[str, float] = {}
        self._notifications: NotificationLog | None = None

    async def notifications(self) -> NotificationLog:
        """The last-seen notification fields per opportunity, in the same ledger."""
        if self._notifications is None:
            engine = (await self._get()).engine
            self._notifications = await asyncio.to_thread(NotificationLog, engine)
        return self._notifications

    async def _get(self) -> InboundLog:
        if self.log is None:
            async with self._lock:
                if self.log is None:
                    self.log = await asyncio.to_thread(self._open)
        return self.log

    def _open(self) -> InboundLog:
        from q2c.ledger.config import ledger_url
        from q2c.ledger.store import Ledger

        ledger = Ledger.from_url(ledger_url(self.settings))
        ledger.create_all()
        return InboundLog(ledger.engine)

    async def claim(self, source: str, ids: list[str], window: timedelta) -> Claim:
        log = await self._get()
        if time.monotonic() - self._pruned.get(source, float("-inf")) > PRUNE_EVERY_SECONDS:
            self._pruned[source] = time.monotonic()
            await asyncio.to_thread(log.prune, source, window)
        return await asyncio.to_thread(log.claim, source, ids)

    async def finish(self, source: str, ids: list[str]) -> None:
        if ids:
            await asyncio.to_thread((await self._get()).finish, source, ids)

    async def release(self, source: str, ids: list[str]) -> None:
        if ids:
            await asyncio.to_thread((await self._get()).release, source, ids)


def limits_for(settings: Settings, auth: OutboundAuth) -> dict:
    """The RequestLimits options of this service: the Outbound Message route (SOAP errors, its
    own cap, the path-secret gate), the JSON webhook, the console's forms and the API's JSON
    (their own smaller caps), and the default cap for everything else."""
    from q2c.console.api import MAX_JSON_BYTES
    from q2c.console.web import MAX_FORM_BYTES

    rate = RateLimit(settings.webhook_rate_limit)

    async def outbound_gate(scope) -> Response | None:
        return auth.refusal(scope["path"], scope.get("headers", []))

    cap = settings.max_body_bytes
    return dict(
        routes=[
            Route(OUTBOUND_PATH, settings.outbound_max_body_bytes, soap_error, rate, outbound_gate),
            Route("/webhooks/", cap, json_error, rate),
            Route("/console", min(cap, MAX_FORM_BYTES)),
            Route("/api/", min(cap, MAX_JSON_BYTES)),
        ],
        default=Route("/", cap),
        body_timeout_seconds=settings.body_timeout_seconds,
    )


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
    actions = (STARTED, RESTARTED, SIGNALLED, UNCHANGED, FINISHED, SKIPPED)
    by = {a: [o for o in outcomes if o.action == a] for a in actions}
    return {
        "started": [o.workflow_id for o in by[STARTED]],
        "restarted": [{"workflow_id": o.workflow_id, "previous_status": o.previous_status} for o in by[RESTARTED]],
        "signalled": [o.workflow_id for o in by[SIGNALLED]],
        "unchanged": [o.workflow_id for o in by[UNCHANGED]],
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


def create_app(
    settings: Settings,
    client: Client | None = None,
    *,
    crm: SalesforceClient | None = None,
    inbound: InboundLog | None = None,
) -> FastAPI:
    """The webhook service; `client` (Temporal), `crm` (the stage lookup) and `inbound` (the
    ledger's de-duplication log; default: the ledger of `settings`) may be injected."""
    holder = _ClientHolder(settings, client)
    crm_holder = _CrmHolder(settings, crm)
    auth = OutboundAuth(settings.outbound_path_secrets, settings.outbound_client_cert_header)
    dedup = _Inbound(settings, inbound)
    if not settings.outbound_path_secrets:
        _log("outbound_disabled", reason="Q2C_OUTBOUND_PATH_SECRETS is not set: every Outbound Message is refused")

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
    app.add_middleware(RequestLimits, **limits_for(settings, auth), log=_log)
    from q2c.console import mount_console  # the steward console (/console) and its JSON API (/api)

    mount_console(app, settings, holder.get)
    from q2c.observability.web import observe  # root span per webhook request, GET /metrics

    observe(app, settings, holder.get)

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

    @app.post(OUTBOUND_PATH + "/{path_secret}")
    async def salesforce_outbound(path_secret: str, request: Request) -> Response:
        started_at = time.monotonic()
        # the limits' gate has checked this before the body was read; checked again here so the
        # route is safe on its own
        refused = auth.refusal(request.url.path, request.scope.get("headers", []))
        if refused is not None:
            return refused
        body = await request.body()  # capped and timed by RequestLimits

        def fault(status: int, message: str, code: str = "soapenv:Client") -> Response:
            _log("outbound_rejected", status=status, reason=message)
            return Response(soap_fault(message, code=code), status_code=status, media_type=SOAP_CONTENT_TYPE)

        try:
            message = parse_outbound_message(body)
        except OutboundMessageError as err:
            return fault(400, str(err))
        if not _same_org(message.organization_id, settings.crm.organization_id):
            return fault(403, f"OrganizationId {message.organization_id} is not the configured org")
        source = f"salesforce-om:{message.organization_id[:15]}"
        ids = [n.notification_id for n in message.notifications if n.notification_id]
        try:
            claim = await dedup.claim(source, ids, OUTBOUND_WINDOW)
        except Exception as err:  # the ledger is down: no ack, Salesforce delivers again later
            log.warning("outbound message not taken: the ledger failed: %s", err)
            return fault(503, "temporarily unable to accept the message; retry later", code="soapenv:Server")
        if claim.busy:  # the same notification is being acted on by another request right now
            await dedup.release(source, claim.new)
            return fault(503, "a notification of this message is being processed; retry later", code="soapenv:Server")
        fresh = [n for n in message.notifications if not n.notification_id or n.notification_id in set(claim.new)]
        if not fresh:  # a redelivery: Salesforce has its Ack, nothing is done again
            _log("outbound_duplicate", action_id=message.action_id, notifications=len(claim.done))
            count_duplicates("salesforce-outbound", len(claim.done))
            summary = {**outcome_summary([]), "duplicate_notifications": len(claim.done)}
            return Response(
                ack_response(),
                status_code=200,
                media_type=SOAP_CONTENT_TYPE,
                headers={OUTCOME_HEADER: _outcome_header(summary)},
            )
        todo = OutboundMessage(message.organization_id, message.action_id, fresh)
        latest = todo.latest()
        stages = {opp: n.stage_name for opp, n in latest.items()}
        claimed = set(claim.new)
        ids_of = {
            opp: [n.notification_id for n in fresh if n.record_id == opp and n.notification_id in claimed]
            for opp in latest
        }
        fields = {opp: n.fields for opp, n in latest.items()}
        try:
            temporal = await holder.get()
            notes = await dedup.notifications()
            unchanged = await asyncio.to_thread(notes.unchanged, source, fields)
            lookup = crm_stage_lookup(crm_holder.get()) if any(v is None for v in stages.values()) else None
            taken = await take_all(
                temporal,
                stages,
                lookup=lookup,
                concurrency=settings.webhook_concurrency,
                unchanged=unchanged,
                task_queue=settings.task_queue,
                source="salesforce-outbound",
                delivery=delivery_config(settings),
            )
        except (TemporalUnavailable, RPCError, CrmUnavailable) as err:
            # no ack: Salesforce delivers the message again later, and every action is idempotent
            log.warning("outbound message not taken: %s", err)
            await dedup.release(source, claim.new)
            return fault(503, "temporarily unable to accept the message; retry later", code="soapenv:Server")
        except BaseException:
            await dedup.release(source, claim.new)
            raise
        failed = {opp: err for opp, err in taken.items() if isinstance(err, BaseException)}
        outcomes = [o for o in taken.values() if isinstance(o, IntakeOutcome)]
        done_ids = [i for opp in taken if opp not in failed for i in ids_of[opp]]
        # what was acted on stays claimed (its redelivery does nothing again); the rest is released
        await dedup.finish(source, done_ids)
        await asyncio.to_thread(notes.record, source, {o: fields[o] for o in taken if o not in failed})
        if failed:
            await dedup.release(source, [i for opp in failed for i in ids_of[opp]])
            first = next(iter(failed.values()))
            if not isinstance(first, (TemporalUnavailable, RPCError, CrmUnavailable)):
                raise first
            log.warning(
                "outbound message partly taken: %d of %d opportunities failed (%s); the rest is kept",
                len(failed),
                len(taken),
                first,
            )
            return fault(503, "temporarily unable to accept the message; retry later", code="soapenv:Server")
        count_duplicates("salesforce-outbound", len(claim.done))  # redelivered notifications in a new message
        summary = {**outcome_summary(outcomes), "duplicate_notifications": len(claim.done)}
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
                settings.webhook_secrets,
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
        webhook_id = headers["webhook-id"]
        if len(webhook_id) > 255:
            return JSONResponse({"error": "invalid_webhook_id", "message": "webhook-id is over 255 characters"}, 400)
        try:
            claim = await dedup.claim(STANDARD_WEBHOOKS_SOURCE, [webhook_id], STANDARD_WEBHOOKS_WINDOW)
        except Exception as err:
            log.warning("closed-won not taken: the ledger failed: %s", err)
            return JSONResponse({"error": "unavailable", "message": "retry later"}, status_code=503)
        if claim.busy:
            return JSONResponse(
                {"error": "in_progress", "message": "this webhook-id is being processed; retry later"},
                status_code=503,
                headers={"Retry-After": "5"},
            )
        if claim.is_duplicate:
            _log("closed_won_duplicate", webhook_id=webhook_id, opportunity_id=opp)
            count_duplicates(STANDARD_WEBHOOKS_SOURCE)
            return JSONResponse(
                {"duplicate": True, "webhook_id": webhook_id, "workflow_id": workflow_id_for(opp)}, status_code=200
            )
        try:
            (result,) = await start_all([opp], "webhook")
        except TemporalUnavailable as err:
            log.warning("closed-won start failed: %s", err)
            await dedup.release(STANDARD_WEBHOOKS_SOURCE, claim.new)
            return JSONResponse({"error": "temporal_unavailable", "message": "retry later"}, status_code=503)
        except BaseException:
            await dedup.release(STANDARD_WEBHOOKS_SOURCE, claim.new)
            raise
        await dedup.finish(STANDARD_WEBHOOKS_SOURCE, claim.new)
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
    refuse_unless_configured(settings, "webhook")
    from q2c.webhook.limits import header_timeout_protocol

    # uvicorn has a keep-alive timeout but none for headers: the protocol class adds it; the
    # header size is h11's limit (16 KiB), stated here so it is not left to a default
    uvicorn.run(
        create_app(settings),
        host=settings.webhook_host,
        port=settings.webhook_port,
        http=header_timeout_protocol(settings.header_timeout_seconds),
        h11_max_incomplete_event_size=16 * 1024,
        timeout_keep_alive=5,
    )
    from q2c.temporal import exit_process

    exit_process(0)


if __name__ == "__main__":
    main()
