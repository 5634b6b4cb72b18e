"""``p2p bootnode --json`` in a subprocess: the listening line, then table events."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import trio

from p2p.discover import DiscoveryConfig, open_discovery
from p2p.enode import ENR, Node
from tests.discover.conftest import make_keys

KEYS = make_keys(2, seed=555)


class Lines:
    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buf = b""

    async def next_json(self) -> dict[str, Any]:
        while b"\n" not in self._buf:
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                raise EOFError("bootnode closed its output")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        obj: dict[str, Any] = json.loads(line)
        return obj


async def test_bootnode_prints_listening_then_node_added() -> None:
    boot_key, our_key = KEYS
    cmd = [sys.executable, "-m", "p2p", "bootnode", "--nodekeyhex", boot_key.to_hex(), "--addr", "127.0.0.1:0",
           "--json"]
    with trio.fail_after(30):
        proc = await trio.lowlevel.open_process(cmd, stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            lines = Lines(proc.stdout)
            first = await lines.next_json()
            assert first["event"] == "listening"
            boot = Node.from_url(first["enode"])
            assert boot.pubkey == boot_key.public_key and str(boot.ip) == "127.0.0.1" and boot.udp_port > 0
            enr = ENR.from_text(first["enr"])
            assert enr.node_id == boot.id and enr.udp == boot.udp_port
            config = DiscoveryConfig(refresh_on_start=False, revalidate=False)
            async with open_discovery(our_key, config=config) as disc:
                await disc.ping(boot)
                while True:
                    ev = await lines.next_json()
                    if ev["event"] == "node_added" and ev["id"] == disc.local_id.hex():
                        break
                assert Node.from_url(ev["enode"]).udp_port == disc.udp_port
                assert ev["via"] == "v4"
                # and it answers queries: it knows us
                found = await disc.find_node(boot, our_key.public_key.to_bytes())
                assert disc.local_id in {n.id for n in found}
        finally:
            proc.kill()
            await proc.wait()


async def test_bootnode_says_a_node_found_over_v5_came_via_v5() -> None:
    boot_key, our_key = KEYS
    cmd = [sys.executable, "-m", "p2p", "bootnode", "--nodekeyhex", boot_key.to_hex(), "--addr", "127.0.0.1:0",
           "--v5", "--json"]
    with trio.fail_after(30):
        proc = await trio.lowlevel.open_process(cmd, stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            lines = Lines(proc.stdout)
            first = await lines.next_json()
            boot = Node.from_enr(ENR.from_text(first["enr"]))
            config = DiscoveryConfig(refresh_on_start=False, revalidate=False, v4=False, v5=True)
            async with open_discovery(our_key, config=config) as disc:
                assert disc.v5 is not None
                await disc.v5.ping(boot)  # our handshake puts us in its table, over v5 alone
                while True:
                    ev = await lines.next_json()
                    if ev["event"] == "node_added" and ev["id"] == disc.local_id.hex():
                        break
                assert ev["via"] == "v5"
        finally:
            proc.kill()
            await proc.wait()


def test_bootnode_rejects_bad_flags() -> None:
    for args in (["--nodekeyhex", "zz"], ["--addr", "nope"], ["--bootnodes", "enode://xyz"]):
        r = subprocess.run([sys.executable, "-m", "p2p", "bootnode", *args], capture_output=True, timeout=30)
        assert r.returncode == 2 and b"p2p bootnode:" in r.stderr
