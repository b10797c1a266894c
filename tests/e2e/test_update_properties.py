"""Property-based: arbitrary customer patches and change orders thrown at the Updates of a real
engagement. Invalid ones are rejected by the validators with field-level reasons; whatever the
input, no workflow task ever fails."""

from __future__ import annotations

import string
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.client import WorkflowUpdateFailedError

from q2c.domain.stage import EngagementStage
from q2c.engagement.client import start_engagement, workflow_id_for
from q2c.engagement.messages import Amendment, ContractVersion, CustomerPatch, MilestoneChange, RateChange
from q2c.engagement.rejections import VALIDATION_FAILED
from tests.deals import create_deal
from tests.engagement_helpers import wait_for_stage

TEXT = st.one_of(
    st.none(),
    st.text(max_size=30),
    st.text(alphabet=string.ascii_uppercase + string.digits + "-", min_size=1, max_size=14),
    st.sampled_from(
        [
            "",
            " ",
            "12-3456789",
            "GB123456789",
            "DE123456789",
            "Net 30",
            "Net 7",
            "USD",
            "usd",
            "XXX",
            "NA",
            "UK",
            "DACH",
            "MOON",
            "US",
            "GB",
            "usa",
            "x" * 300,
        ]
    ),
)
MONEY = st.decimals(min_value=Decimal("-1000"), max_value=Decimal("1000000"), places=2, allow_nan=False)
DAYS = st.dates(min_value=date(2026, 1, 1), max_value=date(2028, 12, 31))

PATCHES = st.builds(
    CustomerPatch,
    legal_name=TEXT,
    tax_id=TEXT,
    region=TEXT,
    currency=TEXT,
    payment_terms=TEXT,
    billing_street=TEXT,
    billing_city=TEXT,
    billing_postal_code=TEXT,
    billing_country=TEXT,
)
AMENDMENTS = st.builds(
    Amendment,
    contract_value=st.one_of(st.none(), MONEY),
    end_date=st.one_of(st.none(), DAYS),
    milestones=st.lists(
        st.builds(
            MilestoneChange,
            key=st.one_of(st.none(), st.text(max_size=8)),
            name=st.text(max_size=20),
            amount=MONEY,
            due_date=st.one_of(st.none(), DAYS),
        ),
        max_size=2,
    ),
    rates=st.lists(
        st.builds(
            RateChange,
            role=st.sampled_from(["Consultant", "Senior Consultant", "Astronaut", ""]),
            rate=MONEY,
            effective_from=DAYS,
        ),
        max_size=2,
    ),
    reason=st.sampled_from(["", "CO", "change order 7"]),
)
PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def engagements():
    calls = {"patches": 0, "amendments": 0, "accepted": 0}
    yield {"calls": calls}
    # the properties really ran against the workflow (Hypothesis drives the async tests)
    assert calls["patches"] >= 20 and calls["amendments"] >= 20, calls


async def _engagement(ts_stack, crm_client, engagements, key: str, **deal):
    if key not in engagements:
        d = await create_deal(crm_client, **deal)
        await start_engagement(
            ts_stack.client, d.opportunity_id, task_queue=ts_stack.settings.task_queue, source="test"
        )
        stage = EngagementStage.AWAITING_STEWARD if deal.get("tax_id", "x") is None else EngagementStage.ACTIVE
        await wait_for_stage(ts_stack.client, d.opportunity_id, stage)
        engagements[key] = ts_stack.client.get_workflow_handle(workflow_id_for(d.opportunity_id))
    return engagements[key]


def _rejected_cleanly(err: WorkflowUpdateFailedError) -> None:
    assert err.cause.type == VALIDATION_FAILED, err.cause
    errors = err.cause.details[0]["errors"]
    assert errors and all(e["field"] and e["reason"] for e in errors)


async def _no_failed_workflow_task(handle) -> None:
    history = await handle.fetch_history()
    assert not any(e.HasField("workflow_task_failed_event_attributes") for e in history.events)


@PROPERTY_SETTINGS
@given(patch=PATCHES)
async def test_any_customer_patch_is_rejected_or_applied_never_fails_a_task(ts_stack, crm_client, engagements, patch):
    handle = await _engagement(ts_stack, crm_client, engagements, "paused", tax_id=None)
    engagements["calls"]["patches"] += 1
    try:
        await handle.execute_update("provide_customer_data", patch)
        engagements["calls"]["accepted"] += 1
    except WorkflowUpdateFailedError as err:
        _rejected_cleanly(err)
    await _no_failed_workflow_task(handle)


@PROPERTY_SETTINGS
@given(amendment=AMENDMENTS)
async def test_any_amendment_is_rejected_or_versioned_never_fails_a_task(ts_stack, crm_client, engagements, amendment):
    handle = await _engagement(ts_stack, crm_client, engagements, "active", start="2027-01-01", end="2027-12-31")
    engagements["calls"]["amendments"] += 1
    try:
        version = await handle.execute_update("amend_contract", amendment, result_type=ContractVersion)
        engagements["calls"]["accepted"] += 1
        assert version.version >= 2 and version.contract_value > 0
    except WorkflowUpdateFailedError as err:
        _rejected_cleanly(err)
    await _no_failed_workflow_task(handle)
