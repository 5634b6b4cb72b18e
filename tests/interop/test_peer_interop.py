"""Our server against an @ethereumjs/devp2p node (``peer_node.mjs``): each dials the other, the
Hello agrees on a shared capability, sub-protocol messages flow with the right offsets, pings
are answered both ways, and Disconnect reasons are understood both ways."""

from __future__ import annotations

import ipaddress
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import rlp
import trio

from p2p import DisconnectReason, PeerAdded, PeerRemoved, Protocol, ProtocolConnection, open_server, ServerConfig
from p2p.crypto import PublicKey
from p2p.enode import Node, NodeID
from p2p.hello import MessageCode
from p2p.protocol import Capability
from p2p.server import Server
from p2p.testing import JsonLinesProcess, open_json_process

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "peer_node.mjs"
DEADLINE = 30.0

JS_FAILURES = ("error", "peer_error", "dial_failed")  # events in which ethereumjs reports a failure


def js_node(*args: str) -> AbstractAsyncContextManager[JsonLinesProcess]:
    return open_json_process(["node", str(SCRIPT), *args], cwd=HERE, fail_on=JS_FAILURES)


def probe_protocol() -> tuple[Protocol, list[tuple[int, bytes]]]:
    got: list[tuple[int, bytes]] = []
    probe = Protocol("probe", 1, 2)

    @probe.handler(0)
    async def on_zero(conn: ProtocolConnection, payload: bytes) -> None:
        got.append((0, payload))

    @probe.handler(1)
    async def on_one(conn: ProtocolConnection, payload: bytes) -> None:
        got.append((1, payload))

    return probe, got


async def until(predicate: Any, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


async def check_session(server: Server, js: JsonLinesProcess, js_id: NodeID, got: list[tuple[int, bytes]],
                        *, inbound: bool) -> None:
    """With the peer up on both sides: Hello contents, probe messages both ways, pings both ways."""
    added = await js.wait_for("peer_added")
    assert added["id"] == server.public_key.to_bytes().hex()
    assert added["hello"]["protocolVersion"] == 5
    assert added["hello"]["clientId"] == server.client_id
    assert {"name": "probe", "version": 1} in added["hello"]["capabilities"]
    assert added["protocols"] == [{"name": "Probe", "offset": 16, "length": 2}]
    await until(lambda: len(server.peers()) == 1)
    (info,) = server.peers()
    assert info.id == js_id and info.inbound is inbound
    assert info.client == "ethereumjs-interop/peer" and Capability("probe", 1) in info.caps
    conn = server.connection(js_id, "probe")
    assert conn is not None and conn.version == 1

    # our message code 0 reaches its handler, which answers with code 1 (snappy both ways)
    payload = rlp.encode([b"hello", b"from", b"trio"])
    await conn.send(0, payload)
    message = await js.wait_for("probe_message")
    assert (message["code"], bytes.fromhex(message["payload"])) == (0, payload)
    await until(lambda: (1, payload) in got)
    # and its code 0 reaches our handler for code 0
    await js.send_line("probe 0 " + rlp.encode(b"js").hex())
    await until(lambda: (0, rlp.encode(b"js")) in got)

    # it pings, our peer answers
    await js.send_line("ping")
    await js.wait_for("pong_received")
    # we ping (every 0.3 s in these tests), it answers
    await js.wait_for("ping_received")
    await until(lambda: server.metrics.messages("in", "p2p", MessageCode.PONG)[0] >= 1)


async def test_ethereumjs_dials_our_node() -> None:
    probe, got = probe_protocol()
    with trio.fail_after(DEADLINE):
        async with open_server(protocols=[probe], config=ServerConfig(discovery=False, ping_interval=0.3)) as server:
            events = server.events()
            async with js_node("dial", "--port", str(server.tcp_port), "--id",
                               server.public_key.to_bytes().hex()) as js:
                dialing = await js.wait_for("dialing")
                js_id = NodeID.from_pubkey(bytes.fromhex(dialing["id"]))
                await check_session(server, js, js_id, got, inbound=True)
                # it leaves with a reason we read (ethereumjs sends it as a bare integer)
                await js.send_line(f"disconnect {int(DisconnectReason.TOO_MANY_PEERS)}")
                while True:
                    event = await events.receive()
                    if isinstance(event, PeerRemoved):
                        break
                assert event.reason is DisconnectReason.TOO_MANY_PEERS and event.remote_requested
                assert event.peer.id == js_id


async def test_our_node_dials_ethereumjs() -> None:
    probe, got = probe_protocol()
    with trio.fail_after(DEADLINE):
        async with js_node("listen") as js:
            listening = await js.wait_for("listening")
            node = Node(PublicKey.from_bytes(bytes.fromhex(listening["id"])), ipaddress.ip_address("127.0.0.1"), 0, listening["port"])
            async with open_server(protocols=[probe], config=ServerConfig(discovery=False, ping_interval=0.3)) as server:
                events = server.events()
                info = await server.connect(node)
                assert info.id == node.id and not info.inbound
                assert isinstance(await events.receive(), PeerAdded)
                await check_session(server, js, node.id, got, inbound=False)
                # we leave with a reason it reads
                assert server.disconnect(node.id, DisconnectReason.USELESS_PEER)
                removed = await js.wait_for("peer_removed")
                assert removed["reason"] == int(DisconnectReason.USELESS_PEER) and not removed["disconnectWe"]
                event = await events.receive()
                assert isinstance(event, PeerRemoved) and event.reason is DisconnectReason.USELESS_PEER
                assert not event.remote_requested


async def test_full_node_refuses_ethereumjs_with_too_many_peers() -> None:
    probe, _ = probe_protocol()
    with trio.fail_after(DEADLINE):
        async with open_server(protocols=[probe], config=ServerConfig(discovery=False, max_peers=0)) as server:
            async with js_node("dial", "--port", str(server.tcp_port), "--id",
                               server.public_key.to_bytes().hex()) as js:
                received = await js.wait_for("disconnect_received")
                assert received["reason"] == int(DisconnectReason.TOO_MANY_PEERS)
                assert received["connected"] is False  # it came instead of our Hello
                assert server.peer_count() == 0
                await until(lambda: server.metrics.value("p2p_inbound_connections_total", outcome="too_many_peers") == 1)
