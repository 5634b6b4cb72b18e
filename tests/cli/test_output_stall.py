"""A ``p2p node --json`` whose stdout nobody reads for 10 s, under a chat flood, keeps serving:
discovery answers pings and a new RLPx peer completes its Hello. The lines lost meanwhile are
counted (``"dropped"`` in the next line, ``p2p_output_dropped_total``), and every line is whole."""

from __future__ import annotations

import ipaddress
import sys
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import trio

from p2p import Node, NodeID, PrivateKey, Signer, Protocol, open_server, ServerConfig
from p2p.discover.wire import Endpoint, Ping, Pong, decode_packet, encode_packet, expiration_at
from p2p.testing import JsonLinesProcess, open_json_process
from protocols.chat.messages import MessageCode, TextMessage, encode, new_message_id, sign
from protocols.chat.service import ChatService

STALL = 10.0  # seconds stdout is left unread: the figure
PINGS = 3  # discovery pings sent during the stall, spread over it
PONG_TIMEOUT = 2.0  # an idle node answers in about a millisecond
DIAL_TIMEOUT = 5.0  # RLPx and Hello with an idle node take a few milliseconds
MAX_FLOOD = 200_000  # chat messages sent at most: bounds the loop; the stall ends it far sooner
FLOODERS = 4  # peers flooding at once: the node takes about 100 messages/s from each
FLOOD_RATE = 90.0  # messages a second per flooder, under the node's per-peer chat limit
FLOOD_AUTHORS = 200  # authors taking turns, each under the per-author limit
FLOOD_TEXT = "x" * 200  # long lines fill the pipe's 64 KiB sooner
DEADLINE = 60.0


@dataclass
class Probe:
    pongs: int = 0
    rlpx_accepted: bool = False
    sent: int = 0
    notes: list[str] = field(default_factory=list)


async def _ping(udp_port: int, tcp_port: int, key: PrivateKey) -> bool:
    loop = ipaddress.ip_address("127.0.0.1")
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with sock:
        await sock.bind(("127.0.0.1", 0))
        own = sock.getsockname()[1]
        data, sent_hash = encode_packet(key, Ping(Endpoint(loop, own, 0), Endpoint(loop, udp_port, tcp_port),
                                                  expiration_at(time.time()), 1))
        await sock.sendto(data, ("127.0.0.1", udp_port))
        with trio.move_on_after(PONG_TIMEOUT):
            for _ in range(100):  # the node may ping us back first (bonding): skip such packets
                reply, _ = await sock.recvfrom(2048)
                packet = decode_packet(reply).packet
                if isinstance(packet, Pong) and packet.ping_hash == sent_hash:
                    return True
    return False


def _chat(key: PrivateKey) -> ChatService:
    return ChatService(Signer(key), "test")


def _raw_chat() -> Protocol:
    """A chat/2 peer that sends only what the test makes it send, and ignores what it gets."""
    proto = Protocol("chat", 2, 2)
    for code in MessageCode:
        proto.handler(code)(_ignore)
    return proto


async def _ignore(conn: object, payload: bytes) -> None:
    return None


def _flood_messages(authors: list[PrivateKey]) -> Iterator[bytes]:
    """Signed text messages from many authors in turn: each author stays within its own rate,
    so every message the node accepts becomes a line on its stdout."""
    for i in range(MAX_FLOOD):
        key = authors[i % len(authors)]
        msg = TextMessage(new_message_id(), NodeID.from_pubkey(key.public_key), f"a{i % len(authors)}",
                          int(time.time() * 1000), 0, FLOOD_TEXT)
        yield encode(sign(msg, key))


async def probe_while_stalled(node: JsonLinesProcess) -> Probe:
    """Flood ``node`` (already started, its ``listening`` event read) with chat messages while
    nothing reads its stdout for :data:`STALL` seconds; meanwhile ping it and dial it."""
    listening = node.events[0]
    probe = Probe()
    dial_key, ping_key = PrivateKey.generate(), PrivateKey.generate()
    authors = [PrivateKey.generate() for _ in range(FLOOD_AUTHORS)]
    async with AsyncExitStack() as stack:
        conns = []
        for _ in range(FLOODERS):
            key = PrivateKey.generate()
            flooder = await stack.enter_async_context(open_server(key, ("127.0.0.1", 0), [_raw_chat()], config=ServerConfig(
                discovery=False)))
            with trio.fail_after(DIAL_TIMEOUT):
                await flooder.connect(listening["enode"])
                await node.wait_for("peer_added", id=flooder.id.hex())  # the last lines read before the stall
            conn = flooder.connection(Node.from_url(listening["enode"]).id, "chat")
            assert conn is not None
            conns.append(conn)
        messages = _flood_messages(authors)

        async def flood() -> None:
            # Each flooder stays just under the node's per-peer rate, so that none is cut off.
            for _ in range(MAX_FLOOD // FLOODERS):
                for conn in conns:
                    await conn.send(MessageCode.TEXT, next(messages))
                    probe.sent += 1
                await trio.sleep(1 / FLOOD_RATE)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(flood)
            start = trio.current_time()
            for i in range(PINGS):
                # from 2 s in: the pipe's 64 KiB and the output queue are full by then
                await trio.sleep_until(start + 2.0 + i * (STALL - 3.0) / PINGS)
                probe.pongs += await _ping(listening["udp"], listening["tcp"], ping_key)
                if i == 1:
                    async with open_server(dial_key, ("127.0.0.1", 0), [_chat(dial_key).protocol], config=ServerConfig(
                        discovery=False)) as dialer:
                        with trio.move_on_after(DIAL_TIMEOUT):
                            await dialer.connect(listening["enode"])
                            probe.rlpx_accepted = True
            await trio.sleep_until(start + STALL)
            nursery.cancel_scope.cancel()
    return probe


async def _scrape(host_port: str) -> str:
    host, port = host_port.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        body = b""
        for _ in range(1000):
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            body += chunk
    return body.decode()


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in the metrics")


async def _read_until(node: JsonLinesProcess, done: trio.Event) -> None:
    while not done.is_set():
        await node.next_event()  # raises on a line that is not whole JSON


async def test_unread_stdout_does_not_stop_the_node() -> None:
    argv = [sys.executable, "-m", "p2p", "node", "--json", "--protocols", "chat", "--addr", "127.0.0.1:0",
            "--metrics", "127.0.0.1:0"]
    with trio.fail_after(DEADLINE):
        async with open_json_process(argv, name="p2p node") as node:
            listening = await node.wait_for("listening")
            probe = await probe_while_stalled(node)
            assert probe.pongs == PINGS, probe
            assert probe.rlpx_accepted, probe
            dropped = _sample(await _scrape(listening["metrics"]), "p2p_output_dropped_total")
            assert dropped > 0, "the reader stalled but nothing was dropped: the test flooded too little"
            stalled_at = len(node.events)
            # Reading again: first the lines that were queued; the next event says how many were lost.
            newcomer = PrivateKey.generate()
            async with trio.open_nursery() as nursery, open_server(newcomer, ("127.0.0.1", 0), [_chat(newcomer).protocol], config=ServerConfig(
                discovery=False)) as late:
                done = trio.Event()
                nursery.start_soon(_read_until, node, done)
                for _ in range(200):
                    if _sample(await _scrape(listening["metrics"]), "p2p_output_queued_lines") == 0:
                        break
                    await trio.sleep(0.05)
                await late.connect(listening["enode"])
                for _ in range(200):
                    if any(e.get("id") == late.id.hex() for e in node.events[stalled_at:]):
                        break
                    await trio.sleep(0.05)
                done.set()
                nursery.cancel_scope.cancel()
            added = next(e for e in node.events[stalled_at:] if e.get("id") == late.id.hex())
            assert added["event"] == "peer_added" and added["dropped"] == dropped
            assert sum(e.get("dropped", 0) for e in node.events) == dropped
