"""How every q2c process connects to Temporal: same data converter, same tracing."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter

from q2c.settings import Settings


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        interceptors=[TracingInterceptor()],
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

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
