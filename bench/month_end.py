"""The month-end spike: N engagements x M approved entries posted and invoiced at once.

Setup (not timed): N time-and-materials deals for the current calendar month are created in
the CRM sandbox and closed won; N engagements are started (`q2c.engagement.client.start_engagement`)
and provisioned until Active; M approved entries per workspace are loaded into the PSA,
dated from the first of the month to today.

Timed part: the ERP gets its latency and account-wide concurrency limit (`PUT
/__sandbox/faults`, which also resets its counters), then every engagement receives the
`request_close` update at once. Closing posts all approved time dated up to today (one
batched posting activity) and issues the final invoice `inv-<opp>-final01` for the whole
month, then refreshes its payment status. An engagement is done when its `status` query
shows the final invoice and the Collecting wait ("Collecting: ..."), i.e. its last ERP call
of the period has returned (the checks then say whether all M entries were posted). The wall time runs from
the first request_close to
the last activity completion among all engagements (read from the histories afterwards, so
it does not depend on the polling interval).

Why the current month and `request_close` (not 2027-01 and not the period timer): a close
posts time dated up to the engagement's today (`max(today, start)`), so a future month would
post only its first day; and the period timer fires at a fixed wall-clock time per
engagement, which cannot start N closes at one instant after loading. The month containing
today is open in the ERP sandbox (periods from Nov 2026 on are open).
"""

from __future__ import annotations

import asyncio
import calendar
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
from temporalio.client import Client

from bench import cpu
from bench.actions import ActionCount, count_actions
from bench.checks import Check, run_checks
from bench.deals import create_deals
from bench.ledger_stats import Progress, calls_by_operation, last_call_id, progress
from bench.stack import BenchStack, bench_stack
from bench.time_load import LoadedEntry, load_all
from q2c.domain.stage import EngagementStage
from q2c.engagement.client import start_engagement, workflow_id_for
from q2c.engagement.messages import CloseInput, DeliveryConfig, EngagementStatus
from q2c.vendors.salesforce.client import SalesforceClient

QUERY_CONCURRENCY = 32
NO_PAYMENT_POLLING = DeliveryConfig(payment_poll_seconds=90 * 86_400)


@dataclass(frozen=True)
class BenchOptions:
    engagements: int = 200
    entries: int = 100
    latency_ms: int = 20
    concurrency_limit: int = 5
    keep: bool = False
    timeout_seconds: float = 1800.0
    stall_seconds: float = 300.0  # give up when nothing was posted or invoiced for this long
    profile: str | None = None  # write a pyinstrument profile of this process's timed part here (HTML)


@dataclass
class BenchResult:
    options: BenchOptions
    month: tuple[date, date]
    wall_seconds: float
    completed: int
    erp_counters: dict[str, int]
    psa_requests: int
    crm_requests: int
    actions: ActionCount
    done_after: list[float]  # seconds from the trigger to each engagement's last activity completion
    cpu_seconds: dict[str, float]
    setup_seconds: float
    polled_wall: float = 0.0
    load_average: float = float("nan")  # 1-minute load average at the end of the timed part
    outcome: str = "completed"  # | "timeout" | "stalled"
    posted: int = 0  # time entries posted (ledger)
    invoices: int = 0  # invoices issued (ledger)
    erp_calls: list = field(default_factory=list)  # [(operation, {outcome: count})] from the audit ledger
    checks: list[Check] = field(default_factory=list)

    @property
    def total_entries(self) -> int:
        return self.options.engagements * self.options.entries

    @property
    def entries_per_second(self) -> float:
        """Entries posted and invoiced per second (only posted ones count when a run gives up)."""
        done = self.total_entries if self.outcome == "completed" else self.posted
        return done / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def erp_requests(self) -> int:
        return self.erp_counters.get("requests", 0)

    @property
    def erp_429s(self) -> int:
        return self.erp_counters.get("concurrency_rejections", 0) + self.erp_counters.get("injected_429s", 0)

    def bound_seconds(self, requests: int | None = None) -> float:
        n = self.erp_requests if requests is None else requests
        return n * self.options.latency_ms / 1000 / self.options.concurrency_limit

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)


def current_month(today: date | None = None) -> tuple[date, date, date]:
    """(first day, last day, today) of the month containing today (UTC)."""
    today = today or datetime.now(UTC).date()
    last = today.replace(day=calendar.monthrange(today.year, today.month)[1])
    return today.replace(day=1), last, today


async def _status(client: Client, opp: str) -> EngagementStatus:
    return await client.get_workflow_handle(workflow_id_for(opp)).query("status", result_type=EngagementStatus)


async def _poll(
    client: Client, opps: list[str], done, *, timeout: float, interval: float | None = None, on_round=None
) -> dict[str, EngagementStatus]:
    """Query until done(status) holds for every engagement (or give up after timeout).

    Queries are answered by the worker (the same process and cores as the activities), so
    the pause between rounds grows with the number of engagements still pending."""
    gate = asyncio.Semaphore(QUERY_CONCURRENCY)
    pending = set(opps)
    finished: dict[str, EngagementStatus] = {}
    deadline = time.monotonic() + timeout

    async def one(opp: str) -> tuple[str, EngagementStatus]:
        async with gate:
            return opp, await _status(client, opp)

    while pending:
        for opp, st in await asyncio.gather(*(one(o) for o in sorted(pending))):
            if st.stage is EngagementStage.AWAITING_STEWARD:
                raise RuntimeError(f"engagement {opp} waits for a steward: {st.details}")
            if done(st):
                finished[opp] = st
                pending.discard(opp)
        if pending:
            if time.monotonic() > deadline or (on_round is not None and on_round(len(finished))):
                break
            await asyncio.sleep(interval or min(2.0, max(0.2, 0.01 * len(pending))))
    return finished


async def _setup(
    stack: BenchStack, opts: BenchOptions, first: date, last: date, today: date, log
) -> tuple[list[str], dict[str, list[LoadedEntry]]]:
    started = time.perf_counter()
    async with SalesforceClient(stack.settings.crm, timeout=60) as crm:
        deals = await create_deals(crm, opts.engagements, start=first, end=last)
    opps = [d.opportunity_id for d in deals]
    log(
        f"  setup: {len(opps)} closed-won deals in the CRM ({first} to {last}) in {time.perf_counter() - started:.1f} s"
    )

    gate = asyncio.Semaphore(16)

    async def start(opp: str) -> None:
        async with gate:
            await start_engagement(
                stack.client, opp, task_queue=stack.settings.task_queue, source="bench", delivery=NO_PAYMENT_POLLING
            )

    await asyncio.gather(*(start(o) for o in opps))
    active = await _poll(
        stack.client,
        opps,
        lambda st: st.stage is EngagementStage.ACTIVE,
        timeout=max(600.0, opts.engagements * 3.0),
        interval=1.0,
    )
    if len(active) != len(opps):
        raise RuntimeError(f"only {len(active)} of {len(opps)} engagements became Active")
    log(
        f"  setup: {len(opps)} engagements Active (ERP customer, project, billing schedule; PSA workspace) "
        f"at {time.perf_counter() - started:.1f} s"
    )

    workspaces = {
        opp: (
            st.psa_workspace.workspace_id,
            [t.psa_story_id for t in st.psa_workspace.tasks if t.billable and t.psa_story_id],
        )
        for opp, st in active.items()
    }
    loaded = await load_all(stack.psa_url, workspaces, opts.entries, first=first, last=today)
    log(
        f"  setup: {opts.entries} approved entries loaded into each PSA workspace ({first} to {today}) "
        f"at {time.perf_counter() - started:.1f} s"
    )
    return opps, loaded


async def _put_faults(http: httpx.AsyncClient, url: str, config: dict) -> dict:
    r = await http.put(f"{url}/__sandbox/faults", json=config)
    r.raise_for_status()
    return r.json()


async def _counters(http: httpx.AsyncClient, url: str) -> dict[str, int]:
    r = await http.get(f"{url}/__sandbox/faults")
    r.raise_for_status()
    return r.json()["counters"]


def _done(st: EngagementStatus) -> bool:
    """The close has run its course: time posted, final invoice issued, payment status read, and
    the workflow waits in Collecting. (Whether the counts are right is for the checks to say.)"""
    return st.stage is EngagementStage.COLLECTING and len(st.invoices) >= 1 and st.details.startswith("Collecting:")


@dataclass
class _Timed:
    started_at: float  # epoch seconds, just before the first request_close
    polled_wall: float  # until the poller saw every engagement done
    completed: int
    counters: dict[str, dict[str, int]]
    cpu_seconds: dict[str, float]
    load_average: float
    outcome: str  # "completed" | "timeout" | "stalled"
    first_call_id: int  # ledger audit rows of the timed part have larger ids


async def _until_ledger_done(opts: BenchOptions, engagements: int, watch: _Watch, timeout: float) -> None:
    """Wait until the ledger holds every entry posted and an invoice per engagement (or the
    watch says it stalled, or `timeout` passes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stalled = await asyncio.to_thread(watch.round, 0)  # reads the ledger's counts into watch.last
        if stalled or (watch.last.posted >= engagements * opts.entries and watch.last.invoices >= engagements):
            return
        await asyncio.sleep(1.0)


async def _timed(stack: BenchStack, opts: BenchOptions, opps: list[str], log) -> _Timed:
    async with httpx.AsyncClient(timeout=30) as http:
        for vendor in ("crm", "psa"):
            await _put_faults(http, stack.sandboxes[vendor].url, {})  # resets their counters
        await _put_faults(
            http, stack.erp_url, {"latency_ms": opts.latency_ms, "concurrency_limit": opts.concurrency_limit}
        )
        log(
            f"  timed: ERP latency {opts.latency_ms} ms, concurrency limit {opts.concurrency_limit}; "
            f"request_close to {len(opps)} engagements"
        )
        first_call_id = last_call_id(stack.ledger)
        cpu_before = cpu.snapshot()
        started_at = time.time()
        t0 = time.perf_counter()
        watch = _Watch(stack, opts, len(opps), t0, log)
        close = CloseInput(requested_by="month-end benchmark", reason="month-end close")
        gate = asyncio.Semaphore(QUERY_CONCURRENCY)

        async def trigger(opp: str) -> None:
            async with gate:
                await stack.client.get_workflow_handle(workflow_id_for(opp)).execute_update("request_close", close)

        await asyncio.gather(*(trigger(o) for o in opps))
        # the ledger says when everything is posted and invoiced (one COUNT a second); only then
        # is every engagement queried: status queries are answered by this process's worker and
        # the dev server, and polling 200 of them from the start cost the worker more CPU than
        # posting did (issue 15's "18 ms of worker CPU per entry" included them)
        await _until_ledger_done(opts, len(opps), watch, t0 + opts.timeout_seconds - time.perf_counter())
        finished = await _poll(
            stack.client, opps, _done, timeout=t0 + opts.timeout_seconds - time.perf_counter(), on_round=watch.round
        )
        wall = time.perf_counter() - t0
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        cpu_used = cpu.by_role(stack.sandboxes, cpu.used_between(cpu_before, cpu.snapshot()))
        counters = {v: await _counters(http, stack.sandboxes[v].url) for v in ("erp", "psa", "crm")}
    outcome = "completed" if len(finished) == len(opps) else ("stalled" if watch.stalled else "timeout")
    if outcome != "completed":
        log(f"  timed: {outcome.upper()} after {wall:.0f} s: {len(finished)} of {len(opps)} engagements done")
    return _Timed(
        started_at=started_at,
        polled_wall=wall,
        completed=len(finished),
        counters=counters,
        cpu_seconds=cpu_used,
        load_average=load,
        outcome=outcome,
        first_call_id=first_call_id,
    )


class _Watch:
    """Progress from the ledger once a minute, and the stall detector."""

    def __init__(self, stack: BenchStack, opts: BenchOptions, engagements: int, t0: float, log) -> None:
        self.stack, self.opts, self.engagements, self.t0, self.log = stack, opts, engagements, t0, log
        self.last = Progress(0, 0)
        self.last_change = self.last_log = t0
        self.stalled = False

    def round(self, done: int) -> bool:
        now = time.perf_counter()
        current = progress(self.stack.ledger)
        if current != self.last:
            self.last, self.last_change = current, now
        if now - self.last_log >= 60:
            self.last_log = now
            self.log(
                f"  timed: {now - self.t0:5.0f} s: {current.posted:,}/{self.engagements * self.opts.entries:,} "
                f"entries posted, {current.invoices}/{self.engagements} invoices, {done} engagements done"
            )
        if now - self.last_change > self.opts.stall_seconds:
            self.stalled = True
        return self.stalled


async def _profiled(work, path: str | None, log):
    """Await `work`, sampled by pyinstrument when `path` is given (the worker's activities and
    the bench share this process's event loop; workflow tasks run on the SDK's threads and are
    not sampled). pyinstrument is a developer tool, not a dependency: `pip install pyinstrument`."""
    if not path:
        return await work
    try:
        from pyinstrument import Profiler
    except ImportError as err:
        work.close()
        raise SystemExit("--profile needs pyinstrument: .venv/bin/pip install pyinstrument") from err
    profiler = Profiler(async_mode="disabled", interval=0.002)
    profiler.start()
    try:
        return await work
    finally:
        profiler.stop()
        Path(path).write_text(profiler.output_html())
        Path(path).with_suffix(".txt").write_text(profiler.output_text(unicode=False, show_all=False))
        log(f"  profile of the timed part: {path} (and {Path(path).with_suffix('.txt')})")


async def run_month_end(opts: BenchOptions, log=print) -> BenchResult:
    """Run the whole benchmark (stack up, setup, timed part, checks, stack down)."""
    first, last, today = current_month()
    async with bench_stack(keep=opts.keep, log=log) as stack:
        t_setup = time.perf_counter()
        opps, loaded = await _setup(stack, opts, first, last, today, log)
        setup_seconds = time.perf_counter() - t_setup
        timed = await _profiled(_timed(stack, opts, opps, log), opts.profile, log)
        actions = await count_actions(stack.client, [workflow_id_for(o) for o in opps])
        # completion of each engagement = its last activity completion in its history
        done_after = sorted(t - timed.started_at for t in actions.last_activity_done.values())
        complete = timed.completed == len(opps) and len(done_after) == len(opps)
        wall = max(done_after) if complete else timed.polled_wall
        statuses = dict(zip(opps, await asyncio.gather(*(_status(stack.client, o) for o in opps))))
        final = progress(stack.ledger)
        erp_calls = calls_by_operation(stack.ledger, "erp", timed.first_call_id)
        checks = await asyncio.to_thread(
            run_checks,
            erp_db_url=stack.sandboxes["erp"].db_url,
            statuses=statuses,
            loaded=loaded,
            entries_per_engagement=opts.entries,
            ledger=stack.ledger,
        )
        return BenchResult(
            options=opts,
            month=(first, last),
            wall_seconds=wall,
            completed=timed.completed,
            erp_counters=timed.counters["erp"],
            psa_requests=timed.counters["psa"]["requests"],
            crm_requests=timed.counters["crm"]["requests"],
            actions=actions,
            done_after=done_after,
            cpu_seconds=timed.cpu_seconds,
            setup_seconds=setup_seconds,
            polled_wall=timed.polled_wall,
            load_average=timed.load_average,
            outcome=timed.outcome,
            posted=final.posted,
            invoices=final.invoices,
            erp_calls=erp_calls,
            checks=checks,
        )
