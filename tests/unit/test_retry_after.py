"""Retry-After as q2c reads it (RFC 9110: seconds or an HTTP date), bounded: the wait is the
vendor's, but never longer than RETRY_AFTER_MAX_SECONDS, and "no wait" is no hint at all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx

from q2c.vendors.http import RETRY_AFTER_MAX_SECONDS, _retry_after


def answer(value: str | None) -> httpx.Response:
    return httpx.Response(429, headers={"Retry-After": value} if value is not None else {})


def test_seconds_dates_and_bounds():
    assert _retry_after(answer("3")) == timedelta(seconds=3)
    assert _retry_after(answer("1.5")) == timedelta(seconds=1.5)
    assert _retry_after(answer("86400")) == timedelta(seconds=RETRY_AFTER_MAX_SECONDS)
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert timedelta(seconds=25) < _retry_after(answer(later)) <= timedelta(seconds=30)
    assert _retry_after(answer("0")) is None and _retry_after(answer("-4")) is None
    assert _retry_after(answer("soon")) is None and _retry_after(answer(None)) is None
