"""`python -m sandbox.crm`: serve the Salesforce sandbox on settings.crm_port."""

from __future__ import annotations

import os

import uvicorn

from sandbox.crm.app import create_app
from settings import load_settings


def main() -> None:
    settings = load_settings()
    app = create_app(settings.sandbox_db_url("crm"), organization_id=settings.crm.organization_id,
                     client_id=settings.crm.client_id, client_secret=settings.crm.client_secret,
                     outbound_url=settings.outbound_message_url, instance_url=settings.crm.base_url)
    uvicorn.run(app, host=os.environ.get("Q2C_SANDBOX_HOST", "127.0.0.1"), port=settings.crm_port, log_level="info")


if __name__ == "__main__":
    main()
