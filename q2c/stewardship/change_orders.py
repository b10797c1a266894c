"""Change orders that arrive from the CRM: the amended opportunity, read again, compared with
the engagement's current contract, becomes an Amendment that takes the same validated path as
one entered by a steward."""

from __future__ import annotations

from q2c.domain.engagement import Engagement
from q2c.engagement.messages import Amendment, MilestoneChange, RateChange


def amendment_from_crm(current: Engagement, fresh: Engagement) -> Amendment | None:
    """What changed in the CRM, as an Amendment; None when nothing that q2c bills did, so a
    redelivered or unchanged message makes no version and no vendor call.

    Milestones are matched by the CRM line item ID (a new line becomes a milestone under that
    ID); rates by (role, rate, effective date)."""
    contract_value = (
        fresh.contract_value.amount if fresh.contract_value.amount != current.contract_value.amount else None
    )
    end_date = fresh.end_date if fresh.end_date != current.end_date else None
    budget_cap = fresh.budget_cap if fresh.budget_cap is not None and fresh.budget_cap != current.budget_cap else None
    known_rates = {(r.role, r.rate, r.effective_from) for r in current.rate_card}
    rates = [
        RateChange(role=r.role, rate=r.rate, effective_from=r.effective_from)
        for r in fresh.rate_card
        if (r.role, r.rate, r.effective_from) not in known_rates and r.effective_from is not None
    ]
    by_key = {m.key: m for m in current.milestones}
    milestones = []
    for m in fresh.milestones:
        old = by_key.get(m.key)
        if old is None:
            # keyed by the CRM's own line ID: the same line arriving again is the same milestone
            milestones.append(MilestoneChange(new_key=m.key, name=m.name, amount=m.amount, due_date=m.due_date))
        elif (old.name, old.amount, old.due_date) != (m.name, m.amount, m.due_date):
            milestones.append(MilestoneChange(key=m.key, name=m.name, amount=m.amount, due_date=m.due_date))
    if contract_value is None and end_date is None and not rates and not milestones and budget_cap is None:
        return None
    return Amendment(
        contract_value=contract_value,
        end_date=end_date,
        rates=rates,
        milestones=milestones,
        budget_cap=budget_cap,
        reason="change order from the CRM",
        requested_by="crm",
    )
