"""Cross-system checks for one engagement: pure, no I/O (like `q2c.domain`), unit-testable.

Input is a `Snapshot`: what the CRM, the ERP, the PSA, the ledger and the engagement itself say
right now. Output is a list of `Finding`s, each one difference with the records involved, the
system of record's value and the other one, and a classification:

- **explained**: the systems differ for a reason q2c already knows (an open time exception, an
  entry approved after its period was posted that the next period close posts, a payment the
  engagement's next payment check copies, a steward task a previous night raised);
- **unexplained**, with what to do about it:
  - `repair`: a reference field in the CRM that is derived from the ERP (IDs, invoice number
    and amount, collection figures) is rewritten from the ERP, the system of record;
  - `raise`: anything that would move money (an approved entry never posted after the final
    posting, a voided invoice, a timeBill edited by hand, a payment the ledger never saw, an
    orphan record) becomes a steward task or a time exception with its reason. q2c never
    posts, voids or re-invoices on its own.

Money is compared as Decimal to the cent, time to the minute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

from q2c.domain.budget import BUDGET_WRITE_OFF_PREFIX
from q2c.domain.delivery import TimeEntry

REPAIR = "repair"
RAISE_TASK = "raise"
RAISE_EXCEPTION = "raise_exception"

VOIDED = "Voided"
NOT_POSTED = "NOT_POSTED"  # the time-exception reason reconciliation opens


@dataclass
class Finding:
    kind: str
    system: str
    record: str
    expected: str = ""
    actual: str = ""
    explained: bool = False
    explanation: str = ""
    action: str | None = None  # REPAIR | RAISE_TASK | RAISE_EXCEPTION when unexplained
    task_key: str | None = None
    repair: dict | None = None  # {"sobject", "id", "field", "value"} for REPAIR
    psa_id: str | None = None  # for RAISE_EXCEPTION
    opportunity_id: str | None = None


@dataclass
class PostedRow:
    psa_id: str
    erp_time_bill_id: str
    minutes: int
    billable: bool
    amount: Decimal | None
    invoice_external_id: str | None = None  # the invoice that billed it, or a budget write-off marker


@dataclass
class LedgerInvoiceRow:
    external_id: str
    erp_id: str | None
    number: str | None
    total: Decimal
    amount_paid: Decimal
    open_balance: Decimal
    status: str


@dataclass
class Snapshot:
    opportunity_id: str
    stage: str
    posting: bool  # the engagement still posts and invoices at its period closes
    polling: bool  # the engagement still checks payments
    bill_time: bool  # time and materials: billable time is invoiced
    erp_customer_id: str | None
    erp_project_id: str | None
    psa_workspace_id: str | None
    crm: dict
    erp_job: dict | None
    erp_invoices: list[dict]
    erp_time_bills: list[dict]
    psa_entries: list[TimeEntry]
    ledger_posted: list[PostedRow]
    ledger_invoices: list[LedgerInvoiceRow]
    open_exceptions: dict[str, str]  # psa id -> reason
    open_tasks: set[str] = field(default_factory=set)
    closed_periods: list[tuple[int, date, date]] = field(default_factory=list)
    retainer: bool = False
    payment_poll_seconds: int | None = None


def dec(value: object) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _ref(value: object) -> str | None:
    if isinstance(value, dict):
        return _text(value.get("id")) or None
    return _text(value) or None


def _money(value: object) -> str:
    d = dec(value)
    return "" if d is None else format(d.quantize(Decimal("0.01")), "f")


def invoice_status_value(record: dict) -> str:
    """The CRM's wording of an ERP invoice's status (q2c's InvoiceStatus values)."""
    remaining = dec(record.get("amountRemaining")) or Decimal(0)
    paid = dec(record.get("amountPaid")) or Decimal(0)
    if remaining <= 0:
        return "paid_in_full"
    return "partially_paid" if paid > 0 else "open"


def is_voided(record: dict) -> bool:
    return bool(record.get("voided")) or record.get("status") == VOIDED


def latest_invoice(invoices: list[dict]) -> dict | None:
    """The invoice issued last (the ERP's internal IDs grow with creation)."""
    if not invoices:
        return None
    return max(invoices, key=lambda r: int(r["id"]) if str(r["id"]).isdigit() else -1)


def psa_id_of(bill: dict) -> str | None:
    eid = _text(bill.get("externalId"))
    return eid[4:] if eid.startswith("psa-") else None


def check(s: Snapshot) -> list[Finding]:
    findings = crm_reference_findings(s) + invoice_findings(s) + time_findings(s)
    for f in findings:
        f.opportunity_id = s.opportunity_id
        if not f.explained and f.task_key and f.task_key in s.open_tasks:
            f.explained = True
            f.explanation = f"steward task {f.task_key} is open for it (raised by an earlier run)"
    return findings


# --- CRM reference fields vs the ERP (and the PSA workspace) --------------------------------


def crm_reference_findings(s: Snapshot) -> list[Finding]:
    out: list[Finding] = []
    opp = s.opportunity_id
    crm = s.crm

    def ref_field(name: str, expected: str | None, *, money: bool = False, collection: bool = False) -> None:
        actual = crm.get(name)
        if money:
            same = dec(actual) == dec(expected) or (dec(actual) in (None, Decimal(0)) and dec(expected) is None)
            shown_actual, shown_expected = _money(actual), _money(expected)
        else:
            same = _text(actual) == _text(expected)
            shown_actual, shown_expected = _text(actual), _text(expected)
        if same:
            return
        finding = Finding(
            kind="crm_reference",
            system="crm",
            record=f"Opportunity {opp} {name}",
            expected=shown_expected,
            actual=shown_actual,
            action=REPAIR,
            repair={"sobject": "Opportunity", "id": opp, "field": name, "value": expected},
        )
        if collection and s.polling and _ledger_agrees(s, name, actual):
            finding.explained = True
            finding.action = None
            finding.explanation = (
                "the ledger holds the CRM's figure: the engagement has not read this payment yet; "
                "its next payment check copies the ERP's figures to the CRM"
            )
        out.append(finding)

    if s.erp_job is not None:
        ref_field("ERP_Project_Id__c", _text(s.erp_job.get("id")))
        ref_field("ERP_Customer_Id__c", _ref(s.erp_job.get("parent")) or s.erp_customer_id)
    if s.psa_workspace_id:
        ref_field("PSA_Workspace_Id__c", s.psa_workspace_id)
    last = latest_invoice(s.erp_invoices)
    if last is not None:
        ref_field("Last_Invoice_Number__c", _text(last.get("tranId")))
        ref_field("Last_Invoice_Amount__c", _text(last.get("total")), money=True)
        if crm.get("Last_Invoice_Status__c") is not None:
            ref_field("Last_Invoice_Status__c", invoice_status_value(last), collection=True)
        paid = sum((dec(r.get("amountPaid")) or Decimal(0) for r in s.erp_invoices), Decimal(0))
        remaining = sum((dec(r.get("amountRemaining")) or Decimal(0) for r in s.erp_invoices), Decimal(0))
        if crm.get("Amount_Paid__c") is not None or paid:
            ref_field("Amount_Paid__c", str(paid), money=True, collection=True)
        if crm.get("Open_Balance__c") is not None:
            ref_field("Open_Balance__c", str(remaining), money=True, collection=True)
    return out


def _ledger_agrees(s: Snapshot, name: str, crm_value: object) -> bool:
    """The CRM field shows what the ledger recorded at the engagement's last payment check."""
    rows = s.ledger_invoices
    if not rows:
        return False
    if name == "Amount_Paid__c":
        return dec(crm_value) == sum((r.amount_paid for r in rows), Decimal(0))
    if name == "Open_Balance__c":
        return dec(crm_value) == sum((r.open_balance for r in rows), Decimal(0))
    if name == "Last_Invoice_Status__c":
        last = max(rows, key=lambda r: int(r.erp_id) if (r.erp_id or "").isdigit() else -1)
        return _text(crm_value) in (last.status, "open")
    return False


# --- ERP invoices and payments vs the ledger -------------------------------------------------


def invoice_findings(s: Snapshot) -> list[Finding]:
    out: list[Finding] = []
    ledger = {r.external_id: r for r in s.ledger_invoices}
    erp_by_eid = {_text(r.get("externalId")): r for r in s.erp_invoices}
    for inv in sorted(s.erp_invoices, key=lambda r: int(r["id"]) if str(r["id"]).isdigit() else 0):
        eid = _text(inv.get("externalId"))
        label = f"invoice {inv.get('tranId')} ({eid or 'no external ID'}, ERP id {inv['id']})"
        total = _money(inv.get("total"))
        if is_voided(inv):
            out.append(
                Finding(
                    kind="invoice_voided",
                    system="erp",
                    record=label,
                    expected=f"issued {total}",
                    actual=VOIDED,
                    action=RAISE_TASK,
                    task_key=f"void:{inv['id']}",
                )
            )
            continue
        row = ledger.get(eid)
        if row is None:
            out.append(
                Finding(
                    kind="invoice_not_in_ledger",
                    system="erp",
                    record=label,
                    expected="an invoice q2c issued",
                    actual=f"{total}, not in the ledger (made by hand in the ERP?)",
                    action=RAISE_TASK,
                    task_key=f"invoice:{inv['id']}",
                )
            )
            continue
        if dec(inv.get("total")) != row.total:
            out.append(
                Finding(
                    kind="invoice_total",
                    system="erp",
                    record=label,
                    expected=_money(row.total),
                    actual=total,
                    action=RAISE_TASK,
                    task_key=f"invoice-total:{inv['id']}",
                )
            )
        erp_paid = dec(inv.get("amountPaid")) or Decimal(0)
        if erp_paid != row.amount_paid:
            finding = Finding(
                kind="payment_not_in_ledger",
                system="ledger",
                record=f"{label} payments",
                expected=_money(erp_paid),
                actual=_money(row.amount_paid),
                action=RAISE_TASK,
                task_key=f"payment:{inv['id']}:{_money(erp_paid)}",
            )
            if s.polling and erp_paid > row.amount_paid:
                finding.explained, finding.action = True, None
                finding.explanation = "a payment since the engagement's last payment check: its next check records it"
            out.append(finding)
        for line in (inv.get("item") or {}).get("items", []):
            bills = [str(b) for b in line.get("custcol_time_bills") or []]
            if not bills:
                continue
            amounts = {str(b["id"]): dec(b.get("custcol_amount")) or Decimal(0) for b in s.erp_time_bills}
            billed = sum((amounts.get(b, Decimal(0)) for b in bills), Decimal(0))
            if billed != dec(line.get("amount")):
                out.append(
                    Finding(
                        kind="invoice_time_line",
                        system="erp",
                        record=f"{label} line {line.get('description')!r}",
                        expected=_money(billed),
                        actual=_money(line.get("amount")),
                        action=RAISE_TASK,
                        task_key=f"line:{inv['id']}:{line.get('description')}",
                    )
                )
    for eid, row in ledger.items():
        if eid not in erp_by_eid:
            out.append(
                Finding(
                    kind="invoice_missing_in_erp",
                    system="erp",
                    record=f"invoice {row.number} ({eid})",
                    expected=_money(row.total),
                    actual="not in the ERP",
                    action=RAISE_TASK,
                    task_key=f"missing-invoice:{eid}",
                )
            )
    if s.retainer:
        for index, start, end in s.closed_periods:
            eid = f"inv-{s.opportunity_id}-p{index:03d}"
            if eid not in erp_by_eid:
                out.append(
                    Finding(
                        kind="retainer_period_not_invoiced",
                        system="erp",
                        record=f"retainer period {start} to {end} ({eid})",
                        expected="one invoice",
                        actual="none",
                        action=RAISE_TASK,
                        task_key=f"retainer:{eid}",
                    )
                )
    return out


# --- PSA approved time vs ERP timeBills vs the ledger ------------------------------------------


def time_findings(s: Snapshot) -> list[Finding]:
    out: list[Finding] = []
    psa = {e.psa_id: e for e in s.psa_entries}
    posted = {p.psa_id: p for p in s.ledger_posted}
    bills: dict[str, dict] = {}
    for bill in s.erp_time_bills:
        pid = psa_id_of(bill)
        if pid is None or pid not in psa and pid not in posted:
            out.append(
                Finding(
                    kind="orphan_time_bill",
                    system="erp",
                    record=f"timeBill {bill['id']} ({bill.get('externalId') or 'no external ID'})",
                    expected="a timeBill for an approved PSA entry of this engagement",
                    actual=f"{bill.get('custcol_minutes')} min on {bill.get('tranDate')}, no such entry",
                    action=RAISE_TASK,
                    task_key=f"orphan-bill:{bill['id']}",
                )
            )
            continue
        bills[pid] = bill

    for pid, entry in sorted(psa.items(), key=lambda kv: (kv[1].date_performed, kv[0])):
        bill = bills.get(pid)
        row = posted.get(pid)
        label = f"PSA entry {pid} ({entry.minutes} min on {entry.date_performed}, {entry.role or 'no role'})"
        billable = entry.billable and s.bill_time
        if bill is None:
            finding = Finding(
                kind="time_not_posted",
                system="erp",
                record=label,
                expected=f"{entry.minutes} min posted",
                actual="no timeBill",
                action=RAISE_EXCEPTION,
                psa_id=pid,
            )
            if pid in s.open_exceptions:
                finding.explained, finding.action = True, None
                finding.explanation = f"in the time exception queue ({s.open_exceptions[pid]})"
            elif s.posting:
                finding.explained, finding.action = True, None
                finding.explanation = "approved but not posted yet: the engagement posts it at its next period close"
            out.append(finding)
            continue
        erp_minutes = int(bill.get("custcol_minutes") or 0)
        if row is not None and (erp_minutes != row.minutes or bool(bill.get("isBillable")) != row.billable):
            out.append(
                Finding(
                    kind="time_bill_edited_in_erp",
                    system="erp",
                    record=f"timeBill {bill['id']} for {label}",
                    expected=f"{row.minutes} min{' billable' if row.billable else ''} (as q2c posted it)",
                    actual=f"{erp_minutes} min{' billable' if bill.get('isBillable') else ''}",
                    action=RAISE_TASK,
                    task_key=f"edited-bill:{bill['id']}",
                )
            )
            continue
        if erp_minutes != entry.minutes or bool(bill.get("isBillable")) != billable:
            finding = Finding(
                kind="time_changed_after_posting",
                system="psa",
                record=label,
                expected=f"{erp_minutes} min posted in timeBill {bill['id']}",
                actual=f"{entry.minutes} min approved in the PSA",
                action=RAISE_TASK,
                task_key=f"changed-entry:{pid}",
            )
            if bill.get("isBilled"):
                finding.explanation = "the timeBill is already invoiced: a correction needs a credit memo"
            elif s.posting:
                finding.explained, finding.action = True, None
                finding.explanation = "the engagement posts the PSA's figures at its next period close"
            out.append(finding)
            continue
        if billable and not bill.get("isBilled") and not s.posting:
            finding = Finding(
                kind="time_not_invoiced",
                system="erp",
                record=f"timeBill {bill['id']} for {label}",
                expected="invoiced",
                actual="unbilled after the final invoice",
                action=RAISE_TASK,
                task_key=f"unbilled:{bill['id']}",
            )
            marker = (row.invoice_external_id or "") if row is not None else ""
            if marker.startswith(BUDGET_WRITE_OFF_PREFIX):
                finding.explained, finding.action = True, None
                finding.explanation = (
                    f"written off at the not-to-exceed cap by the PMO ({marker}): posted, never billed"
                )
            out.append(finding)
    for pid, bill in bills.items():
        if pid not in psa:
            out.append(
                Finding(
                    kind="time_posted_not_approved",
                    system="psa",
                    record=f"PSA entry {pid} (timeBill {bill['id']}, {bill.get('custcol_minutes')} min)",
                    expected="approved in the PSA",
                    actual="not approved (withdrawn or deleted after posting)",
                    action=RAISE_TASK,
                    task_key=f"unapproved:{pid}",
                )
            )
    return out


def totals(s: Snapshot) -> dict[str, object]:
    """The engagement's three figures (to the minute and the cent) for the report's drill-down:
    approved billable minutes in the PSA, billable minutes posted as timeBills, and the amount
    of the invoiced time lines against the posted billable amount."""
    approved = sum(e.minutes for e in s.psa_entries if e.billable and s.bill_time)
    posted = sum(int(b.get("custcol_minutes") or 0) for b in s.erp_time_bills if b.get("isBillable"))
    posted_amount = sum((dec(b.get("custcol_amount")) or Decimal(0) for b in s.erp_time_bills), Decimal(0))
    invoiced = Decimal(0)
    for inv in s.erp_invoices:
        for line in (inv.get("item") or {}).get("items", []):
            if line.get("custcol_time_bills"):
                invoiced += dec(line.get("amount")) or Decimal(0)
    return {
        "approved_billable_minutes": approved,
        "posted_billable_minutes": posted,
        "posted_amount": posted_amount,
        "invoiced_time_amount": invoiced,
        "invoices": len(s.erp_invoices),
    }
