"""The worker's memory with many open engagements (issue 15, item 6).

    python -m bench memory [--engagements 5000] [--max-cached N] [--keep]

Why this shape: an engagement waits a month between period closes, so a firm's worker holds
thousands of open runs that do nothing; what it keeps of them in memory is the sticky
workflow cache (`Q2C_MAX_CACHED_WORKFLOWS`), and a `status` query to each (the console, a
reconciliation, a steward's CLI loop) pulls every one of them in. The figure that matters is
the worker's resident memory after one query to each.

Setup: the stack of bench/stack.py (dev server, sandboxes, an in-process worker on its own
task queue), one real deal provisioned through the whole path (CRM -> ERP customer, project,
billing schedule -> PSA workspace) until Active: its `EngagementStatus` is the template.
Provisioning 5,000 engagements through the vendors would take most of an hour on two cores
and measure the vendors, not the worker's memory; the workflow takes its state as input at
continue-as-new (`EngagementInput.state`), so N engagements are started straight at Active
with a copy of the template each (its opportunity ID replaced), exactly as a run that has
continued as new at a period boundary begins. They wait for the month's end (no payment
polling, no invoice yet), issuing no activity.

Measured on a separate worker process (`python -m q2c.worker`, the production entry point,
on a task queue of its own, nothing else in it), from /proc/<pid>/status:
  - RSS before any engagement (the empty worker),
  - RSS idle with N open (every run has had its first workflow task; the worker is quiet),
  - RSS after one `status` query to each, and the peak (VmHWM),
  - the increase per engagement, and the ratio to the target (400 MB at 5,000).
With fewer than 5,000 the figure at 5,000 is extrapolated linearly from the per-engagement
increase, which overstates it once the cache is full (the cache bounds the increase).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.deals import create_deals
from bench.month_end import NO_PAYMENT_POLLING, current_month
from bench.processes import ROOT
from bench.stack import BenchStack, bench_stack
from q2c.domain.stage import EngagementStage
from q2c.engagement.client import start_engagement, workflow_id_for
from q2c.engagement.messages import EngagementInput, EngagementStatus
from q2c.vendors.salesforce.client import SalesforceClient
from stack.demo_env import DEMO_CRM_CLIENT_ID, DEMO_CRM_CLIENT_SECRET, DEMO_ERP_ACCOUNT, DEMO_ERP_CLIENT_ID

TARGET_MB = 400.0
TARGET_ENGAGEMENTS = 5000
CONCURRENCY = 32  # starts and queries in flight (the dev server and the worker share two cores)
QUIET_CPU_SHARE = 0.05  # the worker counts as idle below 5% of a core ...
QUIET_SECONDS = 3.0  # ... for this long


@dataclass(frozen=True)
class MemoryOptions:
    engagements: int = TARGET_ENGAGEMENTS
    max_cached: int | None = None  # None: the worker's default (Q2C_MAX_CACHED_WORKFLOWS unset)
    keep: bool = False
    timeout_seconds: float = 1200.0


@dataclass
class MemoryResult:
    options: MemoryOptions
    state_bytes: int  # the template's EngagementStatus as JSON
    empty_mb: float
    idle_mb: float
    queried_mb: float
    peak_mb: float
    start_seconds: float
    first_tasks_seconds: float  # from the first start until the worker was quiet again
    query_seconds: float
    queried: int

    @property
    def per_engagement_kb(self) -> float:
        return (self.queried_mb - self.empty_mb) * 1024 / self.options.engagements

    @property
    def at_target_mb(self) -> float:
        """RSS after queries at 5,000 engagements: measured, or extrapolated linearly from fewer."""
        if self.options.engagements >= TARGET_ENGAGEMENTS:
            return self.queried_mb
        return self.empty_mb + self.per_engagement_kb * TARGET_ENGAGEMENTS / 1024

    @property
    def passed(self) -> bool:
        return self.queried == self.options.engagements and self.at_target_mb <= TARGET_MB


# --- the worker process ----------------------------------------------------------------------


def _status_kb(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def rss_mb(pid: int) -> float:
    return _status_kb(pid)["VmRSS"] / 1024


def peak_mb(pid: int) -> float:
    return _status_kb(pid)["VmHWM"] / 1024


def _cpu_seconds(pid: int) -> float:
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_quiet(proc: subprocess.Popen, timeout: float) -> float:
    """Wait until the process uses under QUIET_CPU_SHARE of a core for QUIET_SECONDS; the seconds waited."""
    t0 = time.monotonic()
    quiet_since: float | None = None
    last = _cpu_seconds(proc.pid)
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited with code {proc.returncode}")
        await asyncio.sleep(0.5)
        now_cpu = _cpu_seconds(proc.pid)
        busy = (now_cpu - last) / 0.5 >= QUIET_CPU_SHARE
        last = now_cpu
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= QUIET_SECONDS:
            return time.monotonic() - t0 - QUIET_SECONDS
    raise RuntimeError(f"the worker did not go quiet within {timeout:.0f} s")


def worker_env(stack: BenchStack, task_queue: str, opts: MemoryOptions) -> dict[str, str]:
    """The environment `python -m q2c.worker` reads (q2c/settings.py), pointing at the bench's servers."""
    s = stack.settings
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TEMPORAL_ADDRESS": s.temporal_address,
        "TEMPORAL_NAMESPACE": s.temporal_namespace,
        "TEMPORAL_TASK_QUEUE": task_queue,
        "Q2C_STATE_DIR": str(stack.state_dir / "memory-worker"),
        "Q2C_LEDGER_DB_URL": f"sqlite:///{stack.state_dir / 'memory-ledger.db'}",
        "Q2C_CRM_URL": s.crm.base_url,
        "Q2C_CRM_CLIENT_ID": DEMO_CRM_CLIENT_ID,
        "Q2C_CRM_CLIENT_SECRET": DEMO_CRM_CLIENT_SECRET,
        "Q2C_CRM_ORG_ID": s.crm.organization_id,
        "Q2C_ERP_URL": s.erp.base_url,
        "Q2C_ERP_ACCOUNT": DEMO_ERP_ACCOUNT,
        "Q2C_ERP_CLIENT_ID": DEMO_ERP_CLIENT_ID,
        "Q2C_ERP_CERTIFICATE_ID": s.erp.certificate_id or "",
        "Q2C_ERP_PRIVATE_KEY_FILE": s.erp.private_key_file or "",
        "Q2C_PSA_URL": s.psa.base_url,
        "Q2C_PSA_TOKEN": s.psa.token,
        "Q2C_METRICS_ADDRESS": "",
        "Q2C_DEPLOYMENT_NAME": "",
        "Q2C_BUILD_ID": "",
    }
    env.pop("Q2C_MAX_CACHED_WORKFLOWS", None)
    if opts.max_cached is not None:
        env["Q2C_MAX_CACHED_WORKFLOWS"] = str(opts.max_cached)
    return env


async def start_worker(stack: BenchStack, task_queue: str, opts: MemoryOptions, timeout: float = 60.0):
    log_path = stack.state_dir / "logs" / "memory-worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "q2c.worker"],
        cwd=ROOT,
        env=worker_env(stack, task_queue, opts),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while b"worker polling task queue" not in log_path.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_worker(proc)
            log.close()
            raise RuntimeError(f"the worker did not start; see {log_path}")
        await asyncio.sleep(0.2)
    return proc, log


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# --- the engagements -------------------------------------------------------------------------


async def template_status(stack: BenchStack, log) -> EngagementStatus:
    """One deal provisioned through the real path until Active: the state every copy starts with."""
    first, last, _ = current_month()
    async with SalesforceClient(stack.settings.crm, timeout=60) as crm:
        (deal,) = await create_deals(crm, 1, start=first, end=last)
    opp = deal.opportunity_id
    await start_engagement(
        stack.client, opp, task_queue=stack.settings.task_queue, source="bench", delivery=NO_PAYMENT_POLLING
    )
    handle = stack.client.get_workflow_handle(workflow_id_for(opp))
    deadline = time.monotonic() + 300
    while True:
        st = await handle.query("status", result_type=EngagementStatus)
        if st.stage is EngagementStage.ACTIVE:
            break
        if st.stage is EngagementStage.AWAITING_STEWARD or time.monotonic() > deadline:
            raise RuntimeError(f"the template engagement did not become Active: {st.stage.value}: {st.details}")
        await asyncio.sleep(0.5)
    log(f"  setup: template engagement {opp} Active ({len(st.model_dump_json()):,} bytes of state)")
    return st


def copies(template: EngagementStatus, n: int) -> list[tuple[str, str]]:
    """(opportunity ID, state JSON) for n copies of the template, each with an ID of its own."""
    text = template.model_dump_json()
    run = uuid.uuid4().hex[:6].upper()
    out = []
    for i in range(n):
        opp = f"006MEM{run}{i:06d}"
        out.append((opp, text.replace(template.opportunity_id, opp)))
    return out


async def start_copies(stack: BenchStack, task_queue: str, states: list[tuple[str, str]]) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(opp: str, state: str) -> None:
        async with gate:
            await stack.client.start_workflow(
                "EngagementWorkflow",
                EngagementInput(
                    opportunity_id=opp,
                    source="bench",
                    delivery=NO_PAYMENT_POLLING,
                    state=EngagementStatus.model_validate_json(state),
                ),
                id=workflow_id_for(opp),
                task_queue=task_queue,
            )

    await asyncio.gather(*(one(o, s) for o, s in states))


async def first_tasks_done(stack: BenchStack, opps: list[str], sample: int = 40) -> bool:
    """No workflow task pending on a sample of the engagements (the quiet worker has seen them all)."""
    for opp in random.sample(opps, min(sample, len(opps))):
        desc = await stack.client.get_workflow_handle(workflow_id_for(opp)).describe()
        raw = desc.raw_description
        if raw.HasField("pending_workflow_task") or raw.workflow_execution_info.history_length < 4:
            return False
    return True


async def query_all(stack: BenchStack, opps: list[str]) -> int:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(opp: str) -> bool:
        async with gate:
            st = await stack.client.get_workflow_handle(workflow_id_for(opp)).query(
                "status", result_type=EngagementStatus
            )
            return st.opportunity_id == opp and st.stage is EngagementStage.ACTIVE

    return sum(await asyncio.gather(*(one(o) for o in opps)))


async def run_memory(opts: MemoryOptions, log=print) -> MemoryResult:
    async with bench_stack(keep=opts.keep, log=log) as stack:
        template = await template_status(stack, log)
        task_queue = f"q2c-bench-memory-{uuid.uuid4().hex[:8]}"
        proc, worker_log = await start_worker(stack, task_queue, opts)
        try:
            await wait_quiet(proc, 60)
            empty = rss_mb(proc.pid)
            cached = opts.max_cached if opts.max_cached is not None else "default"
            log(f"  worker pid {proc.pid} (Q2C_MAX_CACHED_WORKFLOWS {cached}): {empty:.0f} MB empty")
            states = copies(template, opts.engagements)
            opps = [o for o, _ in states]
            t0 = time.perf_counter()
            await start_copies(stack, task_queue, states)
            start_seconds = time.perf_counter() - t0
            log(f"  started {len(opps):,} engagements at Active in {start_seconds:.1f} s")
            deadline = time.monotonic() + opts.timeout_seconds
            while True:
                await wait_quiet(proc, max(1.0, deadline - time.monotonic()))
                if await first_tasks_done(stack, opps):
                    break
            first_tasks = time.perf_counter() - t0
            idle = rss_mb(proc.pid)
            log(f"  idle with {len(opps):,} open: {idle:.0f} MB (first tasks done at {first_tasks:.1f} s)")
            t1 = time.perf_counter()
            queried = await query_all(stack, opps)
            query_seconds = time.perf_counter() - t1
            await wait_quiet(proc, 120)
            after = rss_mb(proc.pid)
            log(f"  after one status query to each ({query_seconds:.1f} s): {after:.0f} MB")
            return MemoryResult(
                options=opts,
                state_bytes=len(template.model_dump_json()),
                empty_mb=empty,
                idle_mb=idle,
                queried_mb=after,
                peak_mb=peak_mb(proc.pid),
                start_seconds=start_seconds,
                first_tasks_seconds=first_tasks,
                query_seconds=query_seconds,
                queried=queried,
            )
        finally:
            stop_worker(proc)
            worker_log.close()


def render(r: MemoryResult) -> str:
    o = r.options
    n = o.engagements
    extrapolated = n < TARGET_ENGAGEMENTS
    cached = str(o.max_cached) if o.max_cached is not None else "default (Q2C_MAX_CACHED_WORKFLOWS unset)"
    lines = [
        "",
        f"Memory benchmark: {n:,} open engagements started at Active (a provisioned engagement's state, "
        f"{r.state_bytes:,} bytes as JSON), one worker process, max cached workflows {cached}",
        "",
        f"  {'worker RSS empty (MB)':<52}{r.empty_mb:>10.1f}",
        f"  {'worker RSS idle, all open (MB)':<52}{r.idle_mb:>10.1f}",
        f"  {'worker RSS after one status query to each (MB)':<52}{r.queried_mb:>10.1f}   (peak {r.peak_mb:.1f})",
        f"  {'per engagement, after queries (KB)':<52}{r.per_engagement_kb:>10.1f}",
        f"  {'status queries answered':<52}{r.queried:>10,} / {n:,} in {r.query_seconds:.1f} s "
        f"({n / r.query_seconds if r.query_seconds else 0:.0f}/s)",
        f"  {'starts; first workflow tasks done (s)':<52}{r.start_seconds:>10.1f}; {r.first_tasks_seconds:.1f}",
        f"  {'at 5,000 engagements (MB)':<52}{r.at_target_mb:>10.1f}"
        + ("   (extrapolated linearly: an upper bound once the cache is full)" if extrapolated else "   (measured)"),
        f"  {'ratio to the target (400 MB at 5,000)':<52}{r.at_target_mb / TARGET_MB:>10.2f} x",
        "",
        f"  machine: {os.cpu_count()} cores, shared; figures are RSS from /proc (noisy by a few MB)",
        "",
        f"RESULT: {'PASS' if r.passed else 'FAIL'} (every query answered, RSS at 5,000 within {TARGET_MB:.0f} MB)",
        "",
    ]
    return "\n".join(lines)


def parse(argv: list[str]) -> MemoryOptions:
    p = argparse.ArgumentParser(prog="python -m bench memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--engagements", type=int, default=TARGET_ENGAGEMENTS, help="open engagements (5000)")
    p.add_argument(
        "--max-cached", type=int, default=None, help="Q2C_MAX_CACHED_WORKFLOWS for the worker (unset: its default)"
    )
    p.add_argument("--timeout", type=float, default=1200, help="give up waiting for the worker after (s, 1200)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (SQLite files, logs)")
    a = p.parse_args(argv)
    if a.engagements < 1 or (a.max_cached is not None and a.max_cached < 0):
        p.error("engagements must be >= 1, max cached >= 0")
    return MemoryOptions(engagements=a.engagements, max_cached=a.max_cached, keep=a.keep, timeout_seconds=a.timeout)


def main(argv: list[str]) -> int:
    opts = parse(argv)
    result = asyncio.run(run_memory(opts, log=lambda m: print(m, flush=True)))
    print(render(result), flush=True)
    return 0 if result.passed else 1
