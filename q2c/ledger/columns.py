"""Column types that behave the same on SQLite and PostgreSQL.

- `ExactDecimal`: money and rates. PostgreSQL gets a native NUMERIC(18,4); SQLite has no
  exact decimal type (its NUMERIC affinity goes through float), so there the value is
  stored as a canonical string. Values are quantized to 4 places; a value that would need
  rounding to fit is refused rather than silently changed (money is never rounded here).
- `UTCDateTime`: timezone-aware UTC in and out (SQLite stores naive UTC text; PostgreSQL
  uses TIMESTAMP WITH TIME ZONE).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import DateTime, Numeric, String
from sqlalchemy.types import TypeDecorator

SCALE = 4
PRECISION = 18
_QUANTUM = Decimal(1).scaleb(-SCALE)


def to_exact(value: object) -> Decimal:
    """A Decimal at the ledger's scale; raises ValueError if that would lose digits."""
    if isinstance(value, float):
        raise ValueError(f"refusing float {value!r} for a money column: pass a Decimal or str")
    try:
        dec = Decimal(str(value)) if not isinstance(value, Decimal) else value
        quantized = dec.quantize(_QUANTUM)
    except InvalidOperation as err:
        raise ValueError(f"not a decimal within NUMERIC({PRECISION},{SCALE}): {value!r}") from err
    if quantized != dec:
        raise ValueError(f"{value!r} has more than {SCALE} decimal places; the ledger never rounds money")
    if len(quantized.as_tuple().digits) > PRECISION:
        raise ValueError(f"{value!r} does not fit NUMERIC({PRECISION},{SCALE})")
    return quantized


class ExactDecimal(TypeDecorator):
    impl = Numeric(PRECISION, SCALE, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric(PRECISION, SCALE, asdecimal=True))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        exact = to_exact(value)
        return format(exact, "f") if dialect.name == "sqlite" else exact

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return Decimal(value) if not isinstance(value, Decimal) else value.quantize(_QUANTUM)


class UTCDateTime(TypeDecorator):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)
