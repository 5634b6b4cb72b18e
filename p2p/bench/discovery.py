"""``p2p bench discovery``: how fast one node answers pings, and how fast testnets converge.

Figures:
- ``ceiling_per_s``: decode a Ping and encode its Pong (hash, signature recovery, RLP, signing)
  with no networking: the most a single-threaded node could answer.
- ``pings_answered_per_s``: Pongs per second from one node on loopback, pinged by a bonded
  sender in another process that keeps a window of Pings in flight; ``ratio`` is it over the
  ceiling measured in the same run.
- ``testnet``: for each size, seconds (wall clock) until every node of a one-process loopback
  testnet holds its closest member and a full bucket's worth of nodes, and for the smallest
  size the outcome of 50 lookups of member IDs from other members.
- ``v5``: discovery v5 on the same kind of node (v4 and v5 on one socket), driven by
  :mod:`p2p.bench.discovery_v5` clients in another process: ``pings_answered_per_s`` (PONGs
  per second within one established session, ``window`` PINGs in flight) and
  ``handshakes_per_s`` (each with a fresh identity, ``slots`` at a time). ``v5.testnet``: for
  each size, one ``p2p testnet`` run (:mod:`p2p.testnet`) over v5 and one over v4 for
  reference, with the runner's convergence (every table holds 16 nodes) and, for the smallest
  size, 50 lookups of member IDs (over v5 where v5 runs). One run each, not ``--repeat``: a
  500-node network is the slow part of the benchmark.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import sys
import time
from typing import Any

import trio

from p2p.bench._stats import repeat, summary
from p2p.bench.discovery_v5 import DEFAULT_SLOTS, ours_once
from p2p.crypto import PrivateKey
from p2p.discover.wire import Endpoint, PacketType, Ping, Pong, decode_packet, encode_body, encode_packet, \
    expiration_at, seal

CEILING_ITERATIONS = 3000  # ping decode + pong encode per ceiling measurement
DISTINCT_PINGS = 2000  # pre-signed pings the sender cycles through
SENDER_RECV_TIMEOUT = 0.5  # a window lost to the kernel is refilled after this
TESTNET_DEADLINE = 180.0  # seconds a bench testnet may take to converge before the run counts as failed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--discovery-nodes", default="100,500", metavar="N,...",
                        help="testnet sizes to time, comma-separated (quick mode: the first only)")
    parser.add_argument("--discovery-seconds", type=float, default=3.0, metavar="SECONDS", help="seconds of pinging per run")
    parser.add_argument("--discovery-window", type=int, default=64, help="pings in flight from the sender")
    parser.add_argument("--discovery-v5-slots", type=int, default=DEFAULT_SLOTS, metavar="N",
                        help="v5 handshakes in flight from the client (one socket each)")


def _ceiling_once() -> float:
    key = PrivateKey.generate()
    peer = PrivateKey.generate()
    loop = ipaddress.ip_address("127.0.0.1")
    data, _ = encode_packet(peer, Ping(Endpoint(loop, 30303, 30303), Endpoint(loop, 30304, 0),
                                       expiration_at(time.time()), 1))
    t0 = time.perf_counter()
    for _ in range(CEILING_ITERATIONS):
        now = time.time()
        r = decode_packet(data, now=now)
        ping = r.packet
        assert isinstance(ping, Ping)
        seal(key, PacketType.PONG, encode_body(Pong(Endpoint(loop, 30303, ping.from_endpoint.tcp_port), r.hash,
                                                    expiration_at(now), 1)))
    return CEILING_ITERATIONS / (time.perf_counter() - t0)


# -- the sender process ----------------------------------------------------------------------

def _sender(host: str, port: int, target_hex: str, seconds: float, window: int) -> dict[str, Any]:
    """Bond with the target (through a discovery service), then flood it with pings from a
    plain socket on the same IP and count the pongs."""
    from p2p.crypto import PublicKey
    from p2p.discover import DiscoveryConfig, open_discovery
    from p2p.enode import Node

    key = PrivateKey.generate()
    target = Node(PublicKey(bytes.fromhex(target_hex)), ipaddress.ip_address(host), port, port)

    async def bond() -> None:
        config = DiscoveryConfig(refresh_on_start=False, revalidate=False)
        async with open_discovery(key, (host, 0), config=config) as disc:
            await disc.ping(target)
            await trio.sleep(0.3)  # its ping back reaches us and is answered: the bond is mutual

    trio.run(bond)
    loop = ipaddress.ip_address(host)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(SENDER_RECV_TIMEOUT)
    me = Endpoint(loop, sock.getsockname()[1], 0)
    pings = [encode_packet(key, Ping(me, Endpoint(loop, port, port), expiration_at(time.time()) + 60, i))[0]
             for i in range(DISTINCT_PINGS)]
    addr = (host, port)
    sent = pongs = inflight = lost_windows = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        while inflight < window:
            sock.sendto(pings[sent % DISTINCT_PINGS], addr)
            sent += 1
            inflight += 1
        try:
            data = sock.recv(2048)
        except TimeoutError:
            inflight = 0
            lost_windows += 1
            continue
        if len(data) > 97 and data[97] == PacketType.PONG:
            pongs += 1
            inflight -= 1
    elapsed = time.perf_counter() - t0
    sock.close()
    return {"pongs": pongs, "sent": sent, "seconds": elapsed, "lost_windows": lost_windows}


async def _pings_once(seconds: float, window: int) -> dict[str, Any]:
    from p2p.discover import DiscoveryConfig, open_discovery

    config = DiscoveryConfig(refresh_on_start=False, revalidate=False)
    async with open_discovery(PrivateKey.generate(), ("127.0.0.1", 0), config=config) as disc:
        cmd = [sys.executable, "-m", "p2p.bench.discovery", "--sender", "127.0.0.1", str(disc.udp_port),
               disc.local_node.pubkey.to_bytes().hex(), str(seconds), str(window)]
        with trio.fail_after(seconds + 60):
            done = await trio.run_process(cmd, capture_stdout=True, check=True)
        result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
        result["rate"] = result["pongs"] / result["seconds"]
        result["answered_by_target"] = disc.stats.packets_out["pong"]
        return result


async def _testnet_once(n: int, lookups: int) -> dict[str, Any]:
    from p2p.discover.testnet import open_local_testnet

    t0 = time.perf_counter()
    async with open_local_testnet(n) as net:
        try:
            await net.wait_converged(TESTNET_DEADLINE)
        except trio.TooSlowError:
            # A figure, not a crash: the report says how many runs did not converge.
            return {"seconds": time.perf_counter() - t0, "converged": False,
                    "packets": sum(sum(d.stats.packets_in.values()) for d in net.nodes)}
        out: dict[str, Any] = {"seconds": time.perf_counter() - t0, "converged": True}
        if lookups:
            out["lookups"] = (await net.lookup_check(lookups)).summary()
        out["packets"] = sum(sum(d.stats.packets_in.values()) for d in net.nodes)
        return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    quick = bool(getattr(args, "quick", False))
    runs = max(1, int(getattr(args, "repeat", 1)))
    seconds = float(getattr(args, "discovery_seconds", 3.0)) / (2 if quick else 1)
    window = int(getattr(args, "discovery_window", 64))
    sizes = [int(x) for x in str(getattr(args, "discovery_nodes", "100,500")).split(",") if x.strip()]
    if quick:
        sizes = sizes[:1]

    ceiling = repeat(_ceiling_once, runs)
    ping_runs = [trio.run(_pings_once, seconds, window) for _ in range(runs)]
    rates = [r["rate"] for r in ping_runs]
    answered = summary(rates)
    result: dict[str, Any] = {
        "ceiling_per_s": ceiling,
        "pings_answered_per_s": answered,
        "ratio": answered["median"] / ceiling["median"],
        "ping_runs": ping_runs,
        "window": window,
        "v5": _v5(seconds, window, int(getattr(args, "discovery_v5_slots", DEFAULT_SLOTS)), runs, sizes),
        "testnet": {},
    }
    for i, n in enumerate(sizes):
        outs = [trio.run(_testnet_once, n, 50 if i == 0 else 0) for _ in range(runs)]
        done = [o for o in outs if o["converged"]]
        fig: dict[str, Any] = {"convergence_seconds": summary([o["seconds"] for o in done]) if done else None,
                               "packets": summary([o["packets"] for o in outs]),
                               "runs_not_converged": len(outs) - len(done),
                               "deadline_seconds": TESTNET_DEADLINE}
        if i == 0:
            fig["lookups"] = [o["lookups"] for o in done]
        result["testnet"][str(n)] = fig
    return result


def _leaf(exc: BaseException) -> BaseException:
    """The first exception inside nested exception groups: the one that says what failed."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _testnet_run(n: int, mode: str, lookups: int) -> dict[str, Any]:
    """One runner testnet of ``n`` discovery nodes speaking ``mode``: convergence time and,
    if asked for, the outcome of lookups."""
    from p2p.testnet import TestnetConfig, run_testnet

    config = TestnetConfig(nodes=n, discovery=mode, seconds=TESTNET_DEADLINE, lookups=lookups, interval=0.25)
    try:
        net, _ = trio.run(run_testnet, config)
    except Exception as exc:  # noqa: BLE001 - a node that crashed is a finding of the run, not the end of it
        return {"discovery": mode, "converged": False, "error": f"{type(exc).__name__}: {_leaf(exc)}"}
    out: dict[str, Any] = {
        "discovery": mode, "converged": net["converged"],
        # one run, in the benchmark's median shape so that the table shows it
        "convergence_seconds": summary([net["table_fill_seconds"]]) if net["converged"] else None,
        "start_seconds": net["start_seconds"], "deadline_seconds": TESTNET_DEADLINE}
    if net["lookups"] is not None:
        out["lookups"] = {k: net["lookups"][k] for k in ("count", "found", "success_rate")}
    return out


def _v5(seconds: float, window: int, slots: int, runs: int, sizes: list[int]) -> dict[str, Any]:
    ping_runs = [trio.run(ours_once, "ping", seconds, window) for _ in range(runs)]
    handshake_runs = [trio.run(ours_once, "handshakes", seconds, slots) for _ in range(runs)]
    testnet = {str(n): {mode: _testnet_run(n, mode, 50 if i == 0 else 0) for mode in ("v5", "v4")}
               for i, n in enumerate(sizes)}
    return {
        "pings_answered_per_s": summary([r["rate"] for r in ping_runs]),
        "handshakes_per_s": summary([r["rate"] for r in handshake_runs]),
        "window": window,
        "slots": slots,
        "ping_runs": ping_runs,
        "handshake_runs": handshake_runs,
        "testnet": testnet,
    }


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--sender":
        h, p, t, s, w = sys.argv[2:]
        print(json.dumps(_sender(h, int(p), t, float(s), int(w))), flush=True)
    else:
        print("usage: python -m p2p.bench.discovery --sender HOST PORT PUBKEYHEX SECONDS WINDOW", file=sys.stderr)
        sys.exit(2)
