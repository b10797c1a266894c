"""NetSuite's OAuth 2.0 client-credentials (machine-to-machine) setup, as the sandbox keeps it.

In a real account an administrator maps an integration record (its client ID), an entity
and a role to an uploaded X.509 certificate (Setup > Integration > Manage Authentication >
OAuth 2.0 Client Credentials (M2M) Setup); NetSuite answers with a *certificate ID*, the
`kid` every client assertion must carry. NetSuite's "Certificate Conditions" for such a
certificate, enforced here on registration:

- the public part is an X.509 certificate (PEM);
- RSA keys of 3072 or 4096 bits, EC keys of 256, 384 or 521 bits;
- at most two years of validity (a longer certificate is shortened to two years);
- one certificate per integration (the sandbox has no entities or roles to combine with).

A mapping can be revoked; a revoked or expired certificate no longer signs for anyone.
Mappings are per account and cleared when a NetSuite sandbox account is refreshed; here the
demo mapping is re-registered at every start and kept across `POST /__sandbox/reset`.

The demo credentials (`ensure_demo_credentials`) are generated at first start into a folder
of the sandbox's state (`<state_dir>/erp-m2m/`: `private-key.pem`, `certificate.pem`,
`certificate-id`) and never committed: `make up` hands the key path and certificate ID to
q2c's processes, tests generate theirs into a temporary folder. The certificate ID is derived
from the certificate itself (base64url SHA-256, 43 characters, the length of NetSuite's), so a
key, its certificate and its ID can never disagree even when two processes race to create them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

PRIVATE_KEY_FILE = "private-key.pem"
CERTIFICATE_FILE = "certificate.pem"
CERTIFICATE_ID_FILE = "certificate-id"

# NetSuite's "The Request Token Structure": PS256/384/512 and ES256/384/512. RS256 is no
# longer listed (NetSuite moved new certificates to RSASSA-PSS), so it is refused.
RSA_ALGORITHMS = ("PS256", "PS384", "PS512")
EC_ALGORITHMS = {"secp256r1": ("ES256",), "secp384r1": ("ES384",), "secp521r1": ("ES512",)}
RSA_KEY_SIZES = (3072, 4096)
EC_KEY_SIZES = (256, 384, 521)
MAX_VALIDITY = timedelta(days=730)

# The scopes an integration record can have checked (NetSuite's integration record).
KNOWN_SCOPES = ("restlets", "rest_webservices", "suite_analytics")


class CertificateRejected(ValueError):
    """The certificate does not meet NetSuite's certificate conditions."""


@dataclass(frozen=True)
class DemoCredentials:
    directory: Path
    private_key_path: Path
    certificate_path: Path
    certificate_id: str


@dataclass
class Mapping:
    certificate_id: str
    client_id: str
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    algorithms: tuple[str, ...]
    valid_from: datetime
    valid_until: datetime
    subject: str
    revoked: bool = False

    def as_json(self) -> dict:
        return {
            "certificateId": self.certificate_id,
            "clientId": self.client_id,
            "algorithms": list(self.algorithms),
            "validFrom": self.valid_from.isoformat(),
            "validUntil": self.valid_until.isoformat(),
            "subject": self.subject,
            "revoked": self.revoked,
        }


def certificate_id_of(certificate: x509.Certificate) -> str:
    digest = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def algorithms_for(public_key: object) -> tuple[str, ...]:
    """The signing algorithms NetSuite allows for a key, after its size rules."""
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size not in RSA_KEY_SIZES:
            raise CertificateRejected(f"RSA key of {public_key.key_size} bits: NetSuite accepts 3072 or 4096 bits")
        return RSA_ALGORITHMS
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.key_size not in EC_KEY_SIZES or public_key.curve.name not in EC_ALGORITHMS:
            raise CertificateRejected(f"EC key on {public_key.curve.name}: NetSuite accepts 256, 384 or 521 bits")
        return EC_ALGORITHMS[public_key.curve.name]
    raise CertificateRejected("only RSA and EC certificates can be mapped")


class CertificateRegistry:
    """The account's M2M mappings: certificate ID -> (client ID, public key, validity)."""

    def __init__(self, client_scopes: dict[str, tuple[str, ...]]) -> None:
        # the integration records with the client-credentials grant, and their checked scopes
        self.client_scopes = dict(client_scopes)
        self._mappings: dict[str, Mapping] = {}
        self._kept: set[str] = set()
        self._lock = threading.Lock()

    def register_pem(self, pem: bytes | str, client_id: str, *, keep_on_reset: bool = False) -> Mapping:
        if client_id not in self.client_scopes:
            raise CertificateRejected(f"no integration record with client ID {client_id!r}")
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            certificate = x509.load_pem_x509_certificate(data)
        except ValueError:
            raise CertificateRejected("the public key must be an X.509 certificate in PEM format") from None
        public_key = certificate.public_key()
        algorithms = algorithms_for(public_key)
        valid_from = certificate.not_valid_before_utc
        # NetSuite shortens a longer validity to two years
        valid_until = min(certificate.not_valid_after_utc, valid_from + MAX_VALIDITY)
        cert_id = certificate_id_of(certificate)
        with self._lock:
            existing = self._mappings.get(cert_id)
            if existing is not None and existing.client_id != client_id and not existing.revoked:
                raise CertificateRejected("this certificate is already mapped to another integration")
            mapping = Mapping(
                certificate_id=cert_id,
                client_id=client_id,
                public_key=public_key,
                algorithms=algorithms,
                valid_from=valid_from,
                valid_until=valid_until,
                subject=certificate.subject.rfc4514_string(),
            )
            self._mappings[cert_id] = mapping
            if keep_on_reset:
                self._kept.add(cert_id)
        return mapping

    def get(self, certificate_id: str) -> Mapping | None:
        return self._mappings.get(certificate_id)

    def revoke(self, certificate_id: str) -> bool:
        mapping = self._mappings.get(certificate_id)
        if mapping is None:
            return False
        mapping.revoked = True
        return True

    def all(self) -> list[Mapping]:
        return list(self._mappings.values())

    def reset(self) -> None:
        """Back to the mappings registered at start (the demo certificate), un-revoked."""
        with self._lock:
            self._mappings = {k: v for k, v in self._mappings.items() if k in self._kept}
            for mapping in self._mappings.values():
                mapping.revoked = False


# --- demo credentials -----------------------------------------------------------------------


def generate_certificate(
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, *, days: int = 730, name: str = "q2c demo"
) -> x509.Certificate:
    """A self-signed X.509 certificate for the key (what `openssl req -new -x509` makes)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .sign(private_key, hashes.SHA256())
    )


def _pem_key(private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load(directory: Path) -> DemoCredentials | None:
    key_path, cert_path = directory / PRIVATE_KEY_FILE, directory / CERTIFICATE_FILE
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError, TypeError):
        return None
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        return None
    if certificate.not_valid_after_utc <= datetime.now(UTC) + timedelta(days=1):
        return None  # about to expire: a new one is generated (NetSuite would mail the admin)
    cert_id = certificate_id_of(certificate)
    id_path = directory / CERTIFICATE_ID_FILE
    try:
        written = id_path.read_text().strip()
    except OSError:
        written = None
    if written != cert_id:
        _write(id_path, (cert_id + "\n").encode())
    return DemoCredentials(directory, key_path, cert_path, cert_id)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def ensure_demo_credentials(directory: Path | str) -> DemoCredentials:
    """The demo key pair, certificate and certificate ID in `directory`, generated on first use.

    An RSA-3072 key (PS256, the algorithm NetSuite's own examples use). Written into a fresh
    folder that is renamed into place, so a concurrent first start of the sandbox and of
    `make up` ends with one consistent set of files."""
    directory = Path(directory)
    found = _load(directory)
    if found is not None:
        return found
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(f".{directory.name}.{secrets.token_hex(4)}")
    staging.mkdir(mode=0o700)
    try:
        key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        certificate = generate_certificate(key)
        _write(staging / PRIVATE_KEY_FILE, _pem_key(key), 0o600)
        _write(staging / CERTIFICATE_FILE, certificate.public_bytes(serialization.Encoding.PEM))
        _write(staging / CERTIFICATE_ID_FILE, (certificate_id_of(certificate) + "\n").encode())
        try:
            os.rename(staging, directory)
        except OSError:
            # the folder exists: someone else won the race (or left an unusable set behind)
            found = _load(directory)
            if found is not None:
                return found
            for name in (PRIVATE_KEY_FILE, CERTIFICATE_FILE, CERTIFICATE_ID_FILE):
                directory.mkdir(parents=True, exist_ok=True)
                os.replace(staging / name, directory / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    found = _load(directory)
    if found is None:
        raise RuntimeError(f"could not create the demo M2M credentials in {directory}")
    return found


@dataclass
class AssertionRules:
    """How strictly the token endpoint reads a client assertion (NetSuite's rules)."""

    max_lifetime_seconds: int = 3600  # exp at most 60 minutes after iat
    clock_skew_seconds: int = 60  # iat may be this far in the future (clocks differ)
    extra_audiences: tuple[str, ...] = field(default_factory=tuple)
