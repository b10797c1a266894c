"""Exact JSON for money: numbers are read as Decimal and written from Decimal, never float.

NetSuite sends and accepts currency amounts as JSON numbers. The standard library can
parse them exactly (`parse_float=Decimal`) but cannot write a Decimal, so `dumps_exact`
writes JSON itself, emitting each Decimal's own digits as a JSON number.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from starlette.requests import Request

from sandboxes.erp.errors import NetSuiteError

# The sandbox's own codec, written apart from q2c's connector on purpose: a bug in q2c's
# JSON cannot hide behind the same bug in the fake it is tested against.


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads_exact(text: str | bytes) -> Any:
    """JSON with numbers as Decimal/int; `NaN`/`Infinity` (which Python would read as floats)
    are not JSON and are refused."""
    return json.loads(text, parse_float=Decimal, parse_constant=_no_constant)


def dumps_exact(value: Any) -> str:
    """Decimals become placeholder strings for the standard encoder, then their own digits."""
    marker = uuid.uuid4().hex
    numbers: list[str] = []

    def prepare(v: Any) -> Any:
        if isinstance(v, Decimal):
            if not v.is_finite():
                raise ValueError(f"non-finite amount {v}")
            numbers.append(format(v, "f"))
            return f"{marker}{len(numbers) - 1}{marker}"
        if isinstance(v, float):
            raise TypeError("floats are not money: use Decimal")
        if isinstance(v, (datetime, date)):
            return v.isoformat()
        if isinstance(v, dict):
            return {str(k): prepare(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [prepare(x) for x in v]
        return v

    text = json.dumps(prepare(value), separators=(",", ":"))
    return re.sub(f'"{marker}(\\d+){marker}"', lambda m: numbers[int(m.group(1))], text)


async def json_object(request: Request) -> dict:
    """The request body as a JSON object (money exact), or NetSuite's USER_ERROR."""
    raw = await request.body()
    try:
        body = loads_exact(raw) if raw.strip() else {}
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise NetSuiteError(400, "INVALID_CONTENT", "Invalid content in the request body.") from None
    if not isinstance(body, dict):
        raise NetSuiteError(400, "USER_ERROR", "The request body must be a JSON object.")
    return body
