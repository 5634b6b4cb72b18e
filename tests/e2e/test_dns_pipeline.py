"""From a crawl to a DNS tree to a node that finds its peers from DNS alone: crawl a 30-node
local testnet (``p2p crawl``), keep the good nodes (``p2p nodeset filter``), sign the tree
(``p2p dns sign``), write its zone (``p2p dns to-zonefile``), serve it with NSD on 127.0.0.1,
then start a fresh ``p2p node --nodiscover --dns enrtree://...`` and watch it connect to
testnet nodes it can only have learnt of through DNS."""

from __future__ import annotations

import json
import random
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from p2p.crypto import PrivateKey, save_node_key
from p2p.enode import Signer
from p2p.server import Server, ServerConfig, open_server
from p2p.testing.nsd import NSDUnavailable, open_nsd
from p2p.testing.process import open_json_process

NODES = 30
DOMAIN = "nodes.example.org"
WANT_PEERS = 3  # peers the fresh node must reach from the tree


async def p2p(*args: str) -> str:
    result = await trio.run_process([sys.executable, "-m", "p2p", *args], capture_stdout=True,
                                    capture_stderr=True, check=False)
    assert result.returncode == 0, f"p2p {args[0]}: {result.stderr.decode()}"
    return result.stdout.decode()


@asynccontextmanager
async def chat_testnet(n: int, rng: random.Random) -> AsyncIterator[list[Server]]:
    """``n`` full servers running chat, discovery on, joined through the first."""
    from protocols.chat.service import ChatService

    servers: list[Server] = []
    async with trio.open_nursery() as nursery:
        async def run(i: int, task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED) -> None:
            key = PrivateKey.generate(rng)
            chat = ChatService(Signer(key), nick=f"node{i}")
            boot = [servers[0].local_node] if servers else []
            # Few dialed peers each: most slots stay free for the fresh node's dials.
            async with open_server(key, ("127.0.0.1", 0), [chat.protocol], config=ServerConfig(
                bootnodes=boot, max_peers=12)) as s:
                task_status.started(s)
                await trio.sleep_forever()

        for i in range(n):
            servers.append(await nursery.start(run, i))
        yield servers
        nursery.cancel_scope.cancel()


async def test_crawl_filter_sign_serve_and_join_from_dns_alone(tmp_path: Path) -> None:
    rng = random.Random(2026)
    tree_dir = tmp_path / DOMAIN
    tree_dir.mkdir()
    key_file = tmp_path / "tree.key"
    save_node_key(PrivateKey.generate(rng), key_file)
    crawled = tmp_path / "nodes.json"
    with trio.fail_after(240):
        async with chat_testnet(NODES, rng) as servers:
            ids = {s.id.hex() for s in servers}
            await p2p("crawl", "--json", "--addr", "127.0.0.1:0", "--bootnodes", servers[0].local_node.to_url(),
                      "--out", str(crawled), "--seconds", "90", "--quiet-lookups", "3")
            found = json.loads(crawled.read_text())
            assert len(set(found) & ids) >= NODES - 2

            await p2p("nodeset", "filter", str(crawled), "-ip", "127.0.0.0/8", "-limit", str(NODES),
                      "--out", str(tree_dir / "nodes.json"))
            url = (await p2p("dns", "sign", str(tree_dir), "--key", str(key_file))).strip()
            assert url.startswith("enrtree://") and url.endswith("@" + DOMAIN)
            await p2p("dns", "to-zonefile", str(tree_dir))
            zone = (tree_dir / "zonefile").read_text()
            try:
                async with open_nsd(DOMAIN, zone) as port:
                    argv = [sys.executable, "-m", "p2p", "node", "--json", "--addr", "127.0.0.1:0", "--nodiscover",
                            "--protocols", "chat", "--dns", url, "--dns-server", f"127.0.0.1:{port}"]
                    async with open_json_process(argv, stdin=False, name="p2p node --dns") as node:
                        listening = await node.wait_for("listening")
                        assert listening["udp"] is None  # discovery off: no UDP socket at all
                        peers: set[str] = set()
                        with trio.fail_after(60):
                            while len(peers) < WANT_PEERS:
                                added = await node.wait_for("peer_added")
                                assert not added["inbound"]  # it dialed them: nobody could know of it
                                peers.add(added["id"])
                    assert peers <= set(found) and peers <= ids
            except NSDUnavailable as exc:
                pytest.fail(f"this test needs the NSD DNS server, which cannot run here: {exc}")
