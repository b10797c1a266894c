"""How engagements start: the CRM webhook service and the q2c CLI."""
