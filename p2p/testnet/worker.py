"""Shards in child processes: the worker's request loop and the parent's ``RemoteShard``.

The parent writes one JSON request per line to the child's stdin
(``{"id": 7, "cmd": "stats", ...}``) and the child answers on stdout with the same ID
(``{"id": 7, "result": ...}`` or ``{"id": 7, "error": "..."}``). A child whose stdin closes
stops its nodes and exits, so no child outlives a parent that died.

    python -m p2p.testnet.worker '<ShardSpec as JSON>'
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import trio

from p2p.testnet.shard import LocalShard, NodeRef, ShardSpec, tune_gc

logger = logging.getLogger(__name__)

MAX_LINE = 16 * 1024 * 1024  # a stats answer for thousands of nodes is well under this
REQUEST_TIMEOUT = 120.0  # seconds a child may take to answer one request (starting nodes is the slow one)


class WorkerError(Exception):
    """A child process failed, answered with an error, or did not answer in time."""


class _Lines:
    """Split a byte stream into lines, with a bound on line length."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buf = bytearray()

    async def next(self) -> bytes | None:
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                return line
            if len(self._buf) > MAX_LINE:
                raise WorkerError("line too long from the other side")
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                return None
            self._buf += chunk


# --- child side ---------------------------------------------------------------------------------


async def _handle(shard: LocalShard, req: dict[str, Any]) -> Any:
    cmd = req["cmd"]
    if cmd == "start":
        refs = await shard.start_nodes(req["indices"], req["bootnodes"], req.get("hosts"))
        return [r.to_json() for r in refs]
    if cmd == "stats":
        return shard.stats()
    if cmd == "lookup":
        return await shard.lookup(req["index"], req["target"])
    if cmd == "chat_send":
        return await shard.chat_send(req["index"], req["text"])
    if cmd == "chat_received":
        return shard.chat_received(req["ids"])
    if cmd == "holders":
        return shard.holders(req["target"], req.get("near", ()))
    raise WorkerError(f"unknown command {cmd!r}")


async def serve(spec: ShardSpec, stdin: trio.abc.ReceiveStream, stdout: trio.abc.SendStream) -> None:
    """Answer requests until stdin closes; then stop every node of the shard."""
    lock = trio.Lock()

    async def answer(req: dict[str, Any]) -> None:
        try:
            reply = {"id": req.get("id"), "result": await _handle(shard, req)}
        except Exception as exc:  # noqa: BLE001 - any failure goes back to the parent as text
            logger.exception("request %s failed", req.get("cmd"))
            reply = {"id": req.get("id"), "error": f"{type(exc).__name__}: {exc}"}
        async with lock:
            await stdout.send_all(json.dumps(reply).encode() + b"\n")

    async with trio.open_nursery() as nursery:
        shard = LocalShard(nursery, spec)
        lines = _Lines(stdin)
        async with trio.open_nursery() as requests:
            while (line := await lines.next()) is not None:
                if line.strip():
                    requests.start_soon(answer, json.loads(line))
            requests.cancel_scope.cancel()
        nursery.cancel_scope.cancel()


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m p2p.testnet.worker SPEC_JSON", file=sys.stderr)
        return 2
    spec = ShardSpec.from_json(json.loads(argv[0]))
    tune_gc()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="worker %(process)d %(levelname)s %(name)s: %(message)s")

    async def amain() -> None:
        stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
        stdout = trio.lowlevel.FdStream(sys.stdout.fileno())
        await serve(spec, stdin, stdout)

    trio.run(amain)
    return 0


# --- parent side --------------------------------------------------------------------------------


class RemoteShard:
    """A shard in a child process, with the same calls as :class:`LocalShard` (all async)."""

    def __init__(self, process: trio.Process) -> None:
        self._process = process
        self._next_id = 0
        self._waiting: dict[int, trio.MemorySendChannel[dict[str, Any]]] = {}
        self._send_lock = trio.Lock()
        self.pid = process.pid

    @classmethod
    async def open(cls, nursery: trio.Nursery, spec: ShardSpec, *,
                   prefix: Sequence[str] = ()) -> "RemoteShard":
        """Start a worker; ``prefix`` runs it through another command (``ip netns exec NS``)."""
        process = await trio.lowlevel.open_process(
            [*prefix, sys.executable, "-m", "p2p.testnet.worker", json.dumps(spec.to_json())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        shard = cls(process)
        nursery.start_soon(shard._read_replies)
        return shard

    async def _read_replies(self) -> None:
        assert self._process.stdout is not None
        lines = _Lines(self._process.stdout)
        try:
            while (line := await lines.next()) is not None:
                reply = json.loads(line)
                channel = self._waiting.pop(reply.get("id"), None)
                if channel is not None:
                    channel.send_nowait(reply)
        finally:
            # The child is gone: everyone still waiting gets an error instead of a hang.
            for channel in self._waiting.values():
                channel.send_nowait({"error": "worker process exited"})
            self._waiting.clear()

    async def _call(self, cmd: str, **fields: Any) -> Any:
        self._next_id += 1
        req_id = self._next_id
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        self._waiting[req_id] = send
        assert self._process.stdin is not None
        async with self._send_lock:
            await self._process.stdin.send_all(json.dumps({"id": req_id, "cmd": cmd, **fields}).encode() + b"\n")
        with trio.fail_after(REQUEST_TIMEOUT):
            reply = await receive.receive()
        if "error" in reply:
            raise WorkerError(f"worker {self.pid}: {cmd}: {reply['error']}")
        return reply["result"]

    async def start_nodes(self, indices: Sequence[int], bootnodes: Sequence[str],
                          hosts: Sequence[str] | None = None) -> list[NodeRef]:
        refs = await self._call("start", indices=list(indices), bootnodes=list(bootnodes),
                                hosts=list(hosts) if hosts is not None else None)
        return [NodeRef.from_json(r) for r in refs]

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("stats")
        return result

    async def lookup(self, index: int, target_hex: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("lookup", index=index, target=target_hex)
        return result

    async def chat_send(self, index: int, text: str) -> str:
        return str(await self._call("chat_send", index=index, text=text))

    async def chat_received(self, ids: Sequence[str]) -> dict[str, int]:
        result: dict[str, int] = await self._call("chat_received", ids=list(ids))
        return result

    async def holders(self, target_hex: str, near: Sequence[str] = ()) -> tuple[int, int, int, int]:
        held, live, held_near, live_near = await self._call("holders", target=target_hex, near=list(near))
        return int(held), int(live), int(held_near), int(live_near)

    async def aclose(self) -> None:
        if self._process.stdin is not None:
            await self._process.stdin.aclose()
        with trio.move_on_after(10):
            await self._process.wait()
        if self._process.returncode is None:
            self._process.kill()
            await self._process.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
