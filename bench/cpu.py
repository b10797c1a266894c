"""CPU seconds used by this process and its child processes (Linux /proc), to show where a
2-core machine spends its time during the timed part."""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(command name, parent pid, utime+stime seconds) of a process, None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return name, int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def snapshot() -> dict[int, tuple[str, float]]:
    """pid -> (name, cpu seconds) for this process and its direct children."""
    me = os.getpid()
    out: dict[int, tuple[str, float]] = {}
    if not Path("/proc").is_dir():
        return out
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        st = _stat(int(entry.name))
        if st and (int(entry.name) == me or st[1] == me):
            out[int(entry.name)] = (st[0], st[2])
    return out


def used_between(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[int, tuple[str, float]]:
    return {pid: (name, cpu - before.get(pid, (name, 0.0))[1]) for pid, (name, cpu) in after.items()}


def by_role(
    sandboxes: dict, used: dict[int, tuple[str, float]], own: str = "bench + worker (this process)"
) -> dict[str, float]:
    """CPU seconds per role: `sandboxes` (vendor -> a process with `.proc.pid`) by vendor, this
    process as `own`, the Temporal dev server by name, anything else by its command name."""
    roles = {sp.proc.pid: f"{v} sandbox" for v, sp in sandboxes.items()}
    roles[os.getpid()] = own
    out: dict[str, float] = {}
    for pid, (name, seconds) in used.items():
        role = roles.get(pid, "temporal dev server" if "temporal" in name else name)
        out[role] = out.get(role, 0.0) + seconds
    return out
