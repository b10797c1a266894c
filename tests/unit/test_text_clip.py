"""Nothing cut silently: a stored field that is too long keeps its head and says so."""

from __future__ import annotations

from q2c.domain.text import clip
from q2c.ledger.store import api_call_row
from q2c.vendors.calls import CallRecord


def test_text_that_fits_is_unchanged():
    assert clip("", 10) == ""
    assert clip("x" * 500, 500) == "x" * 500


def test_longer_text_keeps_its_head_and_names_the_whole_length():
    text = "".join(str(i % 10) for i in range(3000))
    cut = clip(text, 2000)
    assert len(cut) <= 2000 and cut.startswith(text[:1900])
    assert cut.endswith(f" ...[cut: 3000 characters, first {cut.index(' ...[')} kept]")
    assert text.startswith(cut[: cut.index(" ...[")])


def test_a_field_too_narrow_for_the_marker_gets_the_head():
    assert clip("abcdefghij", 4) == "abcd"


def test_an_audit_row_of_a_long_url_says_it_was_cut():
    url = "https://psa.example/api/v1/time_entries.json?only=" + ",".join(str(i) for i in range(100_000, 100_600))
    record = CallRecord("c-1", "psa", "read_approved_time", "GET", url, 200, "ok", 12.5)
    row = api_call_row(record)
    assert len(url) > 2000 and len(row["url"]) <= 2000
    assert row["url"].startswith(url[:1900]) and f"cut: {len(url)} characters" in row["url"]
    assert api_call_row(CallRecord("c-2", "psa", "x", "GET", "https://short", 200, "ok", 1.0))["url"] == "https://short"
