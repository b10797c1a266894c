"""Traces and metrics of one closed-won deal, end to end on the Temporal dev server.

The CRM sandbox sends its Outbound Message to the real webhook service, the real worker
provisions the engagement in the ERP and PSA sandboxes and writes back to the CRM. Spans go
to an in-memory exporter (a real OpenTelemetry exporter, added to this process's provider);
the worker's client runs on a Temporal runtime serving Prometheus on a free port, and the
webhook service answers /metrics. Figures are checked against the sandboxes' own records.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re

import httpx
import pytest_asyncio
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from temporalio.testing import WorkflowEnvironment

from q2c.domain.stage import EngagementStage
from q2c.engagement.search_attributes import ensure_search_attributes
from q2c.ledger.config import ledger_url
from q2c.ledger.store import Ledger
from q2c.observability.metrics import runtime_with_prometheus
from q2c.observability.tracing import flush, setup_tracing
from q2c.settings import OUTBOUND_PATH
from q2c.temporal import connect
from q2c.webhook.app import create_app as create_webhook_app
from sandboxes.common.server import ServerThread, free_port
from stack.demo_env import DEMO_OUTBOUND_PATH_SECRET
from tests.deals import create_deal
from tests.engagement_helpers import wait_for_stage
from tests.fixtures.stack import Stack, q2c_settings, running_worker
from tests.fixtures.temporal import STARTUP_TIMEOUT, _binary, converter_under_test

EXPORTER = InMemorySpanExporter()


@dataclasses.dataclass
class ObsStack(Stack):
    webhook_url: str = ""
    metrics_url: str = ""
    ledger: Ledger | None = None


@pytest_asyncio.fixture(scope="module")
async def obs(make_crm_sandbox, erp_sandbox, psa_sandbox, tmp_path_factory):
    """A Temporal dev server of its own: the business figures count every engagement of the
    namespace (as in production), so other tests' engagements must not be in it."""
    setup_tracing("q2c-test", span_processors=[SimpleSpanProcessor(EXPORTER)])
    env = await WorkflowEnvironment.start_local(
        data_converter=converter_under_test(),
        dev_server_existing_path=_binary("temporal"),
        dev_server_log_level="error",
        dev_server_startup_timeout=STARTUP_TIMEOUT,
        ui=False,
    )
    await ensure_search_attributes(env.client)
    webhook_port = free_port()
    crm = make_crm_sandbox(outbound_url=f"http://127.0.0.1:{webhook_port}{OUTBOUND_PATH}/{DEMO_OUTBOUND_PATH_SECRET}")
    settings = q2c_settings(
        crm_url=crm.url,
        erp_url=erp_sandbox.url,
        psa_url=psa_sandbox.url,
        state_dir=tmp_path_factory.mktemp("q2c-obs"),
        temporal_address=env.client.service_client.config.target_host,
        webhook_port=webhook_port,
    )
    metrics_address = f"127.0.0.1:{free_port()}"
    # the worker's own client, as run_worker makes it: tracing interceptor + the metrics runtime
    client = await connect(settings, runtime=runtime_with_prometheus(metrics_address))
    ledger = Ledger.from_url(ledger_url(settings))
    ledger.create_all()
    webhook = ServerThread(create_webhook_app(settings), port=webhook_port).start()
    try:
        async with running_worker(client, settings, ledger):
            yield ObsStack(
                client=client,
                settings=settings,
                crm=crm,
                erp=erp_sandbox,
                psa=psa_sandbox,
                webhook_url=webhook.url,
                metrics_url=f"http://{metrics_address}/metrics",
                ledger=ledger,
            )
    finally:
        webhook.stop()
        ledger.dispose()
        await env.shutdown()


async def _closed_won_deal(obs: ObsStack):
    async with obs.crm.client() as crm:
        deal = await create_deal(crm, stage="Negotiation/Review")
        await crm.set_opportunity_stage(deal.opportunity_id, "Closed Won")
    status = await wait_for_stage(obs.client, deal.opportunity_id, EngagementStage.ACTIVE)
    return deal, status


@pytest_asyncio.fixture(scope="module")
async def active_deal(obs):
    return await _closed_won_deal(obs)


def _spans_of_trace(trace_id: int) -> list:
    return [s for s in EXPORTER.get_finished_spans() if s.context.trace_id == trace_id]


async def test_one_deal_is_one_trace_from_outbound_message_to_crm_write_back(obs, active_deal):
    deal, status = active_deal
    wf_id = f"engagement-{deal.opportunity_id}"
    await asyncio.sleep(0.5)  # the write-back activity's span ends after its result is recorded
    flush()
    roots = [
        s
        for s in EXPORTER.get_finished_spans()
        if s.kind == SpanKind.SERVER and s.name == "POST /webhooks/salesforce/outbound/{path_secret}"
    ]
    start_spans = [
        s for s in EXPORTER.get_finished_spans() if s.name == "StartWorkflow:EngagementWorkflow" and s.parent
    ]
    root = next(
        r for r in roots if any(s.parent.span_id == r.context.span_id for s in start_spans if s.context.trace_id)
    )
    assert root.parent is None  # Salesforce sends no traceparent: the inbound message is the root
    assert DEMO_OUTBOUND_PATH_SECRET not in root.name and root.attributes["http.response.status_code"] == 200
    spans = _spans_of_trace(root.context.trace_id)
    by_id = {s.context.span_id: s for s in spans}
    names = [s.name for s in spans]

    def parent_name(span) -> str:
        return by_id[span.parent.span_id].name if span.parent and span.parent.span_id in by_id else "-"

    start = next(s for s in spans if s.name == "StartWorkflow:EngagementWorkflow")
    assert parent_name(start) == root.name
    run = next(s for s in spans if s.name == "RunWorkflow:EngagementWorkflow")
    assert parent_name(run) == "StartWorkflow:EngagementWorkflow"
    for activity in ("fetch_engagement", "upsert_erp_customer", "upsert_erp_project", "provision_psa_workspace"):
        assert f"RunActivity:{activity}" in names, (activity, sorted(set(names)))
    write_back = [s for s in spans if s.name == "RunActivity:write_back_crm"]
    assert write_back, sorted(set(names))
    crm_writes = [
        s for s in spans if s.name == "crm update Opportunity" and parent_name(s) == "RunActivity:write_back_crm"
    ]
    assert crm_writes, sorted(set(names))
    # every vendor span of the deal carries what the ledger audited for it, by correlation ID
    vendor_spans = [s for s in spans if s.kind == SpanKind.CLIENT and "q2c.vendor.system" in s.attributes]
    assert {s.attributes["q2c.vendor.system"] for s in vendor_spans} == {"crm", "erp", "psa"}
    audited = {c.correlation_id: c for c in obs.ledger.api_calls(workflow_id=wf_id)}
    for span in vendor_spans:
        call = audited[span.attributes["q2c.correlation_id"]]
        assert span.attributes["q2c.vendor.system"] == call.system
        assert span.attributes["q2c.vendor.operation"] == call.operation
        assert span.attributes["q2c.vendor.outcome"] == call.outcome
        assert span.attributes.get("http.response.status_code") == call.status
        assert span.attributes["q2c.vendor.retry_count"] == 0
        assert parent_name(span).startswith("RunActivity:")
    # the last CRM write-back of the provisioning is inside the same trace
    last_crm = max((c for c in audited.values() if c.system == "crm" and c.method != "GET"), key=lambda c: c.at)
    assert last_crm.correlation_id in {s.attributes["q2c.correlation_id"] for s in vendor_spans}
    assert status.erp_project_id


def _samples(text: str, name: str) -> dict[str, float]:
    """{label text: value} of one metric in Prometheus text format."""
    out = {}
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)$", line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


async def test_metrics_match_the_sandboxes_after_a_small_run(obs, active_deal):
    deal, _ = active_deal
    second, _ = await _closed_won_deal(obs)
    # Salesforce delivers the first deal's message again: absorbed, counted as a duplicate
    delivery = next(
        d
        for d in httpx.get(f"{obs.crm.url}/__sandbox/outbound", timeout=10).json()["deliveries"]
        if deal.opportunity_id in d["payload"] and d["status"] == "delivered"
    )
    # the duplicate counter is the process's (other tests' webhooks count on it): measure the step
    duplicates_before = _samples(
        httpx.get(f"{obs.webhook_url}/metrics", timeout=30).text, "q2c_duplicate_deliveries_total"
    )
    httpx.post(f"{obs.crm.url}/__sandbox/outbound/{delivery['id']}/redeliver", timeout=10).raise_for_status()
    for _ in range(100):
        copies = [
            d
            for d in httpx.get(f"{obs.crm.url}/__sandbox/outbound", timeout=10).json()["deliveries"]
            if d.get("redelivery_of") == delivery["id"] and d["status"] == "delivered"
        ]
        if copies:
            break
        await asyncio.sleep(0.1)
    assert copies

    # the worker's endpoint: the SDK's runtime telemetry and the vendor calls, equal to the audit
    worker = httpx.get(obs.metrics_url, timeout=10).text
    assert "temporal_workflow_task_schedule_to_start_latency" in worker or "temporal_request" in worker
    assert "temporal_activity_execution_latency" in worker
    calls = _samples(worker, "q2c_vendor_calls")
    audited: dict[tuple[str, str], int] = {}
    for c in obs.ledger.api_calls():
        audited[(c.system, c.outcome)] = audited.get((c.system, c.outcome), 0) + 1
    scraped = {}
    for labels, value in calls.items():
        system = re.search(r'system="([^"]+)"', labels).group(1)
        outcome = re.search(r'outcome="([^"]+)"', labels).group(1)
        scraped[(system, outcome)] = int(value)
    # The meter is the process's: in a worker process it counts that worker's calls alone, but
    # this test process also runs other tests' session-scoped workers (payment polls go on in
    # the background) and calls the CRM itself, so here this stack's audit is a lower bound for
    # every system and outcome it saw, and every kind of call the audit holds is counted.
    assert set(audited) <= set(scraped), (audited, scraped)
    assert all(scraped[k] >= n for k, n in audited.items()), (audited, scraped)
    latency_count = sum(_samples(worker, "q2c_vendor_call_latency_count").values())
    assert latency_count == sum(scraped.values())

    # the webhook service's business figures, against the sandboxes' records
    text = httpx.get(f"{obs.webhook_url}/metrics", timeout=10).text
    opps = [await _opp(obs, o) for o in (deal.opportunity_id, second.opportunity_id)]
    active_in_crm = sum(1 for o in opps if o["Q2C_Status__c"] == "Active")
    assert _samples(text, "q2c_engagements")['{stage="Active"}'] == active_in_crm == 2
    assert _samples(text, "q2c_activation_cycle_seconds_count")[""] == 2
    jobs = [r for r in obs.erp.records("job") if r.get("externalId") in (deal.opportunity_id, second.opportunity_id)]
    assert len(jobs) == 2
    key = '{source="salesforce-outbound"}'
    assert _samples(text, "q2c_duplicate_deliveries_total")[key] - duplicates_before.get(key, 0) == 1
    invoices_in_erp = len(
        [r for r in obs.erp.records("invoice") if r.get("externalId", "").startswith(deal.opportunity_id)]
    )
    assert _samples(text, "q2c_invoices_issued_total")[""] == invoices_in_erp == 0
    audited_text = _samples(text, "q2c_vendor_calls_audited_total")
    assert sum(audited_text.values()) == sum(audited.values())


async def _opp(obs: ObsStack, opportunity_id: str) -> dict:
    async with obs.crm.client() as crm:
        return await crm.get_record("Opportunity", opportunity_id)
