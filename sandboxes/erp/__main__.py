"""`python -m sandboxes.erp`: serve the NetSuite sandbox (port Q2C_ERP_PORT, default 8103).

At first start it generates the demo M2M certificate into Q2C_ERP_M2M_DIR (default
`<state_dir>/erp-m2m/`) and maps it to the integration Q2C_ERP_CLIENT_ID; q2c signs its
client assertions with `private-key.pem` from there and the ID in `certificate-id`.
"""

from __future__ import annotations

import uvicorn

from sandboxes.config import load_config
from sandboxes.erp.app import create_app


def main() -> None:
    cfg = load_config()
    app = create_app(
        cfg.db_url("erp"), account_id=cfg.erp_account, client_id=cfg.erp_client_id, m2m_dir=cfg.erp_m2m_dir
    )
    uvicorn.run(app, host=cfg.host, port=cfg.erp_port, log_level="info")


if __name__ == "__main__":
    main()
