"""Discovery v5 against @chainsafe/discv5 11.0.0, on 127.0.0.1, in both directions: PING/PONG,
FINDNODE at several distances, TALKREQ/TALKRESP, lookups through each other, and sessions
that survive a restart of either side.

What running against it taught us (each checked by a test below):
- It drops a session unless the peer's record ip/udp equal the packet's source address, so
  our records carry the exact bound address; its helper puts its bound port in its own
  record before it prints "listening".
- It never resends a request after its 1 s timeout (``requestRetries`` is 1 and its retry
  counter starts at 1): our engine answers inline from the receive loop, well within that.
- Its FINDNODE in a lookup asks three distances (log-distance to the target, then +1, -1) and
  drops records at other distances; ours answers only the distances asked, which is all it
  accepts.
- It never answers TALKREQ by itself (no response at all, not even the empty TALKRESP the
  specification asks for an unknown protocol): its helper answers "echo:" + the request for
  the protocol given with ``--talk`` and nothing else, so a TALKREQ for another protocol times
  out on our side.
- A restart of either side is healed by one WHOAREYOU round: the side that kept its session
  sends a message packet the other cannot decrypt, and the new handshake carries the request.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from p2p.crypto import PrivateKey
from p2p.discover.errors import RequestTimeout
from p2p.discover.transport import open_udp_transport
from p2p.discover.v5 import V5Config, V5Protocol, open_v5
from p2p.enode import ENR, Node, NodeID, log_distance
from p2p.testing import JsonLinesProcess, open_json_process

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "discv5_peer.mjs"
HOST = "127.0.0.1"


class JSPeer:
    """The @chainsafe/discv5 subprocess: commands in, results and events out."""

    def __init__(self, lines: JsonLinesProcess) -> None:
        self.lines = lines
        self.ids = itertools.count(1)
        self.results: dict[int, dict[str, Any]] = {}
        self.talks: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.record: ENR | None = None
        self.listening = trio.Event()
        self._arrived = trio.Event()

    @property
    def enr(self) -> ENR:
        assert self.record is not None
        return self.record

    @property
    def node(self) -> Node:
        return Node.from_enr(self.enr)

    async def read(self) -> None:
        while True:
            ev = await self.lines.next_event()
            kind = ev["event"]
            if kind == "listening":
                self.record = ENR.from_text(ev["enr"])
                self.listening.set()
            elif kind == "result":
                self.results[ev["id"]] = ev
                self._arrived.set()
            elif kind == "talk_received":
                self.talks.append(ev)
            elif kind == "error":
                self.errors.append(ev["message"])

    async def call(self, cmd: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
        n = next(self.ids)
        await self.lines.send_line(json.dumps({"id": n, "cmd": cmd, **args}))
        with trio.fail_after(timeout):
            while n not in self.results:
                self._arrived = trio.Event()
                await self._arrived.wait()
        return self.results.pop(n)

    async def ok(self, cmd: str, **args: Any) -> dict[str, Any]:
        res = await self.call(cmd, **args)
        assert res["ok"], res
        return res


@asynccontextmanager
async def js_peer(*args: str) -> AsyncIterator[JSPeer]:
    async with open_json_process(["node", str(SCRIPT), *args], cwd=HERE) as lines, trio.open_nursery() as n:
        js = JSPeer(lines)
        n.start_soon(js.read)
        with trio.fail_after(15):
            await js.listening.wait()
        yield js
        n.cancel_scope.cancel()


@asynccontextmanager
async def our_node(key: PrivateKey, port: int = 0, bootnodes: tuple[ENR, ...] = (),
                   seed: int = 0) -> AsyncIterator[V5Protocol]:
    async with open_udp_transport(HOST, port) as transport:
        record = ENR.build(key, 1, ip=HOST, udp=transport.local_address[1])
        cfg = V5Config(rng=random.Random(seed))
        async with open_v5(transport, key, record, bootnodes=bootnodes, config=cfg) as v5:
            yield v5


def _key(seed: int) -> PrivateKey:
    return PrivateKey.generate(random.Random(seed))


def _node(v5: V5Protocol) -> Node:
    return Node.from_enr(v5.local_record)


def _ids(texts: list[str]) -> set[NodeID]:
    return {ENR.from_text(t).node_id for t in texts}


async def test_ping_findnode_talk_both_ways() -> None:
    with trio.fail_after(40):
        async with AsyncExitStack() as stack:
            ours = await stack.enter_async_context(our_node(_key(1)))
            # nodes that ours knows, so that its FINDNODE answers have content
            others = [await stack.enter_async_context(our_node(_key(10 + i), seed=10 + i)) for i in range(4)]
            for o in others:
                await ours.ping(_node(o))  # o's handshake puts it in our table
                await o.ping(_node(ours))
            assert all(o.local_id in ours.table for o in others)
            js = await stack.enter_async_context(js_peer("--talk", "echo"))

            async def echo(node_id: NodeID, addr: tuple[str, int], request: bytes) -> bytes:
                return b"ours:" + request

            ours.talk("echo", echo)

            # theirs -> ours
            pong = await js.ok("ping", enr=ours.local_record.to_text())
            assert (pong["ip"], pong["port"]) == js.node.udp_address  # where we saw its PING come from
            distances = sorted({log_distance(ours.local_id, o.local_id) for o in others})
            found = await js.ok("findnode", enr=ours.local_record.to_text(), distances=distances)
            # the table also holds the JS node itself (its PING's handshake put it there)
            assert _ids(found["enrs"]) - {js.node.id} == {o.local_id for o in others}
            own = await js.ok("findnode", enr=ours.local_record.to_text(), distances=[0])
            assert _ids(own["enrs"]) == {ours.local_id}
            talk = await js.ok("talkreq", enr=ours.local_record.to_text(), protocol="echo", payload=b"hi".hex())
            assert bytes.fromhex(talk["response"]) == b"ours:hi"
            unknown = await js.ok("talkreq", enr=ours.local_record.to_text(), protocol="none", payload="00")
            assert unknown["response"] == ""  # discv5-wire.md: empty TALKRESP for an unknown protocol

            # ours -> theirs
            their_pong = await ours.ping(js.node)
            assert (str(their_pong.recipient_ip), their_pong.recipient_port) == ours.local_address
            assert await ours.request_enr(js.node) == js.enr
            assert await ours.talkreq(js.node, "echo", b"yo") == b"echo:yo"
            assert js.talks[-1]["protocol"] == "echo" and bytes.fromhex(js.talks[-1]["payload"]) == b"yo"
            with pytest.raises(RequestTimeout):
                await ours.talkreq(js.node, "other", b"?")
            assert js.talks[-1]["protocol"] == "other"  # it did get there
            # it knows ours (from the session) and answers FINDNODE at ours' distance from it
            d = log_distance(js.node.id, ours.local_id)
            theirs = await ours.findnode(js.node, (d, d + 1 if d < 256 else d - 1))
            assert ours.local_id not in {n.id for n in theirs}  # we skip ourselves
            assert ours.stats.drops.get("v5_record_wrong_distance", 0) == 0
            assert js.errors == [], js.errors
            _assert_clean(ours)


async def test_they_bootstrap_from_us_and_find_our_nodes() -> None:
    with trio.fail_after(40):
        async with AsyncExitStack() as stack:
            ours = await stack.enter_async_context(our_node(_key(2)))
            others = [await stack.enter_async_context(our_node(_key(20 + i), seed=20 + i)) for i in range(3)]
            for o in others:
                await o.ping(_node(ours))
            js = await stack.enter_async_context(js_peer("--bootnode", ours.local_record.to_text()))
            for o in others:
                res = await js.ok("lookup", target=o.local_id.hex())
                assert o.local_id in _ids(res["enrs"]), (o.local_id.hex(), res)
            table = await js.ok("table")
            assert ours.local_id in _ids(table["enrs"])
            assert js.errors == [], js.errors
            _assert_clean(ours)


async def test_we_bootstrap_from_them_and_find_their_nodes() -> None:
    with trio.fail_after(40):
        async with js_peer() as boot, js_peer("--bootnode", boot.enr.to_text()) as other:
            # the second one joins through the first: a lookup of itself lands it in its table
            await other.ok("lookup", target=other.node.id.hex())
            table = await boot.ok("table")
            assert other.node.id in _ids(table["enrs"])
            async with our_node(_key(3), bootnodes=(boot.enr,)) as ours:
                found = await ours.lookup(other.node.id)
                assert found and found[0].id == other.node.id
                entry = ours.table.entry(other.node.id)
                assert entry is not None and entry.live_checks > 0  # it answered our FINDNODE
                assert boot.node.id in ours.table
                _assert_clean(ours)


async def test_session_survives_restart_of_either_side() -> None:
    with trio.fail_after(40):
        key, js_key = _key(4), _key(5)
        async with open_udp_transport(HOST, 0) as probe:
            port = probe.local_address[1]  # a free port for ours, reused after its restart
        async with js_peer("--key", js_key.secret.hex()) as js:
            async with our_node(key, port) as ours:
                await ours.ping(js.node)
                await js.ok("ping", enr=ours.local_record.to_text())
            # ours restarts with the same key and port: its sessions are gone, theirs is kept
            async with our_node(key, port, seed=1) as ours:
                assert not ours.session_established(js.node.id, js.node.udp_address)
                await js.ok("ping", enr=ours.local_record.to_text())  # undecryptable for us: WHOAREYOU
                assert ours.stats.packets_out["whoareyou"] == 1
                assert ours.session_established(js.node.id, js.node.udp_address)
                await ours.ping(js.node)
                _assert_clean(ours)
        async with our_node(key) as ours:
            js_args = ("--key", js_key.secret.hex(), "--talk", "echo")
            async with js_peer(*js_args) as js:
                js_node = js.node
                assert await ours.talkreq(js_node, "echo", b"first") == b"echo:first"
            # theirs restarts with the same key and port; ours keeps its session
            async with js_peer(*js_args, "--port", str(js_node.udp_port)) as js:
                assert js.node.id == js_node.id
                before = ours.stats.packets_in["whoareyou"]
                # our session packet is undecryptable for it: its WHOAREYOU, our handshake
                assert await ours.talkreq(js.node, "echo", b"again") == b"echo:again"
                assert ours.stats.packets_in["whoareyou"] == before + 1
                await js.ok("ping", enr=ours.local_record.to_text())
                _assert_clean(ours)


def _assert_clean(v5: V5Protocol) -> None:
    """No drops that would mean a wire disagreement between the two implementations."""
    bad = {r: c for r, c in v5.stats.drops.items()
           if r not in ("v5_unsolicited_reply", "v5_talk_unknown_protocol")}
    assert bad == {}, bad




async def test_they_ping_and_findnode_a_bootnode_with_v5_while_v4_bonds_on_the_same_port() -> None:
    """``p2p bootnode --v5`` (a subprocess): @chainsafe/discv5 pings and FINDNODEs it over v5
    while our v4 service bonds with and queries the same UDP port."""
    import sys

    from p2p.discover import DiscoveryConfig, open_discovery

    boot_key, v4_key = _key(40), _key(41)
    argv = [sys.executable, "-m", "p2p", "bootnode", "--nodekeyhex", boot_key.to_hex(), "--addr", f"{HOST}:0",
            "--v5", "--json"]
    with trio.fail_after(40):
        async with open_json_process(argv, name="p2p bootnode") as boot, js_peer() as js:
            listening = await boot.wait_for("listening")
            enr = ENR.from_text(listening["enr"])
            boot_node = Node.from_enr(enr)
            config = DiscoveryConfig(refresh_on_start=False, revalidate=False)
            async with open_discovery(v4_key, (HOST, 0), config=config) as v4:
                # v4: ping, its ping back, then a query it answers only to a bonded node
                await v4.ping(boot_node)
                await boot.wait_for("node_added", id=v4.local_id.hex())
                found = await v4.find_node(boot_node, v4_key.public_key.to_bytes())
                assert v4.local_id in {n.id for n in found}
                # v5 on the same port: PING, and FINDNODE of its own record and of its neighbours
                pong = await js.ok("ping", enr=enr.to_text())
                assert (pong["ip"], pong["port"]) == js.node.udp_address
                own = await js.ok("findnode", enr=enr.to_text(), distances=[0])
                assert _ids(own["enrs"]) == {enr.node_id}
                d = log_distance(enr.node_id, js.node.id)
                near = await js.ok("findnode", enr=enr.to_text(), distances=[d])
                assert js.node.id in _ids(near["enrs"])  # its handshake put it in the shared table
                await boot.wait_for("node_added", id=js.node.id.hex())  # and the v4 events show it
                assert await v4.ping(boot_node)  # v4 still answered after the v5 traffic
                assert v4.stats.drops == {}
                assert js.errors == [], js.errors
