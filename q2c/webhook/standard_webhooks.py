"""Standard Webhooks signing and verification (https://www.standardwebhooks.com).

The scheme, used where the sender has no signing of its own:
- headers `webhook-id` (unique message id), `webhook-timestamp` (integer Unix seconds) and
  `webhook-signature` (space-separated list of `v1,<base64 signature>`; several are allowed
  so a sender can rotate keys);
- the signature is base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")) over the raw body
  bytes exactly as received;
- the secret is `whsec_` followed by the base64 of the key bytes (the prefix is optional);
- a receiver rejects timestamps more than 5 minutes in the past *or* in the future (replay
  protection) and compares signatures in constant time;
- a receiver may hold several secrets at once (space-separated, as `Q2C_WEBHOOK_SECRET` does),
  so a secret rotates without a gap: a message signed with any of them verifies;
- inside the tolerance window the same signed message can be replayed: the receiver also
  de-duplicates on `webhook-id` (q2c does it in the ledger, see `q2c.ledger.inbound`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_SECONDS = 5 * 60


class WebhookVerificationError(Exception):
    """The message is not authentic or not fresh. `reason` is a short machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def secret_key(secret: str) -> bytes:
    """Key bytes of a `whsec_<base64>` secret (prefix optional)."""
    raw = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError("webhook secret is not valid base64 after the 'whsec_' prefix") from err


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else body


def sign(secret: str, msg_id: str, timestamp: int | str, body: bytes | str) -> str:
    """The `webhook-signature` value (`v1,<base64>`) for one message."""
    to_sign = f"{msg_id}.{int(timestamp)}.".encode() + _as_bytes(body)
    digest = hmac.new(secret_key(secret), to_sign, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signed_headers(secret: str, msg_id: str, body: bytes | str, *, timestamp: int | None = None) -> dict[str, str]:
    """The three headers a sender attaches (timestamp defaults to now)."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, msg_id, ts, body),
    }


def secrets_of(secret: str | Sequence[str]) -> list[str]:
    """One secret, several separated by spaces, or a sequence of them."""
    values = secret.split() if isinstance(secret, str) else [v for s in secret for v in s.split()]
    if not values:
        raise ValueError("no webhook secret configured")
    return values


def verify(
    secret: str | Sequence[str],
    msg_id: str | None,
    timestamp: str | int | None,
    signature_header: str | None,
    body: bytes | str,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Return None when the message is authentic and fresh; raise WebhookVerificationError otherwise.

    `secret` may be several (rotation): any one that signed the message verifies it.

    Reasons: missing_headers, invalid_timestamp, timestamp_too_old, timestamp_too_new,
    no_matching_signature.
    """
    if not msg_id or timestamp is None or timestamp == "" or not signature_header:
        missing = [
            name
            for name, value in (
                ("webhook-id", msg_id),
                ("webhook-timestamp", timestamp),
                ("webhook-signature", signature_header),
            )
            if value is None or value == ""
        ]
        raise WebhookVerificationError("missing_headers", f"missing header(s): {', '.join(missing)}")
    try:
        ts = int(str(timestamp).strip())
    except ValueError:
        raise WebhookVerificationError("invalid_timestamp", "webhook-timestamp is not an integer Unix time") from None
    current = time.time() if now is None else now
    if ts < current - tolerance_seconds:
        raise WebhookVerificationError(
            "timestamp_too_old", f"webhook-timestamp is more than {tolerance_seconds}s in the past"
        )
    if ts > current + tolerance_seconds:
        raise WebhookVerificationError(
            "timestamp_too_new", f"webhook-timestamp is more than {tolerance_seconds}s in the future"
        )
    expected = [sign(s, msg_id, ts, body).split(",", 1)[1].encode("ascii") for s in secrets_of(secret)]
    for candidate in signature_header.split(" "):
        version, _, value = candidate.partition(",")
        if version != SIGNATURE_VERSION or not value:
            continue
        given = value.encode("ascii", errors="replace")
        # every secret is compared (constant time each), so timing does not tell which matched
        if sum(hmac.compare_digest(given, e) for e in expected):
            return None
    raise WebhookVerificationError("no_matching_signature", "no v1 signature in webhook-signature matches the message")
