"""`python -m sandboxes.psa`: serve the Kantata sandbox (port Q2C_PSA_PORT, default 8102)."""

from __future__ import annotations

import uvicorn

from sandboxes.config import load_config


def main() -> None:
    from sandboxes.psa.app import create_app

    cfg = load_config()
    app = create_app(cfg.db_url("psa"), token=cfg.psa_token)
    uvicorn.run(app, host=cfg.host, port=cfg.psa_port, log_level="info")


if __name__ == "__main__":
    main()
