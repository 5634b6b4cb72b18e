"""A bootnode with an on-disk node database, restarted after its peers are gone."""

from __future__ import annotations

from pathlib import Path

import trio

from p2p.discover import DiscoveryConfig, open_discovery
from p2p.enode.nodedb import NodeDB
from tests.discover.conftest import make_keys

KEYS = make_keys(4, seed=777)
JOINING = DiscoveryConfig(revalidate=False, reply_timeout=0.3, random_lookup_spread=0.0, refresh_random_lookups=1)
QUIET = DiscoveryConfig(refresh_on_start=False, revalidate=False, reply_timeout=0.3)


async def until(cond: object, timeout: float) -> None:
    with trio.fail_after(timeout):
        while not cond():  # type: ignore[operator]
            await trio.sleep(0.02)


async def test_restarted_bootnode_knows_and_reseeds_from_old_peers(tmp_path: Path) -> None:
    path = str(tmp_path / "boot-nodes")
    boot_key, peer_keys = KEYS[0], KEYS[1:]
    ports: dict[bytes, int] = {}
    with trio.fail_after(30):
        # 1. three peers join the bootnode, which stores them
        with NodeDB.open(path) as db:
            async with open_discovery(boot_key, nodedb=db, config=QUIET) as boot:
                async with trio.open_nursery() as n:
                    peers = []
                    for k in peer_keys:
                        peers.append(await n.start(_run, k, (boot.local_node,), 0, JOINING))
                    await until(lambda: all(p.local_id in boot.table for p in peers), 10)
                    ports = {p.local_id: p.udp_port for p in peers}
                    n.cancel_scope.cancel()
        # 2. the peers are gone; the bootnode restarts from its database alone
        with NodeDB.open(path) as db:
            async with open_discovery(boot_key, nodedb=db, config=QUIET) as boot:
                assert set(ports) <= {n.id for n in boot.table.nodes()}
                assert {boot.table.get(i).udp_port for i in ports} == set(ports.values())  # type: ignore[union-attr]
                # 3. the peers come back on their old ports knowing nobody; the bootnode's
                #    lookup reaches them from its seeds and they learn it
                async with trio.open_nursery() as n:
                    back = []
                    for k in peer_keys:
                        pid = bytes(k.public_key.keccak())
                        back.append(await n.start(_run, k, (), ports[pid], QUIET))
                    assert all(len(p.table) == 0 for p in back)
                    result = await boot.lookup_detailed()
                    assert result.queries >= 3 and result.failures == 0
                    await until(lambda: all(boot.local_id in p.table for p in back), 10)
                    n.cancel_scope.cancel()


async def _run(key: object, boots: tuple[object, ...], port: int, config: DiscoveryConfig,
               task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED) -> None:
    async with open_discovery(key, ("127.0.0.1", port), bootnodes=boots, config=config) as d:  # type: ignore[arg-type]
        task_status.started(d)
        await trio.sleep_forever()
