"""`python -m bench vendors [--workers 3] [--limit 5] [--requests 150] [--latency-ms 50] [--keep]`

Several workers, one account limit (issue 15): NetSuite's concurrency limit is account-wide,
so N worker processes must never exceed it together. Each worker takes its share from
configuration (Q2C_ERP_ACCOUNT_CONCURRENCY / Q2C_WORKER_COUNT, floored, at least 1: see
q2c.settings.erp_share). This starts the ERP sandbox (its own process, the limit and a
latency set through `/__sandbox/faults`) and then, per scenario, N processes that each run one
real `NetSuiteClient` as the worker builds it (`load_erp_settings` from the environment, the
daily API budget counted in one shared SQLite ledger) and send `--requests` reads, 16 at a
time, through the batch retry layer (`q2c.delivery.retry.with_transient_retries`). It prints
what the sandbox saw: the most requests in flight at once against the limit, its 429s, the
totals (sent = seen = counted in the ledger's budget), and the throughput against the bound
(limit / latency). Scenarios:

- `1 worker`: the whole share in one process (cap = limit);
- `N workers, shared`: Q2C_WORKER_COUNT=N, each process capped at floor(limit / N);
- `N workers, unshared`: each process at the old per-process default (Q2C_ERP_MAX_IN_FLIGHT=4),
  what happened before: the sandbox sees more than its limit and answers 429.

Exit code 0 when the shared scenario never exceeded the limit and every total is exact.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CUSTOMER_EID = "LEGACY-0042"  # a seeded ERP customer
LOCAL_CONCURRENCY = 16  # reads a process has outstanding (an activity slot pool's worth)


@dataclass
class Scenario:
    name: str
    workers: int
    env: dict[str, str]


@dataclass
class Outcome:
    scenario: Scenario
    caps: list[int]
    sent: int
    failed: int
    elapsed: float
    seen: int
    max_concurrent: int
    rejections: int
    counted: int


# ---- one worker process ----------------------------------------------------------------------


async def _child(requests: int, start_at: float) -> dict:
    """One process: a NetSuiteClient as the worker makes it, `requests` reads at most 16 at a time."""
    from q2c.delivery.retry import with_transient_retries
    from q2c.ledger.api_budget import ApiBudget
    from q2c.ledger.config import make_ledger_engine
    from q2c.settings import load_erp_settings
    from q2c.vendors.netsuite.client import NetSuiteClient

    settings = load_erp_settings(0)
    engine = make_ledger_engine(os.environ["Q2C_LEDGER_DB_URL"])
    budget = ApiBudget(engine, {"erp": 0})
    local = asyncio.Semaphore(LOCAL_CONCURRENCY)
    failed = 0
    async with NetSuiteClient(settings, timeout=15, budget=budget) as client:
        await client._auth_header()  # the token first (not counted by NetSuite, nor here)
        await asyncio.sleep(max(0.0, start_at - time.time()))  # every process starts at once
        started = time.perf_counter()

        async def one() -> None:
            nonlocal failed
            async with local:
                try:
                    await with_transient_retries(lambda: client.get_by_external_id("customer", CUSTOMER_EID))
                except Exception:
                    failed += 1

        await asyncio.gather(*(one() for _ in range(requests)))
        elapsed = time.perf_counter() - started
        cap = client.max_in_flight or 0
    await budget.flush()
    engine.dispose()
    return {"cap": cap, "failed": failed, "elapsed": elapsed}


# ---- the benchmark ---------------------------------------------------------------------------


def _faults(url: str, **config) -> dict:
    r = httpx.put(f"{url}/__sandbox/faults", json=config, timeout=10)
    r.raise_for_status()
    return r.json()


def _counters(url: str) -> dict:
    return httpx.get(f"{url}/__sandbox/faults", timeout=10).json()["counters"]


def _run(scenario: Scenario, base_env: dict[str, str], erp_url: str, opts: argparse.Namespace, db: Path) -> Outcome:
    from q2c.ledger.api_budget import calls_on
    from q2c.ledger.config import make_ledger_engine

    if db.exists():
        db.unlink()
    _faults(erp_url, concurrency_limit=opts.limit, latency_ms=opts.latency_ms, retry_after_seconds=1)
    start_at = time.time() + 3.0 + 0.5 * scenario.workers  # after every process has its token
    env = {**base_env, **scenario.env, "Q2C_LEDGER_DB_URL": f"sqlite:///{db}"}
    # the ledger table exists before the processes race to create it
    engine = make_ledger_engine(env["Q2C_LEDGER_DB_URL"])
    from q2c.ledger.api_budget import ApiBudget

    ApiBudget(engine, {})
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.vendors", "--child", str(opts.requests), str(start_at)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for _ in range(scenario.workers)
    ]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"{scenario.name}: a worker process exited with {p.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    counters = _counters(erp_url)
    counted = calls_on(engine).get("erp", 0)
    engine.dispose()
    return Outcome(
        scenario=scenario,
        caps=[r["cap"] for r in results],
        sent=opts.requests * scenario.workers,
        failed=sum(r["failed"] for r in results),
        elapsed=max(r["elapsed"] for r in results),
        seen=counters["requests"],
        max_concurrent=counters["max_concurrent"],
        rejections=counters["concurrency_rejections"],
        counted=counted,
    )


def render(outcomes: list[Outcome], opts: argparse.Namespace) -> tuple[str, bool]:
    bound = opts.limit / (opts.latency_ms / 1000) if opts.latency_ms else float("inf")
    lines = [
        f"ERP account limit {opts.limit} in flight, {opts.latency_ms} ms per request: bound {bound:.0f} requests/s",
        "",
        f"{'scenario':<24} {'caps':<10} {'max seen':>8} {'429s':>6} {'reads':>6} {'failed':>6} "
        f"{'sent to ERP':>11} {'counted':>8} {'req/s':>7} {'of bound':>8}",
    ]
    ok = True
    for o in outcomes:
        rate = o.sent / o.elapsed if o.elapsed else 0.0
        lines.append(
            f"{o.scenario.name:<24} {'+'.join(map(str, o.caps)):<10} {o.max_concurrent:>4} / {opts.limit:<1} "
            f"{o.rejections:>6} {o.sent:>6} {o.failed:>6} {o.seen:>11} {o.counted:>8} {rate:>7.1f} "
            f"{rate / bound:>8.0%}"
        )
        if "unshared" not in o.scenario.name:
            ok &= o.max_concurrent <= opts.limit and o.rejections == 0 and o.failed == 0
            ok &= o.seen == o.counted == o.sent  # every read sent once, each counted once
    lines += [
        "",
        "max seen: the most requests the ERP sandbox had in flight at once (refused ones included);",
        "counted: calls in the ledger's daily API budget, summed by every process (q2c.ledger.api_budget).",
        "check: the shared scenarios never exceed the limit, no 429, no failure, sent = seen = counted: "
        + ("PASS" if ok else "FAIL"),
    ]
    return "\n".join(lines), ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench vendors", description=__doc__.split("\n\n")[1])
    p.add_argument("--workers", type=int, default=3, help="worker processes (3)")
    p.add_argument("--limit", type=int, default=5, help="the ERP's account-wide concurrency limit (5)")
    p.add_argument("--requests", type=int, default=150, help="reads per worker process (150)")
    p.add_argument("--latency-ms", type=int, default=50, help="ERP latency per request (50 ms)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.child:
        print(json.dumps(asyncio.run(_child(int(opts.child[0]), float(opts.child[1])))), flush=True)
        return 0
    if opts.workers < 1 or opts.limit < 1 or opts.requests < 1:
        p.error("workers, limit and requests must be >= 1")

    from bench.processes import start_sandboxes, stop_sandboxes
    from sandboxes.erp.m2m import ensure_demo_credentials
    from stack.demo_env import DEMO_ERP_ACCOUNT, DEMO_ERP_CLIENT_ID

    state = Path(tempfile.mkdtemp(prefix="q2c-bench-vendors-"))
    sandboxes = {}
    try:
        sandboxes = start_sandboxes(state, vendors=("erp",))
        erp_url = sandboxes["erp"].url
        m2m = ensure_demo_credentials(state / "erp-m2m")
        base_env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "Q2C_ERP_URL": erp_url,
            "Q2C_ERP_ACCOUNT": DEMO_ERP_ACCOUNT,
            "Q2C_ERP_CLIENT_ID": DEMO_ERP_CLIENT_ID,
            "Q2C_ERP_CERTIFICATE_ID": m2m.certificate_id,
            "Q2C_ERP_PRIVATE_KEY_FILE": str(m2m.private_key_path),
            "Q2C_ERP_ACCOUNT_CONCURRENCY": str(opts.limit),
        }
        base_env.pop("Q2C_ERP_MAX_IN_FLIGHT", None)
        n = opts.workers
        scenarios = [
            Scenario("1 worker", 1, {"Q2C_WORKER_COUNT": "1"}),
            Scenario(f"{n} workers, shared", n, {"Q2C_WORKER_COUNT": str(n)}),
            Scenario(f"{n} workers, unshared", n, {"Q2C_WORKER_COUNT": "1", "Q2C_ERP_MAX_IN_FLIGHT": "4"}),
        ]
        outcomes = []
        for scenario in scenarios:
            print(f"  running: {scenario.name} ...", flush=True)
            outcomes.append(_run(scenario, base_env, erp_url, opts, state / "ledger.db"))
        text, ok = render(outcomes, opts)
        print(text, flush=True)
        return 0 if ok else 1
    finally:
        stop_sandboxes(sandboxes)
        if opts.keep:
            print(f"  kept {state}")
        else:
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
