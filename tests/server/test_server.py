"""Servers on loopback: capabilities, dialing, limits, refusals, failures, shutdown, events."""

from __future__ import annotations

import ipaddress
import random
from typing import Any

import pytest
import rlp
import trio

from p2p import DialError, PeerAdded, PeerRemoved, Protocol, ProtocolConnection, ProtocolError, connected_pair, open_server, ServerConfig
from p2p.crypto import PrivateKey
from p2p.disconnect import DisconnectReason
from p2p.enode import Node, NodeID
from p2p.hello import EMPTY_LIST, MessageCode, RemoteDisconnected
from p2p.protocol import Capability
from tests.server.helpers import DEADLINE, bare_client, until



def keys(n: int, seed: int = 0) -> list[PrivateKey]:
    rng = random.Random(seed)
    return [PrivateKey.generate(rng) for _ in range(n)]


def echo_protocol(name: str = "echo", version: int = 1, length: int = 2) -> tuple[Protocol, list[tuple[NodeID, bytes]]]:
    got: list[tuple[NodeID, bytes]] = []
    proto = Protocol(name, version, length)

    @proto.handler(0)
    async def on_msg(conn: ProtocolConnection, payload: bytes) -> None:
        got.append((conn.peer.id, payload))
        if payload == b"\x84boom":
            raise RuntimeError("handler failure on purpose")

    return proto, got


async def test_capability_matching_and_offsets_between_nodes() -> None:
    # a: eth/66, eth/67, snap/1, chat/1 ; b: eth/67, eth/68, snap/1, zzz/1
    a_protos = [Protocol("eth", 66, 17), Protocol("eth", 67, 17), Protocol("snap", 1, 8), Protocol("chat", 1, 2)]
    b_protos = [Protocol("eth", 67, 17), Protocol("eth", 68, 17), Protocol("snap", 1, 8), Protocol("zzz", 1, 1)]
    received: list[tuple[str, int, int, bytes]] = []
    for proto in a_protos + b_protos:
        for code in range(proto.length):
            async def handler(conn: ProtocolConnection, payload: bytes, code: int = code) -> None:
                received.append((conn.protocol.name, conn.version, code, payload))
            proto.handler(code)(handler)
    with trio.fail_after(DEADLINE):
        async with connected_pair(a_protos, b_protos) as (a, b):
            (peer_b,) = a.peers()
            assert set(peer_b.caps) == {Capability("eth", 67), Capability("eth", 68), Capability("snap", 1),
                                        Capability("zzz", 1)}
            eth_a, snap_a = a.connection(b.id, "eth"), a.connection(b.id, "snap")
            eth_b, snap_b = b.connection(a.id, "eth"), b.connection(a.id, "snap")
            assert eth_a is not None and snap_a is not None and eth_b is not None and snap_b is not None
            assert a.connection(b.id, "chat") is None and b.connection(a.id, "zzz") is None
            assert (eth_a.version, eth_b.version) == (67, 67)
            assert (eth_a.offset, snap_a.offset) == (16, 33) == (eth_b.offset, snap_b.offset)  # type: ignore[attr-defined]
            await eth_a.send(16, b"\x01")
            await snap_a.send(7, b"\x02")
            await snap_b.send(0, b"\x03")
            await until(lambda: len(received) == 3)
    assert sorted(received) == [("eth", 67, 16, b"\x01"), ("snap", 1, 0, b"\x03"), ("snap", 1, 7, b"\x02")]


async def test_useless_peer_refused_unless_allowed() -> None:
    with trio.fail_after(DEADLINE):
        async with open_server(protocols=[Protocol("aaa", 1, 1)], config=ServerConfig(discovery=False)) as a, \
                open_server(protocols=[Protocol("bbb", 1, 1)], config=ServerConfig(discovery=False)) as b:
            with pytest.raises(DialError) as info:
                await a.connect(b.local_node)
            assert info.value.reason in (DisconnectReason.USELESS_PEER,)
        async with open_server(protocols=[Protocol("aaa", 1, 1)], config=ServerConfig(
            allow_useless_peers=True, discovery=False)) as a, \
                open_server(protocols=[Protocol("bbb", 1, 1)], config=ServerConfig(
                    allow_useless_peers=True, discovery=False)) as b:
            info2 = await a.connect(b.local_node)
            assert info2.id == b.id




async def test_static_redial_after_remote_restart() -> None:
    key_a, key_b = keys(2, 2)
    proto, _ = echo_protocol()
    with trio.fail_after(DEADLINE):
        async with open_server(key_a, protocols=[proto], config=ServerConfig(
            static_backoff=(0.05, 0.2), discovery=False)) as a:
            events = a.events()
            port = 0
            for round_ in range(2):
                async with open_server(key_b, ("127.0.0.1", port), protocols=[proto], config=ServerConfig(
                    discovery=False)) as b:
                    port = b.tcp_port
                    if round_ == 0:
                        a.add_peer(b.local_node)
                    event = await events.receive()
                    assert isinstance(event, PeerAdded) and event.peer.id == b.id and not event.peer.inbound
                # b has stopped: a learns why, then redials once b is back on the same port
                event = await events.receive()
                assert isinstance(event, PeerRemoved) and event.peer.id == b.id
                assert event.reason is DisconnectReason.CLIENT_QUITTING and event.remote_requested
                await trio.sleep(0.3)  # a few failed redials while b is down
            assert a.metrics.value("p2p_dials_total", outcome="handshake") >= 1  # refused while b was away


async def test_max_peers_and_trusted_bypass() -> None:
    ks = keys(5, 3)
    proto, _ = echo_protocol()
    trusted = ks[4]
    with trio.fail_after(DEADLINE):
        async with open_server(ks[0], protocols=[proto], config=ServerConfig(
            max_peers=2, trusted_nodes=[Node(trusted.public_key, ipaddress.ip_address("127.0.0.1"), 0, 1)],
            discovery=False)) as s:
            conns = []
            for k in ks[1:3]:
                conns.append(await bare_client(s.local_node, k, [proto]))
            await until(lambda: s.peer_count() == 2)
            # a third is told "too many peers" instead of a Hello
            with pytest.raises(RemoteDisconnected) as info:
                await bare_client(s.local_node, ks[3], [proto])
            assert info.value.reason is DisconnectReason.TOO_MANY_PEERS
            # the same through a server's dial: the reason is the dial's outcome
            async with open_server(ks[3], protocols=[proto], config=ServerConfig(discovery=False)) as c:
                with pytest.raises(DialError) as dial_info:
                    await c.connect(s.local_node)
                assert dial_info.value.reason is DisconnectReason.TOO_MANY_PEERS
                assert dial_info.value.remote_requested
            # a trusted node gets in anyway
            conns.append(await bare_client(s.local_node, trusted, [proto]))
            await until(lambda: s.peer_count() == 3)
            for conn, _ in conns:
                await conn.aclose()
            await until(lambda: s.peer_count() == 0)


async def test_inbound_throttle_per_ip_and_loopback_exemption() -> None:
    ks = keys(3, 4)
    proto, _ = echo_protocol()
    with trio.fail_after(DEADLINE):
        async with open_server(ks[0], protocols=[proto], config=ServerConfig(
            throttle_loopback=True, discovery=False)) as s:
            conn, _ = await bare_client(s.local_node, ks[1], [proto])
            # a second attempt from 127.0.0.1 within 30 s is closed before the RLPx handshake
            with pytest.raises(Exception) as info:
                await bare_client(s.local_node, ks[2], [proto])
            assert "closed" in str(info.value) or "broke" in str(info.value)
            assert s.metrics.value("p2p_inbound_connections_total", outcome="throttled") == 1
            await conn.aclose()
        async with open_server(ks[0], protocols=[proto], config=ServerConfig(discovery=False)) as s:  # loopback exempt by default
            for k in ks[1:]:
                conn, _ = await bare_client(s.local_node, k, [proto])
                await conn.aclose()
            assert s.metrics.value("p2p_inbound_connections_total", outcome="throttled") == 0


async def test_netrestrict_refuses_other_networks() -> None:
    ks = keys(2, 5)
    with trio.fail_after(DEADLINE):
        async with open_server(ks[0], config=ServerConfig(netrestrict="10.0.0.0/8", discovery=False)) as s:
            with pytest.raises(Exception):
                await bare_client(s.local_node, ks[1])
            assert s.metrics.value("p2p_inbound_connections_total", outcome="throttled") == 1
            assert s.peer_count() == 0
        async with open_server(ks[0], config=ServerConfig(
            netrestrict="10.0.0.0/8,127.0.0.0/8", allow_useless_peers=True, discovery=False)) as s:
            conn, hello = await bare_client(s.local_node, ks[1])
            assert hello.node_id == ks[0].public_key.to_bytes()
            await conn.aclose()


async def test_self_connection_refused() -> None:
    (k,) = keys(1, 6)
    with trio.fail_after(DEADLINE):
        async with open_server(k, config=ServerConfig(discovery=False)) as s:
            with pytest.raises(DialError) as info:
                await s.connect(s.local_node)
            assert info.value.reason is DisconnectReason.CONNECTED_TO_SELF
            # the server side of it: a connection whose identity is ours is refused before Hello
            with pytest.raises(RemoteDisconnected) as rinfo:
                await bare_client(s.local_node, k)
            assert rinfo.value.reason is DisconnectReason.CONNECTED_TO_SELF
            assert s.peer_count() == 0


async def test_duplicate_connection_refused() -> None:
    ks = keys(2, 7)
    proto, _ = echo_protocol()
    with trio.fail_after(DEADLINE):
        async with open_server(ks[0], protocols=[proto], config=ServerConfig(discovery=False)) as s:
            conn, _ = await bare_client(s.local_node, ks[1], [proto])
            with pytest.raises(RemoteDisconnected) as info:
                await bare_client(s.local_node, ks[1], [proto])
            assert info.value.reason is DisconnectReason.ALREADY_CONNECTED
            assert s.peer_count() == 1
            await conn.aclose()


async def test_simultaneous_dials_keep_one_agreed_connection() -> None:
    proto, _ = echo_protocol()
    for seed in range(4):  # which node has the lower ID differs between seeds
        ka, kb = keys(2, 100 + seed)
        with trio.fail_after(DEADLINE):
            async with open_server(ka, protocols=[proto], config=ServerConfig(discovery=False)) as a, \
                    open_server(kb, protocols=[proto], config=ServerConfig(discovery=False)) as b:
                outcomes: list[object] = []

                async def dial(src: object, dst: object) -> None:
                    try:
                        outcomes.append(await src.connect(dst.local_node))  # type: ignore[attr-defined]
                    except DialError as exc:
                        outcomes.append(exc.reason)

                async with trio.open_nursery() as n:
                    n.start_soon(dial, a, b)
                    n.start_soon(dial, b, a)
                await trio.sleep(0.3)  # let a replaced connection's Disconnect arrive
                await until(lambda: a.peer_count() == 1 and b.peer_count() == 1)
                (pa,), (pb,) = a.peers(), b.peers()
                assert pa.inbound != pb.inbound  # both sides kept the same connection
                kept_dialer = b if pa.inbound else a
                assert kept_dialer is (a if a.id < b.id else b)


async def test_dialed_identity_must_match() -> None:
    ks = keys(3, 8)
    with trio.fail_after(DEADLINE):
        async with open_server(ks[0], config=ServerConfig(allow_useless_peers=True, discovery=False)) as s, \
                open_server(ks[1], config=ServerConfig(allow_useless_peers=True, discovery=False)) as c:
            wrong = Node(ks[2].public_key, ipaddress.ip_address("127.0.0.1"), 0, s.tcp_port)  # s's address, another key
            with pytest.raises(DialError) as info:
                await c.connect(wrong)
            assert info.value.outcome == "handshake" and c.peer_count() == 0


async def test_failing_handler_disconnects_only_its_peer() -> None:
    ks = keys(4, 9)
    proto, got = echo_protocol()
    with trio.fail_after(DEADLINE):
        async with open_server(ks[0], protocols=[proto], config=ServerConfig(discovery=False)) as s:
            events = s.events()
            conns = [(await bare_client(s.local_node, k, [proto]))[0] for k in ks[1:]]
            for conn in conns:
                conn.snappy = True
            await until(lambda: s.peer_count() == 3)
            await conns[0].send(16, rlp.encode(b"boom"))
            code, payload = await conns[0].receive()
            assert code == MessageCode.DISCONNECT
            while True:
                event = await events.receive()
                if isinstance(event, PeerRemoved):
                    break
            assert event.peer.id == NodeID.from_pubkey(ks[1].public_key)
            assert event.reason is DisconnectReason.SUBPROTOCOL_ERROR and not event.remote_requested
            for conn in conns[1:]:
                await conn.send(16, rlp.encode(b"fine"))
                await conn.send(MessageCode.PING, EMPTY_LIST)
                assert (await conn.receive())[0] == MessageCode.PONG
            await until(lambda: len(got) == 3)
            assert s.peer_count() == 2


async def test_unknown_code_is_breach_of_protocol_for_that_peer_only() -> None:
    ks = keys(3, 10)
    proto, _ = echo_protocol()
    with trio.fail_after(DEADLINE):
        async with open_server(ks[0], protocols=[proto], config=ServerConfig(discovery=False)) as s:
            c1, _ = await bare_client(s.local_node, ks[1], [proto])
            c2, _ = await bare_client(s.local_node, ks[2], [proto])
            c1.snappy = c2.snappy = True
            await until(lambda: s.peer_count() == 2)
            await c1.send(16 + 2, EMPTY_LIST)  # echo has codes 16 and 17 only
            code, payload = await c1.receive()
            assert code == MessageCode.DISCONNECT and rlp.decode(payload) == [b"\x02"]
            await until(lambda: s.peer_count() == 1)
            await c2.send(MessageCode.PING, EMPTY_LIST)
            assert (await c2.receive())[0] == MessageCode.PONG


def _count_tasks() -> int:
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)
    return walk(trio.lowlevel.current_root_task())  # type: ignore[arg-type]


async def test_clean_shutdown_leaves_no_task_and_says_goodbye() -> None:
    ks = keys(4, 11)
    proto, _ = echo_protocol()
    before = _count_tasks()
    with trio.fail_after(DEADLINE):
        async with open_server(ks[0], protocols=[proto], config=ServerConfig(discovery=False)) as s:
            conns = [(await bare_client(s.local_node, k, [proto]))[0] for k in ks[1:]]
            for conn in conns:
                conn.snappy = True
            await until(lambda: s.peer_count() == 3)
            assert _count_tasks() > before + 3
            port = s.tcp_port
        assert _count_tasks() == before
        for conn in conns:
            code, payload = await conn.receive()
            assert code == MessageCode.DISCONNECT and rlp.decode(payload) == [b"\x08"]  # client quitting
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", port)


async def test_slow_event_subscriber_loses_events_not_the_server() -> None:
    ks = keys(6, 12)
    proto, _ = echo_protocol()
    with trio.fail_after(DEADLINE):
        async with open_server(ks[0], protocols=[proto], config=ServerConfig(discovery=False)) as s:
            slow = s.events(buffer=2)
            fast = s.events()
            conns = [(await bare_client(s.local_node, k, [proto]))[0] for k in ks[1:]]
            await until(lambda: s.peer_count() == 5)
            assert slow.dropped == 3
            assert s.metrics.value("p2p_events_dropped_total") == 3
            seen = [await fast.receive() for _ in range(5)]
            assert all(isinstance(e, PeerAdded) for e in seen)
            for conn in conns:
                await conn.aclose()
        async for _ in slow:  # the iteration ends when the server stops
            pass


async def test_nat_extip_sets_advertised_address() -> None:
    with trio.fail_after(DEADLINE):
        async with open_server(config=ServerConfig(nat="extip:10.1.2.3", discovery=False)) as s:
            assert s.enode.startswith(f"enode://{s.public_key.to_bytes().hex()}@10.1.2.3:{s.tcp_port}")
            assert str(s.enr.ip) == "10.1.2.3" and s.enr.tcp == s.tcp_port


async def test_metrics_served_over_http() -> None:
    ks = keys(2, 13)
    proto, _ = echo_protocol()
    with trio.fail_after(DEADLINE):
        async with open_server(ks[0], protocols=[proto], config=ServerConfig(
            metrics_addr=("127.0.0.1", 0), discovery=False)) as s:
            conn, _ = await bare_client(s.local_node, ks[1], [proto])
            conn.snappy = True
            await conn.send(16, rlp.encode(b"hello"))
            await until(lambda: s.metrics.messages("in", "echo", 0) == (1, 6))
            assert s.metrics_port is not None
            stream = await trio.open_tcp_stream("127.0.0.1", s.metrics_port)
            await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            body = b""
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                body += chunk
            text = body.decode()
            assert text.startswith("HTTP/1.1 200 OK")
            assert 'p2p_peers{direction="inbound"} 1.0' in text
            assert 'p2p_ingress_messages_total{code="0",protocol="echo"} 1.0' in text
            assert 'p2p_ingress_bytes_total{code="0",protocol="echo"} 6.0' in text
            assert 'p2p_inbound_connections_total{outcome="ok"} 1.0' in text
            await conn.aclose()
