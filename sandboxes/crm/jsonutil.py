"""JSON that keeps money exact: numbers parse to Decimal and Decimals serialize as numbers.

Salesforce sends currency fields as JSON numbers (`"Amount": 80000.0`). Going through
float would lose cents, so the sandbox reads with `parse_float=Decimal` and writes
Decimals verbatim as JSON numbers.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any


def loads(data: str | bytes) -> Any:
    return json.loads(data, parse_float=Decimal)


def dumps(value: Any) -> str:
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts)


def _encode(value: Any, out: list[str]) -> None:
    if isinstance(value, bool) or value is None:
        out.append(json.dumps(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("non-finite number")
        text = format(value, "f")
        out.append(text)
    elif isinstance(value, (int, str)):
        out.append(json.dumps(value))
    elif isinstance(value, float):
        out.append(repr(value))
    elif isinstance(value, datetime | date):
        out.append(json.dumps(value.isoformat()))
    elif isinstance(value, dict):
        out.append("{")
        for i, (k, v) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(json.dumps(str(k)))
            out.append(":")
            _encode(v, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, v in enumerate(value):
            if i:
                out.append(",")
            _encode(v, out)
        out.append("]")
    else:
        raise TypeError(f"cannot serialize {type(value).__name__}")
