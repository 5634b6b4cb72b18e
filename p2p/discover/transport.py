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

RECV_BUFFER: Final = 1281  # one byte over the 1280-byte limit of both protocols, so oversized datagrams are seen
RECV_BATCH: Final = 64  # datagrams read off a busy socket before the reader lets other tasks run
SOCKET_BUFFER: Final = 1 << 20  # asked of the kernel so that bursts queue there, not in Python
MEMORY_QUEUE: Final = 1024  # datagrams waiting per in-memory endpoint, as a socket buffer would hold
INBOX_QUEUE: Final = 1024  # datagrams handed over from a shared socket and not yet read


class DatagramTransport(Protocol):
    """Unreliable, unordered datagrams to and from (host, port) addresses."""

    @property
    def local_address(self) -> Address: ...

    async def send(self, data: bytes, addr: Address) -> None:
        """Send one datagram; raises ``OSError`` when it cannot be sent."""

    def send_nowait(self, data: bytes, addr: Address) -> None:
        """Send one datagram without waiting (from a receive loop answering inline); raises
        ``BlockingIOError`` when the send buffer is full, ``OSError`` when it cannot be sent."""

    async def receive(self) -> tuple[bytes, Address]:
        """The next datagram and where it came from."""


class UDPTransport:
    """A bound non-blocking UDP socket. A busy socket is read ``RECV_BATCH`` datagrams at a
    time between scheduling points, so that a flood costs one trio checkpoint per batch and
    still lets other tasks run."""

    def __init__(self, sock: _socket.socket) -> None:
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self._local: Address = (host, port)
        self._batch = 0

    @property
    def local_address(self) -> Address:
        return self._local

    def send_nowait(self, data: bytes, addr: Address) -> None:
        self._sock.sendto(data, addr)

    async def send(self, data: bytes, addr: Address) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                self._sock.sendto(data, addr)
                return
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._sock)

    async def receive(self) -> tuple[bytes, Address]:
        self._batch += 1
        if self._batch >= RECV_BATCH:
            self._batch = 0
            await trio.lowlevel.checkpoint()
        while True:
            try:
                data, addr = self._sock.recvfrom(RECV_BUFFER)
            except BlockingIOError:
                self._batch = 0
                await trio.lowlevel.wait_readable(self._sock)
                continue
            except ConnectionResetError:
                continue  # an ICMP error for an earlier send (Windows, some Linux setups)
            return data, (addr[0], addr[1])


async def receive_each(transport: DatagramTransport, handle: Callable[[bytes, Address], None],
                       on_error: Callable[[OSError], None]) -> None:
    """Hand every datagram to ``handle`` until the transport closes. A socket error (an ICMP
    report of an earlier send, say) goes to ``on_error`` and the loop goes on."""
    while True:
        try:
            data, addr = await transport.receive()
        except (trio.ClosedResourceError, trio.EndOfChannel):
            return
        except OSError as exc:
            on_error(exc)
            continue
        handle(data, addr)


def bind_udp(host: str, port: int) -> _socket.socket:
    """A non-blocking UDP socket bound to ``host:port`` with enlarged kernel buffers."""
    family = _socket.AF_INET6 if ipaddress.ip_address(host.split("%", 1)[0]).version == 6 else _socket.AF_INET
    sock = _socket.socket(family, _socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        for opt in (_socket.SO_RCVBUF, _socket.SO_SNDBUF):
            try:
                sock.setsockopt(_socket.SOL_SOCKET, opt, SOCKET_BUFFER)
            except OSError:
                pass  # the kernel's cap applies; the default size still works
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


@asynccontextmanager
async def open_udp_transport(host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[UDPTransport]:
    """A UDP socket bound to ``host:port`` (port 0 picks one), closed on exit."""
    sock = bind_udp(host, port)
    try:
        yield UDPTransport(sock)
    finally:
        trio.lowlevel.notify_closing(sock)
        sock.close()


LossHook = Callable[[bytes, Address, Address], bool]  # (data, src, dst) -> drop it?
LatencyHook = Callable[[bytes, Address, Address], float]  # (data, src, dst) -> seconds in flight


class MemoryNetwork:
    """Endpoints that deliver datagrams to each other in memory.

    ``loss`` and ``latency`` are consulted per datagram; by default nothing is lost and
    delivery is immediate. A datagram to an address with no endpoint vanishes, as UDP would.
    ``dropped`` counts datagrams lost to a hook, a full queue or a missing endpoint.

    A delayed datagram waits in its receiver's queue, and the receiver wakes for it on a timer
    of its own. With many endpoints (a simulation) run :meth:`run_delivery` in a task instead:
    delayed datagrams then wait in one queue for the whole network, and every datagram due at
    the same moment is handed over in one wake-up of that task.
    """

    def __init__(self, *, loss: LossHook | None = None, latency: LatencyHook | None = None,
                 queue_size: int = MEMORY_QUEUE) -> None:
        self.loss = loss
        self.latency = latency
        self.queue_size = queue_size
        self.dropped = 0
        self._endpoints: dict[Address, MemoryEndpoint] = {}
        self._ports = itertools.count(30000)
        self._in_flight: list[tuple[float, int, bytes, Address, Address]] | None = None  # with run_delivery
        self._in_flight_seq = itertools.count()
        self._earlier = trio.Event()  # a datagram due before the one run_delivery sleeps for

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
        now = trio.current_time()
        flight = self._in_flight
        if delay > 0 and flight is not None:
            if len(flight) >= self.queue_size * max(1, len(self._endpoints)):
                self.dropped += 1  # as many as every receiver's queue could hold
                return
            due = now + delay
            if not flight or due < flight[0][0]:
                self._earlier.set()
            heapq.heappush(flight, (due, next(self._in_flight_seq), data, src, dst))
            return
        if not ep._put(now + delay, data, src):
            self.dropped += 1

    async def run_delivery(self) -> None:
        """Hand delayed datagrams to their receivers when due, from this one task (see the
        class docstring); until cancelled. Datagrams in flight when it ends are lost."""
        if self._in_flight is not None:
            raise RuntimeError("run_delivery is already running")
        flight = self._in_flight = []
        try:
            while True:
                self._earlier = trio.Event()
                if flight:
                    with trio.move_on_at(flight[0][0]):
                        await self._earlier.wait()
                else:
                    await self._earlier.wait()
                now = trio.current_time()
                while flight and flight[0][0] <= now:
                    _, _, data, src, dst = heapq.heappop(flight)
                    ep = self._endpoints.get(dst)
                    if ep is None or not ep._put(now, data, src):
                        self.dropped += 1
        finally:
            self._in_flight = None

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

    def send_nowait(self, data: bytes, addr: Address) -> None:
        if self.closed:
            raise OSError("endpoint is closed")
        self._net._deliver(bytes(data), self._addr, addr)

    async def send(self, data: bytes, addr: Address) -> None:
        self.send_nowait(data, addr)
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
    and sends through ``send`` / ``send_nowait`` (e.g. the v4 service's socket). The v5
    engine answers with ``send_nowait`` alone, so an inbox for it needs one."""

    def __init__(self, local_address: Address, send: Callable[[bytes, Address], Awaitable[None]],
                 *, queue_size: int = INBOX_QUEUE, send_nowait: Callable[[bytes, Address], None] | None = None) -> None:
        self._local = local_address
        self._send_fn = send
        self._send_nowait_fn = send_nowait
        self._in, self._out = trio.open_memory_channel[tuple[bytes, Address]](queue_size)
        self._queued = 0  # counted here: the channel's statistics() costs as much as a datagram's RLP
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
        self._queued += 1
        return True

    @property
    def queued(self) -> int:
        """Datagrams handed over and not yet read."""
        return self._queued

    async def send(self, data: bytes, addr: Address) -> None:
        await self._send_fn(data, addr)

    def send_nowait(self, data: bytes, addr: Address) -> None:
        if self._send_nowait_fn is None:
            raise OSError("this inbox sends only with send()")
        self._send_nowait_fn(data, addr)

    async def receive(self) -> tuple[bytes, Address]:
        item = await self._out.receive()
        self._queued -= 1
        return item


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
    "bind_udp",
    "open_udp_transport",
]
