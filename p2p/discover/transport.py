"""Datagram transports for the discovery engines: what they send and receive through.

:class:`DatagramTransport` is the interface (send, receive, local address). Three
implementations:

- :func:`open_udp_transport`: a trio UDP socket.
- :class:`MemoryNetwork`: many in-memory endpoints that deliver to each other, with optional
  loss and latency hooks; it waits only on trio's clock, so it runs under
  ``trio.testing.MockClock``.
- :class:`InboxTransport`: datagrams fed by another reader of a shared socket (the v4
  service hands over what is not v4) and sent through that socket.

Every queue is bounded: a datagram that does not fit is dropped and counted, as the kernel
would drop it from a full socket buffer.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import socket as _socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final, Protocol

import trio

Address = tuple[str, int]

RECV_BUFFER: Final = 1281  # one byte over discv5's 1280-byte limit, so oversized datagrams are seen
SOCKET_BUFFER: Final = 1 << 20  # asked of the kernel so that bursts queue there, not in Python
MEMORY_QUEUE: Final = 1024  # datagrams waiting per in-memory endpoint, as a socket buffer would hold
INBOX_QUEUE: Final = 1024  # datagrams handed over from a shared socket and not yet read


class DatagramTransport(Protocol):
    """Unreliable, unordered datagrams to and from (host, port) addresses."""

    @property
    def local_address(self) -> Address: ...

    async def send(self, data: bytes, addr: Address) -> None:
        """Send one datagram; raises ``OSError`` when it cannot be sent."""

    async def receive(self) -> tuple[bytes, Address]:
        """The next datagram and where it came from."""


class UDPTransport:
    """A bound trio UDP socket."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self._local: Address = (host, port)

    @property
    def local_address(self) -> Address:
        return self._local

    async def send(self, data: bytes, addr: Address) -> None:
        await self._sock.sendto(data, addr)

    async def receive(self) -> tuple[bytes, Address]:
        while True:
            try:
                data, addr = await self._sock.recvfrom(RECV_BUFFER)
            except ConnectionResetError:
                continue  # an ICMP error for an earlier send (Windows, some Linux setups)
            return data, (addr[0], addr[1])


@asynccontextmanager
async def open_udp_transport(host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[UDPTransport]:
    """A UDP socket bound to ``host:port`` (port 0 picks one), closed on exit."""
    family = _socket.AF_INET6 if ipaddress.ip_address(host.split("%", 1)[0]).version == 6 else _socket.AF_INET
    sock = trio.socket.socket(family, _socket.SOCK_DGRAM)
    with sock:
        for opt in (_socket.SO_RCVBUF, _socket.SO_SNDBUF):
            try:
                sock.setsockopt(_socket.SOL_SOCKET, opt, SOCKET_BUFFER)
            except OSError:
                pass  # the kernel's cap applies; the default size still works
        await sock.bind((host, port))
        yield UDPTransport(sock)


LossHook = Callable[[bytes, Address, Address], bool]  # (data, src, dst) -> drop it?
LatencyHook = Callable[[bytes, Address, Address], float]  # (data, src, dst) -> seconds in flight


class MemoryNetwork:
    """Endpoints that deliver datagrams to each other in memory.

    ``loss`` and ``latency`` are consulted per datagram; by default nothing is lost and
    delivery is immediate. A datagram to an address with no endpoint vanishes, as UDP would.
    ``dropped`` counts datagrams lost to a hook, a full queue or a missing endpoint.
    """

    def __init__(self, *, loss: LossHook | None = None, latency: LatencyHook | None = None,
                 queue_size: int = MEMORY_QUEUE) -> None:
        self.loss = loss
        self.latency = latency
        self.queue_size = queue_size
        self.dropped = 0
        self._endpoints: dict[Address, MemoryEndpoint] = {}
        self._ports = itertools.count(30000)

    def endpoint(self, host: str = "127.0.0.1", port: int = 0) -> "MemoryEndpoint":
        """A new endpoint at ``host:port`` (port 0 picks a free one)."""
        if port == 0:
            port = next(p for p in self._ports if (host, p) not in self._endpoints)
        addr = (host, port)
        if addr in self._endpoints:
            raise OSError(f"address {host}:{port} is in use")
        ep = MemoryEndpoint(self, addr)
        self._endpoints[addr] = ep
        return ep

    def _deliver(self, data: bytes, src: Address, dst: Address) -> None:
        ep = self._endpoints.get(dst)
        if ep is None or (self.loss is not None and self.loss(data, src, dst)):
            self.dropped += 1
            return
        delay = self.latency(data, src, dst) if self.latency is not None else 0.0
        if not ep._put(trio.current_time() + delay, data, src):
            self.dropped += 1

    def _close(self, ep: "MemoryEndpoint") -> None:
        if self._endpoints.get(ep.local_address) is ep:
            del self._endpoints[ep.local_address]


class MemoryEndpoint:
    """One address on a :class:`MemoryNetwork`; ``close()`` frees the address."""

    def __init__(self, network: MemoryNetwork, addr: Address) -> None:
        self._net = network
        self._addr = addr
        self._queue: list[tuple[float, int, bytes, Address]] = []  # (due, seq, data, src), a heap
        self._seq = itertools.count()
        self._wakeup = trio.Event()
        self.closed = False

    @property
    def local_address(self) -> Address:
        return self._addr

    def _put(self, due: float, data: bytes, src: Address) -> bool:
        if self.closed or len(self._queue) >= self._net.queue_size:
            return False
        heapq.heappush(self._queue, (due, next(self._seq), data, src))
        self._wakeup.set()
        return True

    async def send(self, data: bytes, addr: Address) -> None:
        if self.closed:
            raise OSError("endpoint is closed")
        self._net._deliver(bytes(data), self._addr, addr)
        await trio.lowlevel.checkpoint()

    async def receive(self) -> tuple[bytes, Address]:
        while True:
            if self.closed:
                raise trio.ClosedResourceError("endpoint is closed")
            if self._queue and self._queue[0][0] <= trio.current_time():
                _, _, data, src = heapq.heappop(self._queue)
                await trio.lowlevel.checkpoint()
                return data, src
            self._wakeup = trio.Event()
            if self._queue:
                with trio.move_on_at(self._queue[0][0]):
                    await self._wakeup.wait()
            else:
                await self._wakeup.wait()

    def close(self) -> None:
        self.closed = True
        self._queue.clear()
        self._wakeup.set()
        self._net._close(self)


class InboxTransport:
    """The datagrams that another reader of a shared socket hands over with :meth:`feed`,
    and sends through ``send`` (e.g. the v4 service's socket)."""

    def __init__(self, local_address: Address, send: Callable[[bytes, Address], Awaitable[None]],
                 *, queue_size: int = INBOX_QUEUE) -> None:
        self._local = local_address
        self._send_fn = send
        self._in, self._out = trio.open_memory_channel[tuple[bytes, Address]](queue_size)
        self.dropped = 0  # handed over while the queue was full

    @property
    def local_address(self) -> Address:
        return self._local

    def feed(self, data: bytes, addr: Address) -> bool:
        """Hand over one datagram without waiting; False (and counted) when the queue is full."""
        try:
            self._in.send_nowait((data, addr))
        except (trio.WouldBlock, trio.ClosedResourceError):
            self.dropped += 1
            return False
        return True

    async def send(self, data: bytes, addr: Address) -> None:
        await self._send_fn(data, addr)

    async def receive(self) -> tuple[bytes, Address]:
        return await self._out.receive()


__all__ = [
    "Address",
    "INBOX_QUEUE",
    "DatagramTransport",
    "InboxTransport",
    "LatencyHook",
    "LossHook",
    "MEMORY_QUEUE",
    "MemoryEndpoint",
    "MemoryNetwork",
    "UDPTransport",
    "open_udp_transport",
]
