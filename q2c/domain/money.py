"""Money: Decimal amount + ISO 4217 currency. Never float.

Rounding rule, stated once: half-up to the currency's minor unit. A time entry's amount is
rounded with it exactly once, after the exact minutes x rate / 60 (`q2c.domain.money.entry_amount`).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, Inexact, localcontext

from pydantic import BaseModel, ConfigDict, field_validator

# ISO 4217 minor units for the currencies q2c handles.
MINOR_UNITS: dict[str, int] = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "CAD": 2,
    "AUD": 2,
    "CHF": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "PLN": 2,
    "SGD": 2,
    "NZD": 2,
    "INR": 2,
    "ZAR": 2,
    "MXN": 2,
    "BRL": 2,
    "JPY": 0,
    "KRW": 0,
    "BHD": 3,
    "KWD": 3,
}


def is_currency(code: str) -> bool:
    return code in MINOR_UNITS


def minor_units(currency: str) -> int:
    """The currency's exponent (ISO 4217 minor units): USD 2, JPY 0, BHD 3."""
    return MINOR_UNITS[currency]


def format_amount(amount: Decimal, currency: str, *, places: int | None = None) -> str:
    """An amount as people read it: to the currency's minor unit (USD 150 -> "150.00", JPY
    15000 -> "15000", BHD 1.5 -> "1.500"), or to more `places` when given (never fewer, never
    rounded: a value with more places than shown is printed with all of them)."""
    value = Decimal(amount)
    shown = max(minor_units(currency), places or 0)
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > shown:
        shown = -exponent
    return f"{value.quantize(Decimal(1).scaleb(-shown)):f}"


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Half-up to the currency's minor unit."""
    exponent = Decimal(1).scaleb(-MINOR_UNITS[currency])
    return Decimal(amount).quantize(exponent, rounding=ROUND_HALF_UP)


def entry_amount(minutes: int, rate: Decimal, currency: str) -> Decimal:
    """THE rule: exact minutes x rate / 60, rounded half-up once to the currency's minor unit.

    Computed with integers, so no step rounds (not even at Decimal's 28-digit precision):
    61 min x 500.09 / 60 = 508.424833... -> 508.42."""
    if isinstance(minutes, bool) or not isinstance(minutes, int) or minutes < 0:
        raise ValueError(f"minutes must be a whole number >= 0, not {minutes!r}")
    if not isinstance(rate, Decimal) or not rate.is_finite() or rate < 0:
        raise ValueError(f"rate must be a finite Decimal >= 0, not {rate!r}")
    places = MINOR_UNITS[currency]
    # value in minor units = minutes x rate x 10^places / 60, as an exact fraction n / d
    with localcontext() as ctx:
        ctx.prec = 60
        ctx.traps[Inexact] = True  # the product is exact, or this raises: it is never rounded
        numerator, denominator = (Decimal(minutes) * rate).scaleb(places).as_integer_ratio()
    denominator *= 60
    units, remainder = divmod(numerator, denominator)
    if 2 * remainder >= denominator:  # half-up (every value here is >= 0)
        units += 1
    return round_money(Decimal(units).scaleb(-places), currency)


class Money(BaseModel):
    model_config = ConfigDict(frozen=True)

    amount: Decimal
    currency: str

    @field_validator("currency")
    @classmethod
    def _iso(cls, v: str) -> str:
        if not is_currency(v):
            raise ValueError(f"'{v}' is not a supported ISO 4217 currency code")
        return v

    @field_validator("amount", mode="before")
    @classmethod
    def _no_float(cls, v: object) -> object:
        if isinstance(v, float):
            raise ValueError("money amounts must be Decimal or string, never float")
        return v

    def rounded(self) -> Money:
        return Money(amount=round_money(self.amount, self.currency), currency=self.currency)

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"
