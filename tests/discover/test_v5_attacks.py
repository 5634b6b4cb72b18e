"""Bad input against the discv5 engine: every packet kind truncated, bad masks and tags,
forged or replayed handshakes, malicious NODES answers, oversized request IDs and floods of
WHOAREYOU triggers. Each is dropped and counted by reason, and the node keeps answering."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest
import trio
import trio.testing

from p2p.crypto import PrivateKey
from p2p.discover.table import V5
from p2p.discover.transport import MemoryEndpoint, MemoryNetwork, open_udp_transport
from p2p.discover.v5 import V5Config, V5Protocol, open_v5
from p2p.discover.v5wire import (
    Codec,
    FindNode,
    HandshakeCompleted,
    Message,
    MessageReceived,
    Nodes,
    Ping,
    Pong,
    Undecryptable,
    Whoareyou,
    WhoareyouReceived,
)
from p2p.discover.v5wire.crypto import encrypt_gcm
from p2p.discover.v5wire.packet import (
    Flag,
    Header,
    decode_handshake_authdata,
    decode_packet,
    encode_packet,
    handshake_authdata,
    header_data,
    message_authdata,
    whoareyou_authdata,
)
from p2p.discover.wire import encode_rlp
from p2p.enode import ENR, Node, NodeID, log_distance
from p2p.metrics import ServerMetrics
from tests.discover.v5net import PORT, Member, member, run


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


class Raw:
    """A hand-driven node: its own codec on an endpoint, no engine."""

    def __init__(self, m: Member, seed: int) -> None:
        self.m = m
        self.ep: MemoryEndpoint = m.endpoint
        self.codec = Codec(m.key, m.record, rng=random.Random(seed), clock=trio.current_time)

    @property
    def node(self) -> Node:
        return self.m.node

    async def recv(self, timeout: float = 2.0) -> bytes | None:
        with trio.move_on_after(timeout):
            return (await self.ep.receive())[0]
        return None

    async def drain(self) -> int:
        """Read and forget what is queued for us (e.g. WHOAREYOUs our junk provoked)."""
        for n in range(100_000):
            if await self.recv(0.01) is None:
                return n
        raise AssertionError("endless queue")

    async def handshake(self, victim: Member, message: Message = Ping(b"\x01", 1)) -> bytes:
        """Open a session with ``victim``; returns our handshake datagram."""
        await self.drain()
        vid, vaddr = victim.record.node_id, victim.endpoint.local_address
        await self.ep.send(self.codec.encode(vid, vaddr, message).data, vaddr)
        challenge = await self.recv()
        assert challenge is not None
        got = self.codec.decode(challenge, vaddr)
        assert isinstance(got, WhoareyouReceived)
        hs = self.codec.encode_handshake(vid, vaddr, got.message, got.challenge, victim.key.public_key)
        await self.ep.send(hs.data, vaddr)
        reply = await self.recv()
        assert reply is not None and isinstance(self.codec.decode(reply, vaddr), MessageReceived)
        return hs.data

    async def request(self, victim: Member, message: Message) -> Message | None:
        vaddr = victim.endpoint.local_address
        await self.ep.send(self.codec.encode(victim.record.node_id, vaddr, message).data, vaddr)
        reply = await self.recv()
        if reply is None:
            return None
        event = self.codec.decode(reply, vaddr)
        assert isinstance(event, MessageReceived)
        return event.message

    async def serve(self, answer: Callable[[Message], list[Message]]) -> None:
        """Answer requests with ``answer(message)``, handshakes included."""
        while True:
            data, addr = await self.ep.receive()
            event = self.codec.decode(data, addr)
            if isinstance(event, Undecryptable):
                await self.ep.send(self.codec.encode_whoareyou(event.node_id, addr, event.nonce, None).data, addr)
            elif isinstance(event, (HandshakeCompleted, MessageReceived)):
                for reply in answer(event.message):
                    await self.ep.send(self.codec.encode(event.node_id, addr, reply).data, addr)


@asynccontextmanager
async def setup(config: V5Config | None = None, seed: int = 1) -> AsyncIterator[tuple[MemoryNetwork, Member, V5Protocol, Raw]]:
    net = MemoryNetwork()
    rng = random.Random(seed)
    victim, evil = member(net, 0, rng), member(net, 1, rng)
    cfg = config or V5Config(rng=random.Random(seed))
    async with run(victim, config=cfg) as v5:
        yield net, victim, v5, Raw(evil, seed + 100)


async def still_answers(raw: Raw, victim: Member) -> None:
    reply = await raw.request(victim, Ping(b"\x07", 1))
    assert isinstance(reply, Pong)


def random_message_packet(dest: bytes, rng: random.Random) -> bytes:
    """A message packet from a made-up node ID: costs us a WHOAREYOU (nothing decrypts it)."""
    head = header_data(rng.randbytes(16), Header(Flag.MESSAGE, rng.randbytes(12), message_authdata(rng.randbytes(32))))
    return encode_packet(dest, head, rng.randbytes(20))


def _rewrite_handshake(packet: bytes, dest_id: bytes, **changes: bytes) -> bytes:
    raw = decode_packet(packet, dest_id)
    auth = replace(decode_handshake_authdata(raw.header.authdata), **changes)  # type: ignore[arg-type]
    head = replace(raw.header, authdata=handshake_authdata(auth))
    return encode_packet(dest_id, header_data(raw.masking_iv, head), raw.message)


# ---------------------------------------------------------------------------------------


async def test_truncated_packets_of_every_kind(autojump_clock: trio.testing.MockClock) -> None:
    async with setup() as (net, victim, v5, raw):
        vid, vaddr = victim.record.node_id, victim.endpoint.local_address
        # a handshake packet, a whoareyou (the one the victim sent us) and a session message
        first = raw.codec.encode(vid, vaddr, Ping(b"\x01", 1))
        await raw.ep.send(first.data, vaddr)
        whoareyou = await raw.recv()
        assert whoareyou is not None
        got = raw.codec.decode(whoareyou, vaddr)
        assert isinstance(got, WhoareyouReceived)
        handshake = raw.codec.encode_handshake(vid, vaddr, got.message, got.challenge, victim.key.public_key).data
        message = raw.codec.encode(vid, vaddr, Ping(b"\x02", 1)).data
        sent = 0
        for packet in (handshake, whoareyou, message, first.data):
            for cut in (0, 1, 16, 38, 62, 63, 70, len(packet) - 1):
                if cut < len(packet):
                    await raw.ep.send(packet[:cut], vaddr)
                    sent += 1
        await trio.sleep(1)
        undecryptable = v5.stats.packets_in["undecryptable"] - 1  # the first, untruncated packet
        assert sum(v5.stats.drops.values()) + undecryptable == sent
        assert v5.stats.drops["v5_too_short"] >= 4
        # truncated message packets whose header survived are just undecryptable: WHOAREYOU
        assert undecryptable >= 1
        await raw.handshake(victim)
        await still_answers(raw, victim)


async def test_bad_mask_bad_tag_bad_signature(autojump_clock: trio.testing.MockClock) -> None:
    async with setup() as (net, victim, v5, raw):
        vid, vaddr = victim.record.node_id, victim.endpoint.local_address
        # masked for another node: the header unmasks to noise
        await raw.ep.send(raw.codec.encode(bytes(32), vaddr, Ping(b"\x01", 1)).data, vaddr)
        await trio.sleep(0.1)
        assert v5.stats.drops["v5_bad_protocol_id"] == 1

        async def challenge() -> WhoareyouReceived:
            await raw.ep.send(raw.codec.encode(vid, vaddr, Ping(b"\x01", 1)).data, vaddr)
            data = await raw.recv()
            assert data is not None
            got = raw.codec.decode(data, vaddr)
            assert isinstance(got, WhoareyouReceived)
            return got

        got = await challenge()
        hs = bytearray(raw.codec.encode_handshake(vid, vaddr, got.message, got.challenge, victim.key.public_key).data)
        hs[-1] ^= 1  # GCM tag
        await raw.ep.send(bytes(hs), vaddr)
        await trio.sleep(0.1)
        assert v5.stats.drops["v5_decrypt_failed"] == 1

        got = await challenge()
        hs2 = raw.codec.encode_handshake(vid, vaddr, got.message, got.challenge, victim.key.public_key).data
        sig = decode_handshake_authdata(decode_packet(hs2, vid).header.authdata).id_signature
        forged = _rewrite_handshake(hs2, vid, id_signature=bytes([sig[0] ^ 1]) + sig[1:])
        await raw.ep.send(forged, vaddr)
        await trio.sleep(0.1)
        assert v5.stats.drops["v5_bad_id_signature"] == 1
        assert not v5.session_established(raw.node.id, raw.ep.local_address)

        # within a session, a bad tag is an undecryptable packet: answered with WHOAREYOU
        await raw.handshake(victim)
        msg = bytearray(raw.codec.encode(vid, vaddr, Ping(b"\x03", 1)).data)
        msg[-1] ^= 1
        before = v5.stats.packets_out["whoareyou"]
        await raw.ep.send(bytes(msg), vaddr)
        assert await raw.recv() is not None
        assert v5.stats.packets_out["whoareyou"] == before + 1


async def test_handshake_never_started_and_replayed(autojump_clock: trio.testing.MockClock) -> None:
    async with setup() as (net, victim, v5, raw):
        vid, vaddr = victim.record.node_id, victim.endpoint.local_address
        fake = Whoareyou(bytes(12), bytes(16), 0, bytes(16 + 23 + 24))
        hs = raw.codec.encode_handshake(vid, vaddr, Ping(b"\x01", 1), fake, victim.key.public_key).data
        await raw.ep.send(hs, vaddr)
        await trio.sleep(0.1)
        assert v5.stats.drops["v5_unexpected_handshake"] == 1
        assert await raw.recv(0.5) is None

        accepted = await raw.handshake(victim)
        await raw.ep.send(accepted, vaddr)  # the same handshake again
        await trio.sleep(0.1)
        assert v5.stats.drops["v5_replayed_handshake"] == 1
        assert v5.stats.packets_in["handshake"] == 1
        await still_answers(raw, victim)


async def test_request_id_over_8_bytes(autojump_clock: trio.testing.MockClock) -> None:
    async with setup() as (net, victim, v5, raw):
        vid, vaddr = victim.record.node_id, victim.endpoint.local_address
        await raw.handshake(victim)
        session = raw.codec.session(vid, vaddr)
        assert session is not None
        nonce = bytes(range(12))
        head = header_data(bytes(16), Header(Flag.MESSAGE, nonce, message_authdata(raw.node.id)))
        pt = b"\x01" + encode_rlp([b"\x01" * 9, 1])  # PING with a 9-byte request ID
        await raw.ep.send(encode_packet(vid, head, encrypt_gcm(session.write_key, nonce, pt, head)), vaddr)
        assert await raw.recv(0.5) is None
        assert v5.stats.drops["v5_bad_request_id"] == 1
        await still_answers(raw, victim)


async def test_unsolicited_whoareyou_and_replies(autojump_clock: trio.testing.MockClock) -> None:
    async with setup() as (net, victim, v5, raw):
        vid, vaddr = victim.record.node_id, victim.endpoint.local_address
        await raw.ep.send(raw.codec.encode_whoareyou(vid, vaddr, bytes(12), None).data, vaddr)
        await raw.handshake(victim)
        pong = Pong(b"\x09" * 8, 1, raw.node.ip, PORT)
        await raw.ep.send(raw.codec.encode(vid, vaddr, pong).data, vaddr)
        nodes = Nodes(b"\x09" * 8, 1, ())
        await raw.ep.send(raw.codec.encode(vid, vaddr, nodes).data, vaddr)
        many = FindNode(b"\x01", tuple(range(250, 257)))
        await raw.ep.send(raw.codec.encode(vid, vaddr, many).data, vaddr)
        assert await raw.recv(0.5) is None
        assert v5.stats.drops["v5_unsolicited_whoareyou"] == 1
        assert v5.stats.drops["v5_unsolicited_reply"] == 2
        assert v5.stats.drops["v5_findnode_too_many_distances"] == 1
        await still_answers(raw, victim)


async def test_malicious_nodes_answers(autojump_clock: trio.testing.MockClock) -> None:
    async with setup() as (net, victim, v5, raw):
        rng = random.Random(9)
        at_256: list[bytes] = []
        while len(at_256) < 20:
            key = PrivateKey.generate(rng)
            if log_distance(raw.node.id, NodeID.from_pubkey(key.public_key)) == 256:
                at_256.append(ENR.build(key, 1, ip="127.9.0.%d" % (len(at_256) + 1), udp=PORT).to_rlp())
        other = next(ENR.build(k, 1, ip="127.9.1.1", udp=PORT).to_rlp() for k in iter(lambda: PrivateKey.generate(rng), None)
                     if log_distance(raw.node.id, NodeID.from_pubkey(k.public_key)) == 255)
        too_big = encode_rlp([b"\x01" * 64, b"\x01", b"id", b"v4", b"pad", b"p" * 300])
        forged = bytearray(at_256[0])
        forged[5] ^= 1  # inside the signature
        answers: dict[str, list[Message]] = {}

        def answer(msg: Message) -> list[Message]:
            if isinstance(msg, FindNode):
                return [replace(m, req_id=msg.req_id) for m in answers["now"]]
            return []

        async with trio.open_nursery() as n:
            n.start_soon(raw.serve, answer)
            # more records than may be accepted, split over two packets
            answers["now"] = [Nodes(b"", 3, tuple(at_256[i:i + 7])) for i in (0, 7, 14)]
            got = await v5.findnode_records(raw.node, (256,))
            assert len(got) == 16 and v5.stats.drops["v5_too_many_records"] == 4
            # oversized, forged, wrong distance: each dropped alone
            answers["now"] = [Nodes(b"", 1, (too_big, bytes(forged), other, at_256[1]))]
            got = await v5.findnode_records(raw.node, (256,))
            assert [r.to_rlp() for r in got] == [at_256[1]]
            assert v5.stats.drops["v5_record_too_big"] == 1
            assert v5.stats.drops["v5_bad_record"] == 1
            assert v5.stats.drops["v5_record_wrong_distance"] == 1
            # a total beyond the cap: waits for at most the capped number, keeps what came
            answers["now"] = [Nodes(b"", 1000, (at_256[2],))]
            t0 = trio.current_time()
            got = await v5.findnode_records(raw.node, (256,))
            assert [r.to_rlp() for r in got] == [at_256[2]]
            assert trio.current_time() - t0 == pytest.approx(v5.config.request_timeout)
            assert v5.stats.drops["v5_nodes_total_capped"] == 1
            n.cancel_scope.cancel()


async def test_whoareyou_to_a_full_nodes_answer_is_dropped(autojump_clock: trio.testing.MockClock) -> None:
    """A NODES answer packed to fill a session packet has no room for the handshake fields;
    a WHOAREYOU that challenges it once made the engine raise out of its receive loop."""
    async with setup() as (net, victim, v5, raw):
        rng = random.Random(11)
        added = 0
        for _ in range(20_000):
            if added == 16:
                break
            key = PrivateKey.generate(rng)
            record = ENR.build(key, 1, ip="127.9.2.%d" % (added + 1), udp=PORT, extra={"pad": b"x" * 60})
            if log_distance(victim.record.node_id, record.node_id) == 256:
                added += v5.table.add_seen(Node.from_enr(record), V5) is not None
        vid, vaddr = victim.record.node_id, victim.endpoint.local_address
        await raw.handshake(victim)
        await raw.ep.send(raw.codec.encode(vid, vaddr, FindNode(b"\x02", (256,))).data, vaddr)
        answer = await raw.recv()
        # the handshake adds sizes, signature, ephemeral key and our record (seq 0 is asked)
        assert answer is not None and len(answer) + 2 + 64 + 33 + len(victim.record.to_rlp()) > 1280
        nonce = decode_packet(answer, raw.node.id).header.nonce
        challenge = header_data(rng.randbytes(16), Header(Flag.WHOAREYOU, nonce, whoareyou_authdata(rng.randbytes(16), 0)))
        await raw.ep.send(encode_packet(vid, challenge, b""), vaddr)
        await trio.sleep(0.5)
        assert v5.stats.drops["v5_handshake_too_large"] == 1
        await raw.drain()
        await still_answers(raw, victim)


async def test_whoareyou_flood_from_one_ip_is_rate_limited(autojump_clock: trio.testing.MockClock) -> None:
    cfg = V5Config(rng=random.Random(1), packet_rate=100.0, packet_burst=200.0)
    async with setup(cfg) as (net, victim, v5, raw):
        vid, vaddr = victim.record.node_id, victim.endpoint.local_address
        rng = random.Random(2)
        t0 = trio.current_time()
        for _ in range(3000):
            await raw.ep.send(random_message_packet(vid, rng), vaddr)
        elapsed = trio.current_time() - t0
        await trio.sleep(0.1)
        out = v5.stats.packets_out["whoareyou"]
        assert out <= 200 + 100 * (elapsed + 0.1) + 1
        assert v5.stats.drops["v5_rate_limited"] == 3000 - out
        metrics = ServerMetrics()
        metrics.watch_discovery_v5(v5)
        text = metrics.render().decode()
        assert f'p2p_discv5_drops_total{{reason="v5_rate_limited"}} {3000.0 - out}' in text
        assert 'p2p_discv5_store_evictions_total{store="challenges_evicted"} 0.0' in text
        await trio.sleep(3)  # the budget refills
        await raw.handshake(victim)


async def test_whoareyou_flood_from_many_ips_keeps_stores_bounded(autojump_clock: trio.testing.MockClock) -> None:
    cfg = V5Config(rng=random.Random(1), max_challenges=256, rate_limit_ips=1024)
    async with setup(cfg) as (net, victim, v5, raw):
        vid, vaddr = victim.record.node_id, victim.endpoint.local_address
        rng = random.Random(3)
        n = 3000
        for i in range(n):
            spoofed = net.endpoint(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 1)
            await spoofed.send(random_message_packet(vid, rng), vaddr)
            spoofed.close()
            if i % 100 == 99:
                await trio.sleep(0.01)  # let it read: its queue holds 1,024 datagrams, like a socket buffer
        await trio.sleep(0.1)
        snap = v5.stats.snapshot()
        assert snap["packets_out"]["whoareyou"] == n  # each source within its own budget
        assert snap["challenges_evicted"] == n - 256
        assert snap["rate_limit_evicted"] == n - 1024  # and the table of per-IP budgets too
        await raw.handshake(victim)  # a real node still gets through
        await still_answers(raw, victim)


async def test_garbage_over_udp() -> None:
    with trio.fail_after(10):
        rng = random.Random(4)
        key = PrivateKey.generate(rng)
        async with open_udp_transport() as t, open_udp_transport() as attacker:
            record = ENR.build(key, 1, ip="127.0.0.1", udp=t.local_address[1])
            cfg = V5Config(rng=random.Random(5), packet_rate=50.0, packet_burst=50.0)
            async with open_v5(t, key, record, config=cfg) as v5:
                vid = record.node_id
                t0 = trio.current_time()
                for i in range(600):
                    kind = i % 3
                    if kind == 0:
                        data = rng.randbytes(rng.randrange(0, 1400))
                    elif kind == 1:
                        data = random_message_packet(vid, rng)[: rng.randrange(1, 90)]
                    else:
                        data = random_message_packet(vid, rng)
                    await attacker.send(data, t.local_address)
                with trio.move_on_after(5):
                    while sum(v5.stats.drops.values()) + v5.stats.packets_in["undecryptable"] < 600:
                        await trio.sleep(0.05)
                elapsed = trio.current_time() - t0
                handled = sum(v5.stats.drops.values()) + v5.stats.packets_in["undecryptable"]
                assert handled == 600  # every datagram accounted for (the kernel dropped none here)
                # all but the burst and what the budget refilled while they arrived
                assert v5.stats.drops["v5_rate_limited"] >= 600 - 50 - 50 * elapsed
                # after the budget refills, a real node is answered
                await trio.sleep(1.1)
                async with open_udp_transport() as t2:
                    k2 = PrivateKey.generate(rng)
                    r2 = ENR.build(k2, 1, ip="127.0.0.1", udp=t2.local_address[1])
                    async with open_v5(t2, k2, r2, config=V5Config(rng=random.Random(6))) as other:
                        pong = await other.ping(Node.from_enr(record))
                        assert pong.recipient_port == t2.local_address[1]
