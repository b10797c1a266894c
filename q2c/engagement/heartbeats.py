"""Heartbeats for activities that wait on a vendor.

Each such activity is scheduled with a heartbeat timeout (`q2c.engagement.steps.VENDOR_HEARTBEAT`,
20 s) so an attempt lost with a killed worker is retried after ~20 s instead of after its whole
start-to-close (issue 15 measured a fixed minute), and a timed-out attempt is cancelled at its
next heartbeat, so its requests do not run on beside the next attempt. Shared by setup and
delivery activities alike.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio import activity

T = TypeVar("T")
HEARTBEAT_EVERY_SECONDS = 5.0  # the SDK sends at most one per 80% of the heartbeat timeout


async def while_heartbeating(work: Awaitable[T], every: float = HEARTBEAT_EVERY_SECONDS) -> T:
    """Await `work`, heartbeating every `every` seconds until it is done. When the activity is
    cancelled (its heartbeat timeout passed, the worker shuts down), `work` is cancelled too:
    its requests are not left running beside the next attempt."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every)
            if done:
                return task.result()
            activity.heartbeat()
    finally:
        if not task.done():
            task.cancel()


def heartbeating(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """An activity method that heartbeats while it runs; `heartbeats = True` tells
    `q2c.engagement.steps.execute` to schedule it with a heartbeat timeout."""

    @functools.wraps(fn)
    async def run(self: Any, input: Any) -> T:
        return await while_heartbeating(fn(self, input))

    run.heartbeats = True  # type: ignore[attr-defined]
    return run
