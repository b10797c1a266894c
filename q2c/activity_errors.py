"""Unexpected errors are retried a bounded number of times, then handed to a steward.

The connectors raise every vendor answer as an `ApplicationError` that says whether it is
transient (retry without limit, with back-off: the vendor comes back) or a rejection
(non-retryable: the workflow parks). Anything else an activity raises (a `ValidationError` on
a record we cannot map, a database refusing a value, a bug) would be retried by Temporal
forever, each attempt repeating the same failure. This worker interceptor lets such an error
through `MAX_UNEXPECTED_ATTEMPTS - 1` times (it may be a passing glitch), then raises it as a
non-retryable `UnexpectedError` naming the activity, so the engagement parks with the message.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

MAX_UNEXPECTED_ATTEMPTS = 5
UNEXPECTED_ERROR = "UnexpectedError"


class _BoundedInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except (ApplicationError, CancelledError, asyncio.CancelledError):
            raise
        except Exception as err:
            info = activity.info()
            if info.attempt < MAX_UNEXPECTED_ATTEMPTS:
                raise
            raise ApplicationError(
                f"{info.activity_type} failed {info.attempt} times with {type(err).__name__}: {err}"[:2000],
                {
                    "system": "q2c",
                    "operation": info.activity_type,
                    "attempts": info.attempt,
                    "errors": [{"code": type(err).__name__, "message": str(err)[:1000]}],
                },
                type=UNEXPECTED_ERROR,
                non_retryable=True,
            ) from err


class BoundedUnexpectedErrors(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _BoundedInbound(next)
