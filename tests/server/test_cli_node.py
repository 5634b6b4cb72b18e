"""``p2p node --json`` as a program: two processes connect over loopback and report it."""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

import trio

from p2p.crypto import PrivateKey


class Lines:
    def __init__(self, proc: trio.Process) -> None:
        assert proc.stdout is not None
        self._stream = proc.stdout
        self._buf = b""

    async def next(self) -> dict[str, Any]:
        while b"\n" not in self._buf:
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                raise EOFError("process closed stdout")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)  # type: ignore[no-any-return,unused-ignore]

    async def until(self, event: str) -> dict[str, Any]:
        for _ in range(100):
            obj = await self.next()
            if obj["event"] == event:
                return obj
        raise AssertionError(f"no {event} event")


def node_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "p2p", "node", "--json", "--addr", "127.0.0.1:0", *args]


async def test_two_node_processes_connect_and_report() -> None:
    key_b = PrivateKey.generate()
    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            proc_b = await n.start(lambda task_status: trio.run_process(
                node_cmd("--nodekeyhex", key_b.to_hex(), "--nodiscover", "--protocols", "chat"),
                stdout=-1, check=False, task_status=task_status))
            lines_b = Lines(proc_b)
            listening = await lines_b.until("listening")
            assert listening["enode"].startswith("enode://" + key_b.public_key.to_bytes().hex() + "@127.0.0.1:")
            assert listening["enr"].startswith("enr:")
            proc_a = await n.start(lambda task_status: trio.run_process(
                node_cmd("--nodiscover", "--protocols", "chat", "--staticnodes", listening["enode"]),
                stdout=-1, check=False, task_status=task_status))
            lines_a = Lines(proc_a)
            a_listening = await lines_a.until("listening")
            added = await lines_a.until("peer_added")
            assert added["id"] == listening["id"] and added["inbound"] is False and added["caps"] == ["chat/1"]
            added_b = await lines_b.until("peer_added")
            assert added_b["id"] == a_listening["id"] and added_b["inbound"] is True
            proc_a.send_signal(signal.SIGINT)
            removed = await lines_b.until("peer_removed")
            assert removed["id"] == a_listening["id"] and removed["reason"] == "client_quitting"
            assert (await lines_a.until("stopped"))["event"] == "stopped"
            proc_b.send_signal(signal.SIGINT)
            await lines_b.until("stopped")
