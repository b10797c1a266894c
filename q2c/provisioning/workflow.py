"""Setup of an engagement: read the CRM, validate, pause for a steward, provision ERP and PSA.

Runs inside EngagementWorkflow (deterministic code only; every call is an activity).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from q2c.domain.engagement import Engagement
    from q2c.domain.project import Subsidiary
    from q2c.domain.stage import EngagementStage
    from q2c.domain.stewardship import pause_kind_and_queue, rejection_kind_and_queue
    from q2c.domain.validation import FieldIssue, ValidationReport
    from q2c.engagement.messages import (
        EngagementStatus,
        PauseKind,
        PauseReason,
        RecheckInput,
        StewardAction,
        StewardQueue,
    )
    from q2c.engagement.steps import VENDOR_TIMEOUT, Steps, execute, vendor_failure
    from q2c.engagement.visibility import describe_engagement, set_stage, set_steward_queue
    from q2c.provisioning.activities import EngagementActivities
    from q2c.provisioning.inputs import (
        FetchEngagementInput,
        ProvisionWorkspaceInput,
        UpsertBillingScheduleInput,
        UpsertCustomerInput,
        UpsertProjectInput,
        ValidateEngagementInput,
        WriteBackInput,
    )


class EngagementCancelled(Exception):
    """A steward cancelled the engagement while it waited."""


class ProvisioningRejected(Exception):
    """A system of record refused our data; a steward must look (then `recheck`)."""

    def __init__(self, step: str, pause: PauseReason) -> None:
        super().__init__(pause.vendor_message or pause.message)
        self.step = step
        self.pause = pause


async def call(
    fn, arg, summary: str, *, step: str, timeout: timedelta = VENDOR_TIMEOUT, heartbeat: timedelta | None = None
):
    """Run one setup activity; any failure that Temporal stops retrying (a vendor's rejection,
    an unexpected error after its bounded attempts) becomes ProvisioningRejected."""
    try:
        return await execute(fn, arg, summary, timeout=timeout, heartbeat=heartbeat)
    except ActivityError as err:
        system, _, operation = step.partition(".")
        raise ProvisioningRejected(step, vendor_failure(err, system, operation or step)) from err


class Provisioning:
    def __init__(
        self,
        status: EngagementStatus,
        steps: Steps,
        recheck_requested: Callable[[], bool],
        take_recheck: Callable[[], RecheckInput | None],
    ) -> None:
        self.status = status
        self.steps = steps
        self._recheck_requested = recheck_requested
        self._take_recheck = take_recheck
        self.subsidiaries: list[Subsidiary] = []  # the ERP's legal entities, for checking a steward's fix

    async def run(self, opportunity_id: str) -> None:
        while True:
            engagement, report = await self._validated_engagement(opportunity_id)
            try:
                await self._provision(engagement, report)
                return
            except ProvisioningRejected as rejected:
                kind, queue = rejection_kind_and_queue(rejected.step)
                pause = rejected.pause
                if pause.kind is PauseKind.UNEXPECTED_ERROR:
                    kind = pause.kind.value
                await self._await_steward(
                    [FieldIssue(field=rejected.step, reason=str(rejected))],
                    f"{rejected.step} was rejected: {rejected}",
                    kind,
                    queue,
                    vendor=pause,
                )

    async def _validated_engagement(self, opp: str) -> tuple[Engagement, ValidationReport]:
        while True:
            set_stage(self.status, EngagementStage.VALIDATING, f"Reading opportunity {opp} from the CRM")
            try:
                engagement = await call(
                    EngagementActivities.fetch_engagement,
                    FetchEngagementInput(opportunity_id=opp),
                    f"CRM: read opportunity {opp}, its account and lines",
                    step="crm.read",
                )
            except ProvisioningRejected as rejected:
                # the deal cannot be read as an engagement (a blank billing model, an unsupported
                # currency...): the CRM must be fixed, then `recheck` reads it again
                pause = rejected.pause
                kind = (
                    PauseKind.UNEXPECTED_ERROR
                    if pause.kind is PauseKind.UNEXPECTED_ERROR
                    else PauseKind.CRM_DATA_INVALID
                )
                await self._await_steward(
                    pause.fields,
                    f"the CRM opportunity cannot be read as an engagement: {pause.vendor_message}",
                    kind.value,
                    StewardQueue.FINANCE_OPS.value,
                    vendor=pause,
                )
                continue
            self.status.engagement = engagement
            describe_engagement(engagement)
            set_stage(
                self.status, EngagementStage.VALIDATING, f"Checking the customer master of {engagement.customer.name}"
            )
            try:
                report = await call(
                    EngagementActivities.validate_engagement,
                    ValidateEngagementInput(engagement=engagement),
                    "Validate customer master (legal entity, tax ID, address, currency, terms, template)",
                    step="erp.reference_data",
                )
            except ProvisioningRejected as rejected:
                await self._await_steward(
                    rejected.pause.fields,
                    rejected.pause.message,
                    rejected.pause.kind.value,
                    rejected.pause.queue.value,
                    vendor=rejected.pause,
                )
                continue
            self.subsidiaries = report.subsidiaries
            if report.ok:
                self.status.missing_fields = []
                self.status.subsidiary = report.subsidiary
                return engagement, report
            kind, queue = pause_kind_and_queue(report.issues)
            await self._await_steward(
                report.issues,
                "Missing or invalid: " + "; ".join(f"{i.field} ({i.reason})" for i in report.issues),
                kind,
                queue,
            )

    async def _await_steward(
        self, issues: list[FieldIssue], details: str, kind: str, queue: str, vendor: PauseReason | None = None
    ) -> None:
        """Setup pauses end with `recheck` (or `provide_customer_data`): the CRM is read again and
        everything re-validated, then provisioning resumes with the same external IDs."""
        st = self.status
        st.missing_fields = issues
        st.pause = PauseReason(
            kind=PauseKind(kind),
            queue=StewardQueue(queue),
            fields=issues,
            message=details,
            since=workflow.now(),
            action=StewardAction.RECHECK,
            resume_stage=EngagementStage.VALIDATING,
            system=vendor.system if vendor else None,
            operation=vendor.operation if vendor else None,
            vendor_code=vendor.vendor_code if vendor else None,
            vendor_message=vendor.vendor_message if vendor else None,
        )
        set_stage(st, EngagementStage.AWAITING_STEWARD, f"[{queue}] {details}")
        set_steward_queue(queue)
        self._take_recheck()  # a recheck from before this pause is stale; one during the CRM write below counts
        await self.steps.mirror_stage()
        await workflow.wait_condition(lambda: self._recheck_requested() or st.cancelled is not None)
        st.pause = None
        set_steward_queue(None)
        if st.cancelled is not None:
            raise EngagementCancelled(st.cancelled.reason)
        self._take_recheck()
        st.rechecks += 1

    async def _provision(self, engagement: Engagement, report: ValidationReport) -> None:
        assert report.subsidiary is not None and report.template is not None
        st = self.status
        opp = engagement.opportunity_id
        name = engagement.customer.name
        set_stage(st, EngagementStage.PROVISIONING, f"Creating or linking ERP customer for {name}")
        st.erp_customer_id = await call(
            EngagementActivities.upsert_erp_customer,
            UpsertCustomerInput(customer=engagement.customer, subsidiary=report.subsidiary),
            f"ERP: upsert customer eid:{engagement.customer.crm_account_id} ({name})",
            step="erp.customer",
        )

        set_stage(st, EngagementStage.PROVISIONING, f"Creating ERP project for {engagement.opportunity_name}")
        st.erp_project_id = await call(
            EngagementActivities.upsert_erp_project,
            UpsertProjectInput(engagement=engagement, erp_customer_id=st.erp_customer_id, subsidiary=report.subsidiary),
            f"ERP: upsert project eid:{opp} under customer {st.erp_customer_id}",
            step="erp.project",
        )

        st.erp_billing_schedule_id = await call(
            EngagementActivities.upsert_billing_schedule,
            UpsertBillingScheduleInput(engagement=engagement, erp_project_id=st.erp_project_id),
            f"ERP: upsert {engagement.billing_model.value} billing schedule for project {st.erp_project_id}",
            step="erp.billing_schedule",
        )

        set_stage(st, EngagementStage.PROVISIONING, f"Creating PSA workspace from template '{report.template.name}'")
        st.psa_workspace = await call(
            EngagementActivities.provision_psa_workspace,
            ProvisionWorkspaceInput(engagement=engagement, template=report.template, erp_project_id=st.erp_project_id),
            f"PSA: workspace, tasks and staffing demand from template '{report.template.name}'",
            step="psa.workspace",
        )

        set_stage(st, EngagementStage.PROVISIONING, "Writing ERP and PSA identifiers back to the CRM")
        await call(
            EngagementActivities.write_back_crm,
            WriteBackInput(
                opportunity_id=opp,
                erp_customer_id=st.erp_customer_id,
                erp_project_id=st.erp_project_id,
                psa_workspace_id=st.psa_workspace.workspace_id,
                status=EngagementStage.ACTIVE.value,
                contract_version=1,
            ),
            f"CRM: write ERP/PSA IDs and status to opportunity {opp}",
            step="crm.write_back",
        )
