"""How every q2c process connects to Temporal: same data converter and codec, same tracing,
TLS or an API key when the environment configuration asks for them.

A local dev server, a self-hosted cluster behind TLS or mTLS, and Temporal Cloud (API key or
mTLS) differ only in configuration: Temporal's own variables (TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS, TEMPORAL_TLS_CLIENT_CERT_PATH,
TEMPORAL_TLS_CLIENT_KEY_PATH, TEMPORAL_TLS_SERVER_CA_CERT_PATH, TEMPORAL_TLS_SERVER_NAME, ...)
or a profile of the TOML file, read by `temporalio.envconfig` in `settings.load_settings()`.
"""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime

from q2c.codec import codec_from_spec, data_converter
from q2c.settings import Settings


def converter_for(settings: Settings) -> DataConverter:
    """The data converter every client and worker of this deployment shares (codec included)."""
    return data_converter(codec_from_spec(settings.codec_keys))


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """The client of every q2c process. The process's tracer provider is set up here (from the
    OTEL_* environment, see q2c.observability.tracing), so the worker, the webhook service and
    every CLI command trace their Temporal calls, and the TracingInterceptor carries the trace
    into workflows and activities (the worker takes it from its client). `runtime`: the
    worker's, when it serves the SDK's metrics (Q2C_METRICS_ADDRESS)."""
    from q2c.observability.tracing import ensure_tracing

    ensure_tracing()
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=converter_for(settings),
        interceptors=[TracingInterceptor()],
        runtime=runtime,
        **settings.temporal_connect,
    )


def exit_process(code: int = 0) -> None:
    """End a process that used a Temporal client without interpreter finalization.

    The SDK's Rust runtime threads can outlive the event loop, and CPython's finalization then
    sometimes aborts with "PyGILState_Release: thread state ... must be current" (SIGABRT,
    temporalio/sdk-python#300; about 1 in 30 CLI runs here). Flushing and leaving with
    os._exit skips that teardown; everything of ours is already closed when this is called.
    """
    import os
    import sys

    from q2c.observability.tracing import flush

    flush()  # spans still buffered would be lost: os._exit skips atexit
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
