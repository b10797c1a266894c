"""The benchmark's own processes: the three sandboxes as subprocesses on free ports.

Each is started in a session of its own and stopped by its pid (SIGTERM, then SIGKILL after
a grace period), so nothing outlives the benchmark.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from sandboxes.common.server import free_port

ROOT = Path(__file__).resolve().parent.parent
HEALTH_PATH = "/__sandbox/health"


@dataclass
class SandboxProcess:
    vendor: str
    port: int
    proc: subprocess.Popen
    log_path: Path
    db_url: str
    _log: object = field(repr=False, default=None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, grace: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()


def _spawn(vendor: str, db_url: str, log_dir: Path) -> SandboxProcess:
    port = free_port()
    log_path = log_dir / f"{vendor}.log"
    log = open(log_path, "ab")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.serve_sandbox", vendor, "--port", str(port), "--db", db_url],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return SandboxProcess(vendor=vendor, port=port, proc=proc, log_path=log_path, db_url=db_url, _log=log)


def _ready(sp: SandboxProcess) -> bool:
    if sp.proc.poll() is not None:
        raise RuntimeError(f"{sp.vendor} sandbox exited with code {sp.proc.returncode}; see {sp.log_path}")
    try:
        return httpx.get(sp.url + HEALTH_PATH, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start_sandboxes(
    state_dir: Path, vendors: tuple[str, ...] = ("crm", "psa", "erp"), timeout: float = 60.0
) -> dict[str, SandboxProcess]:
    """Start every sandbox (in parallel), wait until each answers its health check."""
    log_dir = state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    started: dict[str, SandboxProcess] = {}
    try:
        for vendor in vendors:
            started[vendor] = _spawn(vendor, f"sqlite:///{state_dir / (vendor + '.db')}", log_dir)
        deadline = time.monotonic() + timeout
        waiting = set(started)
        while waiting:
            waiting = {v for v in waiting if not _ready(started[v])}
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"sandboxes not ready within {timeout:.0f}s: {sorted(waiting)}")
            if waiting:
                time.sleep(0.1)
    except BaseException:
        stop_sandboxes(started)
        raise
    return started


def stop_sandboxes(started: dict[str, SandboxProcess]) -> None:
    for sp in started.values():
        sp.stop()
