"""Standard Webhooks sign/verify, including the spec's published test vector."""

from __future__ import annotations

import pytest

from q2c.webhook.standard_webhooks import WebhookVerificationError, sign, signed_headers, verify

# From the Standard Webhooks specification / reference libraries.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = '{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_spec_test_vector():
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE
    # prefix is optional, bytes and str bodies sign the same
    assert sign(SPEC_SECRET.removeprefix("whsec_"), SPEC_ID, str(SPEC_TS), SPEC_BODY.encode()) == SPEC_SIGNATURE


def test_verify_accepts_spec_vector_within_tolerance():
    verify(SPEC_SECRET, SPEC_ID, str(SPEC_TS), SPEC_SIGNATURE, SPEC_BODY, now=SPEC_TS + 299)
    verify(SPEC_SECRET, SPEC_ID, str(SPEC_TS), SPEC_SIGNATURE, SPEC_BODY, now=SPEC_TS - 299)


def test_verify_accepts_one_of_several_signatures():
    header = f"v1,Ym9ndXM= v2,whatever {SPEC_SIGNATURE}"
    verify(SPEC_SECRET, SPEC_ID, SPEC_TS, header, SPEC_BODY, now=SPEC_TS)


@pytest.mark.parametrize(
    "reason,kwargs",
    [
        ("timestamp_too_old", {"now": SPEC_TS + 301}),
        ("timestamp_too_new", {"now": SPEC_TS - 301}),
        ("no_matching_signature", {"body": SPEC_BODY + " "}),
        ("no_matching_signature", {"msg_id": "msg_other"}),
        ("no_matching_signature", {"signature_header": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF="}),
        ("no_matching_signature", {"signature_header": "v2," + SPEC_SIGNATURE[3:]}),
        ("no_matching_signature", {"secret": "whsec_" + "A" * 32}),
        ("missing_headers", {"signature_header": None}),
        ("missing_headers", {"msg_id": ""}),
        ("invalid_timestamp", {"timestamp": "yesterday"}),
    ],
)
def test_verify_rejects(reason, kwargs):
    args = {
        "secret": SPEC_SECRET,
        "msg_id": SPEC_ID,
        "timestamp": str(SPEC_TS),
        "signature_header": SPEC_SIGNATURE,
        "body": SPEC_BODY,
        "now": SPEC_TS,
    }
    args.update(kwargs)
    with pytest.raises(WebhookVerificationError) as err:
        verify(
            args.pop("secret"),
            args.pop("msg_id"),
            args.pop("timestamp"),
            args.pop("signature_header"),
            args.pop("body"),
            **args,
        )
    assert err.value.reason == reason


def test_signed_headers_round_trip():
    headers = signed_headers(SPEC_SECRET, "msg_1", b'{"a":1}')
    verify(SPEC_SECRET, headers["webhook-id"], headers["webhook-timestamp"], headers["webhook-signature"], b'{"a":1}')


ROTATED_OUT = "whsec_" + "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI="


@pytest.mark.parametrize(
    "secrets",
    [f"{ROTATED_OUT} {SPEC_SECRET}", f"{SPEC_SECRET}  {ROTATED_OUT}", [ROTATED_OUT, SPEC_SECRET], (SPEC_SECRET,)],
)
def test_verify_accepts_any_of_several_secrets(secrets):
    """Q2C_WEBHOOK_SECRET may hold the new and the old secret (space-separated) while senders move."""
    verify(secrets, SPEC_ID, SPEC_TS, SPEC_SIGNATURE, SPEC_BODY, now=SPEC_TS)


def test_verify_with_several_secrets_still_rejects_an_unknown_one():
    with pytest.raises(WebhookVerificationError) as err:
        verify(f"{ROTATED_OUT} whsec_{'A' * 32}", SPEC_ID, SPEC_TS, SPEC_SIGNATURE, SPEC_BODY, now=SPEC_TS)
    assert err.value.reason == "no_matching_signature"
    with pytest.raises(ValueError):
        verify("  ", SPEC_ID, SPEC_TS, SPEC_SIGNATURE, SPEC_BODY, now=SPEC_TS)
