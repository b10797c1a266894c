"""Master data without silent changes (issue 14, item 4), on the time-skipping server with the
sandboxes: a name longer than the ERP's companyName pauses for a steward naming the field, the
value and the limit, and resumes with the steward's legal name, which the ERP holds exactly;
linking an existing ERP customer keeps what people entered there by hand."""

from __future__ import annotations

import httpx
import pytest
from temporalio.client import WorkflowUpdateFailedError

from q2c.domain.stage import EngagementStage
from q2c.engagement.client import start_engagement, workflow_id_for
from q2c.engagement.messages import CustomerPatch
from tests.deals import create_account, create_deal
from tests.engagement_helpers import status_of, wait_for_stage

R = "/services/rest/record/v1"
NAME_120 = (
    "Northwind Holdings International Consolidated Professional Services, Advisory and Technology "
    "Group of Companies Limited."
)
LEGAL_NAME = "Northwind Holdings International Inc."
REASON = (
    "'Northwind Holdings International Consoli…' is 120 characters; the ERP's customer companyName "
    "holds at most 83: give a legal name that fits (the CRM account's Legal Name, or supply one as a steward)"
)


def field_errors(err: WorkflowUpdateFailedError) -> dict[str, str]:
    return {e["field"]: e["reason"] for e in err.cause.details[0]["errors"]}


async def test_a_120_character_name_pauses_naming_the_limit_and_resumes_with_a_legal_name(ts_stack, crm_client):
    assert len(NAME_120) == 120
    d = await create_deal(crm_client, account_name=NAME_120)
    await start_engagement(ts_stack.client, d.opportunity_id, task_queue=ts_stack.settings.task_queue, source="test")
    st = await wait_for_stage(ts_stack.client, d.opportunity_id, EngagementStage.AWAITING_STEWARD)

    assert (st.pause.kind.value, st.pause.queue.value, st.pause.action.value) == (
        "customer_master_incomplete",
        "master-data",
        "recheck",
    )
    assert [(f.field, f.reason) for f in st.pause.fields] == [("customer.legal_name", REASON)]
    assert st.pause.message == f"Missing or invalid: customer.legal_name ({REASON})"
    assert NAME_120 not in st.pause.message  # the message quotes the start; the value itself is untouched
    assert st.engagement.customer.legal_name == NAME_120
    assert ts_stack.erp.record_by_eid("customer", d.account_id) is None  # nothing half-created, nothing cut

    handle = ts_stack.client.get_workflow_handle(workflow_id_for(d.opportunity_id))
    with pytest.raises(WorkflowUpdateFailedError) as bad:  # a steward's value is held to the same limit
        await handle.execute_update("provide_customer_data", CustomerPatch(legal_name="X" * 84, provided_by="alice"))
    assert field_errors(bad.value) == {
        "customer.legal_name": "'XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX…' is 84 characters; the ERP's customer "
        "companyName holds at most 83: give a legal name that fits (the CRM account's Legal Name, or supply one "
        "as a steward)"
    }
    assert (await status_of(ts_stack.client, d.opportunity_id)).stage is EngagementStage.AWAITING_STEWARD

    result = await handle.execute_update(
        "provide_customer_data", CustomerPatch(legal_name=LEGAL_NAME, provided_by="alice")
    )
    assert result == "accepted legal_name; re-validating"
    st = await wait_for_stage(ts_stack.client, d.opportunity_id, EngagementStage.ACTIVE)
    assert st.pause is None and st.missing_fields == []

    account = await crm_client.get_record("Account", d.account_id)
    assert (account["Name"], account["Legal_Name__c"]) == (NAME_120, LEGAL_NAME)  # the CRM keeps its name
    erp = ts_stack.erp.record_by_eid("customer", d.account_id)
    assert erp["companyName"] == LEGAL_NAME and erp["id"] == st.erp_customer_id
    assert len([c for c in ts_stack.erp.records("customer") if c.get("externalId") == d.account_id]) == 1


async def test_an_existing_erp_customer_keeps_its_hand_entered_fields_when_linked(ts_stack, crm_client):
    account_id = await create_account(crm_client, name="Contoso Advisory")
    hand_entered = {
        "entityId": f"CUST-{account_id[-6:]}",
        "email": "ap@contoso.example",
        "phone": "+1 212 555 0199",
        "comments": "Send invoices to AP only; PO on every invoice",
    }
    with httpx.Client(
        base_url=ts_stack.erp.url, timeout=10, headers={"Authorization": f"Bearer {ts_stack.erp.token()}"}
    ) as http:
        r = http.post(
            f"{R}/customer",
            json={
                "externalId": account_id,
                "companyName": "CONTOSO (typed by AR)",
                "subsidiary": {"id": "1"},
                **hand_entered,
            },
        )
    assert r.status_code == 204, r.text
    existing_id = r.headers["Location"].rsplit("/", 1)[-1]

    d = await create_deal(crm_client, account_id=account_id)
    await start_engagement(ts_stack.client, d.opportunity_id, task_queue=ts_stack.settings.task_queue, source="test")
    st = await wait_for_stage(ts_stack.client, d.opportunity_id, EngagementStage.ACTIVE)
    assert st.erp_customer_id == existing_id

    record = ts_stack.erp.record_by_eid("customer", account_id)
    kept = {k: record.get(k) for k in hand_entered}
    assert kept == hand_entered
    owned = {
        "companyName": record["companyName"],
        "subsidiary": record["subsidiary"]["id"],
        "currency": record["currency"]["refName"],
        "terms": record["terms"]["refName"],
        "vatRegNumber": record["vatRegNumber"],
        "defaultAddress": record["defaultAddress"],
    }
    assert owned == {
        "companyName": "Contoso Advisory",
        "subsidiary": "1",
        "currency": "US Dollar",
        "terms": "Net 30",
        "vatRegNumber": "12-3456789",
        "defaultAddress": "500 Market St\nSan Francisco CA 94105\nUnited States",
    }
    assert len([c for c in ts_stack.erp.records("customer") if c.get("externalId") == account_id]) == 1
