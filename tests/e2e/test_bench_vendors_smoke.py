"""`python -m bench vendors` at a tiny size: three worker processes against the ERP sandbox's
account limit; the shared scenario never exceeds it and every total agrees (sent = seen by the
sandbox = counted in the ledger's budget). Throughput is printed, never asserted."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_vendors_benchmark_keeps_three_workers_under_the_erp_limit():
    run = subprocess.run(
        [sys.executable, "-m", "bench", "vendors", "--workers", "3", "--limit", "5", "--requests", "20"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    assert out.rstrip().endswith("PASS"), out
    shared = re.search(r"^3 workers, shared\s+(\S+)\s+(\d+) / 5\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", out, re.M)
    assert shared, out
    caps, seen, rejected, reads, failed, sent, counted = shared.groups()
    assert caps == "1+1+1" and int(seen) <= 5 and rejected == "0" and failed == "0"
    assert int(reads) == int(sent) == int(counted) == 60
