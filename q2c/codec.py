"""Encrypted payloads: what Temporal stores of an engagement is ciphertext.

Every workflow and activity input and result, query answer, signal and update argument,
continue-as-new input, memo, and failure message and stack trace (tax IDs, billing addresses,
rates, invoice amounts, vendor messages that quote them) passes through `EncryptionCodec`
before it leaves a q2c process, so the Temporal database, its backups and anyone with raw
history access see only AES-256-GCM ciphertext. Engineers read histories in the Temporal UI
through the codec server (`q2c.codec_server`), which decrypts for signed-in users only.

Keys rotate without breaking years-old histories: a payload names the key that sealed it
(`encryption-key-id` in its metadata); the first configured key seals new payloads, every
configured key opens old ones. To rotate, put a new key first and keep the old ones for as long
as histories sealed with them may be read (for an engagement, its whole life plus retention).

Configuration (`Q2C_CODEC_KEYS`): comma-separated `key-id:base64-key` pairs, 32-byte keys,
e.g. `2026-12:3q2+7w...=,2025-06:q83vEj...=`. `python -m q2c.codec new-key` prints one.

What stays searchable is what is *not* encrypted: search attributes (stage, opportunity ID,
customer name, billing model, region, open-exception count, steward queue) are indexed by
the server and never hold tax IDs, addresses, rates or amounts (see README, Security).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
from collections.abc import Iterable, Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
KEY_BYTES = 32


class CodecKeyError(ValueError):
    """The codec configuration is unusable, or a payload names a key this process lacks."""


def parse_keys(spec: str) -> dict[str, bytes]:
    """`id:base64,id:base64` -> {id: key}, in order (the first seals). Errors name the entry."""
    keys: dict[str, bytes] = {}
    for n, entry in enumerate((e.strip() for e in spec.split(",")), start=1):
        if not entry:
            continue
        key_id, sep, encoded = entry.partition(":")
        if not sep or not key_id.strip():
            raise CodecKeyError(f"Q2C_CODEC_KEYS entry {n}: expected key-id:base64-key")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise CodecKeyError(f"Q2C_CODEC_KEYS entry {n} ({key_id}): the key is not base64") from None
        if len(key) != KEY_BYTES:
            raise CodecKeyError(
                f"Q2C_CODEC_KEYS entry {n} ({key_id}): the key has {len(key)} bytes, AES-256 needs {KEY_BYTES}"
            )
        if key_id in keys:
            raise CodecKeyError(f"Q2C_CODEC_KEYS: key id {key_id} appears twice")
        keys[key_id.strip()] = key
    if not keys:
        raise CodecKeyError("Q2C_CODEC_KEYS holds no key")
    return keys


def new_key_spec(key_id: str) -> str:
    """A fresh `key-id:base64-key` entry (32 random bytes)."""
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM per payload, a fresh 96-bit nonce each, the key ID as associated data.

    Binding the key ID into the authentication tag means a payload whose metadata was altered
    to name another key fails to open instead of decrypting under the wrong key. Payloads
    that are not ours (written before encryption was turned on) pass through decode
    unchanged, so turning the codec on never breaks a running engagement.
    """

    def __init__(self, keys: dict[str, bytes]) -> None:
        if not keys:
            raise CodecKeyError("no codec key")
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.active_key_id = next(iter(keys))

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.seal(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.open(p) for p in payloads]

    def seal(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        key_id = self.active_key_id
        sealed = self._keys[key_id].encrypt(nonce, payload.SerializeToString(), key_id.encode())
        return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id.encode()}, data=nonce + sealed)

    def open(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode()
        aead = self._keys.get(key_id)
        if aead is None:
            raise CodecKeyError(f"payload sealed with key {key_id!r}, which this process does not hold")
        clear = aead.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], key_id.encode())
        return Payload.FromString(clear)


def data_converter(codec: PayloadCodec | None) -> DataConverter:
    """q2c's one data converter: pydantic (money as Decimal), failures' messages and stack
    traces moved into an encoded payload, and the codec when there is one."""
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def codec_from_spec(spec: str | None) -> EncryptionCodec | None:
    return EncryptionCodec(parse_keys(spec)) if spec else None


def main(argv: Iterable[str] | None = None) -> None:
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] != ["new-key"]:
        print("usage: python -m q2c.codec new-key [key-id]", file=sys.stderr)
        raise SystemExit(2)
    from datetime import date

    print(new_key_spec(args[1] if len(args) > 1 else date.today().strftime("%Y-%m")))


if __name__ == "__main__":
    main()
