"""The q2c worker: runs the engagement workflows and the activities that call CRM, PSA and ERP.

Configuration from the environment (see settings.py): TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_TASK_QUEUE, and the Q2C_* vendor endpoints. SIGINT/SIGTERM shut it down cleanly:
no new tasks are taken and running activities are given time to finish.

Worker Deployment Versioning (Q2C_DEPLOYMENT_NAME + Q2C_BUILD_ID): the worker announces which
deployment and build it is, so a rollout can run the old and the new build side by side, make
the new one current (or ramp it) and roll back by making the old one current again. Engagement
runs are pinned to the build that started them and move to the current build when they
continue as new at a period boundary (see EngagementWorkflow and CONTRIBUTING.md, "Changing
workflow code"). Unset, the worker polls unversioned, as `make up` and the tests do.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import Worker, WorkerDeploymentConfig

from q2c.activity_errors import BoundedUnexpectedErrors
from q2c.delivery.activities import DeliveryActivities
from q2c.engagement.client import delivery_config
from q2c.engagement.search_attributes import ensure_search_attributes
from q2c.engagement.workflow import EngagementWorkflow
from q2c.ledger.api_budget import ApiBudget
from q2c.ledger.audit import audit_hook
from q2c.ledger.config import ledger_url
from q2c.ledger.store import Ledger
from q2c.provisioning.activities import EngagementActivities
from q2c.reconciliation.activities import ReconciliationActivities
from q2c.reconciliation.api import ensure_schedule as ensure_reconciliation_schedule
from q2c.reconciliation.api import schedule_id as reconciliation_schedule_id
from q2c.reconciliation.workflow import ReconciliationWorkflow
from q2c.settings import Settings, load_settings, refuse_unless_configured
from q2c.temporal import connect, exit_process
from q2c.vendors.kantata.client import KantataClient
from q2c.vendors.netsuite.client import NetSuiteClient
from q2c.vendors.salesforce.client import SalesforceClient

log = logging.getLogger("q2c.worker")


class Activities:
    """Every activity the worker runs, sharing one connector per vendor and the ledger."""

    def __init__(
        self,
        engagement: EngagementActivities,
        delivery: DeliveryActivities,
        ledger: Ledger,
        reconciliation: ReconciliationActivities | None = None,
    ) -> None:
        self.engagement = engagement
        self.delivery = delivery
        self.ledger = ledger
        self.reconciliation = reconciliation

    def all(self) -> list:
        return self.engagement.all() + self.delivery.all() + (self.reconciliation.all() if self.reconciliation else [])


@asynccontextmanager
async def engagement_activities(settings: Settings, ledger: Ledger | None = None):
    """Connectors for the three systems (each call audited in the ledger), closed on exit."""
    own_ledger = ledger is None
    if ledger is None:
        ledger = Ledger.from_url(ledger_url(settings))
        ledger.create_all()
    audit = audit_hook(ledger)
    budget = ApiBudget.from_settings(ledger.engine, settings)  # the daily API budget, counted in the ledger
    try:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(budget.flush)  # the last counts, after the connectors close
            timeout = settings.http_timeout_seconds
            kw = {"timeout": timeout, "audit": audit, "budget": budget}
            crm = await stack.enter_async_context(SalesforceClient(settings.crm, **kw))
            erp = await stack.enter_async_context(NetSuiteClient(settings.erp, **kw))
            psa = await stack.enter_async_context(KantataClient(settings.psa, **kw))
            yield Activities(
                EngagementActivities(crm=crm, erp=erp, psa=psa, ledger=ledger),
                DeliveryActivities(crm=crm, erp=erp, psa=psa, ledger=ledger),
                ledger,
                ReconciliationActivities(crm=crm, erp=erp, psa=psa, ledger=ledger),
            )
    finally:
        if own_ledger:
            ledger.dispose()


# What the worker registers, stated once: the replay tests and `q2c replay-check` replay
# histories against exactly this (with the same interceptors and data converter).
WORKFLOWS: list[type] = [EngagementWorkflow, ReconciliationWorkflow]


def workflow_interceptors() -> list:
    return [BoundedUnexpectedErrors()]


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """The worker's deployment version from Q2C_DEPLOYMENT_NAME and Q2C_BUILD_ID, or None
    (unversioned) when neither is set. One without the other is refused: a worker meant for a
    versioned rollout must not silently join the unversioned pool."""
    name, build = settings.deployment_name, settings.build_id
    if not name and not build:
        return None
    if not name or not build:
        raise ValueError(
            "Worker Versioning needs both Q2C_DEPLOYMENT_NAME and Q2C_BUILD_ID "
            f"(got deployment {name or '-'}, build {build or '-'}); set both, or neither to run unversioned"
        )
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(deployment_name=name, build_id=build),
        use_worker_versioning=True,
        # every run stays on the build that started it; EngagementWorkflow moves at continue-as-new
        # (a behaviour declared on @workflow.defn would be refused from unversioned workers)
        default_versioning_behavior=VersioningBehavior.PINNED,
    )


def _tracing_unless_on(client: Client) -> list:
    """The TracingInterceptor for a client made elsewhere (a test's environment) without it;
    `connect()`'s clients carry it and the worker takes it from them (twice would nest spans)."""
    from temporalio.contrib.opentelemetry import TracingInterceptor

    if any(isinstance(i, TracingInterceptor) for i in client.config().get("interceptors", [])):
        return []
    return [TracingInterceptor()]


def build_worker(
    client: Client,
    settings: Settings,
    activities: Activities,
    graceful_shutdown: timedelta = timedelta(seconds=10),
    workflows: list[type] | None = None,
) -> Worker:
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=workflows or WORKFLOWS,
        activities=activities.all(),
        interceptors=workflow_interceptors() + _tracing_unless_on(client),
        max_concurrent_activities=50,
        max_cached_workflows=settings.max_cached_workflows,  # bounds the worker's memory (settings.py)
        graceful_shutdown_timeout=graceful_shutdown,
        deployment_config=deployment_config(settings),
    )


async def run_worker(settings: Settings, client: Client | None = None, stop: asyncio.Event | None = None) -> None:
    if client is None:
        runtime = None
        if settings.metrics_address:  # the SDK's Prometheus endpoint, q2c's vendor-call metrics on it
            from q2c.observability.metrics import runtime_with_prometheus

            runtime = runtime_with_prometheus(settings.metrics_address)
            log.info("worker metrics on http://%s/metrics", settings.metrics_address)
        client = await connect(settings, runtime=runtime)
    added = await ensure_search_attributes(client)
    if added:
        log.info("registered search attributes: %s", ", ".join(added))
    if await ensure_reconciliation_schedule(client, settings, delivery_config(settings)):
        log.info("created the reconciliation schedule %s", reconciliation_schedule_id(settings))
    stop = stop or asyncio.Event()
    async with engagement_activities(settings) as activities:
        worker = build_worker(client, settings, activities)
        async with worker:
            log.info(
                "worker polling task queue %r on %s (namespace %s), %s",
                settings.task_queue,
                settings.temporal_address,
                settings.temporal_namespace,
                f"deployment {settings.deployment_name} build {settings.build_id}"
                if settings.build_id
                else "unversioned",
            )
            await stop.wait()
            log.info("shutting down worker")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    refuse_unless_configured(settings, "worker")
    stop = asyncio.Event()

    async def _main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop=stop)

    asyncio.run(_main())
    exit_process(0)


if __name__ == "__main__":
    main()
