"""Exact JSON for money: numbers are read as Decimal and written from Decimal, never float.

NetSuite sends and accepts currency amounts as JSON numbers. The standard library can
parse them exactly (`parse_float=Decimal`) but cannot write a Decimal, so `dumps_exact`
writes JSON itself, emitting each Decimal's own digits as a JSON number.
"""

from __future__ import annotations

from domain.exact_json import dumps_exact, loads_exact  # noqa: F401 (the sandbox's JSON codec)
