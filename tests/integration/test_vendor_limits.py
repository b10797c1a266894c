"""Bounded load on every vendor (issue 15), against the sandboxes over real HTTP and the ledger on
SQLite and PostgreSQL: the in-flight cap as the vendor sees it, Retry-After waited once, the
daily API budget counted across connector instances, and deferrable work refused near it."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import timedelta

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from q2c.ledger.api_budget import DEFERRED_TYPE, SPENT_TYPE, ApiBudget, calls_on
from q2c.ledger.config import make_ledger_engine
from q2c.settings import erp_share
from q2c.vendors.http import RATE_LIMITED_TYPE
from q2c.vendors.kantata.client import KantataClient
from q2c.vendors.netsuite.client import NetSuiteClient
from q2c.vendors.salesforce.client import SalesforceClient
from sandboxes.crm import seed as S
from tests.fixtures.erp import erp_settings
from tests.fixtures.psa import psa_settings

CUSTOMER = "LEGACY-0042"  # a seeded ERP customer


def counters(url: str) -> dict:
    return httpx.get(f"{url}/__sandbox/faults", timeout=10).json()["counters"]


# --- in-flight caps -----------------------------------------------------------------------------


def test_each_worker_takes_its_share_of_the_account_limit():
    assert [erp_share(5, n) for n in (1, 2, 3, 5, 6)] == [5, 2, 1, 1, 1]
    assert erp_share(0, 3) is None  # no cap


async def test_three_workers_never_exceed_the_erp_account_limit(erp_isolated):
    """Three connectors (as three workers would hold), each at its share of a limit of 5: the
    sandbox never had more than 5 in flight and refused nothing."""
    erp_isolated.set_faults(latency_ms=60, concurrency_limit=5)
    share = erp_share(5, 3)
    clients = [NetSuiteClient(erp_settings(erp_isolated.url, max_in_flight=share), timeout=10) for _ in range(3)]
    try:
        for c in clients:
            await c._auth_header()
        httpx.put(f"{erp_isolated.url}/__sandbox/faults", json={"latency_ms": 60, "concurrency_limit": 5})
        reads = [c.get_by_external_id("customer", CUSTOMER) for c in clients for _ in range(15)]
        results = await asyncio.gather(*reads)
    finally:
        for c in clients:
            await c.aclose()
    assert len(results) == 45 and all(r["externalId"] == CUSTOMER for r in results)
    seen = counters(erp_isolated.url)
    assert seen["requests"] == 45 and seen["concurrency_rejections"] == 0
    assert seen["max_concurrent"] <= 5 and max(c.max_in_flight_seen for c in clients) == share


async def test_psa_connector_keeps_its_in_flight_cap(psa_sandbox):
    psa_sandbox.set_faults(latency_ms=80)
    client = KantataClient(dataclasses.replace(psa_settings(psa_sandbox.url), max_in_flight=2), timeout=10)
    try:
        await asyncio.gather(*(client.list_roles() for _ in range(8)))
        seen = counters(psa_sandbox.url)
    finally:
        psa_sandbox.reset_faults()
        await client.aclose()
    assert seen["requests"] == 8 and seen["max_concurrent"] == 2 and client.max_in_flight_seen == 2


async def test_a_request_waiting_too_long_for_a_slot_fails_unsent(erp_isolated):
    erp_isolated.set_faults(latency_ms=1500, concurrency_limit=5)
    async with NetSuiteClient(erp_settings(erp_isolated.url, max_in_flight=1), timeout=1) as client:
        await client._auth_header()
        results = await asyncio.gather(
            *(client.get_by_external_id("customer", CUSTOMER) for _ in range(2)), return_exceptions=True
        )
    errors = [r for r in results if isinstance(r, ApplicationError)]
    assert errors and any("not sent, 1 requests already in flight" in e.message for e in errors)
    assert all(not e.non_retryable for e in errors)


# --- Retry-After ---------------------------------------------------------------------------------


def _gaps(url: str) -> list[float]:
    at = [a["at"] for a in counters(url)["arrivals"]]
    return [b - a for a, b in zip(at, at[1:], strict=False)]


async def test_erp_429_retry_after_is_waited_once_then_sent_again(erp_isolated):
    erp_isolated.set_faults(fail_next=1, retry_after_seconds=2)
    async with NetSuiteClient(erp_settings(erp_isolated.url), timeout=10) as client:
        await client._auth_header()
        started = time.monotonic()
        record = await client.get_by_external_id("customer", CUSTOMER)
        elapsed = time.monotonic() - started
    assert record["externalId"] == CUSTOMER
    seen = counters(erp_isolated.url)
    assert seen["requests"] == 2 and seen["injected_429s"] == 1  # refused once, sent once more
    assert elapsed >= 2 and _gaps(erp_isolated.url)[0] >= 2  # after the vendor's 2 s, not before


async def test_a_second_refusal_is_the_callers_with_the_vendors_wait(erp_isolated):
    """Two 429s in a row: the connector waited once, then raises with the vendor's wait as
    next_retry_delay (Temporal schedules it); the caller's retry still waits the gate."""
    erp_isolated.set_faults(fail_next=2, retry_after_seconds=2)
    async with NetSuiteClient(erp_settings(erp_isolated.url), timeout=10) as client:
        await client._auth_header()
        with pytest.raises(ApplicationError) as err:
            await client.get_by_external_id("customer", CUSTOMER)
        assert err.value.type == RATE_LIMITED_TYPE and not err.value.non_retryable
        assert err.value.next_retry_delay == timedelta(seconds=2)
        assert counters(erp_isolated.url)["requests"] == 2
        record = await client.get_by_external_id("customer", CUSTOMER)  # the caller's retry, at once
    assert record["externalId"] == CUSTOMER
    gaps = _gaps(erp_isolated.url)
    assert len(gaps) == 2 and min(gaps) >= 2  # every request after a 429 waited the vendor's 2 s


async def test_psa_and_crm_honour_retry_after(psa_sandbox, make_crm_sandbox):
    psa_sandbox.set_faults(fail_next=1, retry_after_seconds=1)
    psa = KantataClient(psa_settings(psa_sandbox.url), timeout=10)
    try:
        await psa.list_roles()
        assert counters(psa_sandbox.url)["injected_429s"] == 1 and _gaps(psa_sandbox.url)[0] >= 1
    finally:
        psa_sandbox.reset_faults()
        await psa.aclose()
    crm_sandbox = make_crm_sandbox()
    crm = SalesforceClient(crm_sandbox.settings, timeout=10)
    try:
        await crm.get_record("Account", S.ACME_ACCOUNT_ID)  # the token first
        httpx.put(f"{crm_sandbox.url}/__sandbox/faults", json={"fail_next": 1, "retry_after_seconds": 1})
        record = await crm.get_record("Account", S.ACME_ACCOUNT_ID)
    finally:
        await crm.aclose()
    assert record["Id"].startswith(S.ACME_ACCOUNT_ID[:15])
    seen = counters(crm_sandbox.url)
    assert seen["requests"] == 2 and seen["injected_429s"] == 1 and _gaps(crm_sandbox.url)[0] >= 1


# --- the daily API budget -----------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def budget_engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        url = request.getfixturevalue("postgres_ledger_url")
    engine = make_ledger_engine(url)
    ApiBudget(engine, {})  # the table
    with engine.begin() as conn:
        from q2c.ledger.api_budget import ApiCallsDaily

        conn.execute(ApiCallsDaily.__table__.delete())
    try:
        yield engine
    finally:
        engine.dispose()


async def test_budget_is_counted_across_two_connectors_sharing_a_ledger(erp_sandbox, budget_engine):
    """Two workers' connectors, each with its own ApiBudget on the same ledger: the day's count
    is the sum of both, every request counted once (the token requests not at all)."""
    a_budget, b_budget = ApiBudget(budget_engine, {"erp": 1000}), ApiBudget(budget_engine, {"erp": 1000})
    before = counters(erp_sandbox.url)["requests"]
    a = NetSuiteClient(erp_settings(erp_sandbox.url), timeout=10, budget=a_budget)
    b = NetSuiteClient(erp_settings(erp_sandbox.url), timeout=10, budget=b_budget)
    try:
        await asyncio.gather(*(a.get_by_external_id("customer", CUSTOMER) for _ in range(7)))
        await asyncio.gather(*(b.get_by_external_id("customer", CUSTOMER) for _ in range(5)))
    finally:
        await a.aclose()
        await b.aclose()
    await a_budget.flush()
    await b_budget.flush()
    assert counters(erp_sandbox.url)["requests"] - before == 12
    assert calls_on(budget_engine) == {"erp": 12}
    await a_budget.flush()  # a learns b's calls at its next flush
    assert a_budget.used("erp") == b_budget.used("erp") == 12


async def test_counts_are_flushed_every_n_calls_without_waiting(erp_sandbox, budget_engine):
    budget = ApiBudget(budget_engine, {}, flush_calls=5, flush_seconds=3600)
    async with NetSuiteClient(erp_settings(erp_sandbox.url), timeout=10, budget=budget) as client:
        for _ in range(5):
            await client.get_by_external_id("customer", CUSTOMER)
        for _ in range(50):  # the 5th call started a flush in a thread
            if calls_on(budget_engine).get("erp") == 5:
                break
            await asyncio.sleep(0.05)
    assert calls_on(budget_engine) == {"erp": 5}


async def test_deferrable_work_waits_near_the_budget_activation_goes_on(erp_sandbox, budget_engine):
    budget = ApiBudget(budget_engine, {"erp": 10}, defer_at=0.8)
    client = NetSuiteClient(erp_settings(erp_sandbox.url), timeout=10, budget=budget)

    async def read() -> dict:
        return await client.get_by_external_id("customer", CUSTOMER)

    def env(activity_type: str) -> ActivityEnvironment:
        e = ActivityEnvironment()
        e.info = dataclasses.replace(e.info, activity_type=activity_type)
        return e

    try:
        for _ in range(8):
            await read()
        await budget.flush()
        before = counters(erp_sandbox.url)["requests"]
        with pytest.raises(ApplicationError) as err:  # payment polling: deferred, nothing sent
            await env("refresh_payments").run(read)
        assert err.value.type == DEFERRED_TYPE and not err.value.non_retryable
        assert err.value.next_retry_delay is not None and err.value.next_retry_delay <= timedelta(hours=1)
        assert "not sent, 80% of the daily API budget is spent" in err.value.message
        assert "8 of 10 calls today (Q2C_ERP_DAILY_API_BUDGET)" in err.value.message
        assert counters(erp_sandbox.url)["requests"] == before
        # activation goes on until the budget itself is spent
        await env("upsert_erp_customer").run(read)
        await env("upsert_erp_project").run(read)
        with pytest.raises(ApplicationError) as err:
            await env("upsert_erp_project").run(read)
        assert err.value.type == SPENT_TYPE and "the daily API budget is spent: 10 of 10" in err.value.message
    finally:
        await client.aclose()
    await budget.flush()
    assert calls_on(budget_engine) == {"erp": 10}


async def test_doctor_shows_each_vendors_calls_against_its_budget(tmp_path):
    from q2c.doctor import Report, Status, check_api_budgets
    from q2c.ledger.api_budget import add_calls, today
    from q2c.settings import load_settings

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = make_ledger_engine(url)
    ApiBudget(engine, {})
    add_calls(engine, today(), {"crm": 9, "erp": 3})
    engine.dispose()
    base = load_settings()
    settings = dataclasses.replace(
        base, ledger_db_url=url, crm=dataclasses.replace(base.crm, daily_api_budget=10), api_budget_defer_at=0.8
    )
    report = Report()
    await check_api_budgets(settings, report, ("crm", "erp", "psa"))
    rows = {f.system: f for f in report.findings if f.check == "api budget"}
    assert rows["crm"].status is Status.WARN and rows["crm"].detail.startswith("9 of 10 calls today (UTC)")
    assert "deferrable work waits from 8" in rows["crm"].detail
    assert rows["erp"].status is Status.OK and "3 calls today (UTC), no daily budget" in rows["erp"].detail
    assert rows["psa"].detail.startswith("0 calls today")
