"""The CRM's money fields tell the truth (issue 7, case 5).

Through the real EngagementWorkflow on the time-skipping server, with the customer paying in
the ERP sandbox: an invoice of 1,500.00 paid 500 then 1,000, a second invoice of 300.00, then
an overpayment. After each step the opportunity's Amount_Paid__c, Open_Balance__c,
Last_Invoice_Status__c and Unapplied_Credit__c are exactly what the ERP says over ALL the
engagement's invoices, and Amount_Paid__c never goes down (it used to be summed over open
invoices only, so paying an invoice off or issuing a new one made it fall).

Plus the refresh_payments activity called directly against the sandboxes (no Temporal): an
invoice listed twice counts once, and the latest invoice is the one the ERP created last.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import date
from decimal import Decimal

import httpx

from q2c.delivery.activities import DeliveryActivities
from q2c.delivery.inputs import RefreshPaymentsInput
from q2c.domain.stage import EngagementStage
from q2c.engagement.client import start_engagement, workflow_id_for
from q2c.engagement.messages import AcceptMilestoneInput, DeliveryConfig, InvoiceSummary
from q2c.vendors.salesforce.client import SalesforceClient
from tests.deals import create_account
from tests.engagement_helpers import wait_for_stage
from tests.integration.test_erp_finance import invoice, line, provision

WEEKLY_POLL = DeliveryConfig(payment_poll_seconds=7 * 86_400)
MONEY_FIELDS = (
    "Amount_Paid__c",
    "Open_Balance__c",
    "Last_Invoice_Status__c",
    "Unapplied_Credit__c",
    "Last_Invoice_Number__c",
    "Last_Invoice_Amount__c",
    "Days_Overdue__c",
)


async def fixed_fee_deal(crm: SalesforceClient, milestones: list[Decimal], *, end: str) -> str:
    """A Closed Won fixed-fee opportunity whose milestones are the invoice amounts we want."""
    account_id = await create_account(crm)
    opportunity_id = await crm.create_record(
        "Opportunity",
        {
            "Name": f"Money fields {uuid.uuid4().hex[:6]}",
            "AccountId": account_id,
            "StageName": "Negotiation/Review",
            "CloseDate": "2026-11-20",
            "CurrencyIsoCode": "USD",
            "Service_Line__c": "Data & Analytics",
            "Billing_Model__c": "Fixed Fee",
            "Start_Date__c": "2026-12-01",
            "End_Date__c": end,
            "Amount": sum(milestones, Decimal(0)),
        },
    )
    for i, amount in enumerate(milestones):
        await crm.create_record(
            "OpportunityLineItem",
            {
                "OpportunityId": opportunity_id,
                "Name": f"Milestone {i + 1}",
                "Line_Type__c": "Milestone",
                "Quantity": 1,
                "UnitPrice": amount,
                "Milestone_Date__c": f"2027-0{i + 1}-28",
            },
        )
    await crm.set_opportunity_stage(opportunity_id, "Closed Won")
    return opportunity_id


class CrmWatch:
    """Reads the opportunity's money fields, keeping every Amount_Paid__c it ever saw (to check
    that it never decreases)."""

    def __init__(self, stack, crm: SalesforceClient, opportunity_id: str) -> None:
        self.stack, self.crm, self.opp = stack, crm, opportunity_id
        self.paid_seen: list[Decimal] = []

    async def read(self) -> dict:
        record = await self.crm.get_record("Opportunity", self.opp, fields=list(MONEY_FIELDS))
        if record.get("Amount_Paid__c") is not None:
            self.paid_seen.append(Decimal(str(record["Amount_Paid__c"])))
        return record

    async def until(self, paid: str, open_balance: str, timeout: float = 90.0) -> dict:
        """Let workflow time run (payment checks, period closes) until the CRM shows these
        totals; then stop the clock again so the next step starts from a known state."""
        deadline = time.monotonic() + timeout
        record: dict = {}
        async with self.stack.env.time_skipping_unlocked():
            while time.monotonic() < deadline:
                record = await self.read()
                if (
                    record.get("Amount_Paid__c") is not None
                    and Decimal(str(record["Amount_Paid__c"])) == Decimal(paid)
                    and Decimal(str(record["Open_Balance__c"])) == Decimal(open_balance)
                ):
                    return record
                await asyncio.sleep(0.05)
        raise AssertionError(f"CRM never showed paid {paid} / open {open_balance}; last: {record}")


def money(record: dict) -> tuple:
    credit = record.get("Unapplied_Credit__c")
    return (
        Decimal(str(record["Amount_Paid__c"])),
        Decimal(str(record["Open_Balance__c"])),
        record["Last_Invoice_Status__c"],
        Decimal(str(credit)) if credit is not None else None,
    )


async def pay(erp_url: str, invoice_id: str, amount: str) -> dict:
    async with httpx.AsyncClient(base_url=erp_url, timeout=10) as http:
        r = await http.post("/__sandbox/payments", json={"invoice_id": invoice_id, "amount": amount})
    assert r.status_code == 200, r.text
    return r.json()


async def test_money_fields_through_partial_payments_a_second_invoice_and_an_overpayment(fresh_ts_stack, crm_client):
    stack = fresh_ts_stack
    opp = await fixed_fee_deal(crm_client, [Decimal("1500.00"), Decimal("300.00")], end="2028-06-30")
    await start_engagement(stack.client, opp, task_queue=stack.settings.task_queue, source="test", delivery=WEEKLY_POLL)
    status = await wait_for_stage(stack.client, opp, EngagementStage.ACTIVE)
    handle = stack.client.get_workflow_handle(workflow_id_for(opp))
    first_ms, second_ms = status.engagement.milestones
    watch = CrmWatch(stack, crm_client, opp)

    # invoice 1: 1,500.00, nothing paid yet
    first = await handle.execute_update(
        "accept_milestone", AcceptMilestoneInput(milestone_key=first_ms.key), result_type=InvoiceSummary
    )
    assert first.total == Decimal("1500.00")
    record = await watch.until("0", "1500.00")
    assert money(record) == (Decimal("0"), Decimal("1500.00"), "open", Decimal("0"))
    assert (record["Last_Invoice_Number__c"], Decimal(str(record["Last_Invoice_Amount__c"]))) == (
        first.number,
        Decimal("1500.00"),
    )

    # 500 paid: partially paid
    await pay(stack.erp.url, first.erp_id, "500.00")
    record = await watch.until("500.00", "1000.00")
    assert money(record) == (Decimal("500.00"), Decimal("1000.00"), "partially_paid", Decimal("0"))

    # 1,000 more: the invoice is Paid In Full in the ERP, and says so in the CRM
    await pay(stack.erp.url, first.erp_id, "1000.00")
    record = await watch.until("1500.00", "0.00")
    assert money(record) == (Decimal("1500.00"), Decimal("0.00"), "paid_in_full", Decimal("0"))
    assert Decimal(str(record["Days_Overdue__c"])) == 0

    # invoice 2: 300.00; what was paid on invoice 1 still counts
    second = await handle.execute_update(
        "accept_milestone", AcceptMilestoneInput(milestone_key=second_ms.key), result_type=InvoiceSummary
    )
    assert second.total == Decimal("300.00")
    record = await watch.read()  # issued: the CRM names the new invoice at once, totals unchanged
    assert (
        record["Last_Invoice_Number__c"],
        Decimal(str(record["Last_Invoice_Amount__c"])),
        record["Last_Invoice_Status__c"],
        Decimal(str(record["Amount_Paid__c"])),
    ) == (second.number, Decimal("300.00"), "open", Decimal("1500.00"))
    record = await watch.until("1500.00", "300.00")
    assert money(record) == (Decimal("1500.00"), Decimal("300.00"), "open", Decimal("0"))
    assert record["Last_Invoice_Number__c"] == second.number

    # an overpayment: 500 against the 300 still owed -> paid in full and 200 of credit
    paid = await pay(stack.erp.url, second.erp_id, "500.00")
    assert (Decimal(str(paid["applied"])), Decimal(str(paid["unapplied"]))) == (Decimal("300.00"), Decimal("200.00"))
    record = await watch.until("1800.00", "0.00")
    assert money(record) == (Decimal("1800.00"), Decimal("0.00"), "paid_in_full", Decimal("200.00"))
    assert (record["Last_Invoice_Number__c"], Decimal(str(record["Last_Invoice_Amount__c"]))) == (
        second.number,
        Decimal("300.00"),
    )

    assert watch.paid_seen == sorted(watch.paid_seen), f"Amount_Paid__c went backwards: {watch.paid_seen}"
    assert watch.paid_seen[0] == 0 and watch.paid_seen[-1] == Decimal("1800.00")


async def test_refresh_payments_activity_totals_every_invoice_once(crm_client, erp_client, erp_sandbox):
    """The activity alone, against the sandboxes: paid invoices count toward the totals, an ID
    listed twice counts once, the latest invoice is the one created last whatever the order
    given, days overdue is the worst OPEN invoice, and the customer's credit is shown."""
    customer_id, project_id = await provision(erp_client)
    older = await erp_client.upsert_invoice(
        invoice([line("Retainer", "1", "1500.00", "1500.00")], []), customer_id=customer_id, project_id=project_id
    )
    newer = await erp_client.upsert_invoice(
        invoice([line("Retainer", "1", "300.00", "300.00")], [], end=date(2027, 2, 28)),
        customer_id=customer_id,
        project_id=project_id,
    )
    await pay(erp_sandbox.url, older.erp_id, "1600.00")  # 100 over: a credit
    await pay(erp_sandbox.url, newer.erp_id, "120.00")
    opp = await crm_client.create_record(
        "Opportunity",
        {"Name": f"Activity {uuid.uuid4().hex[:6]}", "StageName": "Closed Won", "CloseDate": "2026-11-20"},
    )

    activities = DeliveryActivities(crm_client, erp_client, psa=None)
    statuses = await activities.refresh_payments(
        RefreshPaymentsInput(
            opportunity_id=opp,
            erp_customer_id=customer_id,
            as_of=date(2027, 4, 9),
            invoice_erp_ids=[newer.erp_id, older.erp_id, newer.erp_id],
        )
    )
    assert [s.invoice_erp_id for s in statuses] == [newer.erp_id, older.erp_id]
    record = await crm_client.get_record("Opportunity", opp)
    assert money(record) == (Decimal("1620.00"), Decimal("180.00"), "partially_paid", Decimal("100.00"))
    assert (
        record["Last_Invoice_Number__c"],
        Decimal(str(record["Last_Invoice_Amount__c"])),
        record["Last_Invoice_Currency__c"],
    ) == (newer.number, Decimal("300.00"), "USD")
    assert Decimal(str(record["Days_Overdue__c"])) == 10  # newer: due 30 Mar (Net 30); older is paid

    assert (
        await activities.refresh_payments(
            RefreshPaymentsInput(
                opportunity_id=opp, erp_customer_id=customer_id, as_of=date(2027, 4, 9), invoice_erp_ids=[]
            )
        )
        == []
    )
