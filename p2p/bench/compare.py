"""``p2p bench compare``: the same RLPx and discv4 workloads on ``@ethereumjs/devp2p`` and on
ours, in the same run on the same machine, reported as ratios (ours / theirs).

Workloads, each between two processes on 127.0.0.1:

- throughput: a sender dials a receiver, Hello both ways (p2p v5, so snappy on), then N
  messages of 64 KiB (and of 1 KiB) of random bytes through a one-message sub-protocol; the
  receiver answers when it has all of them, the sender's clock stops at that answer.
- handshakes: connect, auth/ack, Hello both ways, close, repeat.
- pings: discv4 Pings kept in flight against one answering node, Pongs counted.
- v5 pings: discv5 PINGs within one established session against ``@chainsafe/discv5`` and
  against ours, from the same client (:mod:`p2p.bench.discovery_v5`), PONGs counted.

The JavaScript side is ``tests/interop/bench_rlpx.mjs``, ``bench_dpt.mjs`` and
``discv5_peer.mjs`` (a chainsafe node that answers, as in the interop tests); ours is the same
steps here: messages go through the protocol API (a ``Protocol`` handler counts them,
``ProtocolConn.send`` sends them, :mod:`p2p.bench.protocol_peer`), handshakes are bare
:mod:`p2p.rlpx` plus Hello (the receiver is this module run as a child process), and for
pings the same Python pinger is aimed at their DPT and at our discovery.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import IO, Any

from p2p.bench._stats import summary

HOST = "127.0.0.1"
INTEROP_DIR = Path(__file__).resolve().parents[2] / "tests" / "interop"
SIZES = (65536, 1024)  # the two payload sizes of the issue: a block-body-like and a small message
# Counts per run: big enough that each run lasts a second or more on the slower side.
FULL_COUNTS = {65536: 600, 1024: 10000, "handshakes": 60, "ping_seconds": 2.0}
QUICK_COUNTS = {65536: 60, 1024: 1000, "handshakes": 10, "ping_seconds": 0.5}
OURS_SCALE = 10  # ours runs this many times more work per run, so its runs are as long as theirs
PING_WINDOW = 8  # pings in flight; more does not raise ethereumjs's rate (measured 1..64)
V5_PING_WINDOW = 32  # v5 PINGs in flight, both sides: fills both nodes' loops without queueing in the kernel
V5_WARM_UP = 1.0  # seconds of v5 PINGs before the timed runs, both sides (measured: chainsafe 2k/s cold, 6k/s+ warm)
CHILD_DEADLINE = 300.0  # seconds any child process may take before it is killed
BENCH_PROTOCOL = (b"bench", 1)  # capability of the one-message load protocol, both sides
DATA_CODE = 0x10  # first code after the 16 base-protocol codes: a data message
DONE_CODE = 0x11  # "that was the last one": the receiver answers with its counts


class CompareError(Exception):
    """A side of the comparison could not run (node missing, child failed)."""


# ---------------------------------------------------------------------------------------------
# child processes


def _node_binary(args: argparse.Namespace) -> str:
    node = getattr(args, "compare_node", None) or shutil.which("node")
    if not node:
        raise CompareError("node (Node.js) not found: the ethereumjs side cannot run")
    if not (INTEROP_DIR / "node_modules" / "@ethereumjs" / "devp2p").is_dir():
        raise CompareError(f"@ethereumjs/devp2p is not installed in {INTEROP_DIR}")
    return node


def _read_event(stream: IO[str], want: str, proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The first JSON line of ``stream`` whose event is ``want``."""
    for line in stream:
        line = line.strip()
        if not line.startswith("{"):
            continue
        obj: dict[str, Any] = json.loads(line)
        if obj.get("event") == want:
            return obj
        if obj.get("event") == "error":
            raise CompareError(f"child failed: {obj}")
    raise CompareError(f"child exited (status {proc.poll()}) before reporting {want!r}")


@contextmanager
def _server(cmd: list[str], cwd: Path | None = None) -> Iterator[dict[str, Any]]:
    """Run a long-lived child that prints ``{"event": "listening", ...}``; stop it on exit.

    The child's stdin is a pipe we hold: children exit when it closes, so none outlives us.
    """
    proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        yield _read_event(proc.stdout, "listening", proc)
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _run_child(cmd: list[str], want: str, cwd: Path | None = None) -> dict[str, Any]:
    out = subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=CHILD_DEADLINE)
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            obj: dict[str, Any] = json.loads(line)
            if obj.get("event") == want:
                return obj
    raise CompareError(f"{cmd[:3]} exited {out.returncode} without {want!r}: {out.stderr[-500:]}")


def _python_child(*role: str) -> list[str]:
    return [sys.executable, "-m", "p2p.bench.compare", *role]


# ---------------------------------------------------------------------------------------------
# ethereumjs side


def _theirs_rlpx(node: str, counts: dict[Any, Any], repeat: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with _server([node, "bench_rlpx.mjs", "listen"], cwd=INTEROP_DIR) as listening:
        target = ["--port", str(listening["port"]), "--id", listening["id"]]
        for size in SIZES:
            runs = [_run_child([node, "bench_rlpx.mjs", "send", *target, "--count", str(counts[size]),
                                "--size", str(size)], "throughput", cwd=INTEROP_DIR)
                    for _ in range(repeat)]
            result[f"msg_{size}"] = _throughput_summary(runs)
        hs = [_run_child([node, "bench_rlpx.mjs", "handshakes", *target, "--count",
                          str(counts["handshakes"])], "handshakes", cwd=INTEROP_DIR)["per_s"]
              for _ in range(repeat)]
        result["handshakes_per_s"] = summary(hs)
    return result


def _throughput_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    for r in runs:
        if r["received"] != r["count"]:
            raise CompareError(f"receiver got {r['received']} of {r['count']} messages")
    out: dict[str, Any] = {
        "mb_per_s": summary([r["mb_per_s"] for r in runs]),
        "msgs_per_s": summary([r["msgs_per_s"] for r in runs]),
        "count": runs[0]["count"],
    }
    for name in ("sender_cpu_us_per_message", "receiver_cpu_us_per_message"):  # ours only
        if name in runs[0]:
            out[name] = summary([r[name] for r in runs])
    return out


def _theirs_pings_js(node: str, seconds: float, repeat: int) -> dict[str, Any]:
    """ethereumjs pinging ethereumjs: its own round-trip rate, as the issue quotes it."""
    with _server([node, "bench_dpt.mjs", "answer"], cwd=INTEROP_DIR) as listening:
        runs = [_run_child([node, "bench_dpt.mjs", "ping", "--port", str(listening["port"]),
                            "--seconds", str(seconds), "--window", str(PING_WINDOW)],
                           "pings", cwd=INTEROP_DIR)["per_s"] for _ in range(repeat)]
    return summary(runs)


# ---------------------------------------------------------------------------------------------
# our side: the same steps on p2p.rlpx


def _hello_payload(pubkey: bytes) -> bytes:
    import rlp

    name, version = BENCH_PROTOCOL
    return bytes(rlp.encode([5, b"p2p-bench", [[name, version]], 0, pubkey]))


async def _exchange_hello(conn: Any, pubkey: bytes) -> None:
    """Hello both ways, uncompressed, then snappy on (both sides announce version 5)."""
    await conn.send(0x00, _hello_payload(pubkey))
    code, _payload = await conn.receive()
    if code != 0x00:
        raise CompareError(f"expected Hello, got message code {code}")
    conn.snappy = True


async def _ours_listen() -> None:
    """Child process: accept connections and run each as a peer whose ``bench`` handlers count
    data messages and answer the end marker (:mod:`p2p.bench.protocol_peer`)."""
    import trio

    from p2p.bench import protocol_peer
    from p2p.crypto import PrivateKey
    from p2p.hello import PeerError
    from p2p.rlpx import RLPxError

    key = PrivateKey.generate()
    pubkey = key.public_key.to_bytes()

    async def serve(stream: trio.SocketStream) -> None:
        try:
            await protocol_peer.serve(key, stream)
        except (RLPxError, PeerError, OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # a handshake-only dial, or the sender went away

    async def watch_stdin(cancel: trio.CancelScope) -> None:
        # The parent holds our stdin: when it closes it, we are done.
        await trio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
        cancel.cancel()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host=HOST))
        port = listeners[0].socket.getsockname()[1]
        print(json.dumps({"event": "listening", "port": port, "id": pubkey.hex()}), flush=True)
        nursery.start_soon(watch_stdin, nursery.cancel_scope)


async def _ours_send(port: int, remote_id: bytes, count: int, size: int) -> dict[str, Any]:
    """N messages through ``ProtocolConn.send``, one ``await`` each, as a protocol author writes it."""
    from p2p.bench import protocol_peer
    from p2p.crypto import PublicKey

    async with protocol_peer.open_sender(port, PublicKey.from_bytes(remote_id), host=HOST) as sender:
        payload = os.urandom(size)
        send = sender.conn.send
        data = protocol_peer.DATA

        async def burst(n: int) -> dict[str, int]:
            for _ in range(n):
                await send(data, payload)
            return await sender.ask()

        await burst(max(10, count // 10))  # untimed, as the JavaScript side warms its JIT
        cpu = time.process_time()
        t0 = time.perf_counter()
        got = await burst(count)
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - cpu
    return {"size": size, "count": count, "received": got["count"], "seconds": seconds,
            "msgs_per_s": got["count"] / seconds, "mb_per_s": got["bytes"] / seconds / 1e6,
            "sender_cpu_us_per_message": cpu / count * 1e6,
            "receiver_cpu_us_per_message": got["cpu_ns"] / 1e3 / max(1, got["count"])}


async def _ours_handshakes(port: int, remote_id: bytes, count: int) -> float:
    from p2p import rlpx
    from p2p.crypto import PrivateKey, PublicKey

    key = PrivateKey.generate()
    remote = PublicKey.from_bytes(remote_id)
    pubkey = key.public_key.to_bytes()
    async def once() -> None:
        conn = await rlpx.connect(HOST, port, key, remote)
        try:
            await _exchange_hello(conn, pubkey)
        finally:
            await conn.aclose()

    for _ in range(max(2, count // 10)):  # untimed warm-up, as on the JavaScript side
        await once()
    t0 = time.perf_counter()
    for _ in range(count):
        await once()
    return count / (time.perf_counter() - t0)


def _ours_rlpx(counts: dict[Any, Any], repeat: int) -> dict[str, Any]:
    import trio

    result: dict[str, Any] = {}
    with _server(_python_child("rlpx-listen")) as listening:
        port, remote_id = int(listening["port"]), bytes.fromhex(listening["id"])
        for size in SIZES:
            n = counts[size] * OURS_SCALE
            runs = [trio.run(_ours_send, port, remote_id, n, size) for _ in range(repeat)]
            result[f"msg_{size}"] = _throughput_summary(runs)
        n = counts["handshakes"] * OURS_SCALE
        result["handshakes_per_s"] = summary([trio.run(_ours_handshakes, port, remote_id, n)
                                              for _ in range(repeat)])
    return result


# ---------------------------------------------------------------------------------------------
# pings: one Python pinger, aimed at their DPT and at our discovery


PING, PONG = 0x01, 0x02  # discv4 packet types
PING_EXPIRATION = 20  # seconds a Ping we send stays valid (discv4: a short time in the future)
PING_LOST = 1.0  # a Ping unanswered this long is counted lost and replaced


def _packet(key: Any, ptype: int, data: list[Any]) -> bytes:
    """hash || signature || type || RLP(data), as discv4 lays out every packet."""
    import rlp

    from p2p.crypto import keccak256

    body = bytes([ptype]) + bytes(rlp.encode(data))
    sig = key.sign(keccak256(body))
    return keccak256(sig + body) + sig + body


def ping_rate(host: str, port: int, *, seconds: float, window: int) -> float:
    """Pongs per second from the discv4 node at ``host:port``, with ``window`` Pings in flight.

    A load generator, not a discovery node: it signs its Pings properly, answers the node's
    Pings with a Pong (so that the node sees a bonded sender, as a real peer would be), and
    matches Pongs to its Pings by reply token without checking their signatures.
    """
    import ipaddress
    import socket

    import rlp

    from p2p.crypto import PrivateKey

    key = PrivateKey.generate()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.settimeout(0.05)
    my_port = sock.getsockname()[1]
    ip = ipaddress.ip_address(host).packed
    outstanding: dict[bytes, float] = {}

    def send_ping() -> None:
        exp = int(time.time()) + PING_EXPIRATION
        pkt = _packet(key, PING, [4, [ip, my_port, 0], [ip, port, 0], exp])
        outstanding[pkt[:32]] = time.monotonic()
        sock.sendto(pkt, (host, port))

    answered = 0
    try:
        for _ in range(window):
            send_ping()
        t0 = time.monotonic()
        end = t0 + seconds
        while (now := time.monotonic()) < end:
            try:
                data, addr = sock.recvfrom(2048)
            except TimeoutError:
                data = b""
            if len(data) > 98:
                ptype = data[97]
                if ptype == PONG:
                    fields = rlp.decode(data[98:], strict=False)
                    if outstanding.pop(bytes(fields[1]), None) is not None:
                        answered += 1
                        send_ping()
                elif ptype == PING:
                    exp = int(time.time()) + PING_EXPIRATION
                    sock.sendto(_packet(key, PONG, [[ip, addr[1], 0], data[:32], exp]), addr)
            for h, t in list(outstanding.items()):
                if now - t > PING_LOST:
                    del outstanding[h]
                    send_ping()
        return answered / (time.monotonic() - t0)
    finally:
        sock.close()


def _ping_rate(port: int, seconds: float) -> float:
    return ping_rate(HOST, port, seconds=seconds, window=PING_WINDOW * 4)


def _pings(node: str, seconds: float, repeat: int) -> dict[str, Any]:
    result: dict[str, Any] = {"theirs_js_pinger": _theirs_pings_js(node, seconds, repeat)}
    with _server([node, "bench_dpt.mjs", "answer"], cwd=INTEROP_DIR) as listening:
        result["theirs"] = summary([_ping_rate(listening["port"], seconds) for _ in range(repeat)])
    try:
        from p2p.discover import open_discovery  # noqa: F401
    except ImportError:
        result["ours"] = None
        result["note"] = "p2p.discover.open_discovery is not available: our side was not run"
        return result
    with _server(_python_child("disc-answer")) as listening:
        result["ours"] = summary([_ping_rate(listening["port"], seconds) for _ in range(repeat)])
    return result


async def _ours_disc_answer() -> None:
    """Child process: one discovery node that answers pings until stdin closes."""
    import trio

    from p2p.crypto import PrivateKey
    from p2p.discover import open_discovery

    key = PrivateKey.generate()
    async with open_discovery(key, (HOST, 0)) as disc:
        print(json.dumps({"event": "listening", "port": disc.udp_port,
                          "id": key.public_key.to_bytes().hex()}), flush=True)
        await trio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)


# ---------------------------------------------------------------------------------------------
# v5 pings: one Python client, aimed at @chainsafe/discv5 and at our discovery


def _v5_pings(node: str, seconds: float, repeat: int) -> dict[str, Any]:
    import trio

    from p2p.bench.discovery_v5 import run_client

    if not (INTEROP_DIR / "node_modules" / "@chainsafe" / "discv5").is_dir():
        raise CompareError(f"@chainsafe/discv5 is not installed in {INTEROP_DIR}")

    def runs(cmd: list[str], cwd: Path | None) -> list[dict[str, Any]]:
        with _server(cmd, cwd=cwd) as listening:
            port, record = int(listening["port"]), listening["enr"]
            # untimed, as for RLPx: chainsafe's first thousands of PINGs run before V8 compiles them
            trio.run(run_client, "ping", HOST, port, record, V5_WARM_UP, V5_PING_WINDOW)
            return [trio.run(run_client, "ping", HOST, port, record, seconds, V5_PING_WINDOW)
                    for _ in range(repeat)]

    theirs_runs = runs([node, "discv5_peer.mjs"], INTEROP_DIR)
    ours_runs = runs([sys.executable, "-m", "p2p.bench.discovery_v5", "answer"], None)
    return {"theirs": summary([r["rate"] for r in theirs_runs]), "ours": summary([r["rate"] for r in ours_runs]),
            "window": V5_PING_WINDOW, "theirs_runs": theirs_runs, "ours_runs": ours_runs}


# ---------------------------------------------------------------------------------------------
# the benchmark


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--compare-node", metavar="PATH", help="Node.js binary for the ethereumjs side (default: node on PATH)")


def _ratio(ours: dict[str, Any], theirs: dict[str, Any]) -> float:
    return float(ours["median"]) / float(theirs["median"])


def run(args: argparse.Namespace) -> dict[str, Any]:
    node = _node_binary(args)
    counts = QUICK_COUNTS if args.quick else FULL_COUNTS
    repeat = max(1, int(args.repeat))
    load_at_start = os.getloadavg()[0]
    out: dict[str, Any] = {"cpus": os.cpu_count(), "workload": {"sizes": list(SIZES), "counts_theirs": {str(k): v for k, v in counts.items()},
                                        "ours_scale": OURS_SCALE, "ping_window": PING_WINDOW}}
    theirs = _theirs_rlpx(node, counts, repeat)
    ours = _ours_rlpx(counts, repeat)
    out["theirs"] = theirs
    out["ours"] = ours
    ratios: dict[str, float] = {}
    for size in SIZES:
        key = f"msg_{size}"
        ratios[f"mb_per_s_{size}"] = _ratio(ours[key]["mb_per_s"], theirs[key]["mb_per_s"])
        ratios[f"msgs_per_s_{size}"] = _ratio(ours[key]["msgs_per_s"], theirs[key]["msgs_per_s"])
    ratios["handshakes_per_s"] = _ratio(ours["handshakes_per_s"], theirs["handshakes_per_s"])
    pings = _pings(node, float(counts["ping_seconds"]), repeat)
    out["pings_per_s"] = pings
    if pings.get("ours") and pings.get("theirs"):
        ratios["pings_per_s"] = _ratio(pings["ours"], pings["theirs"])
        ratios["pings_per_s_vs_js_pinger"] = _ratio(pings["ours"], pings["theirs_js_pinger"])
    v5 = _v5_pings(node, float(counts["ping_seconds"]), repeat)
    out["v5_pings_per_s"] = v5
    ratios["v5_pings_per_s"] = _ratio(v5["ours"], v5["theirs"])
    out["ratios"] = ratios
    # Other work on the machine skews both sides; the load says how much to trust a run.
    out["load_average_1min"] = {"start": load_at_start, "end": os.getloadavg()[0]}
    out["ours"].update(_ours_typed(bool(args.quick), repeat))
    return out


def _ours_typed(quick: bool, repeat: int) -> dict[str, Any]:
    """Our typed layer beside raw handlers, and request/response round trips (no JS side)."""
    from p2p.bench._typed import typed_figures

    return typed_figures(quick, repeat)


def main(argv: list[str]) -> int:
    import trio

    roles: dict[str, Callable[[], Any]] = {"rlpx-listen": _ours_listen, "disc-answer": _ours_disc_answer}
    if len(argv) != 1 or argv[0] not in roles:
        print(f"usage: python -m p2p.bench.compare {{{','.join(roles)}}}", file=sys.stderr)
        return 2
    trio.run(roles[argv[0]])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
