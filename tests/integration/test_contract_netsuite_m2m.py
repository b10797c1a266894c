"""Contract: NetSuite machine-to-machine OAuth 2.0, as NetSuite documents it, against the sandbox.

Everything is done the real way: keys generated here (RSA 3072 for PS256, EC P-256 for
ES256, what NetSuite's "Certificate Conditions" accept), a self-signed X.509 certificate
uploaded to the account's M2M setup (the sandbox's admin route standing in for Setup >
Integration > OAuth 2.0 Client Credentials (M2M) Setup), client assertions signed with PyJWT,
token requests as forms over real HTTP. What a user checks: a valid assertion gets a token that
reads records; each broken rule gets NetSuite's OAuth error and no token; the connector signs
its own assertion, and gets a new token by itself after the old one is revoked. (Mapping a
certificate of one's own leaves the shared sandbox as it was for other tests; revoking tokens
or certificates happens on a sandbox of its own.)
"""

from __future__ import annotations

import dataclasses
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from q2c.vendors.netsuite.client import NetSuiteClient
from sandboxes.erp.m2m import generate_certificate
from stack.demo_env import DEMO_ERP_ACCOUNT, DEMO_ERP_CLIENT_ID
from tests.fixtures.erp import erp_settings

R = "/services/rest/record/v1"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="module")
def keys():
    return {
        "PS256": rsa.generate_private_key(public_exponent=65537, key_size=3072),
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "other-rsa": rsa.generate_private_key(public_exponent=65537, key_size=3072),
    }


def register(sandbox, key, client_id: str = DEMO_ERP_CLIENT_ID) -> str:
    """Upload the public part (an X.509 certificate) and get the certificate ID (the `kid`)."""
    pem = generate_certificate(key).public_bytes(serialization.Encoding.PEM).decode()
    r = httpx.post(f"{sandbox.url}/__sandbox/m2m/certificates", json={"certificate": pem, "clientId": client_id})
    assert r.status_code == 201, r.text
    return r.json()["certificateId"]


def assertion(sandbox, key, kid: str, alg: str, *, header: dict | None = None, **claims) -> str:
    now = int(time.time())
    payload = {
        "iss": DEMO_ERP_CLIENT_ID,
        "scope": ["rest_webservices"],
        "aud": sandbox.token_url,
        "iat": now,
        "exp": now + 600,
        **claims,
    }
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, algorithm=alg, headers={"typ": "JWT", "kid": kid, **(header or {})})


def token_request(sandbox, client_assertion: str, **form) -> httpx.Response:
    data = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE}
    data["client_assertion"] = client_assertion
    data.update(form)
    return httpx.post(sandbox.token_url, data=data, timeout=10)


@pytest.mark.parametrize("alg", ["PS256", "ES256"])
def test_a_signed_assertion_gets_a_token_that_reads_records(erp_sandbox, keys, alg):
    kid = register(erp_sandbox, keys[alg])
    r = token_request(erp_sandbox, assertion(erp_sandbox, keys[alg], kid, alg))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["expires_in"] == 3600 and body["token_type"] == "bearer" and body["access_token"]
    read = httpx.get(f"{erp_sandbox.url}{R}/term/2", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert read.status_code == 200 and read.json()["name"] == "Net 30"


def test_what_netsuite_documents_as_valid_is_accepted(erp_sandbox, keys):
    """exp exactly 60 minutes after iat (NetSuite's own sample), scopes as a comma-separated
    string, and the account's suitetalk host as aud."""
    kid = register(erp_sandbox, keys["PS256"])
    now = int(time.time())
    account_aud = f"https://{DEMO_ERP_ACCOUNT.lower().replace('_', '-')}.suitetalk.api.netsuite.com"
    account_aud += "/services/rest/auth/oauth2/v1/token"
    for claims in (
        {"iat": now, "exp": now + 3600},
        {"scope": "rest_webservices,restlets"},
        {"aud": account_aud},
        {"aud": [erp_sandbox.token_url, "https://example.invalid/other"]},
    ):
        r = token_request(erp_sandbox, assertion(erp_sandbox, keys["PS256"], kid, "PS256", **claims))
        assert r.status_code == 200, (claims, r.text)


@pytest.mark.parametrize(
    "case, status, error, reason",
    [
        ("wrong kid", 400, "invalid_grant", "InvalidCertificate"),
        ("wrong aud", 400, "invalid_grant", "InvalidAudience"),
        ("expired", 400, "invalid_grant", "AssertionExpired"),
        ("exp more than 60 minutes after iat", 400, "invalid_grant", "InvalidExpiration"),
        ("iat in the future", 400, "invalid_grant", "InvalidIssuedAt"),
        ("no exp", 400, "invalid_grant", "exp"),
        ("wrong iss", 401, "invalid_client", "InvalidIntegration"),
        ("bad signature", 400, "invalid_grant", "InvalidSignature"),
        ("RS256 (no longer accepted)", 400, "invalid_grant", "UnsupportedAlgorithm"),
        ("scope not on the integration", 400, "invalid_scope", "not enabled"),
        ("unknown scope", 400, "invalid_scope", "everything unknown"),
        ("no scope", 400, "invalid_scope", "ScopeMismatched"),
        ("no kid", 400, "invalid_request", "kid"),
        ("typ not JWT", 400, "invalid_request", "typ"),
        ("not a JWT", 400, "invalid_request", "not a JWT"),
    ],
)
def test_each_broken_rule_is_refused_with_netsuites_oauth_error(erp_sandbox, keys, case, status, error, reason):
    key = keys["PS256"]
    kid = register(erp_sandbox, key)
    now = int(time.time())
    sign = {"key": key, "kid": kid, "alg": "PS256", "header": None, "claims": {}}
    if case == "wrong kid":
        sign["kid"] = "x" * 43
    elif case == "wrong aud":
        sign["claims"] = {"aud": "https://1234567.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token"}
    elif case == "expired":
        sign["claims"] = {"iat": now - 1200, "exp": now - 600}
    elif case == "exp more than 60 minutes after iat":
        sign["claims"] = {"iat": now, "exp": now + 3601}
    elif case == "iat in the future":
        sign["claims"] = {"iat": now + 900, "exp": now + 1200}
    elif case == "no exp":
        sign["claims"] = {"exp": None}
    elif case == "wrong iss":
        sign["claims"] = {"iss": "someone-elses-integration"}
    elif case == "bad signature":
        sign["key"] = keys["other-rsa"]  # a key whose certificate was never mapped, kid of ours
    elif case == "RS256 (no longer accepted)":
        sign["alg"] = "RS256"
    elif case == "scope not on the integration":
        sign["claims"] = {"scope": ["suite_analytics"]}
    elif case == "unknown scope":
        sign["claims"] = {"scope": "rest_webservices,everything"}
    elif case == "no scope":
        sign["claims"] = {"scope": None}
    elif case == "no kid":
        sign["kid"] = ""
    elif case == "typ not JWT":
        sign["header"] = {"typ": "at+jwt"}
    if case == "not a JWT":
        client_assertion = "not-a-jwt"
    else:
        client_assertion = assertion(
            erp_sandbox, sign["key"], sign["kid"], sign["alg"], header=sign["header"], **sign["claims"]
        )
    r = token_request(erp_sandbox, client_assertion)
    assert r.status_code == status, (case, r.text)
    body = r.json()
    assert body["error"] == error and "access_token" not in body
    assert set(body) == {"error", "error_description"} and reason in body["error_description"]


def test_the_old_client_secret_grant_is_refused(erp_sandbox):
    """M2M has no client secret: the client_id + client_secret form (or HTTP Basic) gets no token."""
    url = erp_sandbox.token_url
    form = {"grant_type": "client_credentials", "client_id": DEMO_ERP_CLIENT_ID, "client_secret": "q2c-demo-erp-secret"}
    for r in (
        httpx.post(url, data=form, timeout=10),
        httpx.post(url, data={"grant_type": "client_credentials"}, auth=(DEMO_ERP_CLIENT_ID, "secret"), timeout=10),
        httpx.post(url, data={"grant_type": "client_credentials"}, timeout=10),
        httpx.post(url, json={"grant_type": "client_credentials"}, timeout=10),
    ):
        assert r.status_code == 400 and r.json()["error"] == "invalid_request", r.text
        assert "access_token" not in r.json()


def test_a_revoked_certificate_signs_for_nobody(erp_isolated, keys):
    kid = register(erp_isolated, keys["ES256"])
    assert token_request(erp_isolated, assertion(erp_isolated, keys["ES256"], kid, "ES256")).status_code == 200
    httpx.post(f"{erp_isolated.url}/__sandbox/m2m/certificates/{kid}/revoke", timeout=10).raise_for_status()
    r = token_request(erp_isolated, assertion(erp_isolated, keys["ES256"], kid, "ES256"))
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert "CertificateRevoked" in r.json()["error_description"]


def test_certificates_outside_netsuites_conditions_cannot_be_mapped(erp_sandbox):
    small = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = generate_certificate(small).public_bytes(serialization.Encoding.PEM).decode()
    for certificate in (pem, "not a certificate"):
        r = httpx.post(f"{erp_sandbox.url}/__sandbox/m2m/certificates", json={"certificate": certificate})
        assert r.status_code == 400 and r.json()["o:errorDetails"][0]["o:errorPath"] == "certificate"


async def test_the_connector_signs_es256_and_gets_a_new_token_after_revocation(erp_isolated, keys, tmp_path):
    key = keys["ES256"]
    kid = register(erp_isolated, key)
    key_file = tmp_path / "netsuite-m2m.pem"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    settings = dataclasses.replace(
        erp_settings(erp_isolated.url), certificate_id=kid, private_key_file=str(key_file), jwt_alg="ES256"
    )
    calls = []
    async with NetSuiteClient(settings, timeout=10, audit=calls.append) as client:
        await client.check_auth()
        assert (await client.get_record("term", "2"))["name"] == "Net 30"
        assert client.token_fetches == 1
        assert erp_isolated.revoke_tokens() >= 1
        assert (await client.get_record("currency", "1"))["symbol"] == "USD"
        assert client.token_fetches == 2
    statuses = [(c.operation, c.status) for c in calls]
    assert statuses == [
        ("token", 200),
        ("get_term", 200),
        ("get_currency", 401),
        ("token", 200),
        ("get_currency", 200),
    ]


async def test_the_connector_with_the_key_as_pem_text(erp_isolated):
    """Q2C_ERP_PRIVATE_KEY (the PEM text, e.g. from a secret store) instead of a file."""
    from tests.fixtures.erp import demo_m2m

    pem = demo_m2m().private_key_path.read_text().replace("\n", "\\n")  # one line, as in an env file
    settings = dataclasses.replace(erp_settings(erp_isolated.url), private_key_file=None, private_key=pem)
    async with NetSuiteClient(settings, timeout=10) as client:
        assert [s.name for s in await client.list_subsidiaries()][0] == "Q2C Consulting Inc."
