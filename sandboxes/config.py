"""The sandboxes' own configuration: demo credentials, ports and databases.

The fake vendors never import q2c: they read the same environment variables `make up` sets for
q2c (so the two agree on ports and credentials) with their own defaults, the demo credentials
below, which exist only for the sandboxes and the tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEMO_CRM_CLIENT_ID = "q2c-demo-client"
DEMO_CRM_CLIENT_SECRET = "q2c-demo-secret"
DEMO_CRM_ORG_ID = "00D5e000000Q2CDEMO"
DEMO_ERP_ACCOUNT = "1234567_SB1"
DEMO_ERP_CLIENT_ID = "q2c-demo-erp-client"
# NetSuite M2M has no client secret: the demo certificate is generated at first start into
# <state_dir>/erp-m2m/ (or Q2C_ERP_M2M_DIR), see sandboxes/erp/m2m.py.
ERP_M2M_FOLDER = "erp-m2m"
DEMO_PSA_TOKEN = "q2c-demo-psa-token"

ROOT = Path(__file__).resolve().parents[1]


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@dataclass(frozen=True)
class SandboxConfig:
    host: str
    state_dir: Path
    crm_port: int
    psa_port: int
    erp_port: int
    crm_client_id: str
    crm_client_secret: str
    crm_org_id: str
    psa_token: str
    outbound_url: str  # where the CRM sandbox delivers Outbound Messages (q2c's webhook)
    crm_url: str  # the instance URL the CRM sandbox announces in tokens and messages
    erp_account: str = DEMO_ERP_ACCOUNT
    erp_client_id: str = DEMO_ERP_CLIENT_ID  # the integration record with the M2M grant
    erp_m2m_dir: Path | None = None  # the demo certificate's folder (generated at first start)

    def db_url(self, system: str) -> str:
        return _env(f"Q2C_{system.upper()}_DB_URL", f"sqlite:///{self.state_dir / (system + '.db')}")

    def base_url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"


def load_config() -> SandboxConfig:
    webhook = f"http://{_env('Q2C_WEBHOOK_HOST', '127.0.0.1')}:{_env('Q2C_WEBHOOK_PORT', '8000')}"
    state_dir = Path(_env("Q2C_STATE_DIR", str(ROOT / ".state")))
    return SandboxConfig(
        host=_env("Q2C_SANDBOX_HOST", "127.0.0.1"),
        state_dir=state_dir,
        crm_port=int(_env("Q2C_CRM_PORT", "8101")),
        psa_port=int(_env("Q2C_PSA_PORT", "8102")),
        erp_port=int(_env("Q2C_ERP_PORT", "8103")),
        crm_client_id=_env("Q2C_CRM_CLIENT_ID", DEMO_CRM_CLIENT_ID),
        crm_client_secret=_env("Q2C_CRM_CLIENT_SECRET", DEMO_CRM_CLIENT_SECRET),
        crm_org_id=_env("Q2C_CRM_ORG_ID", DEMO_CRM_ORG_ID),
        psa_token=_env("Q2C_PSA_TOKEN", DEMO_PSA_TOKEN),
        # the endpoint URL an admin enters in Salesforce, path secret included (Q2C_OUTBOUND_URL);
        # without it, q2c's path with the first of Q2C_OUTBOUND_PATH_SECRETS
        outbound_url=_env(
            "Q2C_OUTBOUND_URL",
            f"{webhook}/webhooks/salesforce/outbound/{_env('Q2C_OUTBOUND_PATH_SECRETS', '').split(',')[0].strip()}",
        ),
        crm_url=_env("Q2C_CRM_URL", f"http://127.0.0.1:{_env('Q2C_CRM_PORT', '8101')}"),
        erp_account=_env("Q2C_ERP_ACCOUNT", DEMO_ERP_ACCOUNT),
        erp_client_id=_env("Q2C_ERP_CLIENT_ID", DEMO_ERP_CLIENT_ID),
        erp_m2m_dir=Path(_env("Q2C_ERP_M2M_DIR", str(state_dir / ERP_M2M_FOLDER))),
    )
