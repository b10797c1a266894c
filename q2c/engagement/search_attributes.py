"""Typed search attributes for engagements, and their registration at startup."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

ENGAGEMENT_STAGE = SearchAttributeKey.for_keyword("EngagementStage")
OPPORTUNITY_ID = SearchAttributeKey.for_keyword("OpportunityId")
CUSTOMER_NAME = SearchAttributeKey.for_keyword("CustomerName")
BILLING_MODEL = SearchAttributeKey.for_keyword("BillingModel")
REGION = SearchAttributeKey.for_keyword("Region")
OPEN_EXCEPTIONS = SearchAttributeKey.for_int("OpenExceptions")
STEWARD_QUEUE = SearchAttributeKey.for_keyword("StewardQueue")
# T&M not-to-exceed: ok | warning | held (time held at the cap waits for the PMO)
BUDGET_STATUS = SearchAttributeKey.for_keyword("BudgetStatus")

ALL_KEYS = [
    ENGAGEMENT_STAGE,
    OPPORTUNITY_ID,
    CUSTOMER_NAME,
    BILLING_MODEL,
    REGION,
    OPEN_EXCEPTIONS,
    STEWARD_QUEUE,
    BUDGET_STATUS,
]


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register any of our search attributes the namespace lacks; return the ones added."""
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        known = set(existing.custom_attributes) | set(existing.system_attributes)
    except RPCError as err:
        # The time-skipping test server implements Add but not List.
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        known = set()
    missing = {k.name: IndexedValueType.ValueType(int(k.indexed_value_type)) for k in ALL_KEYS if k.name not in known}
    if missing:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
            )
        except RPCError as err:
            if err.status != RPCStatusCode.ALREADY_EXISTS:
                raise
    return sorted(missing)
