"""`python -m sandboxes.erp`: serve the NetSuite sandbox (port Q2C_ERP_PORT, default 8103)."""

from __future__ import annotations

import uvicorn

from sandboxes.config import load_config
from sandboxes.erp.app import create_app


def main() -> None:
    cfg = load_config()
    app = create_app(cfg.db_url("erp"))
    uvicorn.run(app, host=cfg.host, port=cfg.erp_port, log_level="info")


if __name__ == "__main__":
    main()
