"""The machine's ceiling for an activation: a workflow that does nothing but run the same
number of activities one after the other (each returns at once), started the same way (the
same rate, or the same burst) against the same dev server and worker process. What the
engagement takes beyond it is q2c's own cost (vendor calls, payloads, the codec, the
webhook); what it shares with it (workflow tasks, activity dispatch, history writes on 2
cores) is what bounds this machine."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker


@activity.defn(name="bench_noop")
async def noop(step: int) -> int:
    return step


@workflow.defn(name="BenchCeilingWorkflow")
class CeilingWorkflow:
    @workflow.run
    async def run(self, activities: int) -> float:
        for step in range(activities):
            await workflow.execute_activity(noop, step, start_to_close_timeout=timedelta(seconds=60))
        return workflow.now().timestamp()


async def run_ceiling(client: Client, *, count: int, activities: int, rate: float | None) -> list[float]:
    """Start `count` ceiling workflows (at `rate` per second, or all at once when None) on a
    task queue of their own with a worker in this process; return each one's start -> done
    latency in seconds (done = its last activity, on the server's clock)."""
    queue = f"bench-ceiling-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[CeilingWorkflow], activities=[noop]):
        started: dict[str, float] = {}
        handles = []

        async def start(i: int) -> None:
            wf_id = f"ceiling-{queue}-{i}"
            started[wf_id] = time.time()
            handles.append(await client.start_workflow(CeilingWorkflow.run, activities, id=wf_id, task_queue=queue))

        t0 = time.perf_counter()
        tasks = []
        for i in range(count):
            if rate:
                await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(start(i)))
        await asyncio.gather(*tasks)
        done = await asyncio.gather(*(h.result() for h in handles))
    return sorted(end - started[h.id] for h, end in zip(handles, done))
