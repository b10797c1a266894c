"""Salesforce-style record IDs.

A Salesforce ID is 15 case-sensitive characters (3-character key prefix naming the object
type, then instance and sequence characters) plus a 3-character case-insensitive checksum
suffix, giving the 18-character form the REST API returns. The suffix encodes, for each
5-character chunk, which characters are upper-case letters (bit i set for position i),
as one character of "A..Z0..5".
"""

from __future__ import annotations

import string

KEY_PREFIXES: dict[str, str] = {
    "Account": "001",
    "Opportunity": "006",
    "OpportunityLineItem": "00k",
}
NOTIFICATION_PREFIX = "04l"  # outbound message notification
ACTION_PREFIX = "04k"  # workflow outbound message action
QUERY_LOCATOR_PREFIX = "01g"

_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_SUFFIX_ALPHABET = string.ascii_uppercase + "012345"
_INSTANCE = "5e0000"  # pod/instance characters of the demo sandbox org
DEFAULT_INSTANCE = _INSTANCE


def checksum_suffix(id15: str) -> str:
    """The 3-character suffix that turns a 15-character ID into its 18-character form."""
    if len(id15) != 15:
        raise ValueError("a 15-character id is required")
    out = []
    for chunk in range(3):
        bits = 0
        for i, ch in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= ch <= "Z":
                bits |= 1 << i
        out.append(_SUFFIX_ALPHABET[bits])
    return "".join(out)


def base62(n: int, width: int) -> str:
    if n < 0:
        raise ValueError("negative")
    digits = []
    while n:
        n, r = divmod(n, 62)
        digits.append(_BASE62[r])
    text = "".join(reversed(digits)) or "0"
    if len(text) > width:
        raise ValueError("sequence overflow")
    return text.rjust(width, "0")


def make_id(prefix: str, sequence: int, instance: str = _INSTANCE) -> str:
    """18-character ID: prefix + instance + base62 sequence + checksum suffix. Distinct
    instances (orgs) never share an ID, as in Salesforce."""
    id15 = prefix + instance + base62(sequence, 15 - len(prefix) - len(instance))
    return id15 + checksum_suffix(id15)


def is_valid_id(value: str) -> bool:
    if len(value) == 15:
        return value.isalnum()
    return len(value) == 18 and value.isalnum() and checksum_suffix(value[:15]) == value[15:].upper()


def looks_like_id(value: str) -> bool:
    """15 or 18 letters and digits: the only shape that can name a record (anything else
    is answered NOT_FOUND without a lookup)."""
    return len(value) in (15, 18) and value.isascii() and value.isalnum()


def normalize_id(value: str) -> str:
    """Accept 15- or 18-character IDs; return the 18-character form."""
    if len(value) == 15:
        return value + checksum_suffix(value)
    return value
