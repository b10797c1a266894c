"""One input/output model per workflow, signal, update and query (fields can be added later)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import Enum

from pydantic import BaseModel, Field

from q2c.domain.budget import BudgetPolicy, BudgetState
from q2c.domain.delivery import InvoiceLine, InvoiceStatus, PaymentStatus
from q2c.domain.engagement import Engagement
from q2c.domain.project import PsaWorkspace, Subsidiary
from q2c.domain.stage import EngagementStage
from q2c.domain.validation import FieldIssue

DAY_SECONDS = 86_400
OPEN_EXCEPTION_SAMPLE = 20


class DeliveryConfig(BaseModel):
    """How the engagement's calendar runs.

    period_seconds=None: billing periods are calendar months, closed at midnight UTC after
    each month's last day. A number: an accelerated demo calendar where each month of the
    engagement lasts that many seconds of wall time (dates on time and invoices stay the
    engagement's own calendar dates).
    """

    period_seconds: int | None = None
    payment_poll_seconds: int = DAY_SECONDS
    posting_batch_size: int = 50
    # after the end date, approved time for the final period keeps being collected this long
    # before the final posting (on the demo calendar: this share of a 30-day month)
    grace_days: int = 3
    # not-to-exceed on T&M contracts (Q2C_BUDGET_WARN_AT, Q2C_BUDGET_HOLD), as the engagement started
    budget: BudgetPolicy = Field(default_factory=BudgetPolicy)


class EngagementInput(BaseModel):
    opportunity_id: str
    source: str = "webhook"  # webhook | cli | reconciliation
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    state: EngagementStatus | None = None  # carried across continue-as-new


class RecheckInput(BaseModel):
    requested_by: str = "steward"
    note: str | None = None


class StatusQueryInput(BaseModel):
    pass


class CloseInput(BaseModel):
    requested_by: str = "finance"
    reason: str = "delivery complete"


class AcceptMilestoneInput(BaseModel):
    milestone_key: str
    accepted_by: str = "client"
    accepted_on: date | None = None


class ReplayExceptionsInput(BaseModel):
    """Replay parked time entries: the given PSA entry ids, or every open one when empty."""

    psa_ids: list[str] = Field(default_factory=list)
    requested_by: str = "steward"


class TimeExceptionInfo(BaseModel):
    psa_id: str
    reason_code: str
    message: str


class PostingResult(BaseModel):
    """One posting run (or replay, or write-off). Lists are bounded samples (at most
    OPEN_EXCEPTION_SAMPLE); the counts are exact; every exception in full is in the ledger."""

    examined: int = 0
    posted: int = 0
    posted_minutes: int = 0
    exceptions: list[TimeExceptionInfo] = Field(default_factory=list)  # parked by this run (sample)
    exceptions_count: int = 0  # parked by this run
    resolved: list[str] = Field(default_factory=list)  # psa ids that were exceptions and are now posted (sample)
    resolved_count: int = 0
    not_open: list[str] = Field(default_factory=list)  # asked to replay/write off, but not open exceptions
    written_off: int = 0
    last_date: date | None = None  # the latest date_performed posted
    total_entries: int | None = None  # all posted for the engagement so far (from the ledger)
    total_minutes: int | None = None
    # the engagement's open exceptions after this run, from the ledger
    open_count: int | None = None
    open_by_reason: dict[str, int] = Field(default_factory=dict)
    open_sample: list[TimeExceptionInfo] = Field(default_factory=list)


class InvoiceSummary(BaseModel):
    external_id: str
    erp_id: str | None = None
    number: str | None = None
    period_start: date
    period_end: date
    total: Decimal
    currency: str
    status: InvoiceStatus = InvoiceStatus.OPEN
    amount_paid: Decimal = Decimal(0)
    open_balance: Decimal = Decimal(0)
    days_overdue: int = 0
    credited: Decimal = Decimal(0)  # credit memos applied to it (the invoice itself never changes)
    # not-to-exceed: posted time left unbilled because it would take billing past the cap
    # (the position after this invoice; the same figure when nothing could be invoiced at all)
    held_amount: Decimal = Decimal(0)
    held_items: int = 0

    def take_payment_status(self, s: PaymentStatus) -> None:
        """What the ERP (the system of record for collection) now says about this invoice."""
        self.status, self.amount_paid, self.open_balance, self.days_overdue = (
            s.status,
            s.amount_paid,
            s.open_balance,
            s.days_overdue,
        )


def take_payment_statuses(invoices: list[InvoiceSummary], statuses: list[PaymentStatus]) -> None:
    """Each invoice the ERP reported on takes its status; the others are left as they were."""
    by_id = {s.invoice_erp_id: s for s in statuses}
    for inv in invoices:
        if inv.erp_id in by_id:
            inv.take_payment_status(by_id[inv.erp_id])


class EngagementTotals(BaseModel):
    posted_minutes: int = 0
    posted_entries: int = 0
    billed: Decimal = Decimal(0)  # invoices as issued (gross); net billed is billed - credited
    collected: Decimal = Decimal(0)
    currency: str | None = None
    credited: Decimal = Decimal(0)  # credit memos q2c applied to the engagement's invoices
    posted_expenses: int = 0  # PSA expenses posted to the ERP as expense reports

    @property
    def net_billed(self) -> Decimal:
        return self.billed - self.credited


class EngagementStatus(BaseModel):
    """The engagement's canonical state: returned by the `status` query and carried across
    continue-as-new."""

    opportunity_id: str
    stage: EngagementStage
    details: str = ""
    missing_fields: list[FieldIssue] = Field(default_factory=list)
    engagement: Engagement | None = None
    erp_customer_id: str | None = None
    erp_project_id: str | None = None
    erp_billing_schedule_id: str | None = None
    psa_workspace: PsaWorkspace | None = None
    subsidiary: Subsidiary | None = None
    rechecks: int = 0
    active_since: datetime | None = None
    # delivery to cash
    next_period_index: int = 0
    invoices: list[InvoiceSummary] = Field(default_factory=list)
    # open time exceptions: a bounded sample here (the first OPEN_EXCEPTION_SAMPLE by PSA id),
    # the count and the count per reason code; every exception in full is in the ledger
    open_exceptions: list[TimeExceptionInfo] = Field(default_factory=list)
    open_exception_count: int = 0
    open_exceptions_by_reason: dict[str, int] = Field(default_factory=dict)
    written_off_entries: int = 0
    totals: EngagementTotals = Field(default_factory=EngagementTotals)
    close_requested: CloseInput | None = None
    final_invoices: int = 0
    runs: int = 1  # how many runs (continue-as-new) this engagement has had
    pause: PauseReason | None = None
    contract_version: int = 0  # the current version number (1 from activation)
    contract_versions: list[ContractVersion] = Field(default_factory=list)  # each one's changes, not its whole card
    cancelled: CancelInput | None = None
    last_posted_date: date | None = None
    crm_change_issues: list[FieldIssue] = Field(default_factory=list)  # a CRM change order that was refused
    # closure: the grace window for late approvals, then the final posting
    collecting_since: datetime | None = None
    grace_until: datetime | None = None
    final_posting_done: bool = False
    unbilled_after_final: bool = False  # time posted after the final period's invoice: bill it
    recent_update_ids: list[str] = Field(default_factory=list)  # the latest applied (bounded)
    credit_notes: list[CreditNoteSummary] = Field(default_factory=list)
    budget: BudgetState | None = None  # T&M: the not-to-exceed position (from the budget-control build on)
    pending_rebill: list[InvoiceLine] = Field(default_factory=list)  # corrected lines for the next invoice

    def invoice(self, external_id: str) -> InvoiceSummary | None:
        return next((i for i in self.invoices if i.external_id == external_id), None)

    def invoice_named(self, name: str) -> InvoiceSummary | None:
        """By external ID, or by the ERP's number (what a steward reads on the invoice)."""
        return self.invoice(name) or next((i for i in self.invoices if name and i.number == name), None)


class EngagementSummary(BaseModel):
    """What a closed engagement completes with."""

    opportunity_id: str
    stage: EngagementStage
    hours: Decimal
    billed: dict[str, Decimal]
    collected: dict[str, Decimal]
    invoices: int


# --- stewardship and change orders ----------------------------------------------------------


class PauseKind(str, Enum):
    CUSTOMER_MASTER_INCOMPLETE = "customer_master_incomplete"
    NO_PROJECT_TEMPLATE = "no_project_template"
    ERP_REJECTED = "erp_rejected"
    PSA_MAPPING_MISSING = "psa_mapping_missing"
    DEAL_NOT_READY = "deal_not_ready"
    # a vendor said no (or kept failing unexpectedly) after intake: fix the cause, then `retry`
    CRM_REJECTED = "crm_rejected"
    PSA_REJECTED = "psa_rejected"
    CRM_DATA_INVALID = "crm_data_invalid"
    UNEXPECTED_ERROR = "unexpected_error"
    # the end date came: someone must decide before the engagement can close
    TIME_EXCEPTIONS_OPEN = "time_exceptions_open"  # replay or write off
    MILESTONES_NOT_INVOICED = "milestones_not_invoiced"  # accept or waive
    BUDGET_HELD = "budget_held"  # time held at the not-to-exceed cap: raise the cap, release or write off


class StewardAction(str, Enum):
    """What ends a pause (the console, the API and the CLI offer exactly this)."""

    RECHECK = "recheck"  # fix the CRM (or provide_customer_data), then re-validate
    RETRY = "retry"  # fix the cause in the named system, then retry the parked step
    REPLAY_OR_WRITE_OFF = "replay_or_write_off"  # replay_exceptions / write_off_exceptions
    ACCEPT_OR_WAIVE = "accept_or_waive"  # accept_milestone / waive_milestone
    DECIDE_BUDGET_HOLD = "decide_budget_hold"  # amend_contract (raise the cap) / decide_budget_hold


class StewardQueue(str, Enum):
    MASTER_DATA = "master-data"
    FINANCE_OPS = "finance-ops"
    PMO = "pmo"


class PauseReason(BaseModel):
    """Why an engagement waits for a steward: what, which fields, whose queue."""

    kind: PauseKind
    queue: StewardQueue
    fields: list[FieldIssue] = Field(default_factory=list)
    message: str
    since: datetime | None = None
    action: StewardAction = StewardAction.RECHECK
    # where it happened, for a vendor's answer: crm | erp | psa | q2c, the step, the vendor's own code/message
    system: str | None = None
    operation: str | None = None
    vendor_code: str | None = None
    vendor_message: str | None = None
    resume_stage: EngagementStage | None = None  # the stage the engagement returns to after the steward acts


class CustomerPatch(BaseModel):
    """`provide_customer_data`: customer-master fields a steward supplies (only the ones given
    change). Field names are the canonical ones (`customer.<name>` in pause reasons)."""

    legal_name: str | None = None
    tax_id: str | None = None
    region: str | None = None
    currency: str | None = None
    payment_terms: str | None = None
    billing_street: str | None = None
    billing_city: str | None = None
    billing_state: str | None = None
    billing_postal_code: str | None = None
    billing_country: str | None = None
    provided_by: str = "steward"


class MilestoneChange(BaseModel):
    key: str | None = None  # an existing milestone to replace; None adds a new one
    new_key: str | None = None  # the key a new milestone gets (the CRM line item id); None: co<version>-<n>
    name: str
    amount: Decimal
    due_date: date | None = None


class RateChange(BaseModel):
    role: str
    rate: Decimal
    effective_from: date


class Amendment(BaseModel):
    """`amend_contract`: a change order. Only the given parts change."""

    contract_value: Decimal | None = None
    end_date: date | None = None
    milestones: list[MilestoneChange] = Field(default_factory=list)
    rates: list[RateChange] = Field(default_factory=list)
    reason: str = ""
    requested_by: str = "steward"
    # T&M not-to-exceed, when it differs from the contract value (CRM Not_To_Exceed__c)
    budget_cap: Decimal | None = None


class ContractVersion(BaseModel):
    """One version of the contract: its headline terms and what changed from the one before
    (not the whole rate card again, so a long engagement's versions stay small)."""

    version: int
    contract_value: Decimal
    end_date: date | None
    changes: dict = Field(default_factory=dict)  # the amendment that made this version (JSON)
    rate_card: list = Field(default_factory=list)  # version 1 only: the card as closed-won
    milestones: list = Field(default_factory=list)  # version 1 only
    reason: str = ""
    requested_by: str = ""
    at: datetime | None = None


class CrmChangedInput(BaseModel):
    """The CRM says the opportunity changed (a re-delivered or new Outbound Message)."""

    source: str = "salesforce-outbound"


class CancelInput(BaseModel):
    reason: str
    requested_by: str = "steward"


class RetryInput(BaseModel):
    """`retry`: the cause of a parked step was fixed in the named system; run the step again."""

    requested_by: str = "steward"
    note: str = ""


class WriteOffInput(BaseModel):
    """`write_off_exceptions`: parked time that will never be billed, with who decided and why.
    Empty psa_ids: every open exception of the engagement."""

    psa_ids: list[str] = Field(default_factory=list)
    reason: str
    requested_by: str = "steward"


class WaiveMilestoneInput(BaseModel):
    """`waive_milestone`: a fixed-fee milestone that will not be invoiced (decided, with a reason)."""

    milestone_key: str
    reason: str
    requested_by: str = "steward"


class WriteOffResult(BaseModel):
    written_off: int = 0
    psa_ids: list[str] = Field(default_factory=list)  # a sample (at most OPEN_EXCEPTION_SAMPLE)
    not_open: list[str] = Field(default_factory=list)
    open_remaining: int = 0


class RebillLine(BaseModel):
    """A corrected line to bill again after a credit (quantity x rate, rounded once)."""

    description: str
    quantity: Decimal = Decimal(1)
    rate: Decimal


class CreditInvoiceInput(BaseModel):
    """`credit_invoice`: credit part or all of an issued invoice (an ERP credit memo applied to
    it). `invoice` is its external ID (or ERP number); `amount` what to credit. `rebill`: the
    corrected lines, billed on the engagement's next invoice (never more than the credit: a
    larger charge is a change order)."""

    invoice: str
    amount: Decimal
    reason: str
    requested_by: str = "steward"
    rebill: list[RebillLine] = Field(default_factory=list)


class BudgetHoldDecisionInput(BaseModel):
    """`decide_budget_hold`: what happens to the time held at the not-to-exceed cap.
    release: bill it now, beyond the cap (the decision is recorded); write_off: never bill it."""

    action: str  # release | write_off
    reason: str
    requested_by: str = "pmo"


class BudgetHoldDecisionResult(BaseModel):
    action: str
    amount: Decimal
    items: int
    invoice: InvoiceSummary | None = None
    budget: BudgetState | None = None


class CreditNoteSummary(BaseModel):
    """A credit memo q2c raised: on which invoice, how much, why, and the invoice after it."""

    external_id: str  # cm-<request>: the same request names the same memo
    erp_id: str | None = None
    number: str | None = None
    invoice_external_id: str
    invoice_number: str | None = None
    amount: Decimal
    currency: str
    reason: str = ""
    requested_by: str = ""
    credited_on: date | None = None
    invoice_open_balance: Decimal | None = None  # what the invoice still owes after the credit


class CreditMemoActivityInput(BaseModel):
    """`DeliveryActivities.credit_invoice`: the memo to make, and every invoice of the
    engagement (the CRM's collection totals are written again, net of the credit)."""

    opportunity_id: str
    external_id: str
    invoice_external_id: str
    invoice_erp_id: str
    invoice_number: str | None = None
    erp_customer_id: str
    erp_project_id: str | None = None
    amount: Decimal
    currency: str
    reason: str
    requested_by: str
    credited_on: date
    invoice_erp_ids: list[str] = Field(default_factory=list)


class CreditMemoActivityResult(BaseModel):
    note: CreditNoteSummary
    statuses: list[PaymentStatus] = Field(default_factory=list)  # every invoice, as refreshed


EngagementStatus.model_rebuild()
EngagementInput.model_rebuild()
