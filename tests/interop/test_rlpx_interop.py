"""RLPx against @ethereumjs/devp2p: handshake, Hello, Ping/Pong and Disconnect in both directions.

The JS side is ``rlpx_peer.mjs`` (driven through stdin, reporting JSON lines on stdout). The
Hello written here is minimal on purpose: it proves the wire, the peer layer has its own.
"""

from __future__ import annotations

import functools
import random
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
import rlp
import trio

from p2p.crypto import PrivateKey, PublicKey
from p2p.rlpx import Connection, ConnectionClosed, accept, connect
from p2p.testing import JsonLinesProcess, open_json_process

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "rlpx_peer.mjs"
HELLO, DISCONNECT, PING, PONG = 0x00, 0x01, 0x02, 0x03
BASE_PROTOCOL_VERSION = 5  # v5: snappy after Hello, as ethereumjs speaks it
TEST_DEADLINE = 30.0


JS_FAILURES = ("error", "peer_error")  # events in which ethereumjs reports a failure


def node_peer(*args: str) -> AbstractAsyncContextManager[JsonLinesProcess]:
    return open_json_process(["node", str(SCRIPT), *args], cwd=HERE, fail_on=JS_FAILURES)


def hello_payload(key: PrivateKey) -> bytes:
    return rlp.encode([BASE_PROTOCOL_VERSION, b"trio-devp2p/interop", [[b"probe", 1]], 0, key.public_key.to_bytes()])


async def exchange(conn: Connection, key: PrivateKey, js: JsonLinesProcess, js_id: bytes) -> None:
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
    await js.send_line("ping")
    assert await conn.receive() == (PING, rlp.encode([]))
    await conn.send(PONG, rlp.encode([]))
    await js.wait_for("pong_received")

    # Its Disconnect comes uncompressed and as a bare integer; we still read it.
    await js.send_line("disconnect")
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
