"""JSON that keeps money exact, shared by the NetSuite connector and the ERP sandbox: numbers
parse to Decimal, Decimals are written as JSON numbers of exactly their digits, and floats are
refused (they cannot carry cents exactly)."""

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
        raise TypeError("floats are not money: use Decimal")
    if isinstance(value, (datetime, date)):
        return json.dumps(value.isoformat())
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dumps_exact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps_exact(v) for v in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")
