"""``p2p bench rlpx``: RLPx between two processes over loopback, against in-process ceilings.

Figures:
- throughput for 1 KiB and 64 KiB payloads, snappy off and on: this process sends as fast
  as it can (batched writes, no wait per message) to a child process that counts and reports
  at the end; messages/s and MB/s (10^6 bytes of payload per second). Payloads are random
  bytes, so snappy costs its full price and saves nothing.
- the protocol API path: 1 KiB messages through ``ProtocolConn.send`` (one ``await`` per
  message, as a protocol author writes it) to a ``Protocol`` handler in the child, the whole
  peer layer on both sides, snappy on; reported next to the bare RLPx row with snappy on
  (``fraction_of_bare_rlpx``), which batches its writes. Each of its runs follows one run of
  that row (load on a shared machine changes within seconds), and each pair's ratio is given
  too (``paired_fraction_of_bare_rlpx``).
- handshakes per second: TCP connect, auth/ack, Hello both ways, close; one after another.
- ceilings measured in this process in the same run: frame encode + MAC (plus snappy when
  on) of the same payloads, frame decode for reference, and one whole handshake pair
  (initiator and recipient, sans-IO) and its EC operations alone. Each network figure is
  also given as a fraction of its ceiling.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import socket
import time
from collections.abc import Callable
from typing import Any

import rlp
import trio

from p2p.bench import protocol_peer
from p2p.bench._stats import summary
from p2p.bench.rlpx_peer import DATA, HELLO, REPORT, REPORT_REQUEST, SOCKET_BUFFER, main as peer_main
from p2p.crypto import PrivateKey, PublicKey, aes, ecies, keccak, recover
from p2p.rlpx import Connection, connect, snappy
from p2p.rlpx.frame import FrameCodec
from p2p.rlpx.handshake import Completed, Handshake

SIZES = (1024, 64 * 1024)  # payload sizes the issue asks for
SECONDS = 2.0  # per throughput / handshake run
QUICK_SECONDS = 0.3
BATCH_BYTES = 256 * 1024  # payload bytes per write: amortizes trio's per-call cost
CHILD_START_TIMEOUT = 30.0  # seconds for the child to report its port
GOALS = {"mb_per_s_64KiB": 150.0, "messages_per_s_1KiB": 20_000.0, "handshakes_per_s": 500.0,
         "protocol_api_fraction_of_bare_rlpx_1KiB": 0.7}
# The protocol API row: 1 KiB messages through ``ProtocolConn.send`` to a ``Protocol`` handler,
# snappy on (as between two nodes at p2p v5), next to the bare RLPx row with the same payloads.
PROTOCOL_SIZE = 1024
PROTOCOL_ROW = "1024/protocol"
PROTOCOL_BARE_ROW = "1024/snappy"
HOST = "127.0.0.1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rlpx-seconds", type=float, default=None, metavar="SECONDS",
                        help=f"seconds per rlpx run (default {SECONDS}, {QUICK_SECONDS} with --quick)")


def _bench_hello(key: PrivateKey, use_snappy: bool) -> bytes:
    return rlp.encode([5, b"p2p-bench", [[b"bench", 1]], 0, key.public_key.to_bytes(), int(use_snappy)])


def _tune(conn: Connection) -> None:
    sock = getattr(conn.stream, "socket", None)
    if sock is not None:
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)


# -- over the network --------------------------------------------------------------------------


async def _open(port: int, remote: PublicKey, key: PrivateKey, use_snappy: bool) -> Connection:
    conn = await connect(HOST, port, key, remote)
    _tune(conn)
    await conn.send(HELLO, _bench_hello(key, use_snappy))
    code, _ = await conn.receive()
    if code != HELLO:
        raise RuntimeError(f"bench peer answered code {code:#x} to Hello")
    conn.snappy = use_snappy
    return conn


async def _report(conn: Connection) -> tuple[int, int, float]:
    """Ask the child for (messages, bytes, CPU seconds) since its previous report."""
    await conn.send(REPORT_REQUEST, b"")
    code, report = await conn.receive()
    if code != REPORT:
        raise RuntimeError(f"bench peer answered code {code:#x} to a report request")
    count, nbytes, cpu_ns = (int.from_bytes(x, "big") for x in rlp.decode(report))
    return count, nbytes, cpu_ns / 1e9


async def _throughput(port: int, remote: PublicKey, key: PrivateKey, size: int, use_snappy: bool,
                      seconds: float) -> dict[str, float]:
    conn = await _open(port, remote, key, use_snappy)
    await _report(conn)  # start the child's CPU count here
    payload = random.Random(size).randbytes(size)
    batch = [(DATA, payload)] * max(1, BATCH_BYTES // size)
    sent = 0
    cpu = time.process_time()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        await conn.send_many(batch)
        sent += len(batch)
    count, nbytes, child_cpu = await _report(conn)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    await conn.aclose()
    if count != sent or nbytes != sent * size:
        raise RuntimeError(f"bench peer counted {count} messages / {nbytes} bytes, {sent} were sent")
    return {
        "messages_per_s": count / elapsed,
        "mb_per_s": nbytes / elapsed / 1e6,
        "sender_cpu_us_per_message": cpu / count * 1e6,
        "receiver_cpu_us_per_message": child_cpu / count * 1e6,
    }


async def _handshakes(port: int, remote: PublicKey, key: PrivateKey, seconds: float) -> dict[str, float]:
    control = await _open(port, remote, key, False)
    await _report(control)
    done = 0
    cpu = time.process_time()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        conn = await _open(port, remote, key, False)
        await conn.aclose()
        done += 1
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    _, _, child_cpu = await _report(control)
    await control.aclose()
    return {
        "handshakes_per_s": done / elapsed,
        "dialer_cpu_us_per_handshake": cpu / done * 1e6,
        "listener_cpu_us_per_handshake": child_cpu / done * 1e6,
    }


async def _protocol_throughput(port: int, remote: PublicKey, size: int, seconds: float) -> dict[str, float]:
    """Messages through ``ProtocolConn.send`` (one ``await`` each) to a ``Protocol`` handler in
    the child: the whole peer layer on both sides, snappy on (both Hellos at v5)."""
    async with protocol_peer.open_sender(port, remote, host=HOST) as sender:
        _tune(sender.rlpx)
        await sender.ask()  # start the child's CPU count here
        payload = random.Random(size).randbytes(size)
        send = sender.conn.send
        batch = max(1, BATCH_BYTES // size)  # messages between clock readings
        sent = 0
        cpu = time.process_time()
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(batch):
                await send(protocol_peer.DATA, payload)
            sent += batch
        got = await sender.ask()
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
    if got["count"] != sent or got["bytes"] != sent * size:
        raise RuntimeError(f"bench peer handled {got['count']} messages / {got['bytes']} bytes, {sent} were sent")
    return {
        "messages_per_s": sent / elapsed,
        "mb_per_s": sent * size / elapsed / 1e6,
        "sender_cpu_us_per_message": cpu / sent * 1e6,
        "receiver_cpu_us_per_message": got["cpu_ns"] / 1e3 / sent,
    }


def _summaries(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {name: summary([r[name] for r in runs]) for name in runs[0]}


async def _network(ports: tuple[int, int], remote: PublicKey, seconds: float, repeat: int) -> dict[str, Any]:
    port, peer_port = ports
    key = PrivateKey.generate()
    out: dict[str, Any] = {}
    with trio.fail_after(60 + 4 * repeat * seconds * 7):
        api_runs: list[dict[str, float]] = []
        for size in SIZES:
            for use_snappy in (False, True):
                row = f"{size}/{'snappy' if use_snappy else 'plain'}"
                runs = []
                for _ in range(repeat):
                    runs.append(await _throughput(port, remote, key, size, use_snappy, seconds))
                    if row == PROTOCOL_BARE_ROW:
                        # Each protocol API run right after its bare run: the two rows are compared,
                        # and on a shared machine the load changes within seconds.
                        api = await _protocol_throughput(peer_port, remote, PROTOCOL_SIZE, seconds)
                        api_runs.append({**api, "paired_fraction_of_bare_rlpx":
                                         api["messages_per_s"] / runs[-1]["messages_per_s"]})
                out[row] = _summaries(runs)
        out[PROTOCOL_ROW] = _summaries(api_runs)
        out["handshakes"] = _summaries([await _handshakes(port, remote, key, seconds) for _ in range(repeat)])
    return out


def _with_child(fn: Callable[[tuple[int, int], PublicKey], dict[str, Any]]) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    parent_end, child_end = ctx.Pipe()
    child_key = PrivateKey.generate()
    proc = ctx.Process(target=peer_main, args=(child_end, child_key.secret), daemon=True)
    proc.start()
    child_end.close()
    try:
        if not parent_end.poll(CHILD_START_TIMEOUT):
            raise RuntimeError("the bench peer process did not start")
        return fn(parent_end.recv(), child_key.public_key)
    finally:
        parent_end.close()  # the child's recv gets EOFError and it stops
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)


# -- ceilings in this process -------------------------------------------------------------------


def _codec_pair() -> tuple[FrameCodec, FrameCodec]:
    rng = random.Random(1)
    a_key, b_key = PrivateKey.generate(rng), PrivateKey.generate(rng)
    ea, eb = _handshake_pair(a_key, b_key)
    return FrameCodec(ea.secrets), FrameCodec(eb.secrets)


def _handshake_pair(a_key: PrivateKey, b_key: PrivateKey) -> tuple[Completed, Completed]:
    a = Handshake(a_key, b_key.public_key)
    b = Handshake(b_key)
    b.receive_data(a.initiate())
    eb = b.next_event()
    assert isinstance(eb, Completed)
    a.receive_data(eb.reply)
    ea = a.next_event()
    assert isinstance(ea, Completed)
    return ea, eb


def _timed(fn: Callable[[], int], seconds: float) -> tuple[float, float]:
    """Items per second of ``fn`` (which returns how many it did) over ``seconds``, and the
    CPU microseconds per item (the figure that does not depend on other load)."""
    done = 0
    cpu = time.process_time()
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += fn()
    return done / elapsed, (time.process_time() - cpu) / done * 1e6


def _encode_rate(size: int, use_snappy: bool, seconds: float) -> tuple[float, float]:
    enc, _ = _codec_pair()
    payload = random.Random(size).randbytes(size)
    batch = max(1, BATCH_BYTES // size)

    def work() -> int:
        for _ in range(batch):
            enc.encode(DATA, snappy.compress(payload) if use_snappy else payload)
        return batch

    return _timed(work, seconds)


def _decode_rate(size: int, use_snappy: bool, seconds: float) -> tuple[float, float]:
    """Like :func:`_encode_rate` for the receiving side; the encoding is not counted."""
    enc, dec = _codec_pair()
    payload = random.Random(size).randbytes(size)
    batch = [(DATA, snappy.compress(payload) if use_snappy else payload)] * max(1, BATCH_BYTES // size)
    limit = 16 * 1024 * 1024
    done = 0
    wall = cpu = 0.0
    while wall < seconds:
        frames = enc.encode_many(batch)
        w, c = time.perf_counter(), time.process_time()
        dec.receive_data(frames)
        while (frame := dec.next_frame()) is not None:
            if use_snappy:
                snappy.decompress(frame[1], limit)
            done += 1
        wall += time.perf_counter() - w
        cpu += time.process_time() - c
    return done / wall, cpu / done * 1e6


def _ec_ops_pair() -> int:
    """The EC operations of one handshake pair, with nothing else (see handshake.py)."""
    a, b = PrivateKey.generate(), PrivateKey.generate()
    a_eph, b_eph = PrivateKey.generate(), PrivateKey.generate()  # each side's ephemeral key
    digest = keccak.keccak256(a.ecdh(b.public_key))  # initiator: static ECDH
    sig = a_eph.sign(digest)  # initiator: auth signature
    auth = ecies.encrypt(b.public_key, bytes(200))  # initiator: ECIES (key + ECDH)
    ecies.decrypt(b, auth)  # recipient: ECIES ECDH
    b.ecdh(a.public_key)  # recipient: static ECDH
    recover(digest, sig)  # recipient: ephemeral key from the signature
    ack = ecies.encrypt(a.public_key, bytes(100))  # recipient: ECIES for the ack
    ecies.decrypt(a, ack)  # initiator: ECIES ECDH
    a_eph.ecdh(b_eph.public_key)  # both: ephemeral ECDH
    b_eph.ecdh(a_eph.public_key)
    return 1


def _ceilings(seconds: float, repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for size in SIZES:
        for use_snappy in (False, True):
            enc = [_encode_rate(size, use_snappy, seconds / 2) for _ in range(repeat)]
            dec = [_decode_rate(size, use_snappy, seconds / 2) for _ in range(repeat)]
            out[f"{size}/{'snappy' if use_snappy else 'plain'}"] = {
                "encode_messages_per_s": summary([r[0] for r in enc]),
                "encode_mb_per_s": summary([r[0] * size / 1e6 for r in enc]),
                "encode_cpu_us_per_message": summary([r[1] for r in enc]),
                "decode_messages_per_s": summary([r[0] for r in dec]),
                "decode_cpu_us_per_message": summary([r[1] for r in dec]),
            }
    keys = (PrivateKey.generate(), PrivateKey.generate())
    pairs = [_timed(lambda: (_handshake_pair(*keys), 1)[1], seconds / 2) for _ in range(repeat)]
    ec = [_timed(_ec_ops_pair, seconds / 2) for _ in range(repeat)]
    out["handshake_pairs_per_s"] = summary([r[0] for r in pairs])
    out["handshake_pair_cpu_us"] = summary([r[1] for r in pairs])
    out["ec_ops_pairs_per_s"] = summary([r[0] for r in ec])
    out["ec_ops_pair_cpu_us"] = summary([r[1] for r in ec])
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    quick = bool(getattr(args, "quick", False))
    seconds = getattr(args, "rlpx_seconds", None) or (QUICK_SECONDS if quick else SECONDS)
    repeat = 1 if quick else max(1, int(getattr(args, "repeat", 3)))
    load_at_start = os.getloadavg()[0]
    ceilings = _ceilings(seconds, repeat)
    network = _with_child(lambda ports, remote: trio.run(_network, ports, remote, seconds, repeat))
    throughput: dict[str, Any] = {}
    for name, figures in network.items():
        if name in ("handshakes", PROTOCOL_ROW):
            continue
        ceiling = ceilings[name]
        throughput[name] = {
            **figures,
            "ceiling_encode_messages_per_s": ceiling["encode_messages_per_s"]["median"],
            "ceiling_encode_cpu_us_per_message": ceiling["encode_cpu_us_per_message"]["median"],
            "ceiling_decode_cpu_us_per_message": ceiling["decode_cpu_us_per_message"]["median"],
            "ceiling_decode_messages_per_s": ceiling["decode_messages_per_s"]["median"],
            "fraction_of_ceiling": figures["messages_per_s"]["median"] / ceiling["encode_messages_per_s"]["median"],
            # What the two processes' CPU cost per message allows when each has a core to itself.
            "cpu_limited_messages_per_s": 1e6 / max(figures["sender_cpu_us_per_message"]["median"],
                                                    figures["receiver_cpu_us_per_message"]["median"]),
        }
    hs = network["handshakes"]["handshakes_per_s"]
    handshakes = {
        **network["handshakes"],
        "ceiling_sansio_pairs_per_s": ceilings["handshake_pairs_per_s"]["median"],
        "ceiling_sansio_pair_cpu_us": ceilings["handshake_pair_cpu_us"]["median"],
        "ceiling_ec_ops_pairs_per_s": ceilings["ec_ops_pairs_per_s"]["median"],
        "ceiling_ec_ops_pair_cpu_us": ceilings["ec_ops_pair_cpu_us"]["median"],
        "fraction_of_sansio_ceiling": hs["median"] / ceilings["handshake_pairs_per_s"]["median"],
        "fraction_of_ec_ceiling": hs["median"] / ceilings["ec_ops_pairs_per_s"]["median"],
        # Handshakes run one after another, so the two sides' CPU costs add up.
        "cpu_limited_handshakes_per_s": 1e6 / (network["handshakes"]["dialer_cpu_us_per_handshake"]["median"]
                                               + network["handshakes"]["listener_cpu_us_per_handshake"]["median"]),
    }
    bare = throughput[PROTOCOL_BARE_ROW]["messages_per_s"]["median"]
    api = network[PROTOCOL_ROW]
    api_fraction = api["messages_per_s"]["median"] / bare
    throughput[PROTOCOL_ROW] = {
        **api,
        "bare_rlpx_row": PROTOCOL_BARE_ROW,
        "fraction_of_bare_rlpx": api_fraction,
        # CPU the peer layer and the protocol API add per message, over bare RLPx in this run.
        "sender_cpu_us_over_bare": api["sender_cpu_us_per_message"]["median"]
        - throughput[PROTOCOL_BARE_ROW]["sender_cpu_us_per_message"]["median"],
        "receiver_cpu_us_over_bare": api["receiver_cpu_us_per_message"]["median"]
        - throughput[PROTOCOL_BARE_ROW]["receiver_cpu_us_per_message"]["median"],
    }
    mb64 = min(throughput[f"{64 * 1024}/{m}"]["mb_per_s"]["median"] for m in ("plain", "snappy"))
    msg1 = min(throughput[f"1024/{m}"]["messages_per_s"]["median"] for m in ("plain", "snappy"))
    return {
        "backends": {"aes": aes.BACKEND, "keccak": keccak.BACKEND},
        "seconds_per_run": seconds,
        # Wall-clock figures depend on other load on the machine; the CPU figures much less.
        "load_average_1min": {"start": load_at_start, "end": os.getloadavg()[0]},
        "cpus": os.cpu_count(),
        "payload": "random bytes (incompressible)",
        "throughput": throughput,
        "handshakes": handshakes,
        "goals": {
            "mb_per_s_64KiB": {"goal": GOALS["mb_per_s_64KiB"], "worst": mb64, "met": mb64 >= GOALS["mb_per_s_64KiB"]},
            "messages_per_s_1KiB": {"goal": GOALS["messages_per_s_1KiB"], "worst": msg1,
                                    "met": msg1 >= GOALS["messages_per_s_1KiB"]},
            "handshakes_per_s": {"goal": GOALS["handshakes_per_s"], "median": hs["median"],
                                 "met": hs["median"] >= GOALS["handshakes_per_s"]},
            "protocol_api_fraction_of_bare_rlpx_1KiB": {
                "goal": GOALS["protocol_api_fraction_of_bare_rlpx_1KiB"], "median": api_fraction,
                "met": api_fraction >= GOALS["protocol_api_fraction_of_bare_rlpx_1KiB"]},
        },
    }
