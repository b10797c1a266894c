"""Stewardship rules, pure: why an engagement pauses and whose queue it is in; whether a
steward's customer-data patch or a change order is acceptable; how they apply.

Every check returns FieldIssues naming the field and the reason, so a validator can reject an
Update before anything reaches the workflow's history.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

from q2c.domain.billing import rate_issue
from q2c.domain.budget import cap_issue
from q2c.domain.customer import Address, Customer
from q2c.domain.engagement import BillingModel, Engagement, Milestone, RateCardEntry
from q2c.domain.money import Money, is_currency
from q2c.domain.project import Subsidiary
from q2c.domain.validation import PAYMENT_TERMS, FieldIssue, customer_text_values, length_issue

# Tax ID formats by billing country (ISO 3166-1 alpha-2); other countries: 4-20 letters/digits.
TAX_ID_FORMATS: dict[str, tuple[str, str]] = {
    "US": (r"\d{2}-\d{7}", "a US EIN like 12-3456789"),
    "GB": (r"GB(\d{9}|\d{12})", "a UK VAT number like GB123456789"),
    "DE": (r"DE\d{9}", "a German VAT number like DE123456789"),
    "FR": (r"FR[0-9A-Z]{2}\d{9}", "a French VAT number like FR12345678901"),
    "CA": (r"\d{9}(RT\d{4})?", "a Canadian business number like 123456789RT0001"),
}
_PATCH_PATHS = {
    "billing_street": "customer.billing_address.street",
    "billing_city": "customer.billing_address.city",
    "billing_state": "customer.billing_address.state",
    "billing_postal_code": "customer.billing_address.postal_code",
}
GENERIC_TAX_ID = (r"[0-9A-Z][0-9A-Z\-]{3,19}", "4-20 letters and digits")
COUNTRY = re.compile(r"[A-Z]{2}")
MAX_TEXT = 200


# --- pause reasons ----------------------------------------------------------------------


def pause_kind_and_queue(issues: list[FieldIssue]) -> tuple[str, str]:
    """The pause kind and owning queue for a set of validation issues (the most upstream wins:
    customer master first, then the project template, then the deal itself)."""
    fields = [i.field for i in issues]
    if any(f.startswith("customer.") for f in fields):
        return "customer_master_incomplete", "master-data"
    if "opportunity.service_line" in fields:
        return "no_project_template", "pmo"
    return "deal_not_ready", "finance-ops"


def rejection_kind_and_queue(step: str) -> tuple[str, str]:
    """A system of record rejected our data while provisioning."""
    if step.startswith("psa."):
        return "psa_mapping_missing", "pmo"
    if step.startswith("erp."):
        return "erp_rejected", "finance-ops"
    return "erp_rejected", "master-data"


# --- customer data ----------------------------------------------------------------------

CUSTOMER_FIELDS = (
    "legal_name",
    "tax_id",
    "region",
    "currency",
    "payment_terms",
    "billing_street",
    "billing_city",
    "billing_state",
    "billing_postal_code",
    "billing_country",
)


def validate_customer_patch(
    patch: dict[str, object], customer: Customer, subsidiaries: list[Subsidiary]
) -> list[FieldIssue]:
    """`patch`: the fields a steward supplies (None = unchanged)."""
    issues: list[FieldIssue] = []
    given = {k: v for k, v in patch.items() if k in CUSTOMER_FIELDS and v is not None}
    if not given:
        return [FieldIssue(field="customer", reason="no customer field was given")]
    for name, value in given.items():
        if not isinstance(value, str):
            issues.append(FieldIssue(field=f"customer.{name}", reason="must be text"))
        elif not value.strip():
            issues.append(FieldIssue(field=f"customer.{name}", reason="must not be blank"))
        elif len(value) > MAX_TEXT:
            issues.append(FieldIssue(field=f"customer.{name}", reason=f"longer than {MAX_TEXT} characters"))
    if issues:
        return issues
    merged = apply_customer_patch(customer, given)
    country = merged.billing_address.country
    if "billing_country" in given and not COUNTRY.fullmatch(country or ""):
        issues.append(
            FieldIssue(
                field="customer.billing_country", reason=f"'{country}' is not an ISO 3166 two-letter country code"
            )
        )
    if "tax_id" in given or "billing_country" in given:
        if merged.tax_id:
            pattern, example = TAX_ID_FORMATS.get(country or "", GENERIC_TAX_ID)
            if not re.fullmatch(pattern, merged.tax_id.strip().upper()):
                where = f"for billing country {country}" if country in TAX_ID_FORMATS else "as a tax ID"
                issues.append(
                    FieldIssue(
                        field="customer.tax_id", reason=f"'{merged.tax_id}' is not valid {where}: expected {example}"
                    )
                )
    # a value the ERP cannot hold is refused here, before the Update is accepted (never cut later)
    for name in given:
        path = _PATCH_PATHS.get(name, f"customer.{name}")
        value = customer_text_values(merged).get(path)
        issue = length_issue(path, value)
        if issue is not None:
            issues.append(issue)
    if "currency" in given and not is_currency(merged.currency or ""):
        issues.append(FieldIssue(field="customer.currency", reason=f"'{merged.currency}' is not an ISO 4217 code"))
    if "payment_terms" in given and merged.payment_terms not in PAYMENT_TERMS:
        issues.append(
            FieldIssue(
                field="customer.payment_terms",
                reason=f"'{merged.payment_terms}' is not one of {', '.join(PAYMENT_TERMS)}",
            )
        )
    if "region" in given or "currency" in given:
        subsidiary = next((s for s in subsidiaries if s.region == merged.region), None)
        if subsidiary is None:
            known = ", ".join(sorted(s.region for s in subsidiaries)) or "none known"
            issues.append(
                FieldIssue(
                    field="customer.region", reason=f"no ERP subsidiary for region '{merged.region}' (known: {known})"
                )
            )
        elif is_currency(merged.currency or "") and merged.currency != subsidiary.currency:
            issues.append(
                FieldIssue(
                    field="customer.currency",
                    reason=f"{subsidiary.name} invoices in {subsidiary.currency}, not {merged.currency}",
                )
            )
    return issues


def apply_customer_patch(customer: Customer, given: dict[str, object]) -> Customer:
    def pick(name: str, current: str | None) -> str | None:
        value = given.get(name)
        return value.strip() if isinstance(value, str) and value.strip() else current

    a = customer.billing_address
    tax_id = pick("tax_id", customer.tax_id)
    return customer.model_copy(
        update={
            "legal_name": pick("legal_name", customer.legal_name),
            "tax_id": tax_id.upper() if tax_id else tax_id,
            "region": pick("region", customer.region),
            "currency": (pick("currency", customer.currency) or "").upper() or None,
            "payment_terms": pick("payment_terms", customer.payment_terms),
            "billing_address": Address(
                street=pick("billing_street", a.street),
                city=pick("billing_city", a.city),
                state=pick("billing_state", a.state),
                postal_code=pick("billing_postal_code", a.postal_code),
                country=(pick("billing_country", a.country) or "").upper() or None,
            ),
        }
    )


# --- change orders ----------------------------------------------------------------------


def validate_amendment(
    amendment,
    engagement: Engagement,
    *,
    billed: Decimal,
    last_invoiced_period_end: date | None,
    last_posted_date: date | None,
) -> list[FieldIssue]:
    """`amendment`: q2c.engagement.messages.Amendment (duck-typed to keep domain free of workflow models)."""
    issues: list[FieldIssue] = []
    e = engagement
    if (
        amendment.contract_value is None
        and amendment.end_date is None
        and not amendment.milestones
        and not amendment.rates
        and getattr(amendment, "budget_cap", None) is None
    ):
        return [
            FieldIssue(
                field="amendment",
                reason="nothing to change: give a contract value, end date, milestones, rates or a budget cap",
            )
        ]
    if not amendment.reason.strip():
        issues.append(FieldIssue(field="reason", reason="say why the contract changes"))
    if amendment.contract_value is not None:
        if amendment.contract_value <= 0:
            issues.append(FieldIssue(field="contract_value", reason="must be positive"))
        elif amendment.contract_value < billed:
            issues.append(
                FieldIssue(
                    field="contract_value",
                    reason=f"{amendment.contract_value} is below what is already billed ({billed})",
                )
            )
    new_cap = getattr(amendment, "budget_cap", None)
    if new_cap is not None:
        if e.billing_model is not BillingModel.TIME_AND_MATERIALS:
            issues.append(
                FieldIssue(field="budget_cap", reason=f"a {e.billing_model.value} engagement has no not-to-exceed cap")
            )
        else:
            problem = cap_issue(new_cap, billed)
            if problem:
                issues.append(FieldIssue(field="budget_cap", reason=problem))
    if amendment.end_date is not None:
        if e.start_date and amendment.end_date < e.start_date:
            issues.append(FieldIssue(field="end_date", reason=f"before the start date {e.start_date}"))
        if last_posted_date and amendment.end_date < last_posted_date:
            issues.append(FieldIssue(field="end_date", reason=f"before the last posted time ({last_posted_date})"))
        if last_invoiced_period_end and amendment.end_date < last_invoiced_period_end:
            issues.append(
                FieldIssue(
                    field="end_date", reason=f"before the end of the last invoiced period ({last_invoiced_period_end})"
                )
            )
    by_key = {m.key: m for m in e.milestones}
    if amendment.milestones and e.billing_model is not BillingModel.FIXED_FEE:
        issues.append(FieldIssue(field="milestones", reason=f"a {e.billing_model.value} engagement has no milestones"))
    for i, m in enumerate(amendment.milestones):
        if m.key is not None:
            current = by_key.get(m.key)
            if current is None:
                issues.append(FieldIssue(field=f"milestones[{i}].key", reason=f"no milestone '{m.key}' to replace"))
            elif current.invoiced or current.accepted or current.waived:
                state = "invoiced" if current.invoiced else "accepted" if current.accepted else "waived"
                issues.append(
                    FieldIssue(
                        field=f"milestones[{i}].key",
                        reason=f"milestone '{current.name}' is already {state} and cannot change",
                    )
                )
        new_key = getattr(m, "new_key", None)
        if m.key is None and new_key is not None and new_key in by_key:
            issues.append(
                FieldIssue(field=f"milestones[{i}].new_key", reason=f"a milestone '{new_key}' exists already")
            )
        if not m.name.strip():
            issues.append(FieldIssue(field=f"milestones[{i}].name", reason="must not be blank"))
        if m.amount <= 0:
            issues.append(FieldIssue(field=f"milestones[{i}].amount", reason="must be positive"))
    if amendment.rates and e.billing_model is not BillingModel.TIME_AND_MATERIALS:
        issues.append(FieldIssue(field="rates", reason=f"a {e.billing_model.value} engagement has no rate card"))
    known_roles = {r.role for r in e.rate_card}
    for i, r in enumerate(amendment.rates):
        if r.role not in known_roles:
            issues.append(
                FieldIssue(
                    field=f"rates[{i}].role",
                    reason=f"'{r.role}' is not on the rate card ({', '.join(sorted(known_roles))})",
                )
            )
        problem = rate_issue(r.rate, e.currency)
        if problem:
            issues.append(FieldIssue(field=f"rates[{i}].rate", reason=problem))
        if last_invoiced_period_end and r.effective_from < last_invoiced_period_end:
            issues.append(
                FieldIssue(
                    field=f"rates[{i}].effective_from",
                    reason=f"{r.effective_from} is before the end of the last invoiced period "
                    f"({last_invoiced_period_end})",
                )
            )
    if not issues:
        changed = apply_amendment(e, amendment, version=0)
        total = sum((m.amount for m in changed.milestones), Decimal(0))
        if changed.billing_model is BillingModel.FIXED_FEE and total > changed.contract_value.amount:
            issues.append(
                FieldIssue(
                    field="milestones",
                    reason=f"milestones total {total} exceeds the contract value {changed.contract_value.amount}",
                )
            )
    return issues


def apply_amendment(engagement: Engagement, amendment, *, version: int) -> Engagement:
    milestones = [m.model_copy() for m in engagement.milestones]
    for i, change in enumerate(amendment.milestones):
        if change.key is None:
            key = getattr(change, "new_key", None) or f"co{version}-{i + 1}"
            milestones.append(
                Milestone(key=key, name=change.name.strip(), amount=change.amount, due_date=change.due_date)
            )
        else:
            milestones = [
                Milestone(key=m.key, name=change.name.strip(), amount=change.amount, due_date=change.due_date)
                if m.key == change.key
                else m
                for m in milestones
            ]
    # a rate for a (role, date) already on the card replaces it: the card holds one rate per
    # role and date, however many change orders restate it
    rate_card = list(engagement.rate_card)
    for r in amendment.rates:
        rate_card = [e for e in rate_card if (e.role, e.effective_from) != (r.role, r.effective_from)]
        rate_card.append(RateCardEntry(role=r.role, rate=r.rate, effective_from=r.effective_from))
    value = engagement.contract_value
    if amendment.contract_value is not None:
        value = Money(amount=amendment.contract_value, currency=value.currency)
    cap = getattr(amendment, "budget_cap", None)
    return engagement.model_copy(
        update={
            "contract_value": value,
            "budget_cap": cap if cap is not None else engagement.budget_cap,
            "end_date": amendment.end_date or engagement.end_date,
            "milestones": milestones,
            "rate_card": rate_card,
        }
    )
