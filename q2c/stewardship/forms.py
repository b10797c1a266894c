"""From what a steward typed (console form fields, JSON bodies, CLI options) to the Update inputs.

Parsing problems (a contract value that is not a number, a date that is not YYYY-MM-DD) are
reported as field errors in the same shape as the workflow validator's, before anything is
sent to Temporal, so the console shows both kinds inline the same way.

Field names: customer-data fields are `CustomerPatch`'s (`tax_id`, `billing_city`, ...);
amendment fields are `contract_value`, `end_date`, `reason`, `rates[i].role|rate|effective_from`
and `milestones[i].key|name|amount|due_date`. `field_key()` maps any of the spellings the
workflow may use (`customer.tax_id`, `customer.billing_address.city`, `rates.0.rate`) onto the
console's input names so an error lands next to its input.

CLI specs: `--rate "Senior Consultant=210@2027-03-01"`, `--milestone "Go-live=15000@2027-04-30#ms-2"`
(`#key` replaces that existing milestone; without it the milestone is added).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from decimal import Decimal, InvalidOperation

from pydantic import ValidationError

from q2c.engagement.messages import Amendment, CustomerPatch, MilestoneChange, RateChange
from q2c.engagement.updates import FieldError

PATCH_FIELDS = tuple(name for name in CustomerPatch.model_fields if name != "provided_by")
PATCH_LABELS = {
    "legal_name": "Legal name",
    "tax_id": "Tax ID",
    "region": "Region",
    "currency": "Currency (ISO)",
    "payment_terms": "Payment terms",
    "billing_street": "Billing street",
    "billing_city": "Billing city",
    "billing_state": "Billing state",
    "billing_postal_code": "Billing postal code",
    "billing_country": "Billing country (ISO 2)",
}
FORM_RATE_ROWS = 2
FORM_MILESTONE_ROWS = 2
_ADDRESS = {
    "street": "billing_street",
    "city": "billing_city",
    "state": "billing_state",
    "postal_code": "billing_postal_code",
    "country": "billing_country",
}


def field_key(name: str) -> str:
    """Normalize a field path to the console's input name ('rates[0].rate' -> 'rates.0.rate')."""
    key = re.sub(r"\[(\d+)\]", r".\1", name.strip())
    key = key.removeprefix("patch.").removeprefix("amendment.").removeprefix("customer.")
    if key.startswith("billing_address."):
        key = _ADDRESS.get(key.removeprefix("billing_address."), key)
    if key == "name":
        key = "legal_name"
    return key


def errors_by_field(errors: list[FieldError]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for e in errors:
        found.setdefault(field_key(e.field), []).append(e.reason)
    return found


def _clean(value: object) -> str:
    return str(value).strip() if value is not None else ""


def pydantic_errors(err: ValidationError, prefix: str = "") -> list[FieldError]:
    out = []
    for e in err.errors(include_url=False):
        path = ""
        for part in e["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        out.append(FieldError(prefix + (path or "body"), e["msg"]))
    return out


# ---- customer data --------------------------------------------------------------------------


def customer_patch_from(
    values: Mapping[str, object], provided_by: str
) -> tuple[CustomerPatch | None, list[FieldError]]:
    """Only non-empty fields are part of the patch; an empty patch is an error."""
    given = {name: _clean(values.get(name)) for name in PATCH_FIELDS if _clean(values.get(name))}
    unknown = [k for k in values if k not in PATCH_FIELDS and k not in ("provided_by", "csrf_token")]
    errors = [FieldError(k, "not a customer-master field") for k in unknown]
    if not given and not errors:
        errors.append(FieldError("_", "enter at least one field to change"))
    if errors:
        return None, errors
    try:
        return CustomerPatch(**given, provided_by=provided_by), []
    except ValidationError as err:
        return None, pydantic_errors(err)


def parse_assignments(pairs: list[str]) -> tuple[dict[str, str], list[FieldError]]:
    """CLI `--set field=value` pairs -> {field: value}."""
    values, errors = {}, []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            errors.append(FieldError(pair, "expected field=value"))
            continue
        values[name.strip()] = value.strip()
    return values, errors


# ---- amendments ------------------------------------------------------------------------------


def _decimal(value: str, field: str, errors: list[FieldError]) -> Decimal | None:
    try:
        result = Decimal(value.replace(",", ""))
    except InvalidOperation:
        errors.append(FieldError(field, f"'{value}' is not a number"))
        return None
    if not result.is_finite():
        errors.append(FieldError(field, f"'{value}' is not a number"))
        return None
    return result


def _date(value: str, field: str, errors: list[FieldError]) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors.append(FieldError(field, f"'{value}' is not a date (YYYY-MM-DD)"))
        return None


def compact_rows(values: Mapping[str, str]) -> dict[str, str]:
    """Renumber the form's rate and milestone rows so the filled ones come first, in order:
    then row i of the form is item i of the Amendment, and the workflow's `rates[i]` /
    `milestones[i]` errors land on the right row."""
    out = {k: v for k, v in values.items() if not k.startswith(("rates.", "milestones."))}
    for prefix, rows, names in (
        ("rates", FORM_RATE_ROWS, ("role", "rate", "effective_from")),
        ("milestones", FORM_MILESTONE_ROWS, ("key", "name", "amount", "due_date")),
    ):
        filled = [i for i in range(rows) if any(_clean(values.get(f"{prefix}.{i}.{n}")) for n in names)]
        for new, old in enumerate(filled):
            for n in names:
                out[f"{prefix}.{new}.{n}"] = _clean(values.get(f"{prefix}.{old}.{n}"))
    return out


def amendment_from_form(values: Mapping[str, object], requested_by: str) -> tuple[Amendment | None, list[FieldError]]:
    """The console's amendment form; blank rate/milestone rows are ignored."""
    errors: list[FieldError] = []
    v = {k: _clean(x) for k, x in values.items()}
    contract_value = _decimal(v["contract_value"], "contract_value", errors) if v.get("contract_value") else None
    budget_cap = _decimal(v["budget_cap"], "budget_cap", errors) if v.get("budget_cap") else None
    end_date = _date(v["end_date"], "end_date", errors) if v.get("end_date") else None
    rates, milestones = [], []
    for i in range(FORM_RATE_ROWS):
        role, rate, eff = (v.get(f"rates.{i}.{n}", "") for n in ("role", "rate", "effective_from"))
        if not (role or rate or eff):
            continue
        n_err = len(errors)
        for name, val in (("role", role), ("rate", rate), ("effective_from", eff)):
            if not val:
                errors.append(FieldError(f"rates[{i}].{name}", "required for a rate change"))
        rate_d = _decimal(rate, f"rates[{i}].rate", errors) if rate else None
        eff_d = _date(eff, f"rates[{i}].effective_from", errors) if eff else None
        if len(errors) == n_err:
            rates.append(RateChange(role=role, rate=rate_d, effective_from=eff_d))
    for i in range(FORM_MILESTONE_ROWS):
        key, name, amount, due = (v.get(f"milestones.{i}.{n}", "") for n in ("key", "name", "amount", "due_date"))
        if not (name or amount or due or key):
            continue
        n_err = len(errors)
        if not name:
            errors.append(FieldError(f"milestones[{i}].name", "a milestone needs a name"))
        if not amount:
            errors.append(FieldError(f"milestones[{i}].amount", "a milestone needs an amount"))
        amount_d = _decimal(amount, f"milestones[{i}].amount", errors) if amount else None
        due_d = _date(due, f"milestones[{i}].due_date", errors) if due else None
        if len(errors) == n_err:
            milestones.append(MilestoneChange(key=key or None, name=name, amount=amount_d, due_date=due_d))
    if errors:
        return None, errors
    if contract_value is None and end_date is None and not rates and not milestones and budget_cap is None:
        return None, [
            FieldError(
                "_", "nothing to change: give a contract value, a budget cap, an end date, a rate change or a milestone"
            )
        ]
    return Amendment(
        contract_value=contract_value,
        budget_cap=budget_cap,
        end_date=end_date,
        rates=rates,
        milestones=milestones,
        reason=v.get("reason", ""),
        requested_by=requested_by,
    ), []


_RATE_SPEC = re.compile(r"^(?P<role>[^=]+)=(?P<rate>[^@]+)@(?P<date>\S+)$")
_MILESTONE_SPEC = re.compile(r"^(?P<name>[^=]+)=(?P<amount>[^@#]+)(?:@(?P<due>[^#]+))?(?:#(?P<key>.+))?$")


def parse_rate_spec(spec: str, index: int, errors: list[FieldError]) -> RateChange | None:
    """'Role=rate@YYYY-MM-DD'."""
    m = _RATE_SPEC.match(spec.strip())
    if not m:
        errors.append(FieldError(f"rates[{index}]", f"'{spec}' is not Role=rate@YYYY-MM-DD"))
        return None
    n = len(errors)
    rate = _decimal(m["rate"].strip(), f"rates[{index}].rate", errors)
    eff = _date(m["date"].strip(), f"rates[{index}].effective_from", errors)
    return None if len(errors) > n else RateChange(role=m["role"].strip(), rate=rate, effective_from=eff)


def parse_milestone_spec(spec: str, index: int, errors: list[FieldError]) -> MilestoneChange | None:
    """'Name=amount[@YYYY-MM-DD][#replace-key]'."""
    m = _MILESTONE_SPEC.match(spec.strip())
    if not m:
        errors.append(FieldError(f"milestones[{index}]", f"'{spec}' is not Name=amount[@due][#key]"))
        return None
    n = len(errors)
    amount = _decimal(m["amount"].strip(), f"milestones[{index}].amount", errors)
    due = _date(m["due"].strip(), f"milestones[{index}].due_date", errors) if m["due"] else None
    if len(errors) > n:
        return None
    return MilestoneChange(key=(m["key"] or "").strip() or None, name=m["name"].strip(), amount=amount, due_date=due)


def amendment_from_specs(
    *,
    contract_value: str | None,
    end_date: str | None,
    rates: list[str],
    milestones: list[str],
    reason: str,
    requested_by: str,
    budget_cap: str | None = None,
) -> tuple[Amendment | None, list[FieldError]]:
    """The CLI's `q2c amend` options."""
    errors: list[FieldError] = []
    cv = _decimal(contract_value, "contract_value", errors) if contract_value else None
    cap = _decimal(budget_cap, "budget_cap", errors) if budget_cap else None
    ed = _date(end_date, "end_date", errors) if end_date else None
    rate_changes = [parse_rate_spec(s, i, errors) for i, s in enumerate(rates)]
    milestone_changes = [parse_milestone_spec(s, i, errors) for i, s in enumerate(milestones)]
    if errors:
        return None, errors
    if cv is None and ed is None and not rate_changes and not milestone_changes and cap is None:
        return None, [
            FieldError("_", "nothing to change: give --contract-value, --budget-cap, --end-date, --rate or --milestone")
        ]
    return Amendment(
        contract_value=cv,
        budget_cap=cap,
        end_date=ed,
        rates=rate_changes,
        milestones=milestone_changes,
        reason=reason or "",
        requested_by=requested_by,
    ), []


def parse_rebill_spec(spec: str, i: int, errors: list[FieldError]) -> dict | None:
    """`"Description=quantity@rate"` (the CLI's `--rebill`) -> {description, quantity, rate}."""
    text, sep, rest = spec.rpartition("=")
    quantity, at, rate = rest.partition("@")
    if not sep or not at or not text.strip():
        errors.append(FieldError(f"rebill[{i}]", f"'{spec[:80]}' is not \"Description=quantity@rate\""))
        return None
    return {"description": text.strip(), "quantity": quantity.strip(), "rate": rate.strip()}
