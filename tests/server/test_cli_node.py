"""``p2p node --json`` as a program: two processes connect over loopback and report it."""

from __future__ import annotations

import signal
import sys
from contextlib import AbstractAsyncContextManager

import trio

from p2p.crypto import PrivateKey
from p2p.testing import JsonLinesProcess, open_json_process


def node_process(*args: str) -> AbstractAsyncContextManager[JsonLinesProcess]:
    argv = [sys.executable, "-m", "p2p", "node", "--json", "--addr", "127.0.0.1:0", *args]
    return open_json_process(argv, stdin=False, name="p2p node")


async def test_two_node_processes_connect_and_report() -> None:
    key_b = PrivateKey.generate()
    with trio.fail_after(30):
        async with node_process("--nodekeyhex", key_b.to_hex(), "--nodiscover", "--protocols", "chat") as lines_b:
            listening = await lines_b.wait_for("listening")
            assert listening["enode"].startswith("enode://" + key_b.public_key.to_bytes().hex() + "@127.0.0.1:")
            assert listening["enr"].startswith("enr:")
            async with node_process("--nodiscover", "--protocols", "chat", "--staticnodes", listening["enode"]) as lines_a:
                a_listening = await lines_a.wait_for("listening")
                added = await lines_a.wait_for("peer_added")
                assert added["id"] == listening["id"] and added["inbound"] is False and added["caps"] == ["chat/2"]
                added_b = await lines_b.wait_for("peer_added")
                assert added_b["id"] == a_listening["id"] and added_b["inbound"] is True
                lines_a.process.send_signal(signal.SIGINT)
                removed = await lines_b.wait_for("peer_removed")
                assert removed["id"] == a_listening["id"] and removed["reason"] == "client_quitting"
                assert (await lines_a.wait_for("stopped"))["event"] == "stopped"
            lines_b.process.send_signal(signal.SIGINT)
            await lines_b.wait_for("stopped")
