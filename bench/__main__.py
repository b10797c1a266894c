"""`python -m bench [--engagements 200] [--entries 100] [--latency-ms 20] [--concurrency-limit 5] [--keep]`
    `[--profile FILE]` (pyinstrument, installed by hand, samples the timed part of this process)
`python -m bench activation [--deals 100] [--rate 5] [--burst] [--keep]` (see bench/activation.py)
`python -m bench memory [--engagements 5000] [--max-cached N] [--keep]` (see bench/memory.py)
`python -m bench vendors [--workers 3] [--limit 5] [--requests 150] [--latency-ms 50]` (see bench/vendors.py)

Starts its own Temporal dev server, sandboxes and worker on free ports, runs the month-end
spike (see bench/month_end.py), prints the figures and the checks, stops everything.
Exit code 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from bench.month_end import BenchOptions, run_month_end
from bench.report import render
from q2c.temporal import exit_process


def parse(argv: list[str] | None = None) -> BenchOptions:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[1])
    p.add_argument("--engagements", type=int, default=200, help="engagements closing at month-end (200)")
    p.add_argument("--entries", type=int, default=100, help="approved time entries per engagement (100)")
    p.add_argument("--latency-ms", type=int, default=20, help="ERP latency per request in ms (20)")
    p.add_argument("--concurrency-limit", type=int, default=5, help="ERP account-wide in-flight limit (5)")
    p.add_argument("--timeout", type=float, default=1800, help="give up on the timed part after (s, 1800)")
    p.add_argument(
        "--stall", type=float, default=300, help="give up when nothing was posted or invoiced for this long (s, 300)"
    )
    p.add_argument("--keep", action="store_true", help="keep the temp folder (SQLite files, sandbox logs)")
    p.add_argument("--profile", metavar="FILE", help="pyinstrument profile of the timed part, as HTML (and .txt)")
    a = p.parse_args(argv)
    if a.engagements < 1 or a.entries < 1 or a.concurrency_limit < 1 or a.latency_ms < 0:
        p.error("engagements, entries and concurrency limit must be >= 1, latency >= 0")
    return BenchOptions(
        engagements=a.engagements,
        entries=a.entries,
        latency_ms=a.latency_ms,
        concurrency_limit=a.concurrency_limit,
        keep=a.keep,
        timeout_seconds=a.timeout,
        stall_seconds=a.stall,
        profile=a.profile,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Under the ERP's concurrency limit activity attempts fail with 429 by design and are
    # retried; the SDK logs each one with a traceback. The retries are counted from the
    # histories instead (see bench/actions.py).
    logging.getLogger("temporalio").setLevel(logging.ERROR)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["activation"]:  # the activation benchmark; no subcommand: month-end, as before
        from bench.activation import main as activation

        return activation(argv[1:])
    if argv[:1] == ["vendors"]:  # several worker processes against the ERP's account-wide limit
        from bench.vendors import main as vendors

        return vendors(argv[1:])
    if argv[:1] == ["memory"]:  # the worker's memory with many open engagements
        from bench.memory import main as memory

        return memory(argv[1:])
    opts = parse(argv)

    def log(message: str) -> None:
        print(message, flush=True)

    result = asyncio.run(run_month_end(opts, log=log))
    print(render(result), flush=True)
    return 0 if result.passed else 1


if __name__ == "__main__":
    try:
        code = main()
    except KeyboardInterrupt:
        code = 130
    exit_process(code)
