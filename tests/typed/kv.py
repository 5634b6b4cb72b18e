"""A small typed protocol for the tests: a key/value store with a request/response pair."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from p2p import FlowControl, MaxLen, Message, Protocol, RateLimit, Request, RequestLimits, Response, Session, UInt32

MAX_KEY = 32


@dataclass(frozen=True, slots=True)
class Put(Message):
    code = 0
    key: Annotated[str, MaxLen(MAX_KEY)]
    value: bytes


@dataclass(frozen=True, slots=True)
class Value(Response):
    code = 2
    found: bool
    value: bytes


@dataclass(frozen=True, slots=True)
class Get(Request[Value]):
    code = 1
    key: Annotated[str, MaxLen(MAX_KEY)]
    delay_ms: UInt32 = 0


class KV:
    """The store of one node; ``silent`` makes it take requests and never answer them."""

    def __init__(self, *, flow: FlowControl | None = None, requests: RequestLimits = RequestLimits(),
                 silent: bool = False) -> None:
        self.data: dict[str, bytes] = {}
        self.silent = silent
        self.served = 0
        self.protocol = Protocol("kv", 1, 3, flow=flow, requests=requests)
        self.protocol.on(Put)(self.on_put)
        self.protocol.on(Get)(self.on_get)

    async def on_put(self, conn: Session, msg: Put) -> None:
        self.data[msg.key] = msg.value

    async def on_get(self, conn: Session, msg: Get) -> Value | None:
        self.served += 1
        if self.silent:
            return None
        if msg.delay_ms:
            import trio

            await trio.sleep(msg.delay_ms / 1000)
        value = self.data.get(msg.key)
        return Value(value is not None, value or b"")


def flood_limited(rate: float = 10.0, burst: int = 5, max_drops: int = 20) -> FlowControl:
    return FlowControl((RateLimit(rate, burst, (Put,)),), max_drops=max_drops)
