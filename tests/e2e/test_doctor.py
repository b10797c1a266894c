"""`q2c doctor` against the sandboxes: ready when all is set up, and precise when it is not.

The broken cases are the ones go-live really meets: a custom field nobody deployed (the CRM
sandbox's schema without it, so its describe lacks it exactly as an org would), a NetSuite
private key that is not the one whose certificate was mapped, and a wrong Kantata token.
"""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from typer.testing import CliRunner

from q2c.cli.main import app
from q2c.doctor import Status, format_report, run_doctor
from sandboxes.crm import schema as crm_schema


def _row(report, system: str, check: str):
    found = [f for f in report.findings if f.system == system and f.check == check]
    assert len(found) == 1, [(f.system, f.check) for f in report.findings]
    return found[0]


async def test_doctor_is_ready_on_the_sandboxes(console_stack):
    report = await run_doctor(console_stack.settings)
    text = format_report(report)
    assert report.ready, text
    not_ok = [(f.system, f.check, f.status) for f in report.findings if f.status is not Status.OK]
    # the sandboxes' one deliberate gap: a CRM service line with no PSA template (its deals park)
    assert not_ok == [("psa", "template per service line", Status.WARN)], text
    assert "Cybersecurity" in _row(report, "psa", "template per service line").detail
    checks = {(f.system, f.check) for f in report.findings}
    for expected in [
        ("crm", "authentication"),
        ("crm", "API version"),
        ("crm", "Opportunity fields"),
        ("crm", "Opportunity.StageName values"),
        ("crm", "API limits"),
        ("erp", "authentication"),
        ("erp", "subsidiaries"),
        ("erp", "currencies"),
        ("erp", "payment terms"),
        ("psa", "authentication"),
        ("psa", "project templates"),
        ("psa", "template per service line"),
        ("temporal", "search attributes"),
        ("temporal", "worker"),
    ]:
        assert expected in checks, text
    assert text.splitlines()[-1] == "ready for go-live (1 warning(s) to read)"


async def test_doctor_names_exactly_what_is_wrong(console_stack, make_crm_sandbox, monkeypatch, tmp_path):
    # an org where the PSA workspace field was never deployed
    opportunity = dict(crm_schema.SCHEMAS["Opportunity"])
    opportunity.pop("PSA_Workspace_Id__c")
    monkeypatch.setitem(crm_schema.SCHEMAS, "Opportunity", opportunity)
    crm = make_crm_sandbox()
    # a private key that is not the one of the mapped certificate
    stray = tmp_path / "stray-key.pem"
    stray.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    settings = dataclasses.replace(
        console_stack.settings,
        crm=crm.settings,
        erp=dataclasses.replace(console_stack.settings.erp, private_key_file=str(stray), private_key=None),
        psa=dataclasses.replace(console_stack.settings.psa, token="not-the-token"),
    )
    report = await run_doctor(settings)
    text = format_report(report)
    assert not report.ready

    field = _row(report, "crm", "Opportunity fields")
    assert field.status is Status.MISSING and "PSA_Workspace_Id__c" in field.detail
    assert "deploy/salesforce" in field.fix
    assert _row(report, "crm", "Account fields").status is Status.OK  # only what is wrong is named

    erp = _row(report, "erp", "authentication")
    assert erp.status is Status.FAILED and "VendorAuthFailed" in erp.detail
    assert "Q2C_ERP_PRIVATE_KEY_FILE" in erp.fix and "Q2C_ERP_CERTIFICATE_ID" in erp.fix
    assert _row(report, "erp", "subsidiaries").status is Status.SKIPPED  # not asked after the refusal

    psa = _row(report, "psa", "authentication")
    assert psa.status is Status.FAILED and "Q2C_PSA_TOKEN" in psa.fix

    assert _row(report, "temporal", "worker").status is Status.OK  # the rest is still checked
    assert "NOT READY: 3 problem(s)" in text.splitlines()[-1]
    assert "fix: Deploy deploy/salesforce" in text


@pytest.mark.parametrize("args", [["doctor", "-s", "psa"], ["doctor", "-s", "nope"]])
def test_doctor_command_exit_codes(console_stack, monkeypatch, args):
    for name, value in console_stack.cli_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("Q2C_PSA_URL", console_stack.settings.psa.base_url)
    monkeypatch.setenv("Q2C_PSA_TOKEN", console_stack.settings.psa.token)
    result = CliRunner().invoke(app, args)
    if "nope" in args:
        assert result.exit_code == 2 and "unknown system" in result.output
        return
    assert result.exit_code == 0, result.output
    assert "psa authentication" in result.output and "ready for go-live" in result.output
    monkeypatch.setenv("Q2C_PSA_TOKEN", "wrong")
    broken = CliRunner().invoke(app, args)
    assert broken.exit_code == 1 and "FAILED" in broken.output and "Q2C_PSA_TOKEN" in broken.output


async def test_a_wrong_crm_secret_is_named_and_nothing_else_is_asked_of_the_crm(console_stack):
    settings = dataclasses.replace(
        console_stack.settings, crm=dataclasses.replace(console_stack.settings.crm, client_secret="not-the-secret")
    )
    report = await run_doctor(settings, systems=("crm",))
    auth = _row(report, "crm", "authentication")
    assert auth.status is Status.FAILED and "VendorAuthFailed" in auth.detail
    assert "Q2C_CRM_CLIENT_SECRET" in auth.fix
    assert {f.status for f in report.findings if f.check != "authentication"} == {Status.SKIPPED}
    assert not report.ready
