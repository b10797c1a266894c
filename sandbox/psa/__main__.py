"""`python -m sandbox.psa`: serve the Kantata sandbox on settings.psa_port (default 8102)."""

from __future__ import annotations

import os

import uvicorn

from settings import load_settings


def main() -> None:
    from sandbox.psa.app import create_app

    cfg = load_settings()
    app = create_app(cfg.sandbox_db_url("psa"), token=cfg.psa.token)
    uvicorn.run(app, host=os.environ.get("Q2C_SANDBOX_HOST", "127.0.0.1"), port=cfg.psa_port, log_level="info")


if __name__ == "__main__":
    main()
