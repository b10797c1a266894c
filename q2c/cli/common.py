"""What every `q2c` command group shares: one Temporal connection made the same way, and
the exit code when Temporal cannot be reached."""

from __future__ import annotations

import asyncio

import typer
from temporalio.client import Client

from q2c.settings import Settings, load_settings


async def connect(settings: Settings) -> Client:
    from q2c.temporal import connect as temporal_connect

    return await temporal_connect(settings)


def _run(coro_fn):
    """Connect with load_settings() and run `coro_fn(client, settings)`; exit 2 if no Temporal."""
    settings = load_settings()

    async def main():
        try:
            client = await connect(settings)
        except Exception as err:
            typer.echo(f"error: cannot connect to Temporal at {settings.temporal_address}: {err}", err=True)
            raise typer.Exit(2) from None
        return await coro_fn(client, settings)

    return asyncio.run(main())
