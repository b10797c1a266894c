"""In-activity retries of transient vendor failures.

Temporal retries a failed activity as a whole; inside a long batch that would throw away the
progress of every request that succeeded. So a batch retries its own transient failures
(429 honouring Retry-After, 5xx, timeouts) a few times first, and only then fails the attempt.
Data rejections are never retried here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio.exceptions import ApplicationError

T = TypeVar("T")

ATTEMPTS = 6
BASE_DELAY = 0.2
MAX_DELAY = 5.0


def backoff(attempt: int, err: ApplicationError | None = None) -> float:
    if err is not None and err.next_retry_delay is not None:
        return min(err.next_retry_delay.total_seconds(), MAX_DELAY)
    return min(BASE_DELAY * 2**attempt, MAX_DELAY)


async def with_transient_retries(call: Callable[[], Awaitable[T]], *, attempts: int = ATTEMPTS) -> T:
    for attempt in range(attempts):
        try:
            return await call()
        except ApplicationError as err:
            if err.non_retryable or attempt == attempts - 1:
                raise
            await asyncio.sleep(backoff(attempt, err))
    raise AssertionError("unreachable")
