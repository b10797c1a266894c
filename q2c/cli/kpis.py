"""`q2c kpis`: the KPI page's figures as a table, from the same snapshot (visibility, the
ledger, the CRM's contract values), so a finance lead's terminal, the console and Grafana
agree.

    q2c kpis                  the KPIs
    q2c kpis --engagements    and one line per engagement (the overview's columns)
"""

from __future__ import annotations

import typer

from q2c.cli.common import _run


def render_kpis(snap, *, engagements: bool = False) -> str:
    """The snapshot as plain text (tested: the same figures as the KPI page)."""
    from q2c.console.operations_pages import activation_distribution, hours, money, pct
    from q2c.observability.figures import AGING_BUCKETS

    lines = [f"KPIs at {snap.taken_at:%Y-%m-%d %H:%M:%S} UTC", ""]
    lines.append(f"{'Engagements':<34}{len(snap.engagements)}")
    for stage, n in snap.by_stage.items():
        lines.append(f"  {stage:<32}{n}")
    acts = snap.activation_seconds
    median = f"{sorted(acts)[len(acts) // 2]:.1f} s" if acts else "-"
    lines.append(f"{'Activation cycle (median)':<34}{median} over {len(acts)} engagements")
    for label, n in activation_distribution(acts):
        lines.append(f"  {label:<32}{n:g}")
    lines.append("Unbilled approved time (posted, not invoiced)")
    for currency, (h, a) in snap.unbilled_by_currency.items() or {"-": (0, 0)}.items():
        lines.append(f"  {currency:<32}{hours(h)} h  {money(a)}")
    lines.append("Receivables aging (open balance)")
    for bucket in AGING_BUCKETS:
        by = snap.aging.get(bucket, {})
        lines.append(f"  {bucket:<32}{', '.join(money(v, c) for c, v in sorted(by.items())) or '0'}")
    lines.append(f"{'Open exceptions':<34}{snap.open_exceptions}")
    for reason, n in snap.exceptions_open_by_reason.items():
        lines.append(f"  {reason:<32}{n}")
    lines.append(f"{'Invoices rejected':<34}{snap.invoices_rejected}")
    lines.append(f"{'Invoices issued':<34}{snap.invoices_issued}")
    lines.append("Vendor calls (failure rate)")
    for system, v in snap.vendors.items():
        lines.append(f"  {system:<32}{v.calls} calls, {v.failed} failed ({pct(v.failure_rate)})")
    if engagements:
        lines += [
            "",
            f"{'opportunity':<20}{'stage':<17}{'customer':<28}{'billed':>14}{'burn':>8}{'unbilled':>14}"
            f"{'open':>14}{'overdue':>8}",
        ]
        for e in sorted(snap.engagements, key=lambda e: (e.customer or "").lower()):
            lines.append(
                f"{e.opportunity_id:<20}{e.stage:<17}{(e.customer or '')[:27]:<28}{money(e.billed):>14}"
                f"{pct(e.burn):>8}{money(e.unbilled_amount):>14}{money(e.open_balance):>14}{e.overdue_days:>8}"
            )
    return "\n".join(lines)


def mount(app: typer.Typer) -> None:
    @app.command()
    def kpis(
        engagements: bool = typer.Option(False, "--engagements", help="also one line per engagement"),
    ) -> None:
        """The KPIs finance asks for (the console's KPI page, as a table)."""

        async def run(client, settings):
            from q2c.observability.figures import FiguresSource

            source = FiguresSource(settings, lambda: _async(client))
            snap = await source.get()
            typer.echo(render_kpis(snap, engagements=engagements))

        _run(run)


async def _async(value):
    return value
