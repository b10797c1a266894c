"""A SOQL subset, parsed and evaluated over stored records.

Supported: `SELECT f1, f2[, Parent.Field] | COUNT() | COUNT(f) [alias] FROM Type [WHERE cond] [ORDER BY f [ASC|DESC]
[NULLS FIRST|LAST], ...] [LIMIT n] [OFFSET n]`, where cond combines `f = v`, `!=`, `<`,
`<=`, `>`, `>=`, `LIKE`, `IN (...)`, `NOT IN (...)` with AND / OR / NOT and parentheses.
Values: 'quoted strings' (backslash escapes), numbers, dates (2026-01-31), null, true,
false. As in Salesforce, string comparison is case-insensitive and a parse failure is
400 MALFORMED_QUERY, an unknown field 400 INVALID_FIELD, an unknown object 400 INVALID_TYPE.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any

from sandboxes.crm import ids
from sandboxes.crm.errors import SfError
from sandboxes.crm.schema import RELATIONSHIPS, SCHEMAS

_TOKEN = re.compile(
    r"""
    \s*(?:
      (?P<string>'(?:[^'\\]|\\.)*')
    | (?P<date>\d{4}-\d{2}-\d{2}(?:T[0-9:.]+(?:Z|[+-]\d{2}:?\d{2})?)?)(?![\w])
    | (?P<number>-?\d+(?:\.\d+)?)(?![\w])
    | (?P<op>!=|<>|<=|>=|=|<|>)
    | (?P<punct>[(),])
    | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)

MAX_QUERY_LENGTH = 100_000  # Salesforce's limit on a SOQL statement
MAX_OFFSET = 2000  # Salesforce's maximum OFFSET
MAX_NESTING = 50

_KEYWORDS = {
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "IN",
    "LIKE",
    "ORDER",
    "BY",
    "ASC",
    "DESC",
    "NULLS",
    "FIRST",
    "LAST",
    "LIMIT",
    "OFFSET",
    "NULL",
    "TRUE",
    "FALSE",
}


@dataclass
class Tok:
    kind: str  # string | date | number | op | punct | ident | kw
    text: str


_UNSET = object()


@dataclass
class Cond:
    field: str
    op: str  # = != < <= > >= LIKE IN NOTIN
    value: Any
    # the value(s) as compared (_norm), worked out once per query instead of once per record
    _normalized: Any = field(default=_UNSET, repr=False, compare=False)

    def normalized(self) -> Any:
        if self._normalized is _UNSET:
            if self.op in ("IN", "NOTIN"):
                self._normalized = tuple(_norm(v) for v in self.value)
            else:
                self._normalized = _norm(self.value)
        return self._normalized


@dataclass
class BoolExpr:
    op: str  # AND | OR | NOT
    parts: list[Any]


@dataclass
class Count:
    """`COUNT()` (field None: the answer is totalSize, no records) or `COUNT(field) [alias]`
    (one AggregateResult record whose `expr0`, or alias, is the number of non-null values)."""

    field: str | None
    alias: str = "expr0"


@dataclass
class Query:
    sobject: str
    fields: list[str]
    where: Any = None
    order_by: list[tuple[str, bool, bool]] = field(default_factory=list)  # (field, desc, nulls_last)
    limit: int | None = None
    offset: int = 0
    count: Count | None = None


def malformed(message: str) -> SfError:
    return SfError(400, "MALFORMED_QUERY", message)


def tokenize(text: str) -> list[Tok]:
    out: list[Tok] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise malformed(f"unexpected token at position {pos}: {text[pos : pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup
        value = m.group(kind)
        if kind == "ident" and value.upper() in _KEYWORDS:
            out.append(Tok("kw", value.upper()))
        else:
            out.append(Tok(kind, value))
    return out


class _Parser:
    def __init__(self, tokens: list[Tok]) -> None:
        self.toks = tokens
        self.i = 0
        self.depth = 0

    def peek(self) -> Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> Tok:
        tok = self.peek()
        if tok is None:
            raise malformed("unexpected end of query")
        self.i += 1
        return tok

    def accept_kw(self, *words: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "kw" and tok.text in words:
            self.i += 1
            return True
        return False

    def expect_kw(self, word: str) -> None:
        if not self.accept_kw(word):
            tok = self.peek()
            raise malformed(f"expecting '{word}', found '{tok.text if tok else 'end of query'}'")

    def expect_punct(self, ch: str) -> None:
        tok = self.take()
        if tok.kind != "punct" or tok.text != ch:
            raise malformed(f"expecting '{ch}', found '{tok.text}'")

    def ident(self) -> str:
        tok = self.take()
        if tok.kind != "ident":
            raise malformed(f"expecting a field or object name, found '{tok.text}'")
        return tok.text

    def is_punct(self, ch: str, ahead: int = 0) -> bool:
        i = self.i + ahead
        return i < len(self.toks) and self.toks[i].kind == "punct" and self.toks[i].text == ch

    def count(self) -> Count | None:
        tok = self.peek()
        if tok is None or tok.kind != "ident" or tok.text.upper() != "COUNT" or not self.is_punct("(", 1):
            return None
        self.i += 2
        if self.is_punct(")"):
            self.take()
            return Count(None)
        name = self.ident()
        self.expect_punct(")")
        alias = "expr0"
        tok = self.peek()
        if tok is not None and tok.kind == "ident":
            alias = self.take().text
        return Count(name, alias)

    def parse(self) -> Query:
        self.expect_kw("SELECT")
        count = self.count()
        fields = [] if count else [self.ident()]
        while self.is_punct(","):
            self.take()
            if count is not None or self.count() is not None:
                raise malformed("an aggregate such as COUNT() cannot be combined with other fields without GROUP BY")
            fields.append(self.ident())
        self.expect_kw("FROM")
        query = Query(sobject=self.ident(), fields=fields, count=count)
        if self.accept_kw("WHERE"):
            query.where = self.or_expr()
        if self.accept_kw("ORDER"):
            self.expect_kw("BY")
            while True:
                name = self.ident()
                desc = False
                if self.accept_kw("DESC"):
                    desc = True
                else:
                    self.accept_kw("ASC")
                nulls_last = desc
                if self.accept_kw("NULLS"):
                    if self.accept_kw("LAST"):
                        nulls_last = True
                    else:
                        self.expect_kw("FIRST")
                        nulls_last = False
                query.order_by.append((name, desc, nulls_last))
                tok = self.peek()
                if tok is not None and tok.kind == "punct" and tok.text == ",":
                    self.take()
                    continue
                break
        if self.accept_kw("LIMIT"):
            query.limit = self.integer()
        if self.accept_kw("OFFSET"):
            query.offset = self.integer()
            if query.offset > MAX_OFFSET:
                raise SfError(400, "NUMBER_OUTSIDE_VALID_RANGE", f"Maximum SOQL offset allowed is {MAX_OFFSET}")
        if self.peek() is not None:
            raise malformed(f"unexpected token: '{self.peek().text}'")
        return query

    def integer(self) -> int:
        tok = self.take()
        if tok.kind != "number" or not tok.text.isdigit() or len(tok.text) > 9:
            raise malformed(f"expecting a non-negative integer, found '{tok.text[:20]}'")
        return int(tok.text)

    def or_expr(self) -> Any:
        parts = [self.and_expr()]
        while self.accept_kw("OR"):
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else BoolExpr("OR", parts)

    def and_expr(self) -> Any:
        parts = [self.not_expr()]
        while self.accept_kw("AND"):
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else BoolExpr("AND", parts)

    def not_expr(self) -> Any:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise malformed(f"the WHERE clause nests more than {MAX_NESTING} levels")
        try:
            if self.accept_kw("NOT"):
                return BoolExpr("NOT", [self.not_expr()])
            tok = self.peek()
            if tok is not None and tok.kind == "punct" and tok.text == "(":
                self.take()
                inner = self.or_expr()
                self.expect_punct(")")
                return inner
            return self.condition()
        finally:
            self.depth -= 1

    def condition(self) -> Cond:
        name = self.ident()
        if self.accept_kw("NOT"):
            self.expect_kw("IN")
            return Cond(name, "NOTIN", self.value_list())
        if self.accept_kw("IN"):
            return Cond(name, "IN", self.value_list())
        if self.accept_kw("LIKE"):
            return Cond(name, "LIKE", self.value())
        tok = self.take()
        if tok.kind != "op":
            raise malformed(f"expecting an operator after '{name}', found '{tok.text}'")
        return Cond(name, "!=" if tok.text == "<>" else tok.text, self.value())

    def value_list(self) -> list[Any]:
        self.expect_punct("(")
        values = [self.value()]
        while True:
            tok = self.take()
            if tok.kind == "punct" and tok.text == ")":
                return values
            if tok.kind == "punct" and tok.text == ",":
                values.append(self.value())
                continue
            raise malformed(f"expecting ',' or ')', found '{tok.text}'")

    def value(self) -> Any:
        tok = self.take()
        if tok.kind == "string":
            return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), tok.text[1:-1])
        if tok.kind == "number":
            return Decimal(tok.text)
        if tok.kind == "date":
            return tok.text
        if tok.kind == "kw" and tok.text in ("NULL", "TRUE", "FALSE"):
            return {"NULL": None, "TRUE": True, "FALSE": False}[tok.text]
        raise malformed(f"expecting a value, found '{tok.text}'")


def parse(text: str) -> Query:
    if not text or not text.strip():
        raise malformed("empty query")
    if len(text) > MAX_QUERY_LENGTH:
        raise malformed(f"the query is longer than {MAX_QUERY_LENGTH} characters")
    query = _Parser(tokenize(text)).parse()
    if query.sobject not in SCHEMAS:
        raise SfError(
            400,
            "INVALID_TYPE",
            f"sObject type '{query.sobject}' is not supported. If you are attempting to "
            "use a custom object, be sure to append the '__c' after the entity name.",
        )
    counted = [query.count.field] if query.count and query.count.field else []
    for name in query.fields + counted + [o[0] for o in query.order_by] + _cond_fields(query.where):
        _check_field(query.sobject, name)
    return query


def _cond_fields(expr: Any) -> list[str]:
    if expr is None:
        return []
    if isinstance(expr, Cond):
        return [expr.field]
    return [f for p in expr.parts for f in _cond_fields(p)]


def _check_field(sobject: str, name: str) -> None:
    if "." in name:
        rel, _, parent_field = name.partition(".")
        link = RELATIONSHIPS[sobject].get(rel)
        if link is None or "." in parent_field or parent_field not in SCHEMAS[link[1]]:
            raise SfError(400, "INVALID_FIELD", f"No such column '{name}' on entity '{sobject}'.")
        return
    if name not in SCHEMAS[sobject]:
        raise SfError(
            400,
            "INVALID_FIELD",
            f"No such column '{name}' on entity '{sobject}'. If you are attempting to use "
            "a custom field, be sure to append the '__c' after the custom field name.",
        )


# --- evaluation -------------------------------------------------------------------------


def resolve(record: dict[str, Any], name: str, parents: dict[str, dict[str, Any]]) -> Any:
    if "." in name:
        rel, _, parent_field = name.partition(".")
        parent = parents.get(rel)
        return None if parent is None else parent.get(parent_field)
    return record.get(name)


def _norm(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, Decimal)):
        return Decimal(value)
    if isinstance(value, str):
        return _norm_text(value) if len(value) in (15, 18) else value.lower()
    return value


@lru_cache(maxsize=65_536)
def _norm_text(value: str) -> str:
    """Remembered: telling a record ID from text computes its checksum, and every query
    compares the same IDs (OpportunityId, AccountId) over and over."""
    if ids.is_valid_id(value) and value[:3] in ids.KEY_PREFIXES.values():
        # record IDs compare and sort as in Salesforce: case-sensitively (…IZ… and …Ia… are
        # different records), 15 and 18 characters alike, in creation order
        return "\x00id:" + value[:15]
    return value.lower()


def _compare(left: Any, op: str, right: Any) -> bool:
    return _compare_normalized(left, op, right, _norm(left), _norm(right))


def _compare_normalized(left: Any, op: str, right: Any, a: Any, b: Any) -> bool:
    if op == "=":
        return a == b
    if op == "!=":
        return a != b
    if a is None or b is None:
        return False
    try:
        if op == "<":
            return a < b
        if op == "<=":
            return a <= b
        if op == ">":
            return a > b
        if op == ">=":
            return a >= b
    except TypeError:
        raise SfError(
            400, "INVALID_QUERY_FILTER_OPERATOR", f"invalid operator {op} for values {left!r} and {right!r}"
        ) from None
    raise malformed(f"unknown operator {op}")


def _like(value: Any, pattern: Any) -> bool:
    """SOQL LIKE (`%` any run, `_` one character, case-insensitive), matched without a regex so
    a pattern of many `%` cannot backtrack for long (greedy wildcard match, O(len*len))."""
    if value is None or pattern is None:
        return False
    text, pat = str(value).lower(), str(pattern).lower()
    t = p = 0
    star, mark = -1, 0
    while t < len(text):
        if p < len(pat) and pat[p] != "%" and (pat[p] == "_" or pat[p] == text[t]):
            t, p = t + 1, p + 1
        elif p < len(pat) and pat[p] == "%":
            star, mark = p, t
            p += 1
        elif star >= 0:
            mark += 1
            t, p = mark, star + 1
        else:
            return False
    while p < len(pat) and pat[p] == "%":
        p += 1
    return p == len(pat)


def matches(expr: Any, record: dict[str, Any], parents: dict[str, dict[str, Any]]) -> bool:
    if expr is None:
        return True
    if isinstance(expr, BoolExpr):
        if expr.op == "AND":
            return all(matches(p, record, parents) for p in expr.parts)
        if expr.op == "OR":
            return any(matches(p, record, parents) for p in expr.parts)
        return not matches(expr.parts[0], record, parents)
    value = resolve(record, expr.field, parents)
    if expr.op == "LIKE":
        return _like(value, expr.value)
    a = _norm(value)
    if expr.op == "IN":
        return any(a == b for b in expr.normalized())
    if expr.op == "NOTIN":
        return all(a != b for b in expr.normalized())
    return _compare_normalized(value, expr.op, expr.value, a, expr.normalized())


def sort_records(
    records: list[dict[str, Any]], order_by: list[tuple[str, bool, bool]], parents_of
) -> list[dict[str, Any]]:
    for name, desc, nulls_last in reversed(order_by):
        present = [r for r in records if resolve(r, name, parents_of(r)) is not None]
        missing = [r for r in records if resolve(r, name, parents_of(r)) is None]
        present.sort(key=lambda r: _norm(resolve(r, name, parents_of(r))), reverse=desc)
        records = present + missing if nulls_last else missing + present
    return records
