"""The server's node database: limits from ``open_server``, dialed peers protected, metrics."""

from __future__ import annotations

import random

import trio

from p2p import open_server, ServerConfig
from p2p.crypto import PrivateKey
from p2p.enode.nodedb import NodeDBLimits
from tests.enode.test_nodedb import make_nodes
from tests.server.helpers import DEADLINE, until


async def test_dialed_peer_is_protected_while_connected_and_limits_act_visibly() -> None:
    rng = random.Random(91)
    keys = [PrivateKey.generate(rng) for _ in range(2)]
    with trio.fail_after(DEADLINE):
        async with open_server(keys[0], config=ServerConfig(
            allow_useless_peers=True, node_db_limits=NodeDBLimits(max_unprotected=3))) as server:
            db = server.node_db
            assert db is not None and db.limits.max_unprotected == 3
            # the peer runs no discovery: only our dial can protect it in our database
            async with open_server(keys[1], config=ServerConfig(discovery=False, allow_useless_peers=True)) as peer:
                peer_node = peer.local_node
                info = await server.connect(peer_node)
                assert not info.inbound
                assert db.is_protected(peer.id)
                assert server.metrics.value("p2p_nodedb_nodes", state="protected") >= 1
                db.update_node(peer_node)
                db.update_nodes(make_nodes(rng, 5))  # three are kept, two evicted: the peer stays
                assert db.node(peer.id) == peer_node
                assert server.metrics.value("p2p_nodedb_evicted_total", kind="node") == 2
                assert server.metrics.value("p2p_nodedb_nodes", state="unprotected") == 3
                assert b"p2p_nodedb_protect_refused_total 0.0" in server.metrics.render()
            await until(lambda: server.peer_count() == 0, timeout=DEADLINE - 5)
            assert not db.is_protected(peer_node.id)  # released with the connection
            assert server.metrics.value("p2p_nodedb_nodes", state="unprotected") == 3  # and bounded again
