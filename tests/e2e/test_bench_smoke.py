"""Smoke run of the month-end benchmark (2 engagements x 5 entries): not a timed test, but the
printed figures must be consistent with each other and every correctness check must pass."""

from __future__ import annotations

import os
import re

from bench.month_end import BenchOptions, run_month_end
from bench.report import render


def _figure(text: str, label: str) -> float:
    match = re.search(rf"^\s+{re.escape(label)}\s+([\d,.]+)", text, re.MULTILINE)
    assert match, f"no line '{label}' in:\n{text}"
    return float(match.group(1).replace(",", ""))


async def test_month_end_smoke_run_prints_consistent_figures():
    logs: list[str] = []
    # a limit no run of this size reaches: no 429, so no activity retry, so the figures are exact
    opts = BenchOptions(engagements=2, entries=5, latency_ms=5, concurrency_limit=50, timeout_seconds=120)
    result = await run_month_end(opts, log=logs.append)
    text = render(result)

    assert result.passed, text
    assert "RESULT: PASS" in text and "FAIL" not in text
    assert _figure(text, "engagements") == 2
    assert _figure(text, "entries") == 10
    assert _figure(text, "engagements completed") == 2
    wall = _figure(text, "wall time (s)")
    assert wall > 0
    assert abs(_figure(text, "entries/s") - 10 / wall) <= 0.1 + 0.01 * (10 / wall)
    requests = _figure(text, "ERP requests made")
    rejected = _figure(text, "429s received")
    # at least one timeBill PUT per entry, plus the invoice of each engagement
    assert requests >= 10 + 2 and rejected == 0
    assert _figure(text, "ERP requests served (made - 429s)") == requests - rejected
    assert abs(_figure(text, "bound = ERP requests x latency / limit (s)") - requests * 0.005 / 50) < 0.01
    # one request_close update, one time posting + one expense posting + one invoice + one
    # payment-status activity per engagement, plus the CRM status mirror (Q2C_Status__c = Collecting)
    assert _figure(text, "activities per engagement-period") == 5
    assert _figure(text, "Temporal actions per engagement-period") >= 3 + 1
    assert result.actions.activity_retries == 0
    assert result.actions.counts["updates"] == 2
    assert result.erp_counters["requests"] == requests
    # the machine's own ceiling is printed beside the ERP bound: the run's CPU over its cores
    ceiling = _figure(text, "CPU ceiling = CPU seconds / cores (s)")
    assert abs(ceiling - sum(result.cpu_seconds.values()) / (os.cpu_count() or 1)) < 0.01
    assert _figure(text, "wall / max(bound, CPU ceiling)") > 0
    assert any("engagements Active" in line for line in logs)
