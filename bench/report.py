"""The printed figures of a month-end run (one `label  value` line each, easy to read and parse)."""

from __future__ import annotations

import os

from bench.actions import DEFINITION
from bench.month_end import BenchResult


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def render(r: BenchResult) -> str:
    o = r.options
    a = r.actions
    c = r.erp_counters
    served = r.erp_requests - r.erp_429s
    bound = r.bound_seconds()
    served_bound = r.bound_seconds(served)
    # Every process of the run shares this machine's cores: when their CPU alone needs longer
    # than the ERP bound, the bound cannot be reached here, and the figure to compare with is
    # this ceiling (the issue asks for the ceiling beside any target out of reach on 2 cores).
    ceiling = sum(r.cpu_seconds.values()) / max(1, os.cpu_count() or 1)
    top = ", ".join(f"{k} {v:.0f} s" for k, v in sorted(r.cpu_seconds.items(), key=lambda kv: -kv[1])[:3])
    lines = [
        "",
        f"Month-end benchmark: {o.engagements} engagements x {o.entries} approved entries "
        f"(month {r.month[0]} to {r.month[1]}), ERP latency {o.latency_ms} ms, concurrency limit {o.concurrency_limit}",
        "  trigger: request_close update on every engagement at once; done = all time posted, final invoice "
        "issued, payment status read",
        "",
        f"  {'engagements':<46}{o.engagements:>12,}",
        f"  {'entries':<46}{r.total_entries:>12,}",
        f"  {'outcome':<46}{r.outcome.upper():>12}"
        + ("" if r.outcome == "completed" else "   (figures below are up to the moment it gave up)"),
        f"  {'engagements completed':<46}{r.completed:>12,}",
        f"  {'entries posted / invoices issued (ledger)':<46}{r.posted:>12,} / {r.invoices:,}",
        f"  {'wall time (s)':<46}{r.wall_seconds:>12.2f}   (first request_close -> last activity "
        f"completion; the poller saw it at {r.polled_wall:.2f})",
        f"  {'entries/s':<46}{r.entries_per_second:>12.1f}",
        (
            f"  {'engagement done after p50 / p90 / max (s)':<46}{_pct(r.done_after, 0.5):>12.2f} / "
            f"{_pct(r.done_after, 0.9):.2f} / {max(r.done_after, default=float('nan')):.2f}"
            if r.outcome == "completed"
            else f"  {'engagement done after p50 / p90 / max (s)':<46}{'n/a':>12}"
        ),
        f"  {'ERP requests made':<46}{r.erp_requests:>12,}",
        f"  {'429s received':<46}{r.erp_429s:>12,}   (concurrency_rejections "
        f"{c.get('concurrency_rejections', 0):,} + injected_429s {c.get('injected_429s', 0):,})",
        f"  {'ERP requests served (made - 429s)':<46}{served:>12,}",
        f"  {'ERP requests per entry':<46}{r.erp_requests / max(1, r.total_entries):>12.2f}",
        f"  {'bound = ERP requests x latency / limit (s)':<46}{bound:>12.2f}",
        f"  {'wall / bound':<46}{(r.wall_seconds / bound if bound else float('nan')):>12.2f}",
        f"  {'bound on served requests only (s)':<46}{served_bound:>12.2f}   "
        f"(wall / that bound {(r.wall_seconds / served_bound if served_bound else float('nan')):.2f}; "
        "a 429 costs no latency)",
        "  ERP calls by operation (q2c audit ledger; ok / 429 or other retryable / rejected): "
        + "; ".join(
            f"{op} {o.get('ok', 0):,}/{o.get('retryable', 0):,}/{o.get('rejected', 0) + o.get('error', 0):,}"
            for op, o in r.erp_calls[:8]
        ),
        f"  {'PSA requests / CRM requests':<46}{r.psa_requests:>12,} / {r.crm_requests:,}",
        f"  {'Temporal actions per engagement-period':<46}{a.per_engagement():>12.2f}",
        f"      actions = {DEFINITION}",
        "      per engagement-period: "
        + ", ".join(
            f"{k.replace('_', ' ')} {a.per_engagement(k):.2f}"
            for k in (
                "activities_scheduled",
                "activity_retries",
                "timers",
                "updates",
                "signals",
                "search_attribute_upserts",
                "markers",
                "continue_as_new",
                "children",
            )
        ),
        f"  {'activities per engagement-period':<46}{a.per_engagement('activities_scheduled'):>12.2f}   "
        f"(attempts {(a.counts['activities_scheduled'] + a.activity_retries) / max(1, a.engagements):.2f})",
        f"  {'setup, not timed (s)':<46}{r.setup_seconds:>12.1f}",
        "  CPU seconds during the timed part: "
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(r.cpu_seconds.items(), key=lambda kv: -kv[1])),
        "  CPU ms per entry: "
        + ", ".join(
            f"{k} {1000 * v / max(1, r.total_entries):.1f}"
            for k, v in sorted(r.cpu_seconds.items(), key=lambda kv: -kv[1])
        ),
        f"  {'CPU ceiling = CPU seconds / cores (s)':<46}{ceiling:>12.2f}   (the shortest wall this machine "
        "allows for the same work, whatever the ERP limit)",
        f"  {'wall / max(bound, CPU ceiling)':<46}"
        f"{(r.wall_seconds / max(bound, ceiling) if max(bound, ceiling) else float('nan')):>12.2f}   "
        f"(bounded by {'this machine: ' + top if ceiling > bound else 'the ERP concurrency limit'})",
        f"  machine: {os.cpu_count()} cores, 1-minute load average {r.load_average:.2f} at the end of the timed part",
        "",
        "Checks",
    ]
    lines += [f"  {'PASS' if ch.ok else 'FAIL'}  {ch.name}  [{ch.detail}]" for ch in r.checks]
    lines += ["", f"RESULT: {'PASS' if r.passed else 'FAIL'}", ""]
    return "\n".join(lines)
