"""EngagementWorkflow: one engagement from closed-won to Active (and, later, to Closed).

Workflow id: ``engagement-<OpportunityId>``. Deterministic orchestration only; every call to
a system of record is an activity whose summary says what it does, so the Temporal UI reads
like the life of the engagement in DOMAIN.md.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.engagement import EngagementActivities
    from activities.models import (
        FetchEngagementInput,
        ProvisionWorkspaceInput,
        UpsertBillingScheduleInput,
        UpsertCustomerInput,
        UpsertProjectInput,
        ValidateEngagementInput,
        WriteBackInput,
    )
    from domain.engagement import Engagement
    from domain.stage import EngagementStage
    from domain.validation import FieldIssue, ValidationReport
    from workflows.models import EngagementInput, EngagementStatus, RecheckInput, StatusQueryInput
    from workflows.search_attributes import (
        BILLING_MODEL,
        CUSTOMER_NAME,
        ENGAGEMENT_STAGE,
        OPPORTUNITY_ID,
        REGION,
    )

# Vendor calls: retry transient failures (5xx, 429, timeouts) without limit, with back-off;
# data rejections are raised non-retryable by the connectors and park the engagement.
VENDOR_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                           maximum_interval=timedelta(seconds=30))
VENDOR_TIMEOUT = timedelta(seconds=60)


class ProvisioningRejected(Exception):
    """A system of record refused our data; a steward must look."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


@workflow.defn
class EngagementWorkflow:
    @workflow.init
    def __init__(self, input: EngagementInput) -> None:
        self._status = EngagementStatus(opportunity_id=input.opportunity_id,
                                        stage=EngagementStage.RECEIVED,
                                        details=f"Closed-won event received (source: {input.source})")
        self._recheck: RecheckInput | None = None

    # --- handlers ---------------------------------------------------------------------
    @workflow.query(name="status")
    def status(self, _: StatusQueryInput | None = None) -> EngagementStatus:
        return self._status

    @workflow.signal(name="recheck")
    def recheck(self, input: RecheckInput) -> None:
        """A steward fixed the source system: read it again and re-validate."""
        self._recheck = input

    # --- main -------------------------------------------------------------------------
    @workflow.run
    async def run(self, input: EngagementInput) -> EngagementStatus:
        opp = input.opportunity_id
        while True:
            engagement, report = await self._validated_engagement(opp)
            try:
                await self._provision(engagement, report)
                break
            except ProvisioningRejected as rejected:
                await self._await_steward(
                    [FieldIssue(field=rejected.step, reason=str(rejected))],
                    f"{rejected.step} was rejected: {rejected}")

        self._set_stage(EngagementStage.ACTIVE,
                        f"Active: ERP project {self._status.erp_project_id}, "
                        f"PSA workspace {self._status.psa_workspace.workspace_id if self._status.psa_workspace else '?'}")
        self._status.active_since = workflow.now()
        # Delivery to cash (time, invoices, payments, closure) continues from here.
        await workflow.wait_condition(lambda: self._status.stage is not EngagementStage.ACTIVE)
        return self._status

    # --- steps ------------------------------------------------------------------------
    async def _validated_engagement(self, opp: str) -> tuple[Engagement, ValidationReport]:
        while True:
            self._set_stage(EngagementStage.VALIDATING, f"Reading opportunity {opp} from the CRM")
            engagement = await workflow.execute_activity_method(
                EngagementActivities.fetch_engagement, FetchEngagementInput(opportunity_id=opp),
                start_to_close_timeout=VENDOR_TIMEOUT, retry_policy=VENDOR_RETRY,
                summary=f"CRM: read opportunity {opp}, its account and lines")
            self._status.engagement = engagement
            self._describe(engagement)
            self._set_stage(EngagementStage.VALIDATING,
                            f"Checking the customer master of {engagement.customer.name}")
            report = await workflow.execute_activity_method(
                EngagementActivities.validate_engagement, ValidateEngagementInput(engagement=engagement),
                start_to_close_timeout=VENDOR_TIMEOUT, retry_policy=VENDOR_RETRY,
                summary="Validate customer master (legal entity, tax ID, address, currency, terms, template)")
            if report.ok:
                self._status.missing_fields = []
                return engagement, report
            await self._await_steward(report.issues, "Missing or invalid: " +
                                      "; ".join(f"{i.field} ({i.reason})" for i in report.issues))

    async def _await_steward(self, issues: list[FieldIssue], details: str) -> None:
        self._status.missing_fields = issues
        self._set_stage(EngagementStage.AWAITING_STEWARD, details)
        self._recheck = None
        await workflow.wait_condition(lambda: self._recheck is not None)
        self._status.rechecks += 1

    async def _provision(self, engagement: Engagement, report: ValidationReport) -> None:
        assert report.subsidiary is not None and report.template is not None
        opp = engagement.opportunity_id
        name = engagement.customer.name
        self._set_stage(EngagementStage.PROVISIONING, f"Creating or linking ERP customer for {name}")
        customer_id = await self._call(
            "erp.customer", EngagementActivities.upsert_erp_customer,
            UpsertCustomerInput(customer=engagement.customer, subsidiary=report.subsidiary),
            f"ERP: upsert customer eid:{engagement.customer.crm_account_id} ({name})")
        self._status.erp_customer_id = customer_id

        self._set_stage(EngagementStage.PROVISIONING, f"Creating ERP project for {engagement.opportunity_name}")
        project_id = await self._call(
            "erp.project", EngagementActivities.upsert_erp_project,
            UpsertProjectInput(engagement=engagement, erp_customer_id=customer_id, subsidiary=report.subsidiary),
            f"ERP: upsert project eid:{opp} under customer {customer_id}")
        self._status.erp_project_id = project_id

        schedule_id = await self._call(
            "erp.billing_schedule", EngagementActivities.upsert_billing_schedule,
            UpsertBillingScheduleInput(engagement=engagement, erp_project_id=project_id),
            f"ERP: upsert {engagement.billing_model.value} billing schedule for project {project_id}")
        self._status.erp_billing_schedule_id = schedule_id

        self._set_stage(EngagementStage.PROVISIONING,
                        f"Creating PSA workspace from template '{report.template.name}'")
        workspace = await self._call(
            "psa.workspace", EngagementActivities.provision_psa_workspace,
            ProvisionWorkspaceInput(engagement=engagement, template=report.template, erp_project_id=project_id),
            f"PSA: workspace, tasks and staffing demand from template '{report.template.name}'")
        self._status.psa_workspace = workspace

        self._set_stage(EngagementStage.PROVISIONING, "Writing ERP and PSA identifiers back to the CRM")
        await self._call(
            "crm.write_back", EngagementActivities.write_back_crm,
            WriteBackInput(opportunity_id=opp, erp_customer_id=customer_id, erp_project_id=project_id,
                           psa_workspace_id=workspace.workspace_id, status=EngagementStage.ACTIVE.value),
            f"CRM: write ERP/PSA IDs and status to opportunity {opp}")

    async def _call(self, step: str, fn, arg, summary: str):
        try:
            return await workflow.execute_activity_method(
                fn, arg, start_to_close_timeout=VENDOR_TIMEOUT, retry_policy=VENDOR_RETRY, summary=summary)
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.non_retryable:
                raise ProvisioningRejected(step, cause.message) from err
            raise

    # --- visibility -------------------------------------------------------------------
    def _set_stage(self, stage: EngagementStage, details: str) -> None:
        self._status.stage = stage
        self._status.details = details
        workflow.upsert_search_attributes([ENGAGEMENT_STAGE.value_set(stage.value)])
        workflow.set_current_details(f"**{stage.value}**: {details}")

    def _describe(self, engagement: Engagement) -> None:
        updates = [OPPORTUNITY_ID.value_set(engagement.opportunity_id),
                   CUSTOMER_NAME.value_set(engagement.customer.name),
                   BILLING_MODEL.value_set(engagement.billing_model.value)]
        if engagement.customer.region:
            updates.append(REGION.value_set(engagement.customer.region))
        workflow.upsert_search_attributes(updates)
