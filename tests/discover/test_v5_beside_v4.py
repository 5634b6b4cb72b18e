"""Discovery v5 beside v4 on one UDP socket (``DiscoveryConfig(v5=True)``), on 127.0.0.1:
both answer on the same port, nodes find each other through v5 alone, garbage is counted
once and answered by nothing, and the server and its metrics run it when asked."""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio

from p2p.crypto import PrivateKey
from p2p.crypto.keccak import keccak256
from p2p.discover import Discovery, DiscoveryConfig, DiscoveryError, NodeAdded, RequestTimeout, open_discovery
from p2p.discover.transport import UDPTransport, open_udp_transport
from p2p.discover.v5 import V5Config, V5Protocol, open_v5
from p2p.enode import ENR, Node
from tests.discover.conftest import make_keys

KEYS = make_keys(6, seed=5150)
QUIET = DiscoveryConfig(refresh_on_start=False, revalidate=False)  # no v4 traffic of its own
V5_ON = DiscoveryConfig(refresh_on_start=False, revalidate=False, v5=True)


@asynccontextmanager
async def v5_endpoint(key: PrivateKey, seed: int) -> AsyncIterator[tuple[V5Protocol, UDPTransport]]:
    """A lone v5 engine on its own UDP socket."""
    async with open_udp_transport() as t:
        record = ENR.build(key, 1, ip="127.0.0.1", udp=t.local_address[1])
        async with open_v5(t, key, record, config=V5Config(rng=random.Random(seed))) as v5:
            yield v5, t


def _v5(disc: Discovery) -> V5Protocol:
    assert disc.v5 is not None
    return disc.v5


async def test_v4_ping_and_v5_ping_on_the_same_port() -> None:
    with trio.fail_after(15):
        async with open_discovery(KEYS[0], config=V5_ON) as node, \
                open_discovery(KEYS[1], config=QUIET) as v4_peer, \
                v5_endpoint(KEYS[2], seed=2) as (v5_peer, _):
            engine = _v5(node)
            assert engine.local_address == ("127.0.0.1", node.udp_port)
            v4_pong = await v4_peer.ping(node.local_node)
            assert v4_pong.enr_seq == node.enr.seq
            target = Node.from_enr(node.enr)
            v5_pong = await v5_peer.ping(target)
            assert (str(v5_pong.recipient_ip), v5_pong.recipient_port) == v5_peer.local_address
            # the engine signs with the service's current record
            node.update_enr(extra={"x": b"1"})
            assert (await v5_peer.ping(target)).enr_seq == node.enr.seq
            assert await v5_peer.request_enr(target) == node.enr
            # each datagram went to one side only: none is a drop on either
            assert node.stats.packets_in["ping"] == 1 and node.stats.drops == {}
            assert engine.stats.packets_in["handshake"] == 1 and engine.stats.drops == {}
            assert v5_peer.stats.drops == {} and v4_peer.stats.drops == {}
            # the shared table holds both: the v4 pinger and the v5 node (from its handshake)
            assert v4_peer.local_id in node.table and v5_peer.local_id in node.table


async def test_two_nodes_find_each_other_through_v5() -> None:
    with trio.fail_after(15):
        async with AsyncExitStack() as stack:
            boot = await stack.enter_async_context(open_discovery(KEYS[0], config=V5_ON))
            a, b = [await stack.enter_async_context(open_discovery(k, bootnodes=[boot.local_node], config=V5_ON))
                    for k in KEYS[1:3]]
            events = a.subscribe()
            for d in (a, b):
                await _v5(d).lookup(d.local_id)  # join: the bootnode learns of each
            found = await _v5(a).lookup(b.local_id)
            assert found[0].id == b.local_id
            assert b.local_id in a.table and a.local_id in b.table
            # the engine's table changes reach the service's subscribers
            added: set[bytes] = set()
            with trio.move_on_after(1):
                async for ev in events:
                    if isinstance(ev, NodeAdded):
                        added.add(ev.node.id)
                    if b.local_id in added:
                        break
            assert b.local_id in added
            # all of it was v5: no v4 packet went out
            for d in (boot, a, b):
                assert sum(d.stats.packets_out.values()) == 0 and d.stats.drops == {}
                assert _v5(d).stats.drops == {}


async def test_garbage_is_counted_once_and_answered_by_nothing() -> None:
    rng = random.Random(7)
    garbage = [rng.randbytes(n) for n in (10, 70, 200, 1000)]
    rest = rng.randbytes(65) + b"\x01" + rng.randbytes(100)  # signature, PING, a body that is not RLP
    garbage.append(keccak256(rest) + rest)  # a good v4 hash: v4's to drop
    with trio.fail_after(15):
        async with open_discovery(KEYS[3], config=V5_ON) as node, open_udp_transport() as attacker, \
                v5_endpoint(KEYS[4], seed=4) as (v5_peer, _):
            engine = _v5(node)
            for data in garbage:
                await attacker.send(data, ("127.0.0.1", node.udp_port))
            # a v5 exchange after them: the engine reads in order, so the garbage is handled by now
            await v5_peer.ping(Node.from_enr(node.enr))
            assert sum(node.stats.drops.values()) == 1  # the one with a good v4 hash
            assert sum(engine.stats.drops.values()) == len(garbage) - 1
            with trio.move_on_after(0.5) as quiet:
                await attacker.receive()
            assert quiet.cancelled_caught  # nothing answered
            assert sum(node.stats.packets_out.values()) == 0


async def test_garbage_without_v5_stays_a_v4_drop() -> None:
    with trio.fail_after(10):
        async with open_discovery(KEYS[5], config=QUIET) as node, open_udp_transport() as attacker:
            assert node.v5 is None
            await attacker.send(os.urandom(200), ("127.0.0.1", node.udp_port))
            with trio.move_on_after(5):
                while not node.stats.drops:
                    await trio.sleep(0.01)
            assert node.stats.drops == {"bad_hash": 1}


async def test_open_server_runs_v5_and_exports_its_metrics() -> None:
    from p2p import ServerConfig, open_server

    with trio.fail_after(15):
        async with open_server(private_key=KEYS[0], listen=("127.0.0.1", 0), config=ServerConfig(
            discovery_config=V5_ON)) as server, \
                v5_endpoint(KEYS[1], seed=1) as (v5_peer, _):
            disc = server.discovery
            assert disc is not None and disc.v5 is not None
            await v5_peer.ping(Node.from_enr(disc.enr))
            text = server.metrics.render().decode()
            assert 'p2p_discv5_packets_total{direction="in",type="handshake"} 1.0' in text


async def test_v5_burst_is_handled_inline_and_the_inbox_keeps_its_bound() -> None:
    import socket
    from dataclasses import replace

    from p2p.discover.transport import InboxTransport

    n = 20
    with trio.fail_after(10):
        async with open_discovery(KEYS[3], config=replace(V5_ON, v5_queue=2)) as node:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
                for _ in range(n):  # no checkpoint in between: all wait in the socket for one read batch
                    raw.sendto(os.urandom(100), ("127.0.0.1", node.udp_port))
            with trio.move_on_after(5):
                while node.stats.drops["v5_inbox_full"] + sum(_v5(node).stats.drops.values()) < n:
                    await trio.sleep(0.01)
            # the reader hands each to the engine as it reads it: a burst waits in the kernel's
            # socket buffer, not in a Python queue, and every datagram is parsed once
            assert sum(_v5(node).stats.drops.values()) == n and "v5_inbox_full" not in node.stats.drops

    async def unused(data: bytes, addr: tuple[str, int]) -> None:
        raise AssertionError("nothing is sent")

    inbox = InboxTransport(("127.0.0.1", 1), unused, queue_size=2)
    assert [inbox.feed(b"x", ("127.0.0.1", 2)) for _ in range(5)] == [True, True, False, False, False]
    assert inbox.queued == 2 and inbox.dropped == 3


V5_ALONE = DiscoveryConfig(refresh_on_start=False, revalidate=False, v4=False, v5=True, reply_timeout=0.3)


def test_a_config_without_either_protocol_is_refused() -> None:
    with pytest.raises(ValueError):
        DiscoveryConfig(v4=False, v5=False)


async def test_v5_alone_on_udp_answers_v5_and_ignores_v4() -> None:
    with trio.fail_after(15):
        async with open_discovery(KEYS[3], config=V5_ALONE) as alone, \
                open_discovery(KEYS[4], config=QUIET) as v4_peer, \
                open_discovery(KEYS[5], config=V5_ON, bootnodes=[alone.local_node]) as both:
            assert alone.v4 is None and alone.v5 is not None
            with pytest.raises(RequestTimeout):
                await v4_peer.ping(alone.local_node)
            with pytest.raises(DiscoveryError):
                await alone.ping(v4_peer.local_node)  # no v4 to ping with
            # a node running both finds it over v5, and it learns of that node
            found = await _v5(both).lookup(alone.local_id)
            assert found and found[0].id == alone.local_id
            assert both.local_id in alone.table
            assert await alone.request_enr(both.local_node) == both.enr
            assert alone.stats.packets_out == {}  # not one v4 packet went out
            assert sum(_v5(alone).stats.drops.values()) >= 1  # the v4 ping, refused as a bad packet
