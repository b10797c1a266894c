"""The operations dashboard's pages: the engagements overview and the KPI page, with charts
drawn here as SVG on the server.

Why server-rendered SVG: the console's Content-Security-Policy allows no script from anywhere
(`default-src 'self'`, no inline script), nothing is fetched from a CDN at run time, and a
finance lead's figures should print and screenshot exactly as they are. The pages refresh
themselves with a meta refresh (no JavaScript). Every number shown comes from one
`figures.Snapshot`, the same one `q2c kpis` prints and /metrics exports.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from q2c.console.html import badge, esc, page, url
from q2c.observability.figures import AGING_BUCKETS, EngagementFigures, Snapshot

REFRESH_SECONDS = 15
PALETTE = ("#2f6fdf", "#e07b39", "#38a169", "#c53030", "#805ad5", "#d69e2e", "#319795", "#718096")
ACTIVATION_BINS = ((60, "< 1 min"), (600, "1–10 min"), (3600, "10–60 min"), (86_400, "1–24 h"), (None, "> 1 day"))

DASH_CSS = """
nav.ops a{margin-right:14px} .kpis{display:grid;grid-template-columns:repeat(4,1fr);gap:12px}
.kpi{background:#fff;border:1px solid #d9e2ec;border-radius:8px;padding:12px 14px}
.kpi .v{font-size:24px;font-weight:700} .kpi .l{font-size:12px;color:#52606d;text-transform:uppercase}
.charts{display:grid;grid-template-columns:1fr 1fr;gap:12px} .charts section.card{margin:0}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums} main{max-width:1400px}
svg text{font-family:system-ui,sans-serif;font-size:11px;fill:#334e68}
"""


def money(value: Decimal | None, currency: str = "") -> str:
    if value is None:
        return "—"
    q = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"{q:,.2f}" + (f" {currency}" if currency else "")


def hours(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,.2f}"


def pct(value: Decimal | float | None) -> str:
    return "—" if value is None else f"{float(value) * 100:.1f}%"


def _layout(title: str, body: str, viewer) -> str:
    nav = (
        '<nav class="ops"><a href="/console/operations">Engagements</a>'
        '<a href="/console/operations/kpis">KPIs</a><a href="/console">Steward queue</a></nav>'
    )
    content = page(title, f"<style>{DASH_CSS}</style>{nav}{body}", user=viewer.user, role=viewer.role, csrf=viewer.csrf)
    # refresh without script (the console's CSP allows none)
    return content.replace("<head>", f'<head><meta http-equiv="refresh" content="{REFRESH_SECONDS}">', 1)


# ---- SVG charts -------------------------------------------------------------------------------


def bar_chart(
    items: list[tuple[str, float]], *, title: str, unit: str = "", width: int = 620, chart_id: str = ""
) -> str:
    """Horizontal bars, one per item, each labelled with its value (data-value for tests)."""
    if not items:
        return f'<p class="muted">{esc(title)}: nothing yet</p>'
    bar_h, gap, label_w, value_w = 18, 6, 170, 110
    height = len(items) * (bar_h + gap) + 10
    top = max(v for _, v in items) or 1.0
    rows = []
    for i, (label, value) in enumerate(items):
        y = 5 + i * (bar_h + gap)
        w = max(1.0, (width - label_w - value_w) * value / top) if value else 0
        rows.append(
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{esc(label[:28])}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{PALETTE[0]}" rx="2"'
            f' data-label="{esc(label)}" data-value="{value:g}">'
            f"<title>{esc(label)}: {value:g}{esc(unit)}</title></rect>"
            f'<text x="{label_w + w + 6:.1f}" y="{y + 13}">{value:,.2f}{esc(unit)}</text>'
        )
    return (
        f'<svg role="img" aria-label="{esc(title)}" id="{esc(chart_id)}" viewBox="0 0 {width} {height}"'
        f' width="100%" height="{height}">{"".join(rows)}</svg>'
    )


def column_chart(items: list[tuple[str, float]], *, title: str, chart_id: str, width: int = 620) -> str:
    """Vertical columns (a distribution), value over each column."""
    if not items or not any(v for _, v in items):
        return f'<p class="muted">{esc(title)}: nothing yet</p>'
    height, base, left = 200, 170, 30
    col_w = (width - left) / len(items)
    top = max(v for _, v in items) or 1
    parts = [f'<line x1="{left}" y1="{base}" x2="{width}" y2="{base}" stroke="#9fb3c8"/>']
    for i, (label, value) in enumerate(items):
        h = (base - 20) * value / top
        x = left + i * col_w + col_w * 0.15
        parts.append(
            f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{col_w * 0.7:.1f}" height="{h:.1f}" fill="{PALETTE[2]}"'
            f' data-label="{esc(label)}" data-value="{value:g}"><title>{esc(label)}: {value:g}</title></rect>'
            f'<text x="{x + col_w * 0.35:.1f}" y="{base - h - 4:.1f}" text-anchor="middle">{value:g}</text>'
            f'<text x="{x + col_w * 0.35:.1f}" y="{base + 16}" text-anchor="middle">{esc(label)}</text>'
        )
    return (
        f'<svg role="img" aria-label="{esc(title)}" id="{esc(chart_id)}" viewBox="0 0 {width} {height}"'
        f' width="100%" height="{height}">{"".join(parts)}</svg>'
    )


def stacked_columns(series: list[tuple[str, dict[str, float]]], *, title: str, chart_id: str, width: int = 620) -> str:
    """Columns over time (one per day), stacked by key (reason), with a legend."""
    if not series:
        return f'<p class="muted">{esc(title)}: nothing yet</p>'
    keys = sorted({k for _, d in series for k in d})
    colors = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(keys)}
    height, base, left = 230, 170, 30
    col_w = (width - left) / max(len(series), 1)
    top = max(sum(d.values()) for _, d in series) or 1
    parts = [f'<line x1="{left}" y1="{base}" x2="{width}" y2="{base}" stroke="#9fb3c8"/>']
    for i, (label, d) in enumerate(series):
        x = left + i * col_w + col_w * 0.15
        y = base
        for k in keys:
            v = d.get(k, 0)
            if not v:
                continue
            h = (base - 20) * v / top
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{col_w * 0.7:.1f}" height="{h:.1f}" fill="{colors[k]}"'
                f' data-label="{esc(label)}" data-key="{esc(k)}" data-value="{v:g}"><title>{esc(label)} {esc(k)}: '
                f"{v:g}</title></rect>"
            )
        parts.append(f'<text x="{x + col_w * 0.35:.1f}" y="{base + 14}" text-anchor="middle">{esc(label[5:])}</text>')
    for j, k in enumerate(keys):
        lx = left + (j % 3) * 200
        ly = base + 32 + (j // 3) * 14
        parts.append(
            f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{colors[k]}"/>'
            f'<text x="{lx + 14}" y="{ly}">{esc(k)}</text>'
        )
    return (
        f'<svg role="img" aria-label="{esc(title)}" id="{esc(chart_id)}" viewBox="0 0 {width} {height}"'
        f' width="100%" height="{height}">{"".join(parts)}</svg>'
    )


# ---- the overview -------------------------------------------------------------------------------

SORTS = {
    "customer": lambda e: (e.customer or "").lower(),
    "stage": lambda e: e.stage,
    "burn": lambda e: e.burn if e.burn is not None else Decimal(-1),
    "unbilled": lambda e: e.unbilled_amount,
    "open": lambda e: e.open_balance,
    "overdue": lambda e: e.overdue_days,
    "billed": lambda e: e.billed,
}


def filter_engagements(
    rows: list[EngagementFigures],
    *,
    q: str = "",
    stage: str = "",
    model: str = "",
    region: str = "",
    sort: str = "customer",
    desc: bool = False,
) -> list[EngagementFigures]:
    needle = q.strip().lower()
    out = [
        e
        for e in rows
        if (not stage or e.stage == stage)
        and (not model or e.billing_model == model)
        and (not region or e.region == region)
        and (not needle or needle in e.customer.lower() or needle in e.opportunity_id.lower())
    ]
    return sorted(out, key=SORTS.get(sort, SORTS["customer"]), reverse=desc)


def overview_page(
    snap: Snapshot,
    rows: list[EngagementFigures],
    viewer,
    *,
    history_url,
    params: dict[str, str],
    limit: int = 500,
) -> str:
    def options(name: str, values: list[str]) -> str:
        chosen = params.get(name, "")
        opts = "".join(
            f'<option value="{esc(v)}"{" selected" if v == chosen else ""}>{esc(v)}</option>' for v in values
        )
        return f'<label>{esc(name)}<select name="{esc(name)}"><option value="">all</option>{opts}</select></label>'

    everything = snap.engagements
    filters = (
        '<form class="row filters" method="get" action="/console/operations">'
        f'<label>search<input type="text" name="q" value="{esc(params.get("q", ""))}" placeholder="customer or opportunity"></label>'  # noqa: E501
        + options("stage", sorted({e.stage for e in everything if e.stage}))
        + options("model", sorted({e.billing_model for e in everything if e.billing_model}))
        + options("region", sorted({e.region for e in everything if e.region}))
        + options("sort", list(SORTS))
        + f'<label>order<select name="order"><option value="asc">asc</option><option value="desc"'
        f"{' selected' if params.get('order') == 'desc' else ''}>desc</option></select></label>"
        '<button class="secondary" type="submit">apply</button></form>'
    )

    def sort_link(label: str, key: str) -> str:
        order = "asc" if params.get("sort") == key and params.get("order") == "desc" else "desc"
        return (
            f'<a href="{esc(url("/console/operations", **{**params, "sort": key, "order": order}))}">{esc(label)}</a>'
        )

    head = (
        f"<tr><th>{sort_link('customer', 'customer')}</th><th>{sort_link('stage', 'stage')}</th><th>model</th>"
        f"<th>region</th><th class='num'>contract</th><th class='num'>{sort_link('billed', 'billed')}</th>"
        f"<th class='num'>{sort_link('burn', 'burn')}</th><th class='num'>{sort_link('unbilled h', 'unbilled')}</th>"
        f"<th class='num'>unbilled</th><th class='num'>{sort_link('open balance', 'open')}</th>"
        f"<th class='num'>{sort_link('overdue', 'overdue')}</th><th>history</th></tr>"
    )
    body = []
    for e in rows[:limit]:
        body.append(
            f'<tr data-opp="{esc(e.opportunity_id)}">'
            f'<td><a href="/console/engagements/{esc(e.opportunity_id)}">{esc(e.customer or e.opportunity_id)}</a>'
            f'<div class="muted">{esc(e.opportunity_id)}</div></td>'
            f"<td>{badge(e.stage)}</td><td>{esc(e.billing_model)}</td><td>{esc(e.region)}</td>"
            f'<td class="num">{money(e.contract_value, e.currency)}</td>'
            f'<td class="num" data-col="billed">{money(e.billed)}</td>'
            f'<td class="num" data-col="burn">{pct(e.burn)}</td>'
            f'<td class="num" data-col="unbilled-hours">{hours(e.unbilled_hours)}</td>'
            f'<td class="num" data-col="unbilled-amount">{money(e.unbilled_amount)}</td>'
            f'<td class="num" data-col="open">{money(e.open_balance)}</td>'
            f'<td class="num" data-col="overdue">{e.overdue_days}</td>'
            f'<td><a href="{esc(history_url(e.opportunity_id))}">Temporal</a></td></tr>'
        )
    more = f'<p class="muted">showing {limit} of {len(rows)}: narrow the search</p>' if len(rows) > limit else ""
    table = f'<table id="overview"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'
    took = sum(snap.timings_ms.values())
    summary = (
        f'<p class="muted" id="overview-count">{len(rows)} of {len(everything)} engagements · '
        f"figures at {snap.taken_at:%Y-%m-%d %H:%M:%S} UTC · read in {took:.0f} ms · refreshes every "
        f"{REFRESH_SECONDS}s</p>"
    )
    return _layout(
        "Engagements", f'<h1>Engagements</h1>{filters}{summary}<section class="card">{table}{more}</section>', viewer
    )


# ---- the KPI page ---------------------------------------------------------------------------------


def activation_distribution(seconds: list[float]) -> list[tuple[str, float]]:
    counts = []
    lower = 0.0
    for bound, label in ACTIVATION_BINS:
        counts.append((label, float(sum(1 for s in seconds if s >= lower and (bound is None or s < bound)))))
        lower = bound or lower
    return counts


def kpi_page(snap: Snapshot, viewer) -> str:
    unbilled_total = ", ".join(f"{money(a, c)} ({hours(h)} h)" for c, (h, a) in snap.unbilled_by_currency.items())
    open_total: dict[str, Decimal] = {}
    for by_currency in snap.aging.values():
        for c, v in by_currency.items():
            open_total[c] = open_total.get(c, Decimal(0)) + v
    calls = sum(v.calls for v in snap.vendors.values())
    failed = sum(v.failed for v in snap.vendors.values())
    median = sorted(snap.activation_seconds)[len(snap.activation_seconds) // 2] if snap.activation_seconds else None
    tiles = [
        ("Engagements", str(len(snap.engagements)), "kpi-engagements"),
        ("Awaiting steward", str(snap.by_stage.get("AwaitingSteward", 0)), "kpi-awaiting"),
        ("Median activation", "—" if median is None else f"{median:.1f} s", "kpi-activation"),
        ("Unbilled approved time", unbilled_total or "0", "kpi-unbilled"),
        ("Open receivables", ", ".join(money(v, c) for c, v in sorted(open_total.items())) or "0", "kpi-open"),
        ("Open exceptions", str(snap.open_exceptions), "kpi-exceptions"),
        ("Invoices rejected", str(snap.invoices_rejected), "kpi-rejected"),
        ("Vendor failure rate", pct(failed / calls if calls else 0.0), "kpi-failure-rate"),
    ]
    tiles_html = "".join(
        f'<div class="kpi"><div class="l">{esc(label)}</div><div class="v" id="{key}">{esc(value)}</div></div>'
        for label, value, key in tiles
    )
    unbilled_items = sorted(
        ((e.customer or e.opportunity_id, float(e.unbilled_amount)) for e in snap.engagements if e.unbilled_amount),
        key=lambda t: -t[1],
    )[:15]
    aging_items = [(b, float(sum(snap.aging.get(b, {}).values()))) for b in AGING_BUCKETS]
    vendor_items = [(s, round(v.failure_rate * 100, 2)) for s, v in snap.vendors.items()]
    exc_series = [(d.isoformat(), {k: float(v) for k, v in by.items()}) for d, by in snap.exceptions_by_day.items()][
        -30:
    ]
    charts = (
        '<div class="charts">'
        f'<section class="card"><h2>Activation cycle time (closed-won → Active)</h2>'
        f"{column_chart(activation_distribution(snap.activation_seconds), title='activation', chart_id='chart-activation')}"  # noqa: E501
        "</section>"
        f'<section class="card"><h2>Unbilled approved time by engagement</h2>'
        f"{bar_chart(unbilled_items, title='unbilled', chart_id='chart-unbilled')}</section>"
        f'<section class="card"><h2>Receivables aging (open balance, days overdue)</h2>'
        f"{column_chart(aging_items, title='aging', chart_id='chart-aging')}</section>"
        f'<section class="card"><h2>Exceptions by reason over time</h2>'
        f"{stacked_columns(exc_series, title='exceptions', chart_id='chart-exceptions')}</section>"
        f'<section class="card"><h2>Vendor failure rate (% of calls)</h2>'
        f"{bar_chart(vendor_items, title='vendor failures', unit='%', chart_id='chart-vendors')}</section>"
        f'<section class="card"><h2>Engagements by stage</h2>'
        f"{bar_chart([(k, float(v)) for k, v in snap.by_stage.items()], title='stages', chart_id='chart-stages')}"
        "</section></div>"
    )
    note = (
        f'<p class="muted">figures at {snap.taken_at:%Y-%m-%d %H:%M:%S} UTC · refreshes every {REFRESH_SECONDS}s'
        + ("" if snap.contract_values_known else " · contract values unavailable (CRM not answering)")
        + "</p>"
    )
    return _layout("KPIs", f'<h1>KPIs</h1>{note}<div class="kpis">{tiles_html}</div>{charts}', viewer)
