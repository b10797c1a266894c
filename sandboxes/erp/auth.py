"""OAuth 2.0 token endpoint (machine-to-machine) and the bearer check of the record API.

NetSuite's client-credentials flow ("POST Request to the Token Endpoint and the Access Token
Response", "The Request Token Structure") has no client secret. The request is a form
(`application/x-www-form-urlencoded`):

    grant_type=client_credentials
    client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer
    client_assertion=<JWT signed with the private key of a mapped certificate>

JWT header: `typ` JWT, `alg` PS256/PS384/PS512/ES256/ES384/ES512, `kid` the certificate ID of
the mapping. Claims: `iss` the integration's client ID, `scope` (restlets, rest_webservices,
suite_analytics; a comma-separated string, or a JSON array as NetSuite's own sample request
sends), `aud` the token endpoint URL, `iat`, `exp` at most 60 minutes after `iat`.
Answer: `{"access_token", "expires_in": 3600, "token_type": "bearer"}`.

Rejections are OAuth 2.0 error bodies (RFC 6749 section 5.2), `{"error", "error_description"}`:
- 400 `invalid_request`: not a form, a parameter missing or repeated, the wrong assertion
  type, no assertion (this is what the old `client_id` + `client_secret` request gets: M2M
  has no secret), an assertion that is not a JWT, `typ` not JWT, `kid`/`iss` absent;
- 400 `unsupported_grant_type`: a grant other than client_credentials;
- 401 `invalid_client`: `iss` names no integration record with the M2M grant;
- 400 `invalid_grant`: unknown, revoked, expired or foreign certificate (`kid`), an algorithm
  NetSuite does not accept or that does not fit the key, a bad signature, `aud` not this
  token URL, `exp` missing, past, or more than 60 minutes after `iat`, `iat` in the future;
- 400 `invalid_scope`: no scope, or a scope the integration record does not have.
NetSuite itself says little in the response and writes the reason to the Login Audit Trail
(InvalidSignature, InvalidIntegration, ScopeMismatched, ...); the sandbox puts that reason in
`error_description`, so a test or an admin sees which rule failed.

The token endpoint is exempt from the fault injection and the concurrency limit (NetSuite
does not count it against the account's concurrency either). A missing, unknown, expired or
revoked bearer token on a record call is 401 INVALID_LOGIN, as is a token whose scopes do not
include rest_webservices.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl

import jwt
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sandboxes.common.tokens import TokenStore
from sandboxes.erp.errors import INVALID_LOGIN_DETAIL, NetSuiteError
from sandboxes.erp.m2m import EC_ALGORITHMS, KNOWN_SCOPES, RSA_ALGORITHMS, AssertionRules, CertificateRegistry

TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALLOWED_ALGORITHMS = RSA_ALGORITHMS + tuple(a for algs in EC_ALGORITHMS.values() for a in algs)
RECORD_SCOPE = "rest_webservices"


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error, self.description, self.status = error, description, status

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": self.error, "error_description": self.description},
            status_code=self.status,
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )


def netsuite_token_url(account_id: str) -> str:
    """`https://<accountID>.suitetalk.api.netsuite.com/...`: the account ID in a host name is
    lower case with `_` as `-` (1234567_SB1 -> 1234567-sb1)."""
    return f"https://{account_id.lower().replace('_', '-')}.suitetalk.api.netsuite.com{TOKEN_PATH}"


def _form(body: bytes, content_type: str) -> dict[str, str]:
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "the token request must be an application/x-www-form-urlencoded form")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body.strip()))
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "the form body could not be read") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise OAuthError("invalid_request", f"parameter {key} given more than once")
        form[key] = value
    return form


def _scopes(claim: object) -> list[str]:
    if isinstance(claim, str):
        return [s for s in claim.replace(",", " ").split() if s]
    if isinstance(claim, list) and all(isinstance(s, str) for s in claim):
        return [s.strip() for s in claim if s.strip()]
    return []


def _number(claims: dict, name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OAuthError("invalid_grant", f"the assertion's {name} claim is missing or not a NumericDate")
    return float(value)


def verify_assertion(
    assertion: str, registry: CertificateRegistry, audiences: tuple[str, ...], rules: AssertionRules
) -> tuple[str, list[str]]:
    """The client ID and scopes of a valid client assertion, or the OAuthError NetSuite answers."""
    try:
        header = jwt.get_unverified_header(assertion)
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise OAuthError("invalid_request", "client_assertion is not a JWT") from None
    if not isinstance(claims, dict):
        raise OAuthError("invalid_request", "client_assertion is not a JWT")
    if header.get("typ") != "JWT":
        raise OAuthError("invalid_request", "the assertion header's typ must be JWT")
    alg, kid, iss = header.get("alg"), header.get("kid"), claims.get("iss")
    if not isinstance(kid, str) or not kid:
        raise OAuthError("invalid_request", "the assertion header has no kid (the certificate ID of the M2M mapping)")
    if not isinstance(iss, str) or not iss:
        raise OAuthError("invalid_request", "the assertion has no iss (the integration's client ID)")
    if iss not in registry.client_scopes:
        raise OAuthError("invalid_client", "InvalidIntegration: no integration record with this client ID", 401)
    if alg not in ALLOWED_ALGORITHMS:
        raise OAuthError(
            "invalid_grant", f"UnsupportedAlgorithm: {alg!r}; NetSuite accepts {', '.join(ALLOWED_ALGORITHMS)}"
        )
    mapping = registry.get(kid)
    if mapping is None:
        raise OAuthError("invalid_grant", "InvalidCertificate: no M2M mapping has this certificate ID (kid)")
    if mapping.client_id != iss:
        raise OAuthError("invalid_grant", "InvalidCertificate: the certificate is mapped to another integration")
    if mapping.revoked:
        raise OAuthError("invalid_grant", "CertificateRevoked: the M2M mapping of this certificate was revoked")
    now = time.time()
    if not mapping.valid_from.timestamp() - rules.clock_skew_seconds <= now <= mapping.valid_until.timestamp():
        raise OAuthError("invalid_grant", "CertificateExpired: the mapped certificate is not valid now")
    if alg not in mapping.algorithms:
        raise OAuthError(
            "invalid_grant",
            f"UnsupportedAlgorithm: {alg} does not fit the certificate ({', '.join(mapping.algorithms)})",
        )
    try:
        jwt.decode(
            assertion,
            mapping.public_key,
            algorithms=[alg],
            options={
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "verify_aud": False,
                "verify_iss": False,
            },
        )
    except jwt.PyJWTError:
        raise OAuthError(
            "invalid_grant", "InvalidSignature: the assertion is not signed by the mapped certificate"
        ) from None
    aud = claims.get("aud")
    given = aud if isinstance(aud, list) else [aud]
    if not any(a in audiences for a in given if isinstance(a, str)):
        raise OAuthError("invalid_grant", f"InvalidAudience: aud must be the token endpoint URL {audiences[0]}")
    iat, exp = _number(claims, "iat"), _number(claims, "exp")
    if iat > now + rules.clock_skew_seconds:
        raise OAuthError("invalid_grant", "InvalidIssuedAt: iat is in the future")
    if exp <= now:
        raise OAuthError("invalid_grant", "AssertionExpired: exp is in the past")
    if exp <= iat or exp - iat > rules.max_lifetime_seconds:
        raise OAuthError("invalid_grant", "InvalidExpiration: exp must be at most 60 minutes after iat")
    scopes = _scopes(claims.get("scope"))
    if not scopes:
        raise OAuthError("invalid_scope", "ScopeMismatched: the assertion names no scope")
    enabled = registry.client_scopes[iss]
    unknown = [s for s in scopes if s.lower() not in enabled]
    if unknown:
        known = [s for s in unknown if s.lower() in KNOWN_SCOPES]
        why = "not enabled on the integration record" if known else "unknown"
        raise OAuthError("invalid_scope", f"ScopeMismatched: scope {', '.join(unknown)} {why}")
    return iss, [s.lower() for s in scopes]


def token_router(
    tokens: TokenStore, registry: CertificateRegistry, account_id: str, rules: AssertionRules | None = None
) -> APIRouter:
    router = APIRouter(tags=["oauth2"])
    rules = rules or AssertionRules()

    @router.post(TOKEN_PATH)
    async def issue_token(request: Request) -> JSONResponse:
        try:
            form = _form(await request.body(), request.headers.get("content-type", ""))
            grant = form.get("grant_type")
            if not grant:
                raise OAuthError("invalid_request", "grant_type is required")
            if grant != "client_credentials":
                raise OAuthError("unsupported_grant_type", f"grant_type {grant!r} is not offered for M2M")
            if "client_secret" in form or request.headers.get("authorization", "").lower().startswith("basic "):
                raise OAuthError(
                    "invalid_request",
                    "client secrets are not accepted: the client credentials (M2M) grant authenticates "
                    f"with a JWT client_assertion (client_assertion_type={ASSERTION_TYPE})",
                )
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                raise OAuthError("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
            assertion = form.get("client_assertion")
            if not assertion:
                raise OAuthError("invalid_request", "client_assertion is required")
            own = str(request.base_url).rstrip("/") + TOKEN_PATH
            audiences = (own, netsuite_token_url(account_id), *rules.extra_audiences)
            _client_id, scopes = verify_assertion(assertion, registry, audiences, rules)
        except OAuthError as err:
            return err.response()
        return JSONResponse(
            {"access_token": tokens.issue(scopes=scopes), "expires_in": tokens.ttl_seconds, "token_type": "bearer"},
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    return router


def check_bearer(request: Request, tokens: TokenStore) -> None:
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else None
    if not tokens.valid(token) or RECORD_SCOPE not in tokens.scopes_of(token):
        raise NetSuiteError(401, "INVALID_LOGIN", INVALID_LOGIN_DETAIL)
