"""`python -m bench activation` at a tiny size: the whole path runs (CRM sandbox -> Outbound
Message -> webhook -> workflow -> Active) and the printed figures agree with each other.
Timing is printed by the benchmark, never asserted here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def figure(text: str, label: str) -> str:
    match = re.search(rf"^  {re.escape(label)}\s+(.+)$", text, re.MULTILINE)
    assert match, f"no '{label}' line in:\n{text}"
    return match.group(1)


def test_activation_benchmark_prints_consistent_figures():
    run = subprocess.run(
        [sys.executable, "-m", "bench", "activation", "--deals", "3", "--rate", "5", "--burst"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    assert "RESULT: PASS" in out
    phases = out.split("  phase: ")[1:]
    assert len(phases) == 2 and phases[0].startswith("steady, 5 deals/s") and phases[1].startswith("burst")
    for phase in phases:
        assert figure(phase, "engagements Active").split()[:3] == ["3", "/", "3"]
        p50, p95, p99, top = (
            float(v) for v in figure(phase, "closed-won -> Active p50 / p95 / p99 / max (s)").split(" / ")
        )
        assert 0 < p50 <= p95 <= p99 <= top
        messages, notifications = (int(v) for v in figure(phase, "Outbound Messages / notifications").split()[0:3:2])
        assert 1 <= messages <= 3 and notifications == 3  # one notification per deal closed
        assert int(figure(phase, "redeliveries seen by the CRM sandbox").split()[0]) >= 0
        calls = dict(re.findall(r"(CRM|ERP|PSA) ([0-9.]+) \[", phase))
        assert set(calls) == {"CRM", "ERP", "PSA"} and all(float(v) > 0 for v in calls.values())
        assert float(calls["CRM"]) <= 6  # the target: at most 6 CRM calls per activation
        actions = float(figure(phase, "Temporal actions per activation"))
        scheduled = float(re.search(r"activities scheduled ([0-9.]+)", phase).group(1))
        ceiling = int(re.search(r"ceiling: no-op workflow, same activities\s+(\d+) activities", phase).group(1))
        assert ceiling == round(scheduled) and actions >= scheduled > 0
        # where the time went: CPU per activation by process, and the machine's own ceiling from it
        per = dict(
            re.findall(r"(\w[\w +()-]*?) (\d+)(?:,|$)", figure(phase, "CPU ms per activation").split(": ", 1)[1])
        )
        assert "bench + worker + webhook (this process)" in per and {
            "crm sandbox",
            "erp sandbox",
            "psa sandbox",
        } <= set(per)
        cpu_ceiling = float(figure(phase, "CPU ceiling = CPU seconds / cores (s)").split()[0])
        assert cpu_ceiling > 0
