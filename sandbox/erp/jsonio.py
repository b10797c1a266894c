"""Exact JSON for money: numbers are read as Decimal and written from Decimal, never float.

NetSuite sends and accepts currency amounts as JSON numbers. The standard library can
parse them exactly (`parse_float=Decimal`) but cannot write a Decimal, so `dumps_exact`
writes JSON itself, emitting each Decimal's own digits as a JSON number.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any


def loads_exact(text: str | bytes) -> Any:
    return json.loads(text, parse_float=Decimal)


def dumps_exact(value: Any) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return json.dumps(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"non-finite amount {value}")
        return format(value, "f")
    if isinstance(value, float):
        raise TypeError("floats are not allowed in NetSuite sandbox JSON: use Decimal")
    if isinstance(value, (datetime, date)):
        return json.dumps(value.isoformat())
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dumps_exact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps_exact(v) for v in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")
