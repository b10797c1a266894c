"""The q2c worker: runs the engagement workflows and the activities that call CRM, PSA and ERP.

Configuration from the environment (see settings.py): TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_TASK_QUEUE, and the Q2C_* vendor endpoints. SIGINT/SIGTERM shut it down cleanly:
no new tasks are taken and running activities are given time to finish.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities.engagement import EngagementActivities
from connectors.kantata import KantataClient
from connectors.netsuite import NetSuiteClient
from connectors.salesforce import SalesforceClient
from settings import Settings, load_settings
from workflows.client import connect, exit_process
from workflows.engagement import EngagementWorkflow
from workflows.search_attributes import ensure_search_attributes

log = logging.getLogger("q2c.worker")


@asynccontextmanager
async def engagement_activities(settings: Settings):
    """Connectors for the three systems, closed on exit."""
    async with AsyncExitStack() as stack:
        timeout = settings.http_timeout_seconds
        crm = await stack.enter_async_context(SalesforceClient(settings.crm, timeout=timeout))
        erp = await stack.enter_async_context(NetSuiteClient(settings.erp, timeout=timeout))
        psa = await stack.enter_async_context(KantataClient(settings.psa, timeout=timeout))
        yield EngagementActivities(crm=crm, erp=erp, psa=psa)


def build_worker(client: Client, settings: Settings, activities: EngagementActivities) -> Worker:
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[EngagementWorkflow],
        activities=activities.all(),
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


async def run_worker(settings: Settings, client: Client | None = None,
                     stop: asyncio.Event | None = None) -> None:
    client = client or await connect(settings)
    added = await ensure_search_attributes(client)
    if added:
        log.info("registered search attributes: %s", ", ".join(added))
    stop = stop or asyncio.Event()
    async with engagement_activities(settings) as activities:
        worker = build_worker(client, settings, activities)
        async with worker:
            log.info("worker polling task queue %r on %s (namespace %s)",
                     settings.task_queue, settings.temporal_address, settings.temporal_namespace)
            await stop.wait()
            log.info("shutting down worker")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
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
