"""The activation benchmark: deals closed in the CRM sandbox become Active engagements through
the real Outbound Message path (CRM sandbox -> webhook service -> workflow -> worker).

`python -m bench activation [--deals 100] [--rate 5] [--burst] [--erp-faults 0.1] [--keep]`

Setup (not timed): the stack of bench/stack.py (dev server, sandboxes as subprocesses, the
worker in-process), plus the webhook service (q2c.webhook.app, in a thread of this process,
its own event loop) and the CRM sandbox's Outbound Message delivery pointed at it. For each
phase, N time-and-materials deals are created in Negotiation/Review (account, opportunity,
rate lines: bench/deals.py's shape).

Each phase closes its N deals (`StageName = Closed Won`, one PATCH each): *steady* at `--rate`
deals per second, *burst* (`--burst`) all at once. The CRM queues one notification per deal,
batches pending ones (up to 100 a message) and delivers them with its 10 s timeout and
redelivery. A deal's latency runs from the moment its PATCH returned (the notification is
queued) to the engagement's `active_since` (its workflow clock when it turned Active).

Printed per phase: p50/p95/p99/max closed-won -> Active, throughput (deals Active per second
from the first close to the last Active), the webhook's ack time per message (its own log
line), vendor calls per activation (q2c's audit rows in the ledger, by system; the sandboxes'
own request counters beside them), Temporal actions per activation (from the histories,
bench/actions.py's definition), deliveries and redeliveries seen by the CRM sandbox, and the
ceiling: a no-op workflow with the same number of activities, started the same way on the
same machine (bench/ceiling.py), so the ratio says what q2c costs beyond Temporal itself, and
the CPU each process used from the first close to the last Active, with the machine's CPU
ceiling (their sum over the cores): a phase whose wall is near it is bound by the cores.
`--erp-faults S` answers a share S of ERP requests 5xx and another S 429 while the deals
activate (issue 15 measured its burst at 0.1).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import date

import httpx

from bench import cpu
from bench.actions import DEFINITION, ActionCount, count_actions
from bench.ceiling import run_ceiling
from bench.deals import open_tm_deal
from bench.ledger_stats import calls_by_operation, last_call_id
from bench.stack import BenchStack, bench_stack
from q2c.engagement.client import workflow_id_for
from q2c.engagement.messages import EngagementStatus
from q2c.settings import OUTBOUND_PATH
from q2c.vendors.salesforce.client import SalesforceClient

OUTBOUND_SECRET = "bench-outbound-" + "x" * 16
QUERY_CONCURRENCY = 32
SYSTEMS = ("crm", "erp", "psa")


@dataclass(frozen=True)
class ActivationOptions:
    deals: int = 100
    rate: float = 5.0  # deals closed per second in the steady phase; 0: no steady phase
    burst: bool = False  # a burst phase too: N deals closed at once
    keep: bool = False
    timeout_seconds: float = 900.0  # per phase: give up waiting for Active after this long
    erp_faults: float = 0.0  # share of ERP requests answered 5xx, and the same share 429 (issue 15: 0.1)


@dataclass
class Phase:
    name: str  # steady | burst
    deals: int
    rate: float | None  # None: burst
    latencies: list[float] = field(default_factory=list)  # closed-won -> Active, seconds, sorted
    wall_seconds: float = 0.0  # first close -> last Active
    close_seconds: float = 0.0  # first close -> last close returned
    active: int = 0
    stuck: dict[str, str] = field(default_factory=dict)  # opportunity -> stage (not Active)
    q2c_calls: dict[str, int] = field(default_factory=dict)  # system -> calls (ledger audit)
    q2c_retryable: dict[str, int] = field(default_factory=dict)  # system -> calls answered retryable
    sandbox_requests: dict[str, int] = field(default_factory=dict)  # system -> requests the sandbox served
    crm_calls_by_operation: list = field(default_factory=list)
    actions: ActionCount | None = None
    messages: int = 0
    notifications: int = 0
    redeliveries: int = 0  # delivery attempts beyond each message's first
    undelivered: int = 0  # messages not acknowledged when the phase ended
    ack_ms: list[float] = field(default_factory=list)  # the webhook's time per accepted message
    ceiling: list[float] = field(default_factory=list)  # no-op workflow latencies, sorted
    ceiling_activities: int = 0
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # role -> CPU s, first close -> all Active

    @property
    def cpu_ceiling(self) -> float:
        """The shortest wall this machine allows for the phase's work: its CPU seconds over the cores."""
        return sum(self.cpu_seconds.values()) / max(1, os.cpu_count() or 1)

    def per_activation(self, value: float) -> float:
        return value / self.deals if self.deals else float("nan")


@dataclass
class ActivationResult:
    options: ActivationOptions
    phases: list[Phase]
    setup_seconds: float

    @property
    def passed(self) -> bool:
        return all(p.active == p.deals for p in self.phases)


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of sorted values."""
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, int(round(q * len(values) + 0.5)) - 1))]


# --- the webhook service and its log -----------------------------------------------------


class _AckLog(logging.Handler):
    """The webhook's `outbound_accepted` / `outbound_duplicate` log lines, as they are written."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.accepted: list[dict] = []
        self.duplicates = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = json.loads(record.getMessage())
        except (ValueError, TypeError):
            return
        if line.get("event") == "outbound_accepted":
            self.accepted.append(line)
        elif line.get("event") == "outbound_duplicate":
            self.duplicates += 1


def _start_webhook(stack: BenchStack):
    from q2c.webhook.app import create_app
    from sandboxes.common.server import ServerThread

    settings = dataclasses.replace(
        stack.settings,
        outbound_path_secrets=(OUTBOUND_SECRET,),
        # Salesforce posts one message at a time per endpoint; the per-IP limit is for strangers
        webhook_rate_limit="1000/second",
        # the same app serves the console, which refuses to start without users
        api_tokens=stack.settings.api_tokens or f"bench:viewer:{uuid.uuid4().hex}",
    )
    server = ServerThread(create_app(settings)).start()
    return server, f"{server.url}{OUTBOUND_PATH}/{OUTBOUND_SECRET}"


# --- deals -----------------------------------------------------------------------------


async def _open_deal(crm: SalesforceClient, label: str, start: date, end: date) -> str:
    deal = await open_tm_deal(
        crm, start=start, end=end, label=label, kind="Activation benchmark", account="Activation Client"
    )
    return deal.opportunity_id


async def _open_deals(crm: SalesforceClient, count: int, prefix: str) -> list[str]:
    today = date.today()
    start, end = today.replace(day=1), date(today.year + 1, today.month, 1)
    gate = asyncio.Semaphore(8)

    async def one(i: int) -> str:
        async with gate:
            return await _open_deal(crm, f"{prefix}#{i + 1:04d}", start, end)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def _close(crm: SalesforceClient, opps: list[str], rate: float | None) -> dict[str, float]:
    """Close won each deal (at `rate` per second, or all at once); epoch seconds each PATCH returned."""
    closed: dict[str, float] = {}
    t0 = time.perf_counter()

    async def one(opp: str) -> None:
        await crm.set_opportunity_stage(opp, "Closed Won")
        closed[opp] = time.time()

    tasks = []
    for i, opp in enumerate(opps):
        if rate:
            await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(one(opp)))
    await asyncio.gather(*tasks)
    return closed


# --- waiting and measuring ---------------------------------------------------------------


async def _statuses(stack: BenchStack, opps: list[str]) -> dict[str, EngagementStatus | None]:
    from temporalio.service import RPCError

    gate = asyncio.Semaphore(QUERY_CONCURRENCY)

    async def one(opp: str) -> EngagementStatus | None:
        async with gate:
            try:
                return await stack.client.get_workflow_handle(workflow_id_for(opp)).query(
                    "status", result_type=EngagementStatus
                )
            except RPCError:
                return None  # not started (yet)

    return dict(zip(opps, await asyncio.gather(*(one(o) for o in opps))))


async def _wait_active(stack: BenchStack, opps: list[str], timeout: float) -> dict[str, EngagementStatus | None]:
    """Until every engagement of the phase is Active (visibility counts, then one query each)."""
    ids = ", ".join(f"'{workflow_id_for(o)}'" for o in opps)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = await stack.client.count_workflows(f"WorkflowId IN ({ids}) AND EngagementStage = 'Active'")
        if count.count >= len(opps):
            break
        await asyncio.sleep(0.5)
    return await _statuses(stack, opps)


async def _deliveries(http: httpx.AsyncClient, crm_url: str) -> list[dict]:
    r = await http.get(f"{crm_url}/__sandbox/outbound")
    r.raise_for_status()
    return r.json()["deliveries"]


async def _counters(http: httpx.AsyncClient, url: str) -> dict[str, int]:
    r = await http.get(f"{url}/__sandbox/faults")
    r.raise_for_status()
    return r.json()["counters"]


async def run_phase(
    stack: BenchStack, crm: SalesforceClient, acks: _AckLog, opts: ActivationOptions, name: str, log
) -> Phase:
    rate = opts.rate if name == "steady" else None
    phase = Phase(name=name, deals=opts.deals, rate=rate)
    opps = await _open_deals(crm, opts.deals, name[0].upper())
    async with httpx.AsyncClient(timeout=30) as http:
        await asyncio.sleep(1.0)  # let the CRM sandbox settle (nothing is queued for open deals)
        before_messages = max((d["id"] for d in await _deliveries(http, stack.crm_url)), default=0)
        for vendor in SYSTEMS:  # resets the sandboxes' counters (and sets the ERP's injected faults)
            faults = (
                {"error_rate": opts.erp_faults, "rate_429": opts.erp_faults}
                if vendor == "erp" and opts.erp_faults
                else {}
            )
            (await http.put(f"{stack.sandboxes[vendor].url}/__sandbox/faults", json=faults)).raise_for_status()
        first_call = last_call_id(stack.ledger)
        acks.accepted.clear()
        how = f"at {rate:g}/s" if rate else "all at once"
        log(f"  {name}: closing {opts.deals} deals {how}")
        cpu_before = cpu.snapshot()
        t_first = time.time()
        closed = await _close(crm, opps, rate)
        phase.close_seconds = max(closed.values()) - t_first
        statuses = await _wait_active(stack, opps, opts.timeout_seconds)
        phase.cpu_seconds = cpu.by_role(
            stack.sandboxes, cpu.used_between(cpu_before, cpu.snapshot()), "bench + worker + webhook (this process)"
        )
        counters = {v: await _counters(http, stack.sandboxes[v].url) for v in SYSTEMS}
        if opts.erp_faults:  # the no-op ceiling and the next phase's setup run without them
            (await http.put(f"{stack.erp_url}/__sandbox/faults", json={})).raise_for_status()
        deliveries = [d for d in await _deliveries(http, stack.crm_url) if d["id"] > before_messages]
    active = {o: s for o, s in statuses.items() if s is not None and s.active_since is not None}
    phase.active = len(active)
    phase.stuck = {o: (s.stage.value if s else "not started") for o, s in statuses.items() if o not in active}
    phase.latencies = sorted(s.active_since.timestamp() - closed[o] for o, s in active.items())
    if active:
        phase.wall_seconds = max(s.active_since.timestamp() for s in active.values()) - t_first
    for system in SYSTEMS:
        ops = calls_by_operation(stack.ledger, system, first_call)
        phase.q2c_calls[system] = sum(sum(o.values()) for _, o in ops)
        phase.q2c_retryable[system] = sum(o.get("retryable", 0) for _, o in ops)
        if system == "crm":
            phase.crm_calls_by_operation = ops
        phase.sandbox_requests[system] = counters[system].get("requests", 0)
    phase.actions = await count_actions(stack.client, [workflow_id_for(o) for o in opps])
    phase.messages = len(deliveries)
    phase.notifications = sum(len(d["notification_ids"]) for d in deliveries)
    phase.redeliveries = sum(max(0, d["attempts"] - 1) for d in deliveries) + sum(
        1 for d in deliveries if d.get("redelivery_of")
    )
    phase.undelivered = sum(1 for d in deliveries if d["status"] != "delivered")
    phase.ack_ms = sorted(float(a.get("ms", 0)) for a in acks.accepted)
    log(
        f"  {name}: {phase.active}/{phase.deals} Active, p50 {pct(phase.latencies, 0.5):.2f} s; "
        "measuring the ceiling (no-op workflows, same activities)"
    )
    phase.ceiling_activities = max(1, round(phase.actions.per_engagement("activities_scheduled")))
    phase.ceiling = await run_ceiling(stack.client, count=opts.deals, activities=phase.ceiling_activities, rate=rate)
    return phase


async def run_activation(opts: ActivationOptions, log=print) -> ActivationResult:
    acks = _AckLog()
    webhook_log = logging.getLogger("q2c.webhook")
    webhook_log.addHandler(acks)
    webhook_log.setLevel(logging.INFO)
    webhook_log.propagate = False
    try:
        async with bench_stack(keep=opts.keep, log=log) as stack:
            t0 = time.perf_counter()
            server, outbound_url = _start_webhook(stack)
            try:
                async with httpx.AsyncClient(timeout=30) as http:
                    r = await http.put(f"{stack.crm_url}/__sandbox/outbound/url", json={"url": outbound_url})
                    r.raise_for_status()
                crm_settings = dataclasses.replace(stack.settings.crm, max_in_flight=32)
                async with SalesforceClient(crm_settings, timeout=60) as crm:
                    setup = time.perf_counter() - t0
                    phases = []
                    if opts.rate > 0:
                        phases.append(await run_phase(stack, crm, acks, opts, "steady", log))
                    if opts.burst:
                        phases.append(await run_phase(stack, crm, acks, opts, "burst", log))
            finally:
                server.stop()
            return ActivationResult(options=opts, phases=phases, setup_seconds=setup)
    finally:
        webhook_log.removeHandler(acks)


# --- the printed figures -------------------------------------------------------------------


def render(result: ActivationResult) -> str:
    o = result.options
    lines = [
        "",
        f"Activation benchmark: {o.deals} deals per phase (time and materials, one account each), "
        "closed won in the CRM sandbox -> Outbound Message -> webhook -> EngagementWorkflow -> Active",
        f"  injected: {o.erp_faults:.0%} of ERP requests answered 5xx and {o.erp_faults:.0%} answered 429"
        if o.erp_faults
        else "  injected: no faults",
        "",
    ]
    for p in result.phases:
        a = p.actions or ActionCount()
        how = f"steady, {p.rate:g} deals/s" if p.rate else "burst, all at once"
        ceiling_p50 = pct(p.ceiling, 0.5)
        lines += [
            f"  phase: {how} ({p.close_seconds:.1f} s to close them all)",
            f"  {'engagements Active':<50}{p.active:>10,} / {p.deals:,}"
            + (f"   NOT ACTIVE: {dict(list(p.stuck.items())[:5])}" if p.stuck else ""),
            f"  {'closed-won -> Active p50 / p95 / p99 / max (s)':<50}{pct(p.latencies, 0.5):>10.2f} / "
            f"{pct(p.latencies, 0.95):.2f} / {pct(p.latencies, 0.99):.2f} / {pct(p.latencies, 1.0):.2f}",
            f"  {'first close -> last Active (s)':<50}{p.wall_seconds:>10.2f}",
            f"  {'throughput (Active per second)':<50}{(p.active / p.wall_seconds if p.wall_seconds else 0):>10.2f}",
            f"  {'ceiling: no-op workflow, same activities':<50}{p.ceiling_activities:>10} activities each, "
            f"p50 / p95 / p99 {ceiling_p50:.2f} / {pct(p.ceiling, 0.95):.2f} / {pct(p.ceiling, 0.99):.2f} s",
            f"  {'activation / ceiling p50, p99':<50}{pct(p.latencies, 0.5) / ceiling_p50:>10.1f} x, "
            f"{pct(p.latencies, 0.99) / pct(p.ceiling, 0.99):.1f} x",
            "  CPU ms per activation (first close -> all Active): "
            + ", ".join(
                f"{k} {1000 * v / max(1, p.deals):.0f}" for k, v in sorted(p.cpu_seconds.items(), key=lambda kv: -kv[1])
            ),
            f"  {'CPU ceiling = CPU seconds / cores (s)':<50}{p.cpu_ceiling:>10.2f}   "
            f"(first close -> last Active / CPU ceiling: "
            f"{(p.wall_seconds / p.cpu_ceiling if p.cpu_ceiling else float('nan')):.2f}; "
            "near 1: the machine's cores bound the phase)",
            f"  {'Outbound Messages / notifications':<50}{p.messages:>10,} / {p.notifications:,}"
            f"   (up to 100 notifications a message)",
            f"  {'redeliveries seen by the CRM sandbox':<50}{p.redeliveries:>10,}"
            + (f"   ({p.undelivered} messages still unacknowledged)" if p.undelivered else ""),
            f"  {'webhook ack per message p50 / max (ms)':<50}{pct(p.ack_ms, 0.5):>10.0f} / "
            f"{max(p.ack_ms, default=float('nan')):.0f}   (CRM delivery timeout 10,000)",
            "  vendor calls per activation (q2c audit; retryable answers in brackets; sandbox-served beside): "
            + ", ".join(
                f"{s.upper()} {p.per_activation(p.q2c_calls.get(s, 0)):.2f} [{p.q2c_retryable.get(s, 0)}] "
                f"({p.per_activation(p.sandbox_requests.get(s, 0) - (p.deals if s == 'crm' else 0)):.2f})"
                for s in SYSTEMS
            ),
            "      CRM calls by operation: "
            + "; ".join(f"{op} {sum(c.values())}" for op, c in p.crm_calls_by_operation[:8]),
            f"  {'Temporal actions per activation':<50}{a.per_engagement():>10.2f}",
            f"      actions = {DEFINITION}",
            "      per activation: "
            + ", ".join(
                f"{k.replace('_', ' ')} {a.per_engagement(k):.2f}"
                for k in ("activities_scheduled", "activity_retries", "timers", "signals", "search_attribute_upserts")
            ),
            "",
        ]
    lines += [
        f"  machine: {os.cpu_count()} cores; setup (stack up, webhook), not timed: {result.setup_seconds:.1f} s",
        "  targets (issue 15): quiet deal <= 1 s; 5 deals/s p50 <= 1.5 s, p99 <= 5 s; 300-deal burst all Active "
        "within 60 s with 0 redeliveries; <= 6 CRM calls per activation",
        "",
        f"RESULT: {'PASS' if result.passed else 'FAIL'} (every deal Active)",
        "",
    ]
    return "\n".join(lines)


def parse(argv: list[str]) -> ActivationOptions:
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench activation", description=__doc__.split("\n\n")[0])
    p.add_argument("--deals", type=int, default=100, help="deals closed per phase (100)")
    p.add_argument("--rate", type=float, default=5.0, help="deals closed per second, steady phase (5; 0: none)")
    p.add_argument("--burst", action="store_true", help="also a burst phase: the deals closed all at once")
    p.add_argument("--timeout", type=float, default=900, help="give up waiting for Active after (s per phase, 900)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (SQLite files, sandbox logs)")
    p.add_argument(
        "--erp-faults",
        type=float,
        default=0.0,
        help="share of ERP requests answered 5xx, and the same share 429, while deals activate (issue 15: 0.1)",
    )
    a = p.parse_args(argv)
    if a.deals < 1 or a.rate < 0 or (a.rate == 0 and not a.burst):
        p.error("deals must be >= 1, rate >= 0, and at least one phase (a rate, or --burst)")
    if not 0 <= a.erp_faults <= 0.5:
        p.error("--erp-faults is a share between 0 and 0.5 (it is applied twice: 5xx and 429)")
    return ActivationOptions(
        deals=a.deals,
        rate=a.rate,
        burst=a.burst,
        keep=a.keep,
        timeout_seconds=a.timeout,
        erp_faults=a.erp_faults,
    )


def main(argv: list[str]) -> int:
    opts = parse(argv)
    result = asyncio.run(run_activation(opts, log=lambda m: print(m, flush=True)))
    print(render(result), flush=True)
    return 0 if result.passed else 1
