"""Table event replay: the bootnodes put in the table while discovery starts are reported to a
subscriber that comes afterwards, once, and ``p2p bootnode --json`` prints them."""

from __future__ import annotations

import ipaddress
import sys

import trio

from p2p.discover import DiscoveryConfig, NodeAdded, open_discovery
from p2p.enode import Node
from p2p.testing import open_json_process
from tests.discover.conftest import make_keys

QUIET = DiscoveryConfig(refresh_on_start=False, revalidate=False, reply_timeout=0.3)
KEYS = make_keys(5, seed=9090)
DEADLINE = 20  # seconds; generous for a loaded two-core machine


async def test_replay_reports_the_bootnode_seeded_at_start_then_the_changes() -> None:
    with trio.fail_after(DEADLINE):
        async with open_discovery(KEYS[0], config=QUIET) as boot, open_discovery(KEYS[1], config=QUIET) as c, \
                open_discovery(KEYS[2], config=QUIET, bootnodes=[boot.local_node]) as a:
            assert boot.local_id in a.table  # seeded while open_discovery started
            plain = a.subscribe()
            replayed = a.subscribe(replay=True)
            # Seen but not yet reported changes: the replay holds them, nobody gets them twice.
            x = Node(KEYS[3].public_key, ipaddress.ip_address("127.0.0.1"), 1, 1)
            a.table.add_seen(x)
            late = a.subscribe(replay=True)
            await a.ping(c.local_node)
            with trio.fail_after(5):
                while c.local_id not in a.table:
                    await trio.sleep(0.01)
            first = await replayed.__anext__()
            assert first == NodeAdded(a.table.get(boot.local_id) or first.node) and first.node.id == boot.local_id
            assert (await plain.__anext__()).node.id == x.id  # plain: only what changed after it was made
            assert (await replayed.__anext__()).node.id == x.id
            assert {(await late.__anext__()).node.id for _ in range(2)} == {boot.local_id, x.id}
            for sub in (plain, replayed, late):
                ev = await sub.__anext__()
                assert isinstance(ev, NodeAdded) and ev.node.id == c.local_id


async def test_subscription_made_after_close_ends() -> None:
    with trio.fail_after(DEADLINE):
        async with open_discovery(KEYS[0], config=QUIET) as a:
            pass
        assert [ev async for ev in a.subscribe(replay=True)] == []


async def test_p2p_bootnode_prints_node_added_for_its_listening_bootnode() -> None:
    with trio.fail_after(DEADLINE):
        async with open_discovery(KEYS[4], config=QUIET) as x:
            argv = [sys.executable, "-m", "p2p", "bootnode", "--json", "--addr", "127.0.0.1:0",
                    "--bootnodes", x.local_node.to_url()]
            async with open_json_process(argv, stdin=False, name="p2p bootnode") as bootnode:
                first = await bootnode.next_event()
                assert first["event"] == "listening"
                added = await bootnode.wait_for("node_added", id=x.local_id.hex())
                assert Node.from_url(added["enode"]).udp_port == x.udp_port
                assert added["table"] >= 1
