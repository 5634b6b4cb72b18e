"""Bare RLPx + Hello clients (no server of their own) and small waiting helpers."""

from __future__ import annotations

from collections.abc import Sequence

import trio

from p2p.crypto import PrivateKey
from p2p.enode import Node
from p2p.hello import Hello
from p2p.peer import exchange_hello, make_hello
from p2p.protocol import Protocol
from p2p.rlpx.connection import Connection, connect

DEADLINE = 20  # seconds any single test may take on a loaded two-core machine


async def bare_client(node: Node, key: PrivateKey, protocols: Sequence[Protocol] = (),
                      client_id: str = "bare", local_address: str | None = None) -> tuple[Connection, Hello]:
    """RLPx + Hello to ``node`` (from ``local_address``, e.g. 127.0.0.2, when given); raises
    RemoteDisconnected if it refuses us."""
    conn = await connect(str(node.ip), node.tcp_port, key, node.pubkey, local_address=local_address)
    try:
        hello = await exchange_hello(conn, make_hello(key.public_key, protocols, client_id=client_id, listen_port=0))
    except BaseException:
        with trio.CancelScope(shield=True):
            await conn.aclose()
        raise
    return conn, hello


async def until(predicate: object, timeout: float = 10.0, interval: float = 0.01) -> None:
    """Poll ``predicate()`` until it is true."""
    assert callable(predicate)
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(interval)
