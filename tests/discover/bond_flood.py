"""Many distinct keys bonding with one discovery node over UDP on loopback, as fast as it answers.

Each key pings the node from its own socket, waits for the node's ping back and answers it
with a pong, which completes the bond (the node stores the key's record and pong time). A
window of sockets keeps several bonds in flight; each socket serves one key at a time, so a
packet that arrives on it belongs to that key. The window stays below the node's limit of
ping-backs running at once, which would otherwise skip some. Plain blocking-free sockets and
``select``: no trio, so that this process spends its CPU on signing, not on a scheduler.
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import time
from dataclasses import dataclass

from p2p.crypto import PrivateKey
from p2p.discover.wire import Endpoint, FindNode, PacketType, Ping, Pong, encode_packet, expiration_at

WINDOW = 48  # bonds in flight: under the node's MAX_BACKGROUND (64) ping-backs at once
BOND_TIMEOUT = 3.0  # a bond not completed in this time is given up (and its socket replaced)
_TYPE_OFFSET = 97  # hash (32) + signature (65): then the packet type byte
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


@dataclass
class FloodResult:
    bonded: int
    given_up: int  # keys whose bond did not complete in time (replaced by fresh ones)
    seconds: float
    last_key: PrivateKey | None  # the key that bonded last


@dataclass
class _Slot:
    sock: socket.socket
    key: PrivateKey | None = None
    started: float = 0.0


def _new_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def _new_key() -> PrivateKey:
    # os.urandom: a seeded Random would make every run's keys the same, and 100,000 keys of
    # a seeded generator cost the same anyway
    while True:
        try:
            return PrivateKey(os.urandom(32))
        except ValueError:  # zero or above the curve order: never in practice
            continue


def bond_many(port: int, count: int, *, deadline: float) -> FloodResult:
    """Bond ``count`` fresh keys with the node on 127.0.0.1:``port`` (a key whose bond does not
    complete is replaced by another); stops at ``deadline`` (a ``time.monotonic()`` value)
    whatever the count reached."""
    target = Endpoint(LOOPBACK, port, 0)
    slots = [_Slot(_new_socket()) for _ in range(WINDOW)]
    by_fd = {s.sock.fileno(): s for s in slots}
    in_flight = bonded = given_up = 0
    last_key: PrivateKey | None = None
    t0 = time.monotonic()
    try:
        while bonded < count and time.monotonic() < deadline:
            now = time.monotonic()
            for slot in slots:
                if slot.key is not None and now - slot.started > BOND_TIMEOUT:
                    given_up += 1
                    del by_fd[slot.sock.fileno()]
                    slot.sock.close()  # a late packet for the old key must not reach the next one
                    slot.sock = _new_socket()
                    by_fd[slot.sock.fileno()] = slot
                    slot.key = None
                    in_flight -= 1
                if slot.key is None and bonded + in_flight < count:
                    slot.key = _new_key()
                    slot.started = now
                    in_flight += 1
                    own = Endpoint(LOOPBACK, slot.sock.getsockname()[1], 0)
                    ping = Ping(own, target, expiration_at(time.time()), 1)
                    slot.sock.sendto(encode_packet(slot.key, ping)[0], ("127.0.0.1", port))
            ready, _, _ = select.select(list(by_fd), [], [], 0.2)
            for fd in ready:
                slot = by_fd[fd]
                while True:
                    try:
                        data = slot.sock.recv(2048)
                    except BlockingIOError:
                        break
                    if slot.key is None or len(data) <= _TYPE_OFFSET or data[_TYPE_OFFSET] != PacketType.PING:
                        continue  # the node's pong to our ping: nothing to do
                    pong = Pong(target, data[:32], expiration_at(time.time()), None)
                    slot.sock.sendto(encode_packet(slot.key, pong)[0], ("127.0.0.1", port))
                    last_key, slot.key = slot.key, None
                    in_flight -= 1
                    bonded += 1
    finally:
        for slot in slots:
            slot.sock.close()
    return FloodResult(bonded, given_up, time.monotonic() - t0, last_key)


def neighbors_answered(port: int, key: PrivateKey, timeout: float) -> bool:
    """Whether the node answers a FindNode from ``key`` (it does only to a bonded sender)."""
    sock = _new_socket()
    try:
        sock.sendto(encode_packet(key, FindNode(key.public_key.to_bytes(), expiration_at(time.time())))[0],
                    ("127.0.0.1", port))
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                break
            data = sock.recv(2048)
            if len(data) > _TYPE_OFFSET and data[_TYPE_OFFSET] == PacketType.NEIGHBORS:
                return True
        return False
    finally:
        sock.close()
