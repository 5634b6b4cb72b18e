"""Shared helpers of the discovery tests: a pool of seeded keys, loopback nodes."""

from __future__ import annotations

import ipaddress
import random
import socket
import time

import pytest
import trio

from p2p.crypto import PrivateKey
from p2p.discover.wire import (
    Endpoint,
    Packet,
    PacketType,
    Ping,
    Pong,
    Received,
    decode_packet,
    encode_packet,
    expiration_at,
)
from p2p.enode import Node


def make_keys(n: int, seed: int = 99) -> list[PrivateKey]:
    rng = random.Random(seed)
    return [PrivateKey.generate(rng) for _ in range(n)]


@pytest.fixture(scope="session")
def key_pool() -> list[PrivateKey]:
    return make_keys(400)


def loopback_node(key: PrivateKey, port: int = 30303, ip: str = "127.0.0.1") -> Node:
    return Node(key.public_key, ipaddress.ip_address(ip), port, port)


class RawPeer:
    """A hand-driven discovery endpoint: a UDP socket on loopback and a key, sending exactly
    the packets a test crafts and showing what comes back."""

    def __init__(self, key: PrivateKey, host: str = "127.0.0.1") -> None:
        self.key = key
        self.host = host
        self.sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    async def __aenter__(self) -> "RawPeer":
        await self.sock.bind((self.host, 0))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.sock.close()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def node(self) -> Node:
        return Node(self.key.public_key, ipaddress.ip_address(self.host), self.port, self.port)

    async def send(self, packet: Packet, to: tuple[str, int]) -> bytes:
        data, digest = encode_packet(self.key, packet)
        await self.sock.sendto(data, to)
        return digest

    async def send_raw(self, data: bytes, to: tuple[str, int]) -> None:
        await self.sock.sendto(data, to)

    async def recv(self, timeout: float = 1.0) -> Received | None:
        with trio.move_on_after(timeout):
            data, _ = await self.sock.recvfrom(2048)
            return decode_packet(data, now=time.time())
        return None

    async def expect(self, ptype: PacketType, timeout: float = 1.0) -> Received:
        """The next packet of type ``ptype`` (others are skipped); fails after ``timeout``."""
        with trio.fail_after(timeout):
            while True:
                r = await self.recv(timeout)
                if r is not None and r.type == ptype:
                    return r

    async def nothing(self, timeout: float = 0.3) -> list[Received]:
        """Everything that arrives within ``timeout`` (a test then checks it is empty or not)."""
        got = []
        with trio.move_on_after(timeout):
            while True:
                data, _ = await self.sock.recvfrom(2048)
                got.append(decode_packet(data, now=time.time()))
        return got

    def ping_packet(self, to: Node, seq: int | None = None) -> Ping:
        return Ping(Endpoint(ipaddress.ip_address(self.host), self.port, self.port),
                    Endpoint(to.ip, to.udp_port, to.tcp_port), expiration_at(time.time()), seq)

    async def bond(self, to: Node) -> None:
        """Ping ``to`` and answer its ping back, so that it holds a bond with us."""
        await self.send(self.ping_packet(to), to.udp_address)
        await self.expect(PacketType.PONG)
        ping = await self.expect(PacketType.PING)
        await self.send(Pong(Endpoint(to.ip, to.udp_port, 0), ping.hash, expiration_at(time.time())),
                        to.udp_address)
