"""`python -m bench.codec`: what payload encryption costs per payload, against no codec.

Each size stands for a payload q2c really sends: a small update argument, an activity input
(an engagement with its lines), a status answer and a continue-as-new input of a five-year
engagement (~18 KB, see the slow test). For each, the time to convert a pydantic model to a
payload and back without a codec, then with the AES-GCM codec (seal + open), over many rounds;
prints microseconds per payload, the codec's share, and the bytes added.
"""

from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel
from temporalio.contrib.pydantic import pydantic_data_converter

from q2c.codec import EncryptionCodec, data_converter, new_key_spec, parse_keys

SIZES = {"update argument": 200, "activity input": 2_000, "status answer": 18_000, "CAN input": 60_000}
ROUNDS = 2_000


class Blob(BaseModel):
    note: str
    amounts: list[str]


def _model(size: int) -> Blob:
    amounts = [f"{i}.25" for i in range(size // 12)]
    return Blob(note="x" * max(0, size - 12 * len(amounts)), amounts=amounts)


async def _round_trip_seconds(converter, value: BaseModel, rounds: int) -> tuple[float, int]:
    payloads = await converter.encode([value])
    started = time.perf_counter()
    for _ in range(rounds):
        payloads = await converter.encode([value])
        await converter.decode(payloads, [Blob])
    return (time.perf_counter() - started) / rounds, payloads[0].ByteSize()


async def run(rounds: int = ROUNDS) -> list[str]:
    codec = EncryptionCodec(parse_keys(new_key_spec("bench")))
    encrypted = data_converter(codec)
    lines = [
        f"payload codec (AES-256-GCM), {rounds} round trips each (encode + decode, pydantic included)",
        f"{'payload':<16} {'bytes':>8} {'plain us':>10} {'codec us':>10} {'added us':>10} {'ratio':>6} {'+bytes':>7}",
    ]
    for name, size in SIZES.items():
        value = _model(size)
        plain, plain_bytes = await _round_trip_seconds(pydantic_data_converter, value, rounds)
        sealed, sealed_bytes = await _round_trip_seconds(encrypted, value, rounds)
        lines.append(
            f"{name:<16} {plain_bytes:>8} {plain * 1e6:>10.1f} {sealed * 1e6:>10.1f} "
            f"{(sealed - plain) * 1e6:>10.1f} {sealed / plain:>6.2f} {sealed_bytes - plain_bytes:>7}"
        )
    return lines


def main() -> None:
    for line in asyncio.run(run()):
        print(line)


if __name__ == "__main__":
    main()
