"""`python -m sandbox.erp`: serve the NetSuite sandbox on settings' erp_port."""

from __future__ import annotations

import os

import uvicorn

import settings
from sandbox.erp.app import create_app


def main() -> None:
    cfg = settings.load_settings()
    app = create_app(cfg.sandbox_db_url("erp"))
    uvicorn.run(app, host=os.environ.get("Q2C_SANDBOX_HOST", "127.0.0.1"), port=cfg.erp_port, log_level="info")


if __name__ == "__main__":
    main()
