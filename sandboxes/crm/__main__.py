"""`python -m sandboxes.crm`: serve the Salesforce sandbox (port Q2C_CRM_PORT, default 8101)."""

from __future__ import annotations

import uvicorn

from sandboxes.config import load_config
from sandboxes.crm.app import create_app


def main() -> None:
    cfg = load_config()
    app = create_app(
        cfg.db_url("crm"),
        organization_id=cfg.crm_org_id,
        client_id=cfg.crm_client_id,
        client_secret=cfg.crm_client_secret,
        outbound_url=cfg.outbound_url,
        instance_url=cfg.crm_url,
    )
    uvicorn.run(app, host=cfg.host, port=cfg.crm_port, log_level="info")


if __name__ == "__main__":
    main()
