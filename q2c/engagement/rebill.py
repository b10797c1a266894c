"""Re-billing corrected lines after a credit note (deterministic, shared by the validator and
the handler of `credit_invoice`).

A steward credits a disputed invoice and states what should have been billed; those lines go
on the engagement's next invoice (or an invoice of their own at closure). They never add up
to more than the credit: billing more than was credited is a new charge, a change order."""

from __future__ import annotations

from decimal import Decimal

from q2c.domain.billing import format_rate, line_amount, rate_issue
from q2c.domain.delivery import InvoiceLine
from q2c.domain.validation import FieldIssue
from q2c.engagement.messages import CreditInvoiceInput, CreditNoteSummary

MAX_REBILL_LINES = 20
DESCRIPTION_LENGTH = 200


def rebill_issues(input: CreditInvoiceInput, currency: str) -> list[FieldIssue]:
    issues: list[FieldIssue] = []
    if len(input.rebill) > MAX_REBILL_LINES:
        return [FieldIssue(field="rebill", reason=f"at most {MAX_REBILL_LINES} lines")]
    total = Decimal(0)
    for i, line in enumerate(input.rebill):
        text = line.description.strip()
        if not text:
            issues.append(FieldIssue(field=f"rebill[{i}].description", reason="must not be blank"))
        elif len(text) > DESCRIPTION_LENGTH:
            issues.append(
                FieldIssue(
                    field=f"rebill[{i}].description", reason=f"{len(text)} characters; at most {DESCRIPTION_LENGTH}"
                )
            )
        if not line.quantity.is_finite() or line.quantity <= 0:
            issues.append(FieldIssue(field=f"rebill[{i}].quantity", reason="must be positive"))
            continue
        problem = rate_issue(line.rate, currency)
        if problem:
            issues.append(FieldIssue(field=f"rebill[{i}].rate", reason=problem.replace("/h", "")))
            continue
        total += line_amount(line.quantity, line.rate, currency)
    if not issues and input.rebill and total > input.amount:
        issues.append(
            FieldIssue(
                field="rebill",
                reason=f"re-billed lines total {total} {currency}, more than the {input.amount} credited "
                "(a larger charge is a change order)",
            )
        )
    return issues


def rebill_lines(input: CreditInvoiceInput, note: CreditNoteSummary, currency: str) -> list[InvoiceLine]:
    ref = note.number or note.external_id
    return [
        InvoiceLine(
            description=f"{line.description.strip()} (re-billed after credit memo {ref}; "
            f"{line.quantity.normalize():f} at {format_rate(line.rate, currency)})",
            quantity=line.quantity,
            rate=line.rate,
            amount=line_amount(line.quantity, line.rate, currency),
        )
        for line in input.rebill
    ]
