"""The demo's configuration: what `make up` and the tests set explicitly, and nothing else does.

q2c has no default for any credential or secret (a process started without them refuses to
start and names the variables, see `q2c.settings.missing_variables`). The demo values live
here, outside the product package: the sandboxes' own demo credentials (`sandboxes.config`,
what the fake vendors accept) and demo secrets for q2c's own endpoints. Secrets that must
survive a restart and must never be committed (the payload-encryption key, the console's
CSRF secret, the NetSuite M2M key) are generated into the state folder by `stack.up`.
"""

from __future__ import annotations

from sandboxes.config import (
    DEMO_CRM_CLIENT_ID,
    DEMO_CRM_CLIENT_SECRET,
    DEMO_CRM_ORG_ID,
    DEMO_ERP_ACCOUNT,
    DEMO_ERP_CLIENT_ID,
    DEMO_PSA_TOKEN,
)

# Standard Webhooks secret: "whsec_" + base64 of the key bytes.
DEMO_WEBHOOK_SECRET = "whsec_cTJjLWRlbW8td2ViaG9vay1zZWNyZXQtMzItYnl0ZXM="
# The Outbound Message endpoint's path secret (the URL an admin enters in Salesforce).
DEMO_OUTBOUND_PATH_SECRET = "q2c-demo-outbound-7Hq2xVb9RkP4mW3c"
DEMO_STEWARD_TOKEN = "steward-demo-token"
DEMO_VIEWER_TOKEN = "viewer-demo-token"

__all__ = [
    "DEMO_CRM_CLIENT_ID",
    "DEMO_CRM_CLIENT_SECRET",
    "DEMO_CRM_ORG_ID",
    "DEMO_ERP_ACCOUNT",
    "DEMO_ERP_CLIENT_ID",
    "DEMO_PSA_TOKEN",
    "DEMO_WEBHOOK_SECRET",
    "DEMO_OUTBOUND_PATH_SECRET",
    "demo_environment",
]


def demo_environment() -> dict[str, str]:
    """The variables of the demo stack (the sandboxes' credentials and q2c's demo secrets)."""
    return {
        "Q2C_CRM_CLIENT_ID": DEMO_CRM_CLIENT_ID,
        "Q2C_CRM_CLIENT_SECRET": DEMO_CRM_CLIENT_SECRET,
        "Q2C_CRM_ORG_ID": DEMO_CRM_ORG_ID,
        "Q2C_ERP_ACCOUNT": DEMO_ERP_ACCOUNT,
        "Q2C_ERP_CLIENT_ID": DEMO_ERP_CLIENT_ID,
        "Q2C_PSA_TOKEN": DEMO_PSA_TOKEN,
        "Q2C_WEBHOOK_SECRET": DEMO_WEBHOOK_SECRET,
        "Q2C_OUTBOUND_PATH_SECRETS": DEMO_OUTBOUND_PATH_SECRET,
        "Q2C_API_TOKENS": f"steward:steward:{DEMO_STEWARD_TOKEN},viewer:viewer:{DEMO_VIEWER_TOKEN}",
    }
