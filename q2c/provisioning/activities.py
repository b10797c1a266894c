"""Activities for an engagement's setup: read the CRM, validate, provision ERP and PSA.

Every one of them waits on a vendor, so every one heartbeats while it waits (`heartbeating`),
and is scheduled with a heartbeat timeout (`q2c.engagement.steps.VENDOR_HEARTBEAT`, 20 s): an
attempt lost with a killed worker is retried after ~20 s, not after its 60 s start-to-close
(issue 15 measured the full minute). The start-to-close still bounds a live attempt; it is
longer than the requests inside it can take (each at most the HTTP timeout for a slot plus the
timeout for the answer), so a live attempt ends with the vendor's error before Temporal gives
up on it and starts another beside it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from q2c.domain.engagement import Engagement
from q2c.domain.project import PsaWorkspace
from q2c.domain.validation import ValidationReport, validate_engagement
from q2c.engagement.heartbeats import heartbeating
from q2c.provisioning.inputs import (
    ApplyAmendmentInput,
    FetchEngagementInput,
    ProvisionWorkspaceInput,
    UpsertBillingScheduleInput,
    UpsertCustomerInput,
    UpsertProjectInput,
    ValidateEngagementInput,
    WriteBackInput,
    WriteCustomerInput,
)

if TYPE_CHECKING:
    from q2c.ledger.store import Ledger  # connectors are built by the worker; the workflow never imports them
    from q2c.vendors.kantata.client import KantataClient
    from q2c.vendors.netsuite.client import NetSuiteClient
    from q2c.vendors.salesforce.client import SalesforceClient


class EngagementActivities:
    """Holds one connector per vendor (one HTTP connection pool each, per worker)."""

    def __init__(
        self, crm: SalesforceClient, erp: NetSuiteClient, psa: KantataClient, ledger: Ledger | None = None
    ) -> None:
        self.crm = crm
        self.erp = erp
        self.psa = psa
        self.ledger = ledger

    @activity.defn
    @heartbeating
    async def fetch_engagement(self, input: FetchEngagementInput) -> Engagement:
        """The opportunity as an Engagement. Data the canonical model refuses (an unsupported
        currency, a malformed date) is the CRM's to fix: a non-retryable rejection naming the
        fields, never an error retried forever."""
        try:
            return await self.crm.get_engagement(input.opportunity_id)
        except ValidationError as err:
            problems = [
                {"code": "INVALID_FIELD", "message": e["msg"], "fields": [".".join(str(p) for p in e["loc"])]}
                for e in err.errors(include_url=False)
            ]
            text = "; ".join(f"{p['fields'][0]}: {p['message']}" for p in problems)
            raise ApplicationError(
                f"crm opportunity {input.opportunity_id} cannot be read as an engagement: {text}",
                {"system": "crm", "operation": "read opportunity", "errors": problems},
                type="VendorRejected",
                non_retryable=True,
            ) from None

    @activity.defn
    @heartbeating
    async def validate_engagement(self, input: ValidateEngagementInput) -> ValidationReport:
        """Against the connectors' reference-data caches (legal entities, templates: a few calls
        fewer per activation); when something is missing, against fresh reads, so a steward's
        fix in the ERP or PSA counts at the next recheck."""
        subsidiaries, templates = await asyncio.gather(self.erp.list_subsidiaries(), self.psa.list_templates())
        report = validate_engagement(input.engagement, subsidiaries, templates)
        if report.ok:
            return report
        subsidiaries, templates = await asyncio.gather(
            self.erp.list_subsidiaries(fresh=True), self.psa.list_templates(fresh=True)
        )
        return validate_engagement(input.engagement, subsidiaries, templates)

    @activity.defn
    @heartbeating
    async def upsert_erp_customer(self, input: UpsertCustomerInput) -> str:
        return await self.erp.upsert_customer(input.customer, input.subsidiary)

    @activity.defn
    @heartbeating
    async def upsert_erp_project(self, input: UpsertProjectInput) -> str:
        return await self.erp.upsert_project(input.engagement, input.erp_customer_id, input.subsidiary)

    @activity.defn
    @heartbeating
    async def upsert_billing_schedule(self, input: UpsertBillingScheduleInput) -> str:
        return await self.erp.upsert_billing_schedule(input.engagement, input.erp_project_id)

    @activity.defn
    @heartbeating
    async def provision_psa_workspace(self, input: ProvisionWorkspaceInput) -> PsaWorkspace:
        return await self.psa.provision_workspace(input.engagement, input.template, erp_project_id=input.erp_project_id)

    @activity.defn
    @heartbeating
    async def find_psa_workspace(self, input: FetchEngagementInput) -> str | None:
        """The PSA workspace made for this opportunity, if any (by external reference): a setup
        step that failed half-way may have created it without q2c learning its ID."""
        found = await self.psa.find_workspace(input.opportunity_id)
        return str(found["id"]) if found else None

    @activity.defn
    @heartbeating
    async def write_back_crm(self, input: WriteBackInput) -> None:
        """The ERP and PSA IDs go to the CRM and to the ledger's cross-reference (keyed by the
        opportunity), where reconciliation and operators find them without asking three systems."""
        if self.ledger is not None:
            refs = [
                ("customer", "erp", input.erp_customer_id),
                ("project", "erp", input.erp_project_id),
                ("workspace", "psa", input.psa_workspace_id),
            ]
            for entity, system, system_id in refs:
                if system_id:
                    await asyncio.to_thread(
                        self.ledger.record_xref, input.opportunity_id, entity, system, input.opportunity_id, system_id
                    )
        await self.crm.write_back_provisioning(
            input.opportunity_id,
            erp_customer_id=input.erp_customer_id,
            erp_project_id=input.erp_project_id,
            psa_workspace_id=input.psa_workspace_id,
            status=input.status,
            contract_version=input.contract_version,
        )

    @activity.defn
    @heartbeating
    async def write_customer_to_crm(self, input: WriteCustomerInput) -> None:
        """A steward's accepted fix goes back to the CRM, which owns the account."""
        await self.crm.write_customer_master(input.account_id, input.patch)

    @activity.defn
    @heartbeating
    async def apply_amendment(self, input: ApplyAmendmentInput) -> None:
        """A change order reaches the ERP (project and billing schedule), the PSA (budget, dates)
        and the CRM (current contract version). Every write is an upsert: safe to retry."""
        e = input.engagement
        await self.erp.upsert_project(e, input.erp_customer_id, input.subsidiary)
        await self.erp.upsert_billing_schedule(e, input.erp_project_id)
        await self.psa.update_workspace(input.psa_workspace_id, e)
        await self.crm.write_contract_version(input.opportunity_id, input.version)

    def all(self) -> list:
        return [
            self.find_psa_workspace,
            self.write_customer_to_crm,
            self.apply_amendment,
            self.fetch_engagement,
            self.validate_engagement,
            self.upsert_erp_customer,
            self.upsert_erp_project,
            self.upsert_billing_schedule,
            self.provision_psa_workspace,
            self.write_back_crm,
        ]
