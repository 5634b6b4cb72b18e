"""A tree published with ``p2p dns sign`` and ``to-zonefile``, served by a real NSD on 127.0.0.1,
read back by our client, by ``p2p dns resolve`` and by @ethereumjs/devp2p's DNS client."""

from __future__ import annotations

import json
import random
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from p2p.crypto import PrivateKey, save_node_key
from p2p.dnsdisc import DNSClient, NameNotFound, QueryTimeout, open_dns_iterator
from p2p.dnsdisc.records import ENREntry
from p2p.dnsdisc.zonefile import render_zone
from p2p.enode import ENR
from p2p.testing.nsd import NSDUnavailable, open_nsd
from p2p.testing.process import open_json_process
from tests.dnsdisc.fakes import signed_tree

REPO = Path(__file__).resolve().parents[2]
INTEROP = REPO / "tests" / "interop"
DOMAIN = "nodes.example.org"
NODES = 30  # three branches: entries over 255 bytes, split into several TXT strings


def make_records(rng: random.Random, count: int = NODES) -> list[ENR]:
    # distinct IPs: the JS client tells peers apart by address alone (no packet goes to them)
    return [ENR.build(PrivateKey.generate(rng), seq=1, ip=f"127.0.1.{i + 1}", tcp=30303 + i, udp=30303 + i)
            for i in range(count)]


def endpoints(records: list[ENR]) -> set[tuple[str, int, int]]:
    return {(str(r.ip), r.tcp or 0, r.udp or 0) for r in records}


async def p2p(*args: str, check: bool = True) -> trio.CompletedProcess[bytes]:
    result = await trio.run_process([sys.executable, "-m", "p2p", *args], capture_stdout=True, capture_stderr=True,
                                    check=False)
    if check:
        assert result.returncode == 0, result.stderr.decode()
    return result


@asynccontextmanager
async def nsd(zone: str) -> AsyncIterator[int]:
    """NSD serving ``zone``; a plain failure where NSD cannot run (scripts/setup installs it)."""
    try:
        async with open_nsd(DOMAIN, zone) as port:
            yield port
    except NSDUnavailable as exc:
        pytest.fail(f"this test needs the NSD DNS server, which cannot run here: {exc}")


@pytest.fixture
def published(tmp_path: Path) -> tuple[Path, list[ENR], str]:
    """DIR/nodes.json in go-ethereum's node set shape, signed with ``p2p dns sign``."""
    rng = random.Random(7)
    records = make_records(rng)
    directory = tmp_path / DOMAIN
    directory.mkdir()
    nodes = {r.node_id.hex(): {"seq": r.seq, "record": r.to_text(), "score": 3,
                               "firstResponse": "2026-01-01T00:00:00Z", "lastResponse": "2026-01-02T00:00:00Z"}
             for r in records}
    (directory / "nodes.json").write_text(json.dumps(nodes, indent=4))
    key = PrivateKey.generate(rng)
    save_node_key(key, tmp_path / "key")
    return directory, records, str(tmp_path / "key")


async def test_a_published_tree_is_read_back_through_nsd_by_us_and_by_ethereumjs(
        published: tuple[Path, list[ENR], str]) -> None:
    directory, records, keyfile = published
    signed = await p2p("dns", "sign", str(directory), "--key", keyfile)
    url = signed.stdout.decode().strip()
    info = json.loads((directory / "enrtree-info.json").read_text())
    assert info["url"] == url and info["seq"] == 1 and info["links"] == []
    txt = json.loads((directory / "enrtree.json").read_text())
    assert txt[DOMAIN].startswith("enrtree-root:v1 ") and len(txt) == NODES + 6  # root, 3 + 1 branches, the empty link branch
    await p2p("dns", "to-zonefile", str(directory))
    zone = (directory / "zonefile").read_text()
    split = [line for line in zone.splitlines() if "enrtree-branch:" in line and '" "' in line]
    assert split, "a branch of 13 hashes (365 bytes) is written as several strings"
    async with nsd(zone) as port:
        server = ("127.0.0.1", port)
        result = await DNSClient(server=server, rate_limit=None).sync_tree(url)
        assert endpoints(result.nodes) == endpoints(records) and not result.errors

        seen = set()
        with trio.fail_after(30):
            async with open_dns_iterator([url], server=server, rate_limit=None, max_nodes=NODES * 20) as it:
                async for node in it:
                    seen.add((str(node.ip), node.tcp_port, node.udp_port))
                    if len(seen) == NODES:
                        break
        assert seen == endpoints(records)

        resolved = await p2p("dns", "resolve", url, "--server", f"127.0.0.1:{port}", "--json")
        lines = [json.loads(line) for line in resolved.stdout.decode().splitlines()]
        assert {(n["ip"], n["tcp"], n["udp"]) for n in lines if n["event"] == "node"} == endpoints(records)
        assert lines[-1]["event"] == "summary" and lines[-1]["nodes"] == NODES

        argv = ["node", str(INTEROP / "dns_client.mjs"), "--server", f"127.0.0.1:{port}", "--url", url,
                "--expect", str(NODES)]
        async with open_json_process(argv, cwd=INTEROP, stdin=False) as js:
            with trio.fail_after(60):
                answer = await js.next_event()
        assert answer["event"] == "peers", answer
        theirs = {(p["address"], p["tcpPort"], p["udpPort"]) for p in answer["peers"]}
        assert theirs == endpoints(records)


async def test_through_nsd_a_tampered_and_a_missing_entry_drop_only_themselves(rng: random.Random) -> None:
    key = PrivateKey.generate(rng)
    records = make_records(rng, 20)
    tree, url, txt = signed_tree(key, DOMAIN, records)
    leaves = [h for h, e in tree.entries.items() if isinstance(e, ENREntry)]
    txt[f"{leaves[0]}.{DOMAIN}"] = txt[f"{leaves[1]}.{DOMAIN}"]
    del txt[f"{leaves[2]}.{DOMAIN}"]
    async with nsd(render_zone(DOMAIN, {k: str(v) for k, v in txt.items()}, tree.seq)) as port:
        client = DNSClient(server=("127.0.0.1", port), rate_limit=None)
        result = await client.sync_tree(url)
        assert len(result.nodes) == 18
        assert client.stats.rejected == {"hash_mismatch": 1} and client.stats.failures == {"nxdomain": 1}
        missing = url.replace(f"@{DOMAIN}", f"@gone.{DOMAIN}")
        with pytest.raises(NameNotFound, match="NXDOMAIN"):
            await client.sync_tree(missing)
        res = await p2p("dns", "resolve", missing, "--server", f"127.0.0.1:{port}", check=False)
        assert res.returncode == 1 and res.stderr.decode().count("\n") == 1, res.stderr
        assert "gone.nodes.example.org: no such name" in res.stderr.decode()


async def test_a_server_that_never_answers_is_a_timeout() -> None:
    url = "enrtree://AKPYQIUQIL7PSIACI32J7FGZW56E5FKHEFCCOFHILBIMW3M6LWXS2@nodes.example.org"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        client = DNSClient(server=("127.0.0.1", port), timeout=0.5, rate_limit=None)
        with pytest.raises(QueryTimeout):
            await client.sync_tree(url)
        assert client.stats.failures == {"timeout": 1}
        res = await p2p("dns", "resolve", url, "--server", f"127.0.0.1:{port}", "--timeout", "0.5", check=False)
    assert res.returncode == 1, res.stderr
    assert res.stderr.decode().splitlines() == ["p2p dns: DNS discovery: nodes.example.org: no answer within 0.5 s"]
