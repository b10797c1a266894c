"""NetSuite OAuth 2.0 machine-to-machine (client credentials) client assertion.

NetSuite's client-credentials flow has no client secret ("POST Request to the Token Endpoint
and the Access Token Response", "The Request Token Structure"): the token request is a form

    grant_type=client_credentials
    client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer
    client_assertion=<JWT>

and the JWT is signed with the private key of the certificate mapped to the integration in
the account (OAuth 2.0 Client Credentials (M2M) Setup):

- header `typ` JWT, `alg` PS256/PS384/PS512 (RSA 3072/4096 keys; NetSuite moved new RSA
  certificates from RS256 to RSASSA-PSS) or ES256/ES384/ES512 (EC P-256/P-384/P-521 keys),
  `kid` the certificate ID the mapping shows;
- claims `iss` the integration record's client ID, `scope` the scopes (NetSuite's own sample
  request sends them as a JSON array), `aud` the token endpoint URL, `iat`, and `exp` at most
  60 minutes after `iat` (the assertion only has to live for the one request: 5 minutes here).

The answer is `{"access_token", "expires_in": 3600, "token_type"}`; there is no refresh token
in this flow, a new assertion is signed for every token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from temporalio.exceptions import ApplicationError

from q2c.settings import ErpSettings
from q2c.vendors.http import AUTH_TYPE

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_SECONDS = 300
RSA_ALGORITHMS = ("PS256", "PS384", "PS512", "RS256")  # RS256: certificates mapped before NetSuite's change
EC_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def configuration_error(message: str, variable: str) -> ApplicationError:
    """A setting q2c cannot sign with: non-retryable (a retry signs with the same setting) and
    shaped like every vendor auth failure, so workflows, the CLI and `q2c doctor` show it."""
    return ApplicationError(
        f"erp token: configuration error: {message}",
        {
            "system": "erp",
            "operation": "token",
            "errors": [{"code": "CONFIGURATION", "message": message, "fields": [variable]}],
        },
        type=AUTH_TYPE,
        non_retryable=True,
    )


@dataclass(frozen=True)
class AssertionSigner:
    client_id: str
    certificate_id: str
    algorithm: str
    scopes: tuple[str, ...]
    key: SigningKey

    def assertion(self, audience: str, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": self.client_id,
            "scope": list(self.scopes),
            "aud": audience,
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME_SECONDS,
        }
        headers = {"typ": "JWT", "kid": self.certificate_id}
        return jwt.encode(claims, self.key, algorithm=self.algorithm, headers=headers)

    def form(self, audience: str) -> dict[str, str]:
        return {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(audience),
        }


def _pem(settings: ErpSettings) -> tuple[bytes, str]:
    if settings.private_key:
        text = settings.private_key
        if "\\n" in text and "\n" not in text:  # a PEM squeezed into one line of an env file
            text = text.replace("\\n", "\n")
        return text.encode(), "Q2C_ERP_PRIVATE_KEY"
    if not settings.private_key_file:
        raise configuration_error(
            "no private key: set Q2C_ERP_PRIVATE_KEY_FILE (a PEM file) or Q2C_ERP_PRIVATE_KEY (the PEM text) "
            "to the key of the certificate mapped in NetSuite's OAuth 2.0 Client Credentials (M2M) Setup",
            "Q2C_ERP_PRIVATE_KEY_FILE",
        )
    try:
        return Path(settings.private_key_file).read_bytes(), "Q2C_ERP_PRIVATE_KEY_FILE"
    except OSError as err:
        raise configuration_error(
            f"Q2C_ERP_PRIVATE_KEY_FILE={settings.private_key_file} cannot be read ({err.strerror or err})",
            "Q2C_ERP_PRIVATE_KEY_FILE",
        ) from None


def load_signer(settings: ErpSettings) -> AssertionSigner:
    """The signer for these settings, or a configuration error naming the variable to fix."""
    if not settings.certificate_id:
        raise configuration_error(
            "Q2C_ERP_CERTIFICATE_ID is not set: give the certificate ID NetSuite shows for the M2M mapping",
            "Q2C_ERP_CERTIFICATE_ID",
        )
    if not settings.client_id:
        raise configuration_error(
            "Q2C_ERP_CLIENT_ID is not set (the integration record's client ID)", "Q2C_ERP_CLIENT_ID"
        )
    data, variable = _pem(settings)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise configuration_error(f"{variable}: the private key is encrypted; give it unencrypted", variable) from None
    except ValueError:
        raise configuration_error(f"{variable} does not hold a PEM private key", variable) from None
    algorithm = settings.jwt_alg.upper()
    if algorithm in RSA_ALGORITHMS:
        if not isinstance(key, rsa.RSAPrivateKey):
            raise configuration_error(f"Q2C_ERP_JWT_ALG={algorithm} needs an RSA key; {variable} is not one", variable)
    elif algorithm in EC_CURVES:
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != EC_CURVES[algorithm]:
            raise configuration_error(
                f"Q2C_ERP_JWT_ALG={algorithm} needs an EC key on {EC_CURVES[algorithm]}; {variable} is not one",
                variable,
            )
    else:
        raise configuration_error(
            f"Q2C_ERP_JWT_ALG={settings.jwt_alg} is not one NetSuite accepts "
            "(PS256, PS384, PS512, ES256, ES384, ES512)",
            "Q2C_ERP_JWT_ALG",
        )
    return AssertionSigner(settings.client_id, settings.certificate_id, algorithm, tuple(settings.scopes), key)
