"""``p2p node --dns enrtree://...``: URLs checked up front, and the tree's nodes dialed with
discovery off (a fake tree iterator stands in for p2p.dnsdisc's)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
import trio

from p2p import Protocol, ServerConfig, open_server
from p2p.cli import build_parser
from p2p.cli import node as node_cli
from p2p.cli._args import BadArgument, server_options
from p2p.cli._run import Stop
from p2p.cli._writer import OutputWriter
from p2p.crypto import PrivateKey
from p2p.enode import Node
from tests.server.test_node_sources import FakeDNS

KEY = PrivateKey.generate()
TREE_KEY = base64.b32encode(KEY.public_key.to_compressed()).decode().rstrip("=")
URL = f"enrtree://{TREE_KEY}@nodes.example.org"


def test_tree_urls_are_checked() -> None:
    node_cli.check_dns_url(URL)
    for bad in ("https://nodes.example.org", f"enrtree://{TREE_KEY}", "enrtree://@nodes.example.org",
                "enrtree://AAAA@nodes.example.org"):
        with pytest.raises(BadArgument, match="--dns"):
            node_cli.check_dns_url(bad)
    with pytest.raises(BadArgument, match="at most"):
        node_cli.check_dns([URL] * (node_cli.MAX_DNS_TREES + 1))


def test_a_bad_tree_url_is_one_line_and_status_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "p2p", "node", "--nodiscover", "--dns", "enrtree://nope"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--dns enrtree://nope" in proc.stderr


def test_sources_are_named_by_domain() -> None:
    made = node_cli.dns_sources([URL], lambda url: FakeDNS([]))
    assert [getattr(s, "name") for s in made] == ["dns"]  # a source's own name is kept

    class Anonymous(FakeDNS):
        name = ""

    made = node_cli.dns_sources([URL], lambda url: Anonymous([]))
    assert [getattr(s, "name") for s in made] == ["dns:nodes.example.org"]


async def test_node_with_dns_and_nodiscover_dials_the_tree_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    proto = Protocol("chat", 2, 1)
    lines: list[str] = []
    async with open_server(protocols=[proto], config=ServerConfig(discovery=False)) as a, \
            open_server(protocols=[proto], config=ServerConfig(discovery=False)) as b:
        tree: list[Node] = [a.local_node, b.local_node]
        asked: list[str] = []

        def factory(url: str) -> FakeDNS:
            asked.append(url)
            return FakeDNS(list(tree))

        monkeypatch.setattr(node_cli, "default_dns_factory", lambda server: (None, factory))
        args = build_parser().parse_args(["node", "--json", "--nodiscover", "--protocols", "chat", "--dns", URL])
        key = PrivateKey.generate()
        options = server_options(args, key)
        stop = Stop()
        output = OutputWriter(lambda text: lines.append(text), as_json=True)
        output.start()

        async def stop_when_peered() -> None:
            # the writer batches what piled up into one chunk, so count lines, not chunks
            while sum('"peer_added"' in line for text in lines for line in text.splitlines()) < 2:
                await trio.sleep(0.02)
            stop.signal()

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stop_when_peered)
                assert await node_cli._serve(args, key, options, stop, output) == 0
        await output.aclose()
    events = [json.loads(line) for text in lines for line in text.splitlines()]
    assert asked == [URL]
    assert events[0]["event"] == "listening" and events[0]["udp"] is None
    added = {e["id"] for e in events if e["event"] == "peer_added"}
    assert added == {a.id.hex(), b.id.hex()}
