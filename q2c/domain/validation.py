"""Customer-master and engagement validation, before anything is written to the ERP.

Pure functions: the reference data (ERP subsidiaries, PSA templates) is passed in, so the
rules are unit-tested without any system, and the activity that gathers the reference data
stays thin.
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

from pydantic import BaseModel, Field

from q2c.domain.billing import rate_issue
from q2c.domain.customer import Customer
from q2c.domain.engagement import BillingModel, Engagement
from q2c.domain.money import is_currency
from q2c.domain.project import ProjectTemplate, Subsidiary

PAYMENT_TERMS = ("Net 15", "Net 30", "Net 45", "Net 60")
CLOSED_WON = "Closed Won"
SHOWN_CHARS = 40  # how much of an over-long value a message quotes (the value itself is never cut)


class ErpFieldLimit(NamedTuple):
    """A text field q2c writes to the ERP and the most characters the ERP accepts in it."""

    field: str  # the canonical field path a steward fixes
    erp_field: str  # the ERP record and field the value is written to
    limit: int


# The ERP's length limits for every text field q2c writes (the NetSuite connector's payloads in
# q2c/vendors/netsuite/mapping.py take these values and nothing else). A value that does not fit
# pauses the engagement for a steward; it is never cut. Sources: NetSuite's customer import field
# limits (companyName 83, address lines addr1/addr2 150, addressee 83) and its own refusal text
# ("The field <id> contained more than the maximum number ( N ) of characters allowed.");
# project (job) companyName is the same entity name field (83). city 50, state 30, zip 36 and
# vatRegNumber 20 are the lengths the NetSuite address subrecord and Tax Reg. Number field take.
CUSTOMER_FIELD_LIMITS: tuple[ErpFieldLimit, ...] = (
    ErpFieldLimit("customer.legal_name", "customer companyName", 83),
    ErpFieldLimit("customer.tax_id", "customer vatRegNumber", 20),
    ErpFieldLimit("customer.billing_address.street", "customer address addr1", 150),
    ErpFieldLimit("customer.billing_address.city", "customer address city", 50),
    ErpFieldLimit("customer.billing_address.state", "customer address state", 30),
    ErpFieldLimit("customer.billing_address.postal_code", "customer address zip", 36),
)
PROJECT_FIELD_LIMITS: tuple[ErpFieldLimit, ...] = (ErpFieldLimit("opportunity.name", "project (job) companyName", 83),)
ERP_FIELD_LIMITS = {f.field: f for f in CUSTOMER_FIELD_LIMITS + PROJECT_FIELD_LIMITS}


class FieldIssue(BaseModel):
    """One thing a steward must fix: the canonical field path and why."""

    field: str
    reason: str


class ValidationReport(BaseModel):
    issues: list[FieldIssue] = Field(default_factory=list)
    subsidiary: Subsidiary | None = None
    template: ProjectTemplate | None = None
    subsidiaries: list[Subsidiary] = Field(default_factory=list)  # what a steward's fix is checked against

    @property
    def ok(self) -> bool:
        return not self.issues


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def shown(value: str) -> str:
    """An over-long value as a message quotes it: its start, marked as shortened."""
    return value if len(value) <= SHOWN_CHARS else value[:SHOWN_CHARS] + "…"


def erp_name(customer: Customer) -> str:
    """The name the ERP customer gets: the legal name (CRM `Legal_Name__c`, or what a steward
    supplied), else the account name. Stated once: the mapping writes it, validation checks it."""
    return (customer.legal_name or customer.name or "").strip()


def customer_text_values(c: Customer) -> dict[str, str | None]:
    """Each customer text value q2c writes to the ERP, by canonical field path (as in ERP_FIELD_LIMITS)."""
    a = c.billing_address
    return {
        "customer.legal_name": erp_name(c),
        "customer.tax_id": c.tax_id,
        "customer.billing_address.street": a.street,
        "customer.billing_address.city": a.city,
        "customer.billing_address.state": a.state,
        "customer.billing_address.postal_code": a.postal_code,
    }


def erp_text_values(engagement: Engagement) -> dict[str, str | None]:
    """Each text value q2c writes to the ERP for an engagement (customer and project)."""
    return customer_text_values(engagement.customer) | {"opportunity.name": engagement.opportunity_name}


def length_issue(field: str, value: str | None) -> FieldIssue | None:
    """The issue a value that does not fit its ERP field raises: naming the field, the value
    (shortened in the message only) and the limit; None when it fits or has no limit."""
    limit = ERP_FIELD_LIMITS.get(field)
    if limit is None or value is None or len(value) <= limit.limit:
        return None
    hint = (
        ": give a legal name that fits (the CRM account's Legal Name, or supply one as a steward)"
        if field == "customer.legal_name"
        else ": shorten it in the CRM"
    )
    return FieldIssue(
        field=field,
        reason=f"'{shown(value)}' is {len(value)} characters; the ERP's {limit.erp_field} "
        f"holds at most {limit.limit}{hint}",
    )


def erp_length_issues(engagement: Engagement) -> list[FieldIssue]:
    """Every value q2c would write to the ERP that is longer than the ERP's field (never cut)."""
    found = (length_issue(field, value) for field, value in erp_text_values(engagement).items())
    return [issue for issue in found if issue is not None]


def validate_engagement(
    engagement: Engagement, subsidiaries: list[Subsidiary], templates: list[ProjectTemplate]
) -> ValidationReport:
    issues: list[FieldIssue] = []
    c = engagement.customer

    def need(field: str, value: object, what: str) -> None:
        if _blank(value):
            issues.append(FieldIssue(field=field, reason=f"{what} is missing"))

    if engagement.stage_name is not None and engagement.stage_name != CLOSED_WON:
        issues.append(
            FieldIssue(
                field="opportunity.stage_name", reason=f"opportunity is '{engagement.stage_name}', not '{CLOSED_WON}'"
            )
        )

    need("customer.name", c.legal_name or c.name, "legal name")
    need("customer.tax_id", c.tax_id, "tax ID")
    need("customer.billing_address.street", c.billing_address.street, "billing street")
    need("customer.billing_address.city", c.billing_address.city, "billing city")
    need("customer.billing_address.postal_code", c.billing_address.postal_code, "billing postal code")
    need("customer.billing_address.country", c.billing_address.country, "billing country")

    if _blank(c.payment_terms):
        issues.append(FieldIssue(field="customer.payment_terms", reason="payment terms are missing"))
    elif c.payment_terms not in PAYMENT_TERMS:
        issues.append(
            FieldIssue(
                field="customer.payment_terms", reason=f"'{c.payment_terms}' is not one of {', '.join(PAYMENT_TERMS)}"
            )
        )

    subsidiary = None
    if _blank(c.region):
        issues.append(FieldIssue(field="customer.region", reason="region is missing"))
    else:
        subsidiary = next((s for s in subsidiaries if s.region == c.region), None)
        if subsidiary is None:
            issues.append(
                FieldIssue(field="customer.region", reason=f"no ERP legal entity (subsidiary) for region '{c.region}'")
            )

    if _blank(c.currency):
        issues.append(FieldIssue(field="customer.currency", reason="currency is missing"))
    elif not is_currency(c.currency):
        issues.append(FieldIssue(field="customer.currency", reason=f"'{c.currency}' is not an ISO 4217 code"))
    else:
        if subsidiary is not None and c.currency != subsidiary.currency:
            issues.append(
                FieldIssue(
                    field="customer.currency",
                    reason=f"{c.currency} is not the currency of {subsidiary.name} ({subsidiary.currency})",
                )
            )
        if engagement.contract_value.currency != c.currency:
            issues.append(
                FieldIssue(
                    field="opportunity.currency",
                    reason=f"deal currency {engagement.contract_value.currency} differs from the customer's {c.currency}",  # noqa: E501
                )
            )

    template = None
    if _blank(engagement.service_line):
        issues.append(FieldIssue(field="opportunity.service_line", reason="service line is missing"))
    else:
        template = next((t for t in templates if t.service_line == engagement.service_line), None)
        if template is None:
            issues.append(
                FieldIssue(
                    field="opportunity.service_line",
                    reason=f"no PSA project template for service line '{engagement.service_line}'",
                )
            )

    issues += erp_length_issues(engagement)
    issues += _billing_issues(engagement)
    return ValidationReport(issues=issues, subsidiary=subsidiary, template=template, subsidiaries=subsidiaries)


def _billing_issues(e: Engagement) -> list[FieldIssue]:
    issues: list[FieldIssue] = []
    if e.start_date is None:
        issues.append(FieldIssue(field="opportunity.start_date", reason="start date is missing"))
    if e.end_date is None:
        issues.append(FieldIssue(field="opportunity.end_date", reason="end date is missing"))
    if e.start_date and e.end_date and e.end_date < e.start_date:
        issues.append(FieldIssue(field="opportunity.end_date", reason="end date is before the start date"))
    if e.contract_value.amount <= 0:
        issues.append(FieldIssue(field="opportunity.contract_value", reason="contract value must be positive"))
    if e.billing_model is BillingModel.TIME_AND_MATERIALS:
        if not e.rate_card:
            issues.append(FieldIssue(field="opportunity.rate_card", reason="time and materials needs a rate card"))
        for r in e.rate_card:
            # the same rule as before posting (q2c.domain.billing.rate_issue): a rate the ledger
            # cannot store exactly is refused here, not after the ERP has accepted it
            issue = rate_issue(r.rate, e.currency)
            if issue:
                since = f" (from {r.effective_from})" if r.effective_from else ""
                issues.append(
                    FieldIssue(field=f"opportunity.rate_card[{r.role}].rate", reason=f"{r.role}{since}: {issue}")
                )
    elif e.billing_model is BillingModel.FIXED_FEE:
        if not e.milestones:
            issues.append(FieldIssue(field="opportunity.milestones", reason="fixed fee needs milestones"))
        total = sum((m.amount for m in e.milestones), Decimal(0))
        if e.milestones and total > e.contract_value.amount:
            issues.append(
                FieldIssue(
                    field="opportunity.milestones",
                    reason=f"milestones total {total} exceeds contract value {e.contract_value.amount}",
                )
            )
    elif e.billing_model is BillingModel.RETAINER:
        if e.retainer_amount is None or e.retainer_amount <= 0:
            issues.append(
                FieldIssue(field="opportunity.retainer_amount", reason="retainer needs a positive amount per period")
            )
    return issues
