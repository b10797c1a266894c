"""Production mode is the only mode: a q2c process without its credentials refuses to start.

The processes are started the way an operator starts them (`python -m q2c.worker`,
`python -m q2c.webhook.app`) with an environment that has none of the demo values `make up`
and the tests set; each must exit at once, naming every variable it needs, before it binds a
port or connects anywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_ENVIRONMENT

ROOT = Path(__file__).resolve().parents[2]


def _run(module: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("Q2C_", "TEMPORAL_"))}
    return subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env={**base, "PYTHONPATH": str(ROOT), "Q2C_STATE_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "module,process,expected",
    [
        (
            "q2c.worker",
            "worker",
            [
                "Q2C_CODEC_KEYS",
                "Q2C_CRM_CLIENT_ID",
                "Q2C_CRM_CLIENT_SECRET",
                "Q2C_ERP_ACCOUNT",
                "Q2C_ERP_CLIENT_ID",
                "Q2C_ERP_CERTIFICATE_ID",
                "Q2C_ERP_PRIVATE_KEY_FILE (or Q2C_ERP_PRIVATE_KEY)",
                "Q2C_PSA_TOKEN",
            ],
        ),
        (
            "q2c.webhook.app",
            "webhook",
            [
                "Q2C_CODEC_KEYS",
                "Q2C_CRM_CLIENT_ID",
                "Q2C_CRM_CLIENT_SECRET",
                "Q2C_WEBHOOK_SECRET",
                "Q2C_OUTBOUND_PATH_SECRETS",
                "Q2C_CRM_ORG_ID",
                "Q2C_API_TOKENS",
                "Q2C_CONSOLE_SECRET",
            ],
        ),
    ],
)
def test_without_secrets_a_process_refuses_to_start_and_names_them(module, process, expected, tmp_path):
    done = _run(module, {}, tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith(f"q2c {process}: refusing to start, these variables are not set: ")
    assert line.split("not set: ", 1)[1].split(". See")[0] == ", ".join(expected)


def test_one_missing_secret_is_named_alone(tmp_path):
    env = {k: v for k, v in TEST_ENVIRONMENT.items() if k != "Q2C_CODEC_KEYS"}
    done = _run("q2c.webhook.app", env, tmp_path)
    assert done.returncode == 2
    assert "these variables are not set: Q2C_CODEC_KEYS." in done.stderr
