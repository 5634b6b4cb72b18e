"""``p2p bench peers``: how many peers one node holds, what each costs, and handler throughput.

Three processes: this one orchestrates; a *server* process runs the node (or, for the baseline,
a bare RLPx acceptor); a *client* process opens bare RLPx + Hello connections to it (and
answers its pings). Memory is the server process's RSS.

Figures:
- ``peak_peers``: the most concurrent peers the node held, adding clients in steps up to
  ``--peers-max`` (the first step where some could not connect ends the climb);
- ``kib_per_peer``: server RSS growth divided by peers, at the largest step all of whose clients
  connected; ``baseline_kib_per_conn`` is the same for bare RLPx connections with one reader
  task each (no Hello, no peer layer) in a fresh server process, and ``ratio_to_baseline``
  their quotient: what the peer layer adds;
- ``messages_per_s``: small messages through a registered protocol handler, 100 peers sending
  at once; ``baseline_messages_per_s``: the same messages read by bare RLPx reader loops.
- ``typed_messages_per_s`` / ``raw_handler_messages_per_s`` (1 KiB and 64 KiB, one peer),
  ``typed_us_per_message``, ``typed_decode_us`` and ``requests_per_s`` (1 and 16 in flight):
  the typed layer, see ``p2p/bench/_typed.py``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import trio

from p2p.bench._stats import summary
from p2p.hello import PeerError
from p2p.rlpx.errors import RLPxError

# What ends one benchmark connection (the other side went away, a handshake failed); anything
# else is a bug and should stop the benchmark.
CONNECTION_ERRORS = (RLPxError, PeerError, OSError, trio.BrokenResourceError, trio.ClosedResourceError,
                     trio.TooSlowError)

STEPS = (250, 500, 1000, 1500, 2000)  # peers added stage by stage
QUICK_STEPS = (100, 200)
MESSAGE_PEERS = 100  # the "across 100 peers"
MESSAGES_PER_PEER = 1000
QUICK_MESSAGES_PER_PEER = 200
PAYLOAD = b"\xa0" + b"\x07" * 32  # a 32-byte RLP string
SEND_BATCH = 64  # messages per write in the sending client
CLIENT_CONCURRENCY = 32  # handshakes the client runs at once (the server takes 50 pending)
STEP_TIMEOUT = 120.0  # seconds for one step's clients to connect
FD_HEADROOM = 64
GOAL_KIB_PER_PEER = 40.0
GOAL_PEERS = 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--peers-max", type=int, default=None,
                        help=f"largest peer count tried (default {STEPS[-1]}, {QUICK_STEPS[-1]} with --quick)")
    parser.add_argument("--peers-messages", type=int, default=None,
                        help=f"messages per peer for the throughput figure (default {MESSAGES_PER_PEER})")


def _raise_nofile(want: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _rss() -> int:
    gc.collect()
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _say(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


# -- the server process ------------------------------------------------------------------------


async def _serve(mode: str, max_peers: int) -> None:
    from p2p.crypto import PrivateKey
    from p2p.protocol import Protocol, ProtocolConnection
    from p2p.rlpx import accept
    from p2p.server import ServerConfig, open_server

    received = 0
    first = last = 0.0
    conns = 0

    def count() -> None:
        nonlocal received, first, last
        now = time.perf_counter()
        if received == 0:
            first = now
        received += 1
        last = now

    async def commands(report: Any) -> None:
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline)
            if not line or line.strip() == "quit":
                return
            report()

    if mode == "node":
        proto = Protocol("bench", 1, 1)

        @proto.handler(0)
        async def on_message(conn: ProtocolConnection, payload: bytes) -> None:
            count()

        async with open_server(PrivateKey.generate(), ("127.0.0.1", 0), [proto], config=ServerConfig(
            discovery=False, max_peers=max_peers, max_pending=64, max_pending_per_ip=64)) as server:  # every bench peer dials from 127.0.0.1
            _say(event="listening", enode=server.enode, rss=_rss())
            await commands(lambda: _say(peers=server.peer_count(), rss=_rss(), received=received,
                                        seconds=last - first))
        return

    key = PrivateKey.generate()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def handle(stream: trio.SocketStream) -> None:
        nonlocal conns
        try:
            conn = await accept(stream, key)
            conn.snappy = True  # as the node's peers (both sides at p2p v5)
        except CONNECTION_ERRORS:
            return
        conns += 1
        try:
            while True:
                await conn.receive()
                count()
        except CONNECTION_ERRORS:
            pass  # the client closed: this connection's count is final
        finally:
            conns -= 1
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        enode = f"enode://{key.public_key.to_bytes().hex()}@127.0.0.1:{port}"
        _say(event="listening", enode=enode, rss=_rss())
        await commands(lambda: _say(peers=conns, rss=_rss(), received=received, seconds=last - first))
        nursery.cancel_scope.cancel()


# -- the client process ------------------------------------------------------------------------


async def _clients(target: str, mode: str) -> None:
    from p2p.crypto import PrivateKey
    from p2p.enode import Node
    from p2p.hello import EMPTY_LIST, MessageCode
    from p2p.peer import exchange_hello, make_hello
    from p2p.protocol import Protocol
    from p2p.rlpx import Connection, connect

    node = Node.from_url(target)
    proto = Protocol("bench", 1, 1)
    conns: list[Connection] = []
    limiter = trio.CapacityLimiter(CLIENT_CONCURRENCY)

    async def keep(conn: Connection) -> None:
        # Answer pings so the node keeps us; anything else is ignored.
        try:
            while True:
                code, _ = await conn.receive()
                if code == MessageCode.PING:
                    await conn.send(MessageCode.PONG, EMPTY_LIST)
        except CONNECTION_ERRORS:
            pass  # the node closed this client

    async def one(nursery: trio.Nursery, failures: list[int]) -> None:
        async with limiter:
            key = PrivateKey.generate()
            try:
                conn = await connect(str(node.ip), node.tcp_port, key, node.pubkey, handshake_timeout=20)
                if mode == "rlpx":
                    conn.snappy = True
                else:
                    await exchange_hello(conn, make_hello(key.public_key, [proto], client_id="bench", listen_port=0),
                                         timeout=20)
            except CONNECTION_ERRORS:
                failures[0] += 1
                return
            conns.append(conn)
            if mode == "node":
                nursery.start_soon(keep, conn)

    async def blast(conn: Connection, count: int) -> None:
        # Batched writes: the figure is about the receiving node, not this sender.
        while count > 0:
            batch = min(count, SEND_BATCH)
            await conn.send_many([(16, PAYLOAD)] * batch)
            count -= batch

    async with trio.open_nursery() as nursery:
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline)
            if not line or line.strip() == "quit":
                break
            cmd, _, arg = line.strip().partition(" ")
            if cmd == "connect":
                failures = [0]
                async with trio.open_nursery() as batch:
                    for _ in range(int(arg)):
                        batch.start_soon(one, nursery, failures)
                _say(connected=len(conns), failed=failures[0])
            elif cmd == "send":
                per_peer = int(arg)
                async with trio.open_nursery() as senders:
                    for conn in conns[:MESSAGE_PEERS]:
                        senders.start_soon(blast, conn, per_peer)
                _say(sent=per_peer * min(MESSAGE_PEERS, len(conns)))
        nursery.cancel_scope.cancel()
    for conn in conns:
        with trio.move_on_after(1):
            await conn.aclose()


# -- orchestration -----------------------------------------------------------------------------


class _Child:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "p2p.bench.peers", *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)

    def ask(self, line: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.read()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        out = self.proc.stdout.readline()
        if not out:
            raise RuntimeError(f"bench child {self.proc.args!r} exited ({self.proc.poll()})")
        result: dict[str, Any] = json.loads(out)
        return result

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            self.proc.wait(timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def _wait_received(server: _Child, expected: int, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        report = server.ask("report")
        if report["received"] >= expected or time.monotonic() > deadline:
            return report
        time.sleep(0.05)


def _memory_run(steps: tuple[int, ...]) -> dict[str, Any]:
    server = _Child("--role", "server", "--mode", "node", "--max-peers", str(steps[-1] + 10))
    client: _Child | None = None
    try:
        hello = server.read()
        client = _Child("--role", "client", "--mode", "node", "--target", hello["enode"])
        base = server.ask("report")["rss"]
        peak = 0
        at_step: dict[int, float] = {}
        total = 0
        for step in steps:
            started = time.monotonic()
            result = client.ask(f"connect {step - total}")
            total = step
            deadline = time.monotonic() + 10
            report = server.ask("report")
            while report["peers"] < result["connected"] and time.monotonic() < deadline:
                time.sleep(0.05)
                report = server.ask("report")
            peak = max(peak, report["peers"])
            if result["failed"] or report["peers"] < step:
                break
            at_step[step] = (report["rss"] - base) / 1024 / step
            print(f"  peers: {step} connected in {time.monotonic() - started:.1f} s, "
                  f"{at_step[step]:.1f} KiB/peer", file=sys.stderr)
        return {"peak": peak, "kib_per_peer": at_step}
    finally:
        if client is not None:
            client.close()
        server.close()


def _baseline_memory(count: int) -> float:
    server = _Child("--role", "server", "--mode", "rlpx")
    client: _Child | None = None
    try:
        hello = server.read()
        client = _Child("--role", "client", "--mode", "rlpx", "--target", hello["enode"])
        base = server.ask("report")["rss"]
        client.ask(f"connect {count}")
        deadline = time.monotonic() + 10
        report = server.ask("report")
        while report["peers"] < count and time.monotonic() < deadline:
            time.sleep(0.05)
            report = server.ask("report")
        return (report["rss"] - base) / 1024 / max(1, report["peers"])
    finally:
        if client is not None:
            client.close()
        server.close()


def _throughput(mode: str, per_peer: int) -> float:
    server = _Child("--role", "server", "--mode", mode, "--max-peers", str(MESSAGE_PEERS + 10))
    client: _Child | None = None
    try:
        hello = server.read()
        client = _Child("--role", "client", "--mode", mode, "--target", hello["enode"])
        client.ask(f"connect {MESSAGE_PEERS}")
        sent = client.ask(f"send {per_peer}")["sent"]
        report = _wait_received(server, sent)
        if report["received"] < sent or report["seconds"] <= 0:
            return 0.0
        return float(report["received"] / report["seconds"])
    finally:
        if client is not None:
            client.close()
        server.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    quick = bool(getattr(args, "quick", False))
    repeat = max(1, int(getattr(args, "repeat", 1)))
    peers_max = getattr(args, "peers_max", None) or (QUICK_STEPS[-1] if quick else STEPS[-1])
    steps = tuple(s for s in (QUICK_STEPS if quick else STEPS) if s <= peers_max)
    top = steps[-1] if steps else 0
    steps += tuple(range(top + 1000, peers_max + 1, 1000)) + ((peers_max,) if (peers_max - top) % 1000 else ())
    per_peer = getattr(args, "peers_messages", None) or (QUICK_MESSAGES_PER_PEER if quick else MESSAGES_PER_PEER)
    nofile = _raise_nofile(2 * steps[-1] + 2 * FD_HEADROOM)  # children inherit the limit

    peaks, kib, base_kib, rates, base_rates = [], [], [], [], []
    measured_at = 0
    for _ in range(repeat):
        mem = _memory_run(steps)
        peaks.append(float(mem["peak"]))
        if mem["kib_per_peer"]:
            measured_at = max(mem["kib_per_peer"])
            kib.append(mem["kib_per_peer"][measured_at])
            base_kib.append(_baseline_memory(measured_at))
        rates.append(_throughput("node", per_peer))
        base_rates.append(_throughput("rlpx", per_peer))
    result: dict[str, Any] = {
        "peak_peers": summary(peaks),
        "peers_tried": steps[-1],
        "rlimit_nofile": nofile,
        "messages_per_s": summary(rates),
        "baseline_messages_per_s": summary(base_rates),
        "messages_ratio_to_baseline": summary([r / b for r, b in zip(rates, base_rates) if b > 0] or [0.0]),
        "message_peers": MESSAGE_PEERS,
        "messages_per_peer": per_peer,
    }
    if kib:
        result.update({
            "memory_measured_at_peers": measured_at,
            "kib_per_peer": summary(kib),
            "baseline_kib_per_conn": summary(base_kib),
            "ratio_to_baseline": summary([k / b for k, b in zip(kib, base_kib) if b > 0] or [0.0]),
            "goal": f"{GOAL_PEERS} peers under {GOAL_KIB_PER_PEER:g} KiB each",
            "goal_met": bool(min(peaks) >= GOAL_PEERS and statistics_median(kib) < GOAL_KIB_PER_PEER
                             and measured_at >= GOAL_PEERS),
        })
    result.update(_typed_layer(quick, repeat))
    return result


def _typed_layer(quick: bool, repeat: int) -> dict[str, Any]:
    """Typed messages beside raw handlers (1 KiB, 64 KiB) and request/response round trips."""
    from p2p.bench._typed import typed_figures

    return typed_figures(quick, repeat)


def statistics_median(values: list[float]) -> float:
    return float(summary(values)["median"])


def _child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=["server", "client"], required=True)
    parser.add_argument("--mode", choices=["node", "rlpx"], default="node")
    parser.add_argument("--target")
    parser.add_argument("--max-peers", type=int, default=STEPS[-1] + 10)
    ns = parser.parse_args(argv)
    _raise_nofile(4 * ns.max_peers + FD_HEADROOM)
    if ns.role == "server":
        trio.run(_serve, ns.mode, ns.max_peers)
    else:
        trio.run(_clients, ns.target, ns.mode)


if __name__ == "__main__":
    _child_main(sys.argv[1:])
