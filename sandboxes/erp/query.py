"""The `q` parameter of record collection GETs (NetSuite's simple query syntax).

    q=externalId IS "X"
    q=companyName START_WITH "Acme" AND subsidiary ANY_OF [1, 2]
    q=parent ANY_OF 101
    q=custentity_contract_value GREATER 1000
    q=customer ANY_OF [5002] AND isBilled IS false AND tranDate ON_OR_BEFORE "2027-01-31"

Conditions are `field OPERATOR value`, joined by AND / OR (AND binds tighter). Operators:
IS, IS_NOT, ANY_OF, NONE_OF, START_WITH, CONTAIN, EQUAL, GREATER, GREATER_OR_EQUAL, LESS,
LESS_OR_EQUAL, EMPTY, EMPTY_NOT, and for dates ON, BEFORE, AFTER, ON_OR_BEFORE, ON_OR_AFTER
(values as YYYY-MM-DD or NetSuite's M/D/YYYY). Booleans compare with IS true / IS false.
Text comparisons ignore case, as NetSuite's do. A reference
field compares by the referenced record's internal ID. A malformed query is 400
INVALID_PARAMETER.

`parse` also answers the query's equalities (`field IS v`, `field ANY_OF [v, ...]`) when it is
a conjunction (AND only), each as the `value_key`s a record's field must have to satisfy it, so
that the store can narrow a list to the records an index files under those keys (the list still
tests every candidate with the whole query, so the index only ever saves work).
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sandboxes.erp.errors import NetSuiteError

_TOKEN = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|(\[)|(\])|(,)|([^\s\[\],"]+))')
UNARY = {"EMPTY", "EMPTY_NOT"}
OPERATORS = {
    "IS",
    "IS_NOT",
    "ANY_OF",
    "NONE_OF",
    "START_WITH",
    "CONTAIN",
    "EQUAL",
    "GREATER",
    "GREATER_OR_EQUAL",
    "LESS",
    "LESS_OR_EQUAL",
} | UNARY
DATE_OPERATORS = {"ON", "BEFORE", "AFTER", "ON_OR_BEFORE", "ON_OR_AFTER"}
OPERATORS |= DATE_OPERATORS
_US_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")

Predicate = Callable[[dict], bool]
Key = tuple[bool, str]  # (the value is a boolean, its lower-cased text)
_BOOL_SPELLING = {"true": "t", "false": "f"}
EQUALITY_OPERATORS = {"IS", "ANY_OF"}


def _bad(detail: str) -> NetSuiteError:
    return NetSuiteError(
        400, "INVALID_PARAMETER", f"Invalid search query. Detailed unprocessed description follows. {detail}", "q"
    )


def _tokens(q: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    q = q.strip()
    while pos < len(q):
        m = _TOKEN.match(q, pos)
        if not m or m.end() == pos:
            raise _bad(f"Unexpected character at position {pos}.")
        pos = m.end()
        if m.group(1) is not None:
            out.append(("str", m.group(1).replace('\\"', '"')))
        elif m.group(2):
            out.append(("[", "["))
        elif m.group(3):
            out.append(("]", "]"))
        elif m.group(4):
            out.append((",", ","))
        elif m.group(5):
            out.append(("word", m.group(5)))
    return out


def _scalar(value: object) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "T" if value else "F"
    return str(value)


def _num(text: str | None) -> Decimal | None:
    """A finite number, or None (NaN and Infinity compare with nothing)."""
    try:
        number = Decimal(text) if text is not None else None
    except (InvalidOperation, ValueError):
        return None
    return number if number is not None and number.is_finite() else None


def _iso_date(text: str) -> str:
    m = _US_DATE.match(text)
    if m:
        return f"{m.group(3)}-{int(m.group(1)):02d}-{int(m.group(2)):02d}"
    if not re.match(r"^\d{4}-\d{2}-\d{2}$", text):
        raise _bad(f"Invalid date '{text}'.")
    return text


_ORDER = {
    "ON": operator.eq,
    "BEFORE": operator.lt,
    "AFTER": operator.gt,
    "ON_OR_BEFORE": operator.le,
    "ON_OR_AFTER": operator.ge,
    "EQUAL": operator.eq,
    "GREATER": operator.gt,
    "GREATER_OR_EQUAL": operator.ge,
    "LESS": operator.lt,
    "LESS_OR_EQUAL": operator.le,
}


def _date_condition(field: str, op: str, value: str) -> Predicate:
    wanted = _iso_date(value)
    compare = _ORDER[op]

    def test(record: dict) -> bool:
        actual = record.get(field)
        return isinstance(actual, str) and compare(actual, wanted)

    return test


NUMBER_OPERATORS = {"EQUAL", "GREATER", "GREATER_OR_EQUAL", "LESS", "LESS_OR_EQUAL"}


def _condition(field: str, op: str, values: list[str]) -> Predicate:
    """One condition as a test of a record, with everything that does not depend on the
    record (lower-casing, the boolean spelling, the number, the comparison) worked out once
    here: a list filter runs it over every record of the type (20,000 timeBills at month-end)."""
    if op in DATE_OPERATORS:
        return _date_condition(field, op, values[0])
    if op in NUMBER_OPERATORS:
        number = _num(values[0])
        if number is None:
            raise _bad(f"'{values[0][:40]}' is not a number for {field} {op}.")
        compare = _ORDER[op]

        def test_number(record: dict) -> bool:
            actual = _num(_scalar(record.get(field)))
            return actual is not None and compare(actual, number)

        return test_number
    if op in UNARY:
        empty = op == "EMPTY"
        return lambda record: (_scalar(record.get(field)) is None) == empty
    wanted = [v.lower() for v in values]
    as_bool = [_BOOL_SPELLING.get(w, w) for w in wanted]
    text_match = _text_match(op, wanted)
    bool_match = _text_match(op, as_bool)

    def test(record: dict) -> bool:
        raw = record.get(field)
        actual = _scalar(raw)
        return (bool_match if isinstance(raw, bool) else text_match)(actual.lower() if actual is not None else None)

    return test


def _text_match(op: str, wanted: list[str]) -> Callable[[str | None], bool]:
    """The test of a lower-cased value (None: empty) against the lower-cased wanted values."""
    first = wanted[0]
    if op == "IS":
        return lambda low: low == first
    if op == "IS_NOT":
        return lambda low: low != first
    if op == "ANY_OF":
        among = frozenset(wanted)
        return lambda low: low in among
    if op == "NONE_OF":
        among = frozenset(wanted)
        return lambda low: low not in among
    if op == "START_WITH":
        return lambda low: low is not None and low.startswith(first)
    return lambda low: low is not None and first in low  # CONTAIN


def value_key(raw: object) -> Key | None:
    """The key a record's field value is compared by in `IS` and `ANY_OF` (see `_condition`):
    the lower-cased text of the value (a reference's ID), marked when the value is a boolean
    (which compares with the spelling true/false); None for an empty value, which they never match."""
    actual = _scalar(raw)
    if actual is None:
        return None
    return isinstance(raw, bool), actual.lower()


def _wanted_keys(op: str, values: list[str]) -> frozenset[Key]:
    """The `value_key`s that satisfy `IS` (its first value) or `ANY_OF` (any of them): exactly
    the values `_condition` accepts."""
    wanted = [v.lower() for v in (values[:1] if op == "IS" else values)]
    return frozenset([(False, w) for w in wanted] + [(True, _BOOL_SPELLING.get(w, w)) for w in wanted])


@dataclass(frozen=True)
class Query:
    predicate: Predicate
    # for a conjunction only (no OR): per `field IS/ANY_OF ...` condition, the field and the
    # keys its value must have; every record the query matches satisfies each of them
    equalities: tuple[tuple[str, frozenset[Key]], ...] = ()


def parse(q: str) -> Query:
    toks = _tokens(q)
    i = 0
    groups: list[list[Predicate]] = [[]]
    equalities: list[tuple[str, frozenset[Key]]] = []
    while True:
        if i + 1 >= len(toks) or toks[i][0] != "word" or toks[i + 1][0] != "word":
            raise _bad("Expected: field OPERATOR value.")
        field, op = toks[i][1], toks[i + 1][1].upper()
        if op not in OPERATORS:
            raise _bad(f"Unknown operator '{toks[i + 1][1]}'.")
        i += 2
        values: list[str] = []
        if op not in UNARY:
            if i < len(toks) and toks[i][0] == "[":
                i += 1
                while i < len(toks) and toks[i][0] != "]":
                    if toks[i][0] in ("str", "word"):
                        values.append(toks[i][1])
                    elif toks[i][0] != ",":
                        raise _bad("Malformed value list.")
                    i += 1
                if i >= len(toks):
                    raise _bad("Unclosed value list.")
                i += 1
            elif i < len(toks) and toks[i][0] in ("str", "word"):
                values.append(toks[i][1])
                i += 1
            if not values:
                raise _bad(f"Missing value for {field} {op}.")
        groups[-1].append(_condition(field, op, values))
        if op in EQUALITY_OPERATORS:
            equalities.append((field, _wanted_keys(op, values)))
        if i >= len(toks):
            break
        joiner = toks[i][1].upper() if toks[i][0] == "word" else ""
        if joiner == "OR":
            groups.append([])
        elif joiner != "AND":
            raise _bad(f"Expected AND or OR, found '{toks[i][1]}'.")
        i += 1

    # chained calls rather than all()/any() over generators: the test runs once per record
    alternatives = [functools.reduce(_both, group) for group in groups]
    return Query(functools.reduce(_either, alternatives), tuple(equalities) if len(groups) == 1 else ())


def _both(first: Predicate, second: Predicate) -> Predicate:
    return lambda record: first(record) and second(record)


def _either(first: Predicate, second: Predicate) -> Predicate:
    return lambda record: first(record) or second(record)
