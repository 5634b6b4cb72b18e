"""Event replay: a subscriber that comes after the server started still sees every peer once.

The library tests subscribe after peers connected (the race a command hits when a static peer
connects while ``open_server`` starts); the command-line test runs ``p2p node --json`` with a
static peer and a bootnode that already listen when it starts.
"""

from __future__ import annotations

import random
import sys

import trio

from p2p import PeerAdded, PeerRemoved, open_server, ServerConfig
from p2p.crypto import PrivateKey
from p2p.discover import open_discovery
from p2p.testing import open_json_process
from tests.server.helpers import DEADLINE, until

SUBSCRIBE_POINTS = 200  # checkpoints at which a new replaying subscription is opened


def keys(n: int, seed: int) -> list[PrivateKey]:
    rng = random.Random(seed)
    return [PrivateKey.generate(rng) for _ in range(n)]


async def test_replay_starts_with_the_connected_peers_then_the_changes() -> None:
    ka, kb, kc = keys(3, 71)
    with trio.fail_after(DEADLINE):
        async with open_server(kb, config=ServerConfig(discovery=False)) as b, open_server(kc, config=ServerConfig(discovery=False)) as c:
            async with open_server(ka, config=ServerConfig(
                discovery=False, static_nodes=[b.local_node, c.local_node])) as a:
                await until(lambda: a.peer_count() == 2)
                plain = a.events()
                replayed = a.events(replay=True)
                first = [replayed.receive_nowait() for _ in range(2)]
                assert all(isinstance(e, PeerAdded) for e in first)
                assert {e.peer.id for e in first} == {b.id, c.id}
                assert all(not e.peer.inbound for e in first)
                for sub in (plain, replayed):
                    try:
                        extra = sub.receive_nowait()
                    except trio.WouldBlock:
                        continue
                    raise AssertionError(f"unexpected event {extra}")
                a.remove_peer(c.local_node)
                # both subscriptions see c leave, and the replay adds nothing more
                for sub in (plain, replayed):
                    ev = await sub.receive()
                    assert isinstance(ev, PeerRemoved) and ev.peer.id == c.id


async def test_subscriptions_opened_while_peers_connect_see_each_peer_once() -> None:
    ka, *others = keys(4, 72)
    with trio.fail_after(DEADLINE):
        async with open_server(others[0], config=ServerConfig(discovery=False)) as b, open_server(others[1], config=ServerConfig(
            discovery=False)) as c, \
                open_server(others[2], config=ServerConfig(discovery=False)) as d:
            wanted = {b.id, c.id, d.id}
            async with open_server(ka, config=ServerConfig(
                discovery=False, static_nodes=[b.local_node, c.local_node, d.local_node])) as a:
                subs = []
                for _ in range(SUBSCRIBE_POINTS):
                    subs.append(a.events(replay=True))
                    if a.peer_count() == len(wanted):
                        break
                    await trio.sleep(0.005)
                await until(lambda: a.peer_count() == len(wanted))
                assert len(subs) > 1
                for sub in subs:
                    added = []
                    while True:
                        try:
                            ev = sub.receive_nowait()
                        except trio.WouldBlock:
                            break
                        assert isinstance(ev, PeerAdded), ev
                        added.append(ev.peer.id)
                    assert sorted(added) == sorted(wanted), "a peer lost or seen twice"


async def test_p2p_node_reports_a_static_peer_that_was_listening_before_it_started() -> None:
    ks, kboot = keys(2, 73)
    with trio.fail_after(DEADLINE * 2):
        async with open_discovery(kboot) as boot, open_server(ks, config=ServerConfig(discovery=False)) as static:
            argv = [sys.executable, "-m", "p2p", "node", "--json", "--addr", "127.0.0.1:0",
                    "--staticnodes", static.enode, "--bootnodes", boot.local_node.to_url()]
            async with open_json_process(argv, stdin=False, name="p2p node") as node:
                first = await node.next_event()
                assert first["event"] == "listening"
                added = await node.wait_for("peer_added", id=static.id.hex())
                assert added["inbound"] is False
                assert [e for e in node.events if e["event"] == "peer_added"] == [added]
