"""Discovery v5 load generators and their runs against our node, for ``p2p bench discovery``
and ``p2p bench compare``.

The client is a separate process (``python -m p2p.bench.discovery_v5 ...``) that speaks v5
through our sans-IO codec on plain blocking sockets, so that the node it measures, ours or
another implementation, has the CPU of its process to itself:

- ``ping``: one handshake with the target, then ``window`` PINGs in flight within that
  session; every answer is decrypted and counted if it is a PONG. The PINGs are sealed before
  the clock starts (distinct nonces and request IDs), so the client spends its time on sockets
  and on decrypting PONGs.
- ``handshakes``: ``slots`` sockets, each running handshakes one after another, each with a
  fresh identity (key and record made before the clock starts): random packet, WHOAREYOU,
  handshake carrying a PING, PONG.

Each prints one JSON line with its counts.
"""

from __future__ import annotations

import ipaddress
import json
import selectors
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from p2p.crypto import PrivateKey
from p2p.discover.v5wire import Codec, MessageReceived, Ping, Pong, V5DecodeError, WhoareyouReceived
from p2p.enode import ENR

DISTINCT_PINGS: Final = 2000  # sealed PINGs the client cycles through (each nonce is reused every 2000)
RECV_TIMEOUT: Final = 0.5  # seconds: a window lost to the kernel is refilled after this
HANDSHAKE_TRIES: Final = 3  # first handshake attempts before the ping client gives up
STEP_TIMEOUT: Final = 1.0  # seconds a handshake step may take before that identity is abandoned
MAX_IDENTITIES: Final = 4000  # fresh identities made per handshake run: the run ends early past this
HANDSHAKE_RATE_CAP: Final = 2000  # handshakes/s identities are made for: twice the ~1,000/s measured
DEFAULT_WINDOW: Final = 64  # PINGs in flight
DEFAULT_SLOTS: Final = 8  # handshakes in flight, one per socket
CHILD_GRACE: Final = 60.0  # seconds beyond the run a client process may take (start-up, identities)


class ClientError(Exception):
    """The client could not establish a session with the target."""


def _req_id(i: int) -> bytes:
    return i.to_bytes(8, "big")


def _bound_socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock


def _identity(host: str, port: int) -> tuple[PrivateKey, ENR]:
    key = PrivateKey.generate()
    # the record must name the socket's address: @chainsafe/discv5 drops a session otherwise
    return key, ENR.build(key, 1, ip=host, udp=port)


def _handshake(sock: socket.socket, codec: Codec, target: ENR, addr: tuple[str, int], req: int) -> int:
    """One handshake carrying a PING, answered with a PONG; answers the target's own PINGs.
    Returns the next request number."""
    tid = target.node_id
    for _ in range(HANDSHAKE_TRIES):
        sock.sendto(codec.encode(tid, addr, Ping(_req_id(req), 1)).data, addr)
        req += 1
        deadline = time.monotonic() + STEP_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, src = sock.recvfrom(2048)
            except TimeoutError:
                break
            try:
                event = codec.decode(data, src)
            except V5DecodeError:
                continue
            if isinstance(event, WhoareyouReceived):
                sock.sendto(codec.encode_handshake(tid, addr, event.message, event.challenge,
                                                   target.public_key).data, addr)
            elif isinstance(event, MessageReceived) and isinstance(event.message, Pong):
                return req
            elif isinstance(event, MessageReceived) and isinstance(event.message, Ping):
                sock.sendto(codec.encode(tid, addr, Pong(event.message.req_id, 1, ipaddress.ip_address(src[0]),
                                                           src[1])).data, addr)
    raise ClientError(f"no session with {target.node_id.short()} at {addr[0]}:{addr[1]}")


def ping_client(host: str, port: int, target_text: str, seconds: float, window: int) -> dict[str, Any]:
    """Pongs per second from the v5 node ``target_text`` (an ``enr:`` record) at ``host:port``."""
    target = ENR.from_text(target_text)
    addr = (host, port)
    sock = _bound_socket(host)
    try:
        key, record = _identity(host, sock.getsockname()[1])
        codec = Codec(key, record)
        req = _handshake(sock, codec, target, addr, 0)
        tid = target.node_id
        pings = [codec.encode(tid, addr, Ping(_req_id(req + i), 1)).data for i in range(DISTINCT_PINGS)]
        sock.settimeout(RECV_TIMEOUT)
        sent = pongs = inflight = lost_windows = undecodable = other = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while time.perf_counter() < deadline:
            while inflight < window:
                sock.sendto(pings[sent % DISTINCT_PINGS], addr)
                sent += 1
                inflight += 1
            try:
                data, src = sock.recvfrom(2048)
            except TimeoutError:
                inflight = 0
                lost_windows += 1
                continue
            try:
                event = codec.decode(data, src)
            except V5DecodeError:
                undecodable += 1
                continue
            if isinstance(event, MessageReceived) and isinstance(event.message, Pong):
                pongs += 1
                inflight -= 1
            else:
                other += 1  # a WHOAREYOU means the target dropped the session: PONGs stop
        elapsed = time.perf_counter() - t0
    finally:
        sock.close()
    return {"pongs": pongs, "sent": sent, "seconds": elapsed, "rate": pongs / elapsed,
            "lost_windows": lost_windows, "undecodable": undecodable, "other_packets": other}


@dataclass(slots=True)
class _Slot:
    """One socket running handshakes one after another, each with the next fresh identity."""

    sock: socket.socket
    identities: list[tuple[PrivateKey, ENR]]
    codec: Codec | None = None
    step_deadline: float = 0.0
    next_identity: int = 0
    done: int = 0
    failed: int = 0
    req: int = 0
    started: list[float] = field(default_factory=list)


def handshake_client(host: str, port: int, target_text: str, seconds: float, slots: int) -> dict[str, Any]:
    """Completed handshakes per second with the v5 node ``target_text``, ``slots`` at a time."""
    target = ENR.from_text(target_text)
    tid = target.node_id
    addr = (host, port)
    per_slot = max(1, min(MAX_IDENTITIES, int(seconds * HANDSHAKE_RATE_CAP) + 1) // slots)
    socks = [_bound_socket(host) for _ in range(slots)]
    sel = selectors.DefaultSelector()
    try:
        t_gen = time.perf_counter()
        all_slots = [_Slot(s, [_identity(host, s.getsockname()[1]) for _ in range(per_slot)]) for s in socks]
        gen_seconds = time.perf_counter() - t_gen

        def begin(slot: _Slot, now: float) -> bool:
            if slot.next_identity >= len(slot.identities):
                slot.codec = None
                return False
            key, record = slot.identities[slot.next_identity]
            slot.next_identity += 1
            slot.codec = Codec(key, record)
            slot.req += 1
            slot.sock.sendto(slot.codec.encode(tid, addr, Ping(_req_id(slot.req), 1)).data, addr)
            slot.step_deadline = now + STEP_TIMEOUT
            return True

        t0 = time.perf_counter()
        deadline = t0 + seconds
        for slot in all_slots:
            slot.sock.setblocking(False)
            sel.register(slot.sock, selectors.EVENT_READ, slot)
            begin(slot, t0)
        while (now := time.perf_counter()) < deadline and any(s.codec is not None for s in all_slots):
            for skey, _ in sel.select(timeout=min(0.1, deadline - now)):
                slot = skey.data
                try:
                    data, src = slot.sock.recvfrom(2048)
                except BlockingIOError:
                    continue
                if slot.codec is None:
                    continue
                try:
                    event = slot.codec.decode(data, src)
                except V5DecodeError:
                    continue
                if isinstance(event, WhoareyouReceived):
                    slot.sock.sendto(slot.codec.encode_handshake(tid, addr, event.message, event.challenge,
                                                                 target.public_key).data, addr)
                    slot.step_deadline = time.perf_counter() + STEP_TIMEOUT
                elif isinstance(event, MessageReceived) and isinstance(event.message, Pong):
                    slot.done += 1
                    begin(slot, time.perf_counter())
            now = time.perf_counter()
            for slot in all_slots:
                if slot.codec is not None and now > slot.step_deadline:
                    slot.failed += 1
                    begin(slot, now)
        elapsed = time.perf_counter() - t0
    finally:
        sel.close()
        for s in socks:
            s.close()
    done = sum(s.done for s in all_slots)
    return {"handshakes": done, "failed": sum(s.failed for s in all_slots), "seconds": elapsed,
            "rate": done / elapsed, "slots": slots, "identities_seconds": gen_seconds,
            "ran_out_of_identities": all(s.codec is None for s in all_slots)}


def client_command(kind: str, host: str, port: int, enr_text: str, seconds: float, width: int) -> list[str]:
    """The command line of a client process (``kind``: ``ping`` or ``handshakes``)."""
    return [sys.executable, "-m", "p2p.bench.discovery_v5", kind, host, str(port), enr_text, str(seconds), str(width)]


async def run_client(kind: str, host: str, port: int, enr_text: str, seconds: float, width: int) -> dict[str, Any]:
    """Run a client process to its end; its JSON result."""
    with trio.fail_after(seconds + CHILD_GRACE):
        done = await trio.run_process(client_command(kind, host, port, enr_text, seconds, width),
                                      capture_stdout=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def node_config() -> Any:
    """The measured node's discovery config: v4 and v5 on one socket, nothing started by
    itself, loopback sources not rate limited (the figure is what the node can answer, not
    its per-IP budget of ``PACKET_RATE``)."""
    from p2p.discover import DiscoveryConfig
    from p2p.discover.v5 import V5Config

    return DiscoveryConfig(refresh_on_start=False, revalidate=False, v5=True,
                           v5_config=V5Config(rate_limit_exempt=lambda ip: ip.is_loopback))


async def ours_once(kind: str, seconds: float, width: int) -> dict[str, Any]:
    """One client run against a v5 node of ours in this process."""
    from p2p.discover import open_discovery

    async with open_discovery(PrivateKey.generate(), ("127.0.0.1", 0), config=node_config()) as disc:
        result = await run_client(kind, "127.0.0.1", disc.udp_port, disc.enr.to_text(), seconds, width)
        assert disc.v5 is not None
        result["answered_by_target"] = disc.v5.stats.packets_out["pong"]
        return result


async def answer() -> None:
    """A v5 node of ours that answers until stdin closes (the child of ``p2p bench compare``);
    prints ``{"event": "listening", "port": P, "enr": "enr:..."}``."""
    from p2p.discover import open_discovery

    async with open_discovery(PrivateKey.generate(), ("127.0.0.1", 0), config=node_config()) as disc:
        print(json.dumps({"event": "listening", "port": disc.udp_port, "enr": disc.enr.to_text()}), flush=True)
        await trio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)


def main(argv: list[str]) -> int:
    if argv == ["answer"]:
        trio.run(answer)
        return 0
    clients = {"ping": ping_client, "handshakes": handshake_client}
    if len(argv) != 6 or argv[0] not in clients:
        print("usage: python -m p2p.bench.discovery_v5 {ping,handshakes} HOST PORT ENR SECONDS WIDTH\n"
              "       python -m p2p.bench.discovery_v5 answer", file=sys.stderr)
        return 2
    kind, host, port, enr_text, secs, width = argv
    try:
        result = clients[kind](host, int(port), enr_text, float(secs), int(width))
    except ClientError as exc:
        print(f"discovery_v5 {kind}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
