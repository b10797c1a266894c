"""`make up`: the whole q2c stack on this machine, embedded defaults, no other setup.

Starts the Temporal dev server (SQLite under the state folder, Web UI), the CRM, PSA and ERP
sandboxes, the worker and the webhook service; closes the demo deals in the CRM sandbox so the
engagements start by the real webhook path (Salesforce Outbound Message); prints the URLs and
how long each deal took from closed-won to Active. Ctrl-C stops everything; a second `make up`
resumes with every history and sandbox record kept.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from q2c.settings import Settings, load_settings
from stack.demo_env import demo_environment

ROOT = Path(__file__).resolve().parent.parent

# The demo runs each month of an engagement in 30 s and checks payments every 10 s, so
# invoicing and collecting can be watched; set these variables to run real calendar months.
DEMO_DEFAULTS = {"Q2C_PERIOD_SECONDS": "30", "Q2C_PAYMENT_POLL_SECONDS": "10"}
# the worker's Prometheus endpoint (the SDK's runtime metrics and q2c's vendor-call metrics)
DEMO_DEFAULTS["Q2C_METRICS_ADDRESS"] = "127.0.0.1:9464"
# every credential and secret of the demo, set explicitly here: q2c itself has no defaults
DEMO_DEFAULTS.update(demo_environment())


def demo_secrets_env(state_dir: Path) -> dict[str, str]:
    """Secrets the demo needs that must survive a restart, generated at the first `make up`
    into the state folder (never committed): the payload-encryption key (every history of the
    demo is sealed with it: losing it would make them unreadable) and the console's CSRF
    secret. Values given in the environment are left alone."""
    import secrets as _secrets

    from q2c.codec import new_key_spec

    wanted = {
        "Q2C_CODEC_KEYS": ("codec-keys", lambda: new_key_spec("demo-1")),
        "Q2C_CONSOLE_SECRET": ("console-secret", lambda: _secrets.token_urlsafe(32)),
    }
    out: dict[str, str] = {}
    folder = state_dir / "demo-secrets"
    for variable, (name, make) in wanted.items():
        if os.environ.get(variable):
            continue
        path = folder / name
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(make())
            path.chmod(0o600)
        out[variable] = path.read_text().strip()
    return out


@dataclass
class Service:
    name: str
    argv: list[str]
    port: int
    health: str | None = None  # HTTP path answering 200 when ready
    proc: subprocess.Popen | None = None


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def _temporal_host_port(settings: Settings) -> tuple[str, int]:
    host, _, port = settings.temporal_address.rpartition(":")
    return host or "127.0.0.1", int(port)


def search_attribute_flags() -> list[str]:
    """Our search attributes, registered by the dev server as it starts (the worker also
    registers them on any server that lacks them)."""
    from temporalio.api.enums.v1 import IndexedValueType

    from q2c.engagement.search_attributes import ALL_KEYS

    flags = []
    for key in ALL_KEYS:
        kind = IndexedValueType.Name(IndexedValueType.ValueType(int(key.indexed_value_type)))
        flags += ["--search-attribute", f"{key.name}={kind.removeprefix('INDEXED_VALUE_TYPE_').capitalize()}"]
    return flags


def services(settings: Settings) -> list[Service]:
    py = sys.executable
    bindir = Path(py).parent
    temporal = str(bindir / "temporal") if (bindir / "temporal").exists() else "temporal"
    host, tport = _temporal_host_port(settings)
    ui_port = int(settings.temporal_ui_url.rsplit(":", 1)[1].split("/")[0])
    return [
        Service(
            "temporal",
            [
                temporal,
                "server",
                "start-dev",
                "--db-filename",
                str(settings.state_dir / "temporal.db"),
                "--ip",
                host,
                "--port",
                str(tport),
                "--ui-port",
                str(ui_port),
                "--namespace",
                settings.temporal_namespace,
                "--log-level",
                "warn",
                # the UI decodes payloads through q2c's codec server (signed-in console users only)
                "--ui-codec-endpoint",
                f"{settings.webhook_base_url}/codec",
                *search_attribute_flags(),
            ],
            tport,
        ),
        Service("crm-sandbox", [py, "-m", "sandboxes.crm"], settings.crm_port, "/__sandbox/health"),
        Service("psa-sandbox", [py, "-m", "sandboxes.psa"], settings.psa_port, "/__sandbox/health"),
        Service("erp-sandbox", [py, "-m", "sandboxes.erp"], settings.erp_port, "/__sandbox/health"),
        Service("webhook", [py, "-m", "q2c.webhook.app"], settings.webhook_port, "/healthz"),
        Service("worker", [py, "-m", "q2c.worker"], 0),
        Service("simulator", [py, "-m", "stack.simulator"], 0),
    ]


def erp_m2m_env() -> dict[str, str]:
    """The NetSuite M2M key for the worker and webhook: the ERP sandbox's demo certificate,
    generated here (by the sandbox's own code, into the folder the sandbox maps it from:
    `<state_dir>/erp-m2m/`) before any process starts, so the sandbox and q2c agree on it.
    A key given in the environment (a real NetSuite account) is left alone."""
    if os.environ.get("Q2C_ERP_PRIVATE_KEY_FILE") or os.environ.get("Q2C_ERP_PRIVATE_KEY"):
        return {}
    from sandboxes.config import load_config
    from sandboxes.erp.m2m import ensure_demo_credentials

    creds = ensure_demo_credentials(load_config().erp_m2m_dir)
    return {"Q2C_ERP_PRIVATE_KEY_FILE": str(creds.private_key_path), "Q2C_ERP_CERTIFICATE_ID": creds.certificate_id}


CLI_VARIABLES = ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_TASK_QUEUE", "Q2C_STATE_DIR", "Q2C_CODEC_KEYS")


def write_cli_env(state_dir: Path) -> Path:
    """`<state>/demo.env`: what a shell needs for `q2c` commands against this stack (the codec
    key above all: without it the CLI cannot read an engagement's encrypted status; and the
    demo credentials, for `q2c doctor`). Demo values only, readable by the owner only."""
    path = state_dir / "demo.env"
    names = [*CLI_VARIABLES, *DEMO_DEFAULTS, "Q2C_ERP_PRIVATE_KEY_FILE", "Q2C_ERP_CERTIFICATE_ID", "Q2C_CONSOLE_SECRET"]
    lines = [f"{name}={os.environ[name]}" for name in dict.fromkeys(names) if os.environ.get(name)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def _wait_ready(svc: Service, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if svc.proc and svc.proc.poll() is not None:
            raise RuntimeError(
                f"{svc.name} exited with code {svc.proc.returncode}; see {svc.name}.log in the state folder"
            )
        if svc.port == 0:
            return
        if svc.health is None:
            if _port_open(svc.port):
                return
        else:
            try:
                if httpx.get(f"http://127.0.0.1:{svc.port}{svc.health}", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    raise RuntimeError(f"{svc.name} did not become ready on port {svc.port} within {timeout:.0f}s")


def start_all(settings: Settings, log_dir: Path) -> list[Service]:
    busy = [s for s in services(settings) if s.port and _port_open(s.port)]
    if busy:
        names = ", ".join(f"{s.name} ({s.port})" for s in busy)
        raise SystemExit(
            f"ports already in use: {names}. Is another `make up` running? "
            "Stop it, or set the Q2C_*_PORT / TEMPORAL_ADDRESS variables."
        )
    env = {**DEMO_DEFAULTS, **os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    started: list[Service] = []
    try:
        for svc in services(settings):
            log = open(log_dir / f"{svc.name}.log", "ab")
            svc.proc = subprocess.Popen(
                svc.argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            started.append(svc)
            _wait_ready(svc)
            print(f"  started {svc.name:<12} pid {svc.proc.pid}" + (f"  port {svc.port}" if svc.port else ""))
    except BaseException:
        stop_all(started)
        raise
    return started


def stop_all(started: list[Service]) -> None:
    for svc in reversed(started):
        if svc.proc and svc.proc.poll() is None:
            svc.proc.send_signal(signal.SIGTERM)
    for svc in reversed(started):
        if svc.proc:
            try:
                svc.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                svc.proc.kill()


def print_urls(settings: Settings) -> None:
    print(
        f"""
q2c is up.
  Temporal Web UI   {settings.temporal_ui_url}/namespaces/{settings.temporal_namespace}/workflows
                    (filter e.g. EngagementStage="Active" or EngagementStage="AwaitingSteward")
  Temporal gRPC     {settings.temporal_address}
                    (namespace {settings.temporal_namespace}, task queue {settings.task_queue})
  Webhook service   {settings.webhook_base_url}  (Outbound Messages: {settings.outbound_message_url})
  Steward console   {settings.webhook_base_url}/console  (token steward-demo-token, or viewer-demo-token)
  Operations        {settings.webhook_base_url}/console/operations  (every engagement, KPIs; /console/reconciliation)
  Metrics           http://{settings.metrics_address}/metrics (worker)   {settings.webhook_base_url}/metrics (business)
  Decoded payloads  sign in to the console, then in the Temporal UI's codec settings (the glasses icon)
                    turn on "Include cross-origin credentials": histories hold ciphertext only
  CRM sandbox       {settings.crm.base_url}  (Salesforce REST, org {settings.crm.organization_id})
  PSA sandbox       {settings.psa.base_url}  (Kantata API v1, bearer {settings.psa.token})
  ERP sandbox       {settings.erp.base_url}  (NetSuite REST, account {settings.erp.account_id})
  Logs              {settings.state_dir / "logs"}
  CLI               set -a; . {settings.state_dir / "demo.env"}; set +a   (the codec key, Temporal address)
                    .venv/bin/q2c list   |   .venv/bin/q2c status <opportunity-id>   |   .venv/bin/q2c doctor
  Demo calendar     one engagement month every {settings.period_seconds or "calendar month"} s; the simulator books
                    time, accepts milestones and pays invoices (log: simulator.log)
Ctrl-C stops everything; the next `make up` resumes with histories kept.
""",
        flush=True,
    )


def main() -> None:
    for key, value in DEMO_DEFAULTS.items():
        os.environ.setdefault(key, value)
    os.environ.update(erp_m2m_env())  # read by load_settings here and by every process started
    os.environ.update(demo_secrets_env(Path(os.environ.get("Q2C_STATE_DIR") or ROOT / ".state")))
    write_cli_env(Path(os.environ.get("Q2C_STATE_DIR") or ROOT / ".state"))
    settings = load_settings()
    log_dir = settings.state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"Starting q2c (state in {settings.state_dir})")
    started = start_all(settings, log_dir)
    # the CRM sandbox delivers Outbound Messages to the endpoint URL with the path secret, as an
    # admin enters it in Salesforce's outbound message definition
    httpx.put(
        f"{settings.crm.base_url}/__sandbox/outbound/url", json={"url": settings.outbound_message_url}, timeout=10
    ).raise_for_status()
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        from stack.demo import run_demo

        asyncio.run(run_demo(settings))
        print_urls(settings)
        while not stopping:
            dead = [s for s in started if s.proc and s.proc.poll() is not None]
            if dead:
                print(
                    f"{dead[0].name} stopped unexpectedly (exit {dead[0].proc.returncode}); "
                    f"see {log_dir / (dead[0].name + '.log')}. Stopping the stack."
                )
                break
            time.sleep(0.5)
    finally:
        print("Stopping q2c ...", flush=True)
        stop_all(started)
        print("Stopped. State kept in", settings.state_dir)


def run() -> None:
    from q2c.temporal import exit_process

    try:
        main()
    except SystemExit as done:
        if isinstance(done.code, str):
            print(done.code, file=sys.stderr)
        exit_process(done.code if isinstance(done.code, int) else (0 if done.code is None else 1))
    except KeyboardInterrupt:
        exit_process(130)
    exit_process(0)


if __name__ == "__main__":
    run()
