"""RLPx against @ethereumjs/devp2p: handshake, Hello, Ping/Pong and Disconnect in both directions.

The JS side is ``rlpx_peer.mjs`` (driven through stdin, reporting JSON lines on stdout). The
Hello written here is minimal on purpose: it proves the wire, the peer layer has its own.
"""

from __future__ import annotations

import functools
import json
import random
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import rlp
import trio

from p2p.crypto import PrivateKey, PublicKey
from p2p.rlpx import Connection, ConnectionClosed, accept, connect

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "rlpx_peer.mjs"
HELLO, DISCONNECT, PING, PONG = 0x00, 0x01, 0x02, 0x03
BASE_PROTOCOL_VERSION = 5  # v5: snappy after Hello, as ethereumjs speaks it
TEST_DEADLINE = 30.0


class NodePeer:
    """The running JS process: JSON events from its stdout, commands to its stdin."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._buf = b""
        self.events: list[dict[str, Any]] = []

    async def next_event(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while b"\n" not in self._buf:
            chunk = await self.process.stdout.receive_some(65536)
            if not chunk:
                raise AssertionError(f"node exited; events so far: {self.events}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        event: dict[str, Any] = json.loads(line)
        self.events.append(event)
        return event

    async def wait_for(self, name: str) -> dict[str, Any]:
        while True:
            event = await self.next_event()
            if event["event"] in ("error", "peer_error"):
                raise AssertionError(f"ethereumjs reported {event}")
            if event["event"] == name:
                return event

    async def command(self, cmd: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(cmd.encode() + b"\n")


@asynccontextmanager
async def node_peer(*args: str) -> AsyncIterator[NodePeer]:
    process = await trio.lowlevel.open_process(
        ["node", str(SCRIPT), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=str(HERE),
    )
    try:
        yield NodePeer(process)
    finally:
        process.kill()
        with trio.move_on_after(5):
            await process.wait()


def hello_payload(key: PrivateKey) -> bytes:
    return rlp.encode([BASE_PROTOCOL_VERSION, b"trio-devp2p/interop", [[b"probe", 1]], 0, key.public_key.to_bytes()])


async def exchange(conn: Connection, key: PrivateKey, js: NodePeer, js_id: bytes) -> None:
    """Hello both ways, snappy on, Ping/Pong both ways, then ethereumjs' own Disconnect."""
    await conn.send(HELLO, hello_payload(key))
    code, payload = await conn.receive()
    assert code == HELLO, (code, payload)
    version, client, caps, _port, node_id = rlp.decode(payload, strict=False)[:5]
    assert int.from_bytes(version, "big") == BASE_PROTOCOL_VERSION
    assert client == b"ethereumjs-interop/rlpx"
    assert [b"probe", b"\x01"] in caps
    assert node_id == js_id == conn.remote_pubkey.to_bytes()
    conn.snappy = True

    added = await js.wait_for("peer_added")
    assert added["id"] == key.public_key.to_bytes().hex()
    assert added["hello"]["protocolVersion"] == BASE_PROTOCOL_VERSION
    assert added["hello"]["clientId"] == "trio-devp2p/interop"

    # We ping, it pongs (compressed, or ethereumjs would have dropped us).
    await conn.send(PING, rlp.encode([]))
    assert await conn.receive() == (PONG, rlp.encode([]))
    await js.wait_for("ping_received")

    # It pings, we pong.
    await js.command("ping")
    assert await conn.receive() == (PING, rlp.encode([]))
    await conn.send(PONG, rlp.encode([]))
    await js.wait_for("pong_received")

    # Its Disconnect comes uncompressed and as a bare integer; we still read it.
    await js.command("disconnect")
    code, payload = await conn.receive()
    assert code == DISCONNECT
    assert rlp.decode(payload) == b""  # DISCONNECT_REQUESTED (0) as a bare RLP integer
    with pytest.raises(ConnectionClosed):
        with trio.fail_after(5):  # ethereumjs ends the socket about 2 s after its Disconnect
            await conn.receive()
    await conn.aclose()


async def test_we_dial_ethereumjs() -> None:
    key = PrivateKey.generate(random.Random(11))
    with trio.fail_after(TEST_DEADLINE):
        async with node_peer("listen") as js:
            listening = await js.wait_for("listening")
            js_id = bytes.fromhex(listening["id"])
            conn = await connect("127.0.0.1", listening["port"], key, PublicKey(js_id))
            await exchange(conn, key, js, js_id)
            removed = await js.wait_for("peer_removed")
            assert removed["disconnectWe"] is True


async def test_ethereumjs_dials_us() -> None:
    key = PrivateKey.generate(random.Random(12))
    accepted: trio.MemorySendChannel[Connection]
    accepted, incoming = trio.open_memory_channel[Connection](1)

    async def handler(stream: trio.SocketStream) -> None:
        conn = await accept(stream, key)
        await accepted.send(conn)
        await trio.sleep_forever()  # the test owns the connection now

    with trio.fail_after(TEST_DEADLINE):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            async with node_peer("dial", "--port", str(port), "--id", key.public_key.to_bytes().hex()) as js:
                dialing = await js.wait_for("dialing")
                conn = await incoming.receive()
                assert conn.remote_pubkey.to_bytes().hex() == dialing["id"]
                await exchange(conn, key, js, bytes.fromhex(dialing["id"]))
                removed = await js.wait_for("peer_removed")
                assert removed["disconnectWe"] is True
            nursery.cancel_scope.cancel()
