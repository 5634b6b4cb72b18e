"""The typed layer's figures, for ``p2p bench peers`` and ``p2p bench compare``.

Two nodes in one process over 127.0.0.1. One protocol has a raw handler (code 0) and a typed
handler (code 1) for the same payload (``[data]``), so that the two paths are measured over the
same connection setup; the sender writes pre-encoded payloads so that only the receiving side
differs. Figures: messages/s through each path at 1 KiB and 64 KiB (and µs per message), the
decode alone (µs), and requests/s of a request/response round trip with 1 and 16 in flight.
"""

from __future__ import annotations

import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import rlp
import trio

from p2p.bench._stats import summary
from p2p.messages import Message, Request, Response, UInt64
from p2p.protocol import Protocol, ProtocolConnection
from p2p.request import RequestLimits
from p2p.session import Session

SIZES = (1024, 65536)
MESSAGES = {1024: 20000, 65536: 2000}
QUICK_MESSAGES = {1024: 2000, 65536: 200}
REQUESTS = 4000
QUICK_REQUESTS = 400
IN_FLIGHT = (1, 16)
TIMEOUT = 120.0  # seconds for one figure; a stall is a bug, not a figure


@dataclass(frozen=True, slots=True)
class Blob(Message):
    code = 1
    data: bytes


@dataclass(frozen=True, slots=True)
class Pong(Response):
    code = 3
    n: UInt64


@dataclass(frozen=True, slots=True)
class Ping(Request[Pong]):
    code = 2
    n: UInt64


def _protocol(received: list[int]) -> Protocol:
    proto = Protocol("tbench", 1, 4, requests=RequestLimits(max_in_flight=max(IN_FLIGHT)))

    @proto.handler(0)
    async def raw(conn: ProtocolConnection, payload: bytes) -> None:
        received[0] += 1

    @proto.on(Blob)
    async def typed(conn: Session, msg: Blob) -> None:
        received[0] += 1

    @proto.on(Ping)
    async def ping(conn: Session, msg: Ping) -> Pong:
        return Pong(msg.n)

    return proto


async def _figures(quick: bool) -> dict[str, Any]:
    from p2p.testing import connected_pair

    received = [0]
    proto_a, proto_b = _protocol([0]), _protocol(received)
    out: dict[str, Any] = {}
    async with connected_pair([proto_a], [proto_b]) as (a, b):
        raw_conn = a.connection(b.id, "tbench")
        assert raw_conn is not None
        conn = proto_a.session(raw_conn)
        counts = QUICK_MESSAGES if quick else MESSAGES
        for size in SIZES:
            payload = Blob(b"\x07" * size).encode()
            for code, key in ((0, "raw"), (1, "typed")):
                received[0] = 0
                n = counts[size]
                with trio.fail_after(TIMEOUT):
                    start = time.perf_counter()
                    for _ in range(n):
                        await raw_conn.send(code, payload)
                    while received[0] < n:
                        await trio.sleep(0.001)
                    out[f"{key}_{size}"] = n / (time.perf_counter() - start)
        total = QUICK_REQUESTS if quick else REQUESTS
        for in_flight in IN_FLIGHT:
            async def worker(count: int) -> None:
                for i in range(count):
                    await conn.request(Ping(i))

            with trio.fail_after(TIMEOUT):
                start = time.perf_counter()
                async with trio.open_nursery() as nursery:
                    for _ in range(in_flight):
                        nursery.start_soon(worker, total // in_flight)
                out[f"requests_{in_flight}"] = (total // in_flight * in_flight) / (time.perf_counter() - start)
    return out


def _decode_us(size: int, number: int = 2000) -> tuple[float, float]:
    """µs to decode one payload: the typed layer's ``Blob.decode`` and a bare ``rlp.decode``."""
    payload = Blob(b"\x07" * size).encode()
    typed: Callable[[], Any] = lambda: Blob.decode(payload)  # noqa: E731
    bare: Callable[[], Any] = lambda: rlp.decode(payload, strict=True)  # noqa: E731
    return (min(timeit.repeat(typed, number=number, repeat=3)) / number * 1e6,
            min(timeit.repeat(bare, number=number, repeat=3)) / number * 1e6)


def typed_figures(quick: bool, repeat: int) -> dict[str, Any]:
    """The JSON keys this module adds to a benchmark's result."""
    runs = [trio.run(_figures, quick) for _ in range(max(1, repeat))]

    def fig(key: str) -> dict[str, float]:
        return summary([run[key] for run in runs])

    result: dict[str, Any] = {
        "typed_messages_per_s": {str(size): fig(f"typed_{size}") for size in SIZES},
        "raw_handler_messages_per_s": {str(size): fig(f"raw_{size}") for size in SIZES},
        "typed_us_per_message": {str(size): {
            "typed": summary([1e6 / run[f"typed_{size}"] for run in runs]),
            "raw": summary([1e6 / run[f"raw_{size}"] for run in runs]),
        } for size in SIZES},
        "requests_per_s": {f"in_flight_{n}": fig(f"requests_{n}") for n in IN_FLIGHT},
    }
    decode: dict[str, Any] = {}
    for size in SIZES:
        pairs = [_decode_us(size) for _ in range(max(1, repeat))]
        decode[str(size)] = {"typed": summary([p[0] for p in pairs]), "rlp_only": summary([p[1] for p in pairs])}
    result["typed_decode_us"] = decode
    return result
