"""Exact JSON for money: numbers are read as Decimal and written from Decimal, never float.

NetSuite sends and accepts currency amounts as JSON numbers. The standard library can
parse them exactly (`parse_float=Decimal`) but cannot write a Decimal, so `dumps_exact`
writes JSON itself, emitting each Decimal's own digits as a JSON number.
"""

from __future__ import annotations

from starlette.requests import Request

from domain.exact_json import dumps_exact, loads_exact  # noqa: F401 (the sandbox's JSON codec)
from sandbox.erp.errors import NetSuiteError


async def json_object(request: Request) -> dict:
    """The request body as a JSON object (money exact), or NetSuite's USER_ERROR."""
    raw = await request.body()
    try:
        body = loads_exact(raw) if raw.strip() else {}
    except ValueError:
        raise NetSuiteError(400, "USER_ERROR", "Invalid content in the request body.") from None
    if not isinstance(body, dict):
        raise NetSuiteError(400, "USER_ERROR", "The request body must be a JSON object.")
    return body
