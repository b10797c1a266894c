"""Correctness checks after the timed part: a fast but wrong month-end must say so.

The expected invoice is computed independently, from the entries the benchmark itself loaded
into the PSA and the deal's rate card (per entry: exact minutes x rate / 60, rounded half-up
to the cent once; a total is the sum of its entries, the rule stated in domain/billing.py,
written again here with its own arithmetic), and compared with what the ERP
holds (its records read from the sandbox's database with the sandbox's own store),
with the workflow's own totals and with q2c's ledger.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from bench.deals import RATE_CARD
from bench.time_load import LoadedEntry
from q2c.engagement.messages import EngagementStatus

CENTS = Decimal("0.01")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


def expected_total(entries: list[LoadedEntry]) -> Decimal:
    total = Decimal(0)
    for e in entries:
        total += (Decimal(e.minutes) * RATE_CARD[e.role] / 60).quantize(CENTS, rounding=ROUND_HALF_UP)
    return total


def erp_records(erp_db_url: str, record_type: str) -> list[dict]:
    """Every stored record of a type, read with the ERP sandbox's own RecordStore from the
    database the benchmark gave it (rendering 20,000 timeBills through
    `GET /__sandbox/records/timeBill` costs the sandbox minutes of CPU). Stored records carry
    the same fields as rendered ones: `externalId`, `customer.id`, `isBilled`, `invoice.id`, `total`."""
    from sandboxes.common.db import make_engine
    from sandboxes.erp.store import RecordStore

    engine = make_engine(erp_db_url)
    try:
        return RecordStore(engine).all(record_type)
    finally:
        engine.dispose()


def _verdict(name: str, bad: list[str], total: int) -> Check:
    if not bad:
        return Check(name, True, f"{total}/{total}")
    shown = "; ".join(bad[:3]) + (" ..." if len(bad) > 3 else "")
    return Check(name, False, f"{total - len(bad)}/{total} ok; {shown}")


def run_checks(
    *,
    erp_db_url: str,
    statuses: dict[str, EngagementStatus],
    loaded: dict[str, list[LoadedEntry]],
    entries_per_engagement: int,
    ledger=None,
) -> list[Check]:
    """statuses and loaded are keyed by opportunity id."""
    m = entries_per_engagement
    opps = sorted(statuses)
    bills_by_project: dict[str, list[dict]] = defaultdict(list)
    for bill in erp_records(erp_db_url, "timeBill"):
        bills_by_project[str((bill.get("customer") or {}).get("id"))].append(bill)
    invoices_by_opp: dict[str, list[dict]] = defaultdict(list)
    for inv in erp_records(erp_db_url, "invoice"):
        eid = inv.get("externalId") or ""
        if eid.startswith("inv-"):
            invoices_by_opp[eid[4:].rsplit("-", 1)[0]].append(inv)

    done, bills_ok, invoice_one, billed_all, totals_ok, ledger_ok = [], [], [], [], [], []
    for opp in opps:
        st = statuses[opp]
        if not (st.totals.posted_entries == m and len(st.invoices) == 1 and not st.open_exceptions):
            done.append(
                f"{opp}: posted {st.totals.posted_entries}, {len(st.invoices)} invoice(s), "
                f"{len(st.open_exceptions)} exception(s)"
            )
        bills = bills_by_project.get(str(st.erp_project_id), [])
        eids = [b.get("externalId") for b in bills]
        wanted = {f"psa-{e.psa_id}" for e in loaded[opp]}
        if len(bills) != m or set(eids) != wanted or len(set(eids)) != len(eids):
            bills_ok.append(f"{opp}: {len(bills)} timeBills ({len(set(eids) & wanted)} of the {m} loaded)")
        invoices = invoices_by_opp.get(opp, [])
        if len(invoices) != 1 or invoices[0].get("externalId") != f"inv-{opp}-final01":
            invoice_one.append(f"{opp}: {[i.get('externalId') for i in invoices]}")
            continue
        inv = invoices[0]
        unbilled = [
            b for b in bills if not b.get("isBilled") or str((b.get("invoice") or {}).get("id")) != str(inv["id"])
        ]
        if unbilled:
            billed_all.append(f"{opp}: {len(unbilled)} timeBills not billed on {inv.get('tranId')}")
        want = expected_total(loaded[opp])
        got = Decimal(str(inv.get("total")))
        wf = st.invoices[0].total if st.invoices else None
        if got != want or wf != want or st.totals.billed != want:
            totals_ok.append(f"{opp}: ERP {got}, workflow {wf}, expected {want}")
        if ledger is not None:
            rows = ledger.posted_time(opp)
            if len(rows) != m or any(r.invoice_external_id != f"inv-{opp}-final01" for r in rows):
                ledger_ok.append(
                    f"{opp}: {len(rows)} ledger rows, {sum(1 for r in rows if r.invoice_external_id)} invoiced"
                )
    n = len(opps)
    checks = [
        _verdict(f"every engagement posted {m} entries, issued 1 invoice, has no open exception", done, n),
        _verdict(f"ERP holds exactly {m} timeBills per project, one per loaded PSA entry (no duplicate)", bills_ok, n),
        _verdict("ERP holds exactly one invoice per engagement (inv-<opp>-final01)", invoice_one, n),
        _verdict("every timeBill is billed on that invoice", billed_all, n),
        _verdict("invoice total = independent rate-card computation = workflow totals (to the cent)", totals_ok, n),
    ]
    if ledger is not None:
        checks.append(_verdict(f"ledger: {m} posted-time rows per engagement, all on the final invoice", ledger_ok, n))
    return checks
