"""Shared fixtures (tests/fixtures/) and the markers that split the suite by what it needs.

Every test is marked by its folder: `unit` (pure code, seconds), `integration` (one real part:
a sandbox over HTTP, the ledger on SQLite/PostgreSQL), `e2e` (the real workflow on a Temporal
server with the sandboxes), `replay` (recorded histories against today's workflow code).
`pytest -m "unit or integration"` is the fast half; `-m "not slow"` leaves out the long runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stack.demo_env import demo_environment

pytest_plugins = [
    "tests.fixtures.temporal",
    "tests.fixtures.crm",
    "tests.fixtures.psa",
    "tests.fixtures.erp",
    "tests.fixtures.stack",
    "tests.fixtures.ledger",
    "tests.fixtures.console",
]

_KINDS = ("unit", "integration", "e2e", "replay")

# The tests' own configuration, set explicitly here (q2c has no demo defaults for secrets):
# every Temporal payload of every test is encrypted with this key, as in production.
STEWARD_TOKEN = "steward-test-token"
VIEWER_TOKEN = "viewer-test-token"
TEST_ENVIRONMENT = {
    **demo_environment(),  # the sandboxes' credentials and the demo webhook secrets
    "Q2C_CODEC_KEYS": "test-2026:dGVzdC1vbmx5LWNvZGVjLWtleS0zMi1ieXRlcyEhISE=",
    "Q2C_API_TOKENS": f"steward:steward:{STEWARD_TOKEN},viewer:viewer:{VIEWER_TOKEN}",
    "Q2C_CONSOLE_SECRET": "console-test-secret",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, value in TEST_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        try:
            kind = Path(item.path).relative_to(_HERE).parts[0]
        except ValueError:
            continue
        if kind in _KINDS:
            item.add_marker(getattr(pytest.mark, kind))
