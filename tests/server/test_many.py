"""Many peers at once: one node accepting 200 concurrent bare peers, and a small mesh of nodes."""

from __future__ import annotations

import random

import trio

from p2p import PeerAdded, Protocol, ProtocolConnection, open_server, ServerConfig
from p2p.crypto import PrivateKey
from p2p.hello import EMPTY_LIST, MessageCode
from tests.server.helpers import bare_client, until

PEERS = 200


async def test_node_accepts_200_concurrent_peers() -> None:
    rng = random.Random(200)
    keys = [PrivateKey.generate(rng) for _ in range(PEERS + 1)]
    proto = Protocol("many", 1, 1)
    got = 0

    @proto.handler(0)
    async def on_msg(conn: ProtocolConnection, payload: bytes) -> None:
        nonlocal got
        got += 1

    with trio.fail_after(60):
        async with open_server(keys[0], protocols=[proto], config=ServerConfig(
            max_peers=PEERS, discovery=False)) as s:
            events = s.events(buffer=PEERS + 10)
            conns = []

            async def client(key: PrivateKey) -> None:
                conn, hello = await bare_client(s.local_node, key, [proto])
                conn.snappy = True
                conns.append(conn)

            async with trio.open_nursery() as n:
                for key in keys[1:]:
                    n.start_soon(client, key)
            await until(lambda: s.peer_count() == PEERS, timeout=30)
            added = 0
            while True:
                try:
                    event = events.receive_nowait()
                except trio.WouldBlock:
                    break
                added += isinstance(event, PeerAdded)
            assert added == PEERS and events.dropped == 0
            assert len({p.id for p in s.peers()}) == PEERS

            async def talk(conn: object) -> None:
                await conn.send(16, b"\xc0")  # type: ignore[attr-defined]
                await conn.send(MessageCode.PING, EMPTY_LIST)  # type: ignore[attr-defined]
                code, _ = await conn.receive()  # type: ignore[attr-defined]
                assert code == MessageCode.PONG

            async with trio.open_nursery() as n:
                for conn in conns:
                    n.start_soon(talk, conn)
            await until(lambda: got == PEERS)
            # one more is one too many
            try:
                await bare_client(s.local_node, PrivateKey.generate(rng), [proto])
            except Exception as exc:
                assert "too many peers" in str(exc)
            else:
                raise AssertionError("the 201st peer was accepted")
        for conn in conns:
            await conn.aclose()


async def test_ring_of_nodes_with_static_neighbours() -> None:
    count = 12
    rng = random.Random(12)
    keys = [PrivateKey.generate(rng) for _ in range(count)]
    proto = Protocol("ring", 1, 1)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            servers = []
            stops = []
            for key in keys:
                stop = trio.Event()
                started = trio.Event()
                holder: list[object] = []

                async def run_node(key: PrivateKey = key, stop: trio.Event = stop, started: trio.Event = started,
                                   holder: list[object] = holder) -> None:
                    async with open_server(key, protocols=[proto], config=ServerConfig(discovery=False)) as server:
                        holder.append(server)
                        started.set()
                        await stop.wait()

                nursery.start_soon(run_node)
                await started.wait()
                servers.append(holder[0])
                stops.append(stop)
            for i, server in enumerate(servers):
                server.add_peer(servers[(i + 1) % count].local_node)  # type: ignore[attr-defined]
            await until(lambda: all(s.peer_count() == 2 for s in servers), timeout=20)  # type: ignore[attr-defined]
            for stop in stops:
                stop.set()
