"""Traces: one tracer provider per process, configured by the standard OpenTelemetry variables.

Why the standard variables and not Q2C_ ones: an operator's collector, sidecar or platform
already sets them (and every other service of theirs reads the same), so q2c joins their
traces with no q2c-specific configuration:

- `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set: spans go to
  that collector over OTLP/HTTP (protobuf); headers, timeouts and certificates come from the
  other `OTEL_EXPORTER_OTLP_*` variables, read by the exporter itself;
- `OTEL_TRACES_EXPORTER=console`: spans are printed to stdout (a developer's quick look);
  `otlp,console` does both; `none` turns tracing off even with an endpoint;
- neither: no provider is installed and every span is a no-op (nothing is buffered);
- `OTEL_SDK_DISABLED=true`: off; `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`: the
  resource (default service name: q2c-worker, q2c-webhook, q2c-cli, by process).

`ensure_tracing()` is called by `q2c.temporal.connect`, the one place a Temporal client is
built, so the worker, the webhook service and every CLI command are covered without each
remembering it; `flush()` runs before `exit_process` leaves with os._exit.

The trace of one closed-won deal: the webhook's inbound request (`ServerSpanMiddleware`, the
root), the Temporal client's StartWorkflow/SignalWorkflow (the SDK's TracingInterceptor,
which puts the context in the workflow's headers), RunWorkflow, StartActivity/RunActivity,
and one span per vendor HTTP call (`vendor_call_span`, from `q2c.vendors.http`).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from q2c.domain.text import clip

TRACER_NAME = "q2c"
_lock = threading.Lock()
_configured: str | None = None  # "off" | "on" once decided for this process


def _exporters_wanted() -> list[str]:
    """The exporters the environment asks for: otlp, console (or none)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if "none" in names:
        return []
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not names:
        return ["otlp"] if endpoint else []
    return [n for n in names if n in ("otlp", "console") and (n != "otlp" or endpoint)]


def default_service_name() -> str:
    """q2c-worker / q2c-webhook / q2c-cli, from how the process was started."""
    argv0 = " ".join(sys.argv[:2])
    if "worker" in argv0:
        return "q2c-worker"
    if "webhook" in argv0 or "uvicorn" in argv0:
        return "q2c-webhook"
    return "q2c-cli"


def setup_tracing(service_name: str | None = None, *, span_processors: list | None = None) -> bool:
    """Install this process's tracer provider from the OTEL_* environment; True when spans are
    recorded. `span_processors` adds processors of the caller's own (a test's in-memory
    exporter): with them a provider is installed even when the environment asks for none, and
    an already installed provider gets them added (OpenTelemetry allows one global provider)."""
    global _configured
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

    with _lock:
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            for processor in span_processors or []:
                current.add_span_processor(processor)
            _configured = "on"
            return True
        wanted = _exporters_wanted()
        if not wanted and not span_processors:
            _configured = _configured or "off"
            return False
        name = os.environ.get("OTEL_SERVICE_NAME") or service_name or default_service_name()
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
        if "otlp" in wanted:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        if "console" in wanted:
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        for processor in span_processors or []:
            provider.add_span_processor(processor)
        trace.set_tracer_provider(provider)
        _configured = "on"
        return True


def ensure_tracing(service_name: str | None = None) -> None:
    """`setup_tracing` once per process (cheap after the first call)."""
    if _configured is None:
        setup_tracing(service_name)


def flush(timeout_millis: int = 5_000) -> None:
    """Export what is buffered (before a process leaves with os._exit, which skips atexit)."""
    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is not None:
        try:
            force_flush(timeout_millis)
        except Exception:  # a collector that is down must not keep a process from exiting
            pass


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


_current_vendor_span: ContextVar[VendorSpan | None] = ContextVar("q2c_vendor_span", default=None)


class VendorSpan:
    """What `q2c.vendors.http` sets on the span of one vendor call as it learns it: each
    attempt's audit record (an event, so a retried read shows every try and its correlation
    ID) and the last one's status, outcome and correlation ID on the span itself."""

    def __init__(self, span: trace.Span, operation: str) -> None:
        self.span = span
        self.operation = operation
        self.attempts = 0

    def record(self, correlation_id: str, operation: str, status: int | None, outcome: str, error_code: str | None):
        attributes = {"q2c.correlation_id": correlation_id, "q2c.vendor.operation": operation, "outcome": outcome}
        if status is not None:
            attributes["http.response.status_code"] = status
        if error_code:
            attributes["error_code"] = error_code
        self.span.add_event("vendor.attempt", attributes)
        if operation != self.operation:  # a token fetch made on the way: an event, not the call
            return
        self.attempts += 1
        self.span.set_attribute("q2c.vendor.retry_count", self.attempts - 1)
        self.span.set_attribute("q2c.correlation_id", correlation_id)
        self.span.set_attribute("q2c.vendor.outcome", outcome)
        if status is not None:
            self.span.set_attribute("http.response.status_code", status)
        if error_code:
            self.span.set_attribute("q2c.vendor.error_code", error_code)
        if outcome == "ok":
            self.span.set_status(Status(StatusCode.OK))
        else:
            self.span.set_status(Status(StatusCode.ERROR, f"{outcome}{': ' + error_code if error_code else ''}"))


def current_vendor_span() -> VendorSpan | None:
    return _current_vendor_span.get()


@contextmanager
def vendor_call_span(system: str, operation: str, method: str, path: str) -> Iterator[VendorSpan]:
    """A CLIENT span around one vendor call, its in-place retries included: the system,
    operation, correlation ID (the X-Correlation-Id header and the ledger's api_calls row, so a
    trace leads to the audit and back), HTTP status, outcome and retry count."""
    with tracer().start_as_current_span(
        f"{system} {operation}",
        kind=SpanKind.CLIENT,
        attributes={
            "q2c.vendor.system": system,
            "q2c.vendor.operation": operation,
            "http.request.method": method,
            "url.path": clip(path, 500),
            "q2c.vendor.retry_count": 0,
        },
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        holder = VendorSpan(span, operation)
        token = _current_vendor_span.set(holder)
        try:
            yield holder
        finally:
            _current_vendor_span.reset(token)


class ServerSpanMiddleware:
    """ASGI middleware: each inbound request to the webhook routes is a SERVER span, the root
    of the deal's trace (a caller's W3C traceparent, if it sends one, is continued). The
    Temporal client's StartWorkflow/SignalWorkflow spans, made while handling it, are its
    children and travel into the workflow in its headers. Only the webhook routes: the
    console's page views are not deals."""

    def __init__(self, app, prefixes: tuple[str, ...] = ("/webhooks/",)) -> None:
        self.app = app
        self.prefixes = prefixes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(self.prefixes):
            return await self.app(scope, receive, send)
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        parent = propagate.extract(carrier)
        route = scope["path"]
        if route.startswith("/webhooks/salesforce/outbound/"):
            route = "/webhooks/salesforce/outbound/{path_secret}"  # never the secret in a span
        token = otel_context.attach(parent)
        try:
            with tracer().start_as_current_span(
                f"{scope['method']} {route}",
                kind=SpanKind.SERVER,
                attributes={"http.request.method": scope["method"], "http.route": route},
            ) as span:
                status_holder: dict[str, int] = {}

                async def send_with_status(message):
                    if message["type"] == "http.response.start":
                        status_holder["status"] = message["status"]
                        span.set_attribute("http.response.status_code", message["status"])
                        for key, value in message.get("headers", []):
                            if key.lower() == b"x-q2c-outcome":
                                span.set_attribute("q2c.webhook.outcome", clip(value.decode("latin-1"), 2000))
                    await send(message)

                await self.app(scope, receive, send_with_status)
                if status_holder.get("status", 500) >= 500:
                    span.set_status(Status(StatusCode.ERROR))
        finally:
            otel_context.detach(token)
