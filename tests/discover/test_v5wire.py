"""discv5 wire codec: a session set up over in-memory byte passing, every message kind,
every rejection as its own typed error, the bounded stores, and fuzzed input."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2p.crypto import PrivateKey
from p2p.discover.errors import DecodeError
from p2p.discover.v5wire import (
    BadAuthData,
    BadEphemeralKey,
    BadFlag,
    BadHandshakeRecord,
    BadIDSignature,
    BadMessage,
    BadProtocolID,
    BadRequestID,
    BadVersion,
    Codec,
    DecryptionFailed,
    FindNode,
    HandshakeCompleted,
    Message,
    MessageReceived,
    Nodes,
    PacketTooBig,
    PacketTooShort,
    Ping,
    Pong,
    ReplayedHandshake,
    Session,
    TalkReq,
    TalkResp,
    Undecryptable,
    UnexpectedHandshake,
    UnknownMessageType,
    UnsolicitedWhoareyou,
    V5DecodeError,
    WhoareyouReceived,
    decode_message,
    encode_message,
)
from p2p.discover.v5wire.crypto import GCM_TAG_SIZE, encrypt_gcm
from p2p.discover.v5wire.messages import nodes_message_size
from p2p.discover.v5wire.packet import (
    MAX_PACKET_SIZE,
    MIN_PACKET_SIZE,
    Flag,
    HandshakeAuth,
    Header,
    decode_handshake_authdata,
    decode_packet,
    encode_packet,
    handshake_authdata,
    header_data,
    message_authdata,
)
from p2p.discover.wire import encode_rlp
from p2p.enode import ENR

ADDR_A = ("127.0.0.1", 30301)
ADDR_B = ("127.0.0.2", 30302)
PING = Ping(b"\x00\x00\x00\x01", 1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Pair:
    """Node A (initiator) and node B with codecs sharing a clock; A's record has seq 1."""

    def __init__(self, seed: int = 7, **codec_args: Any) -> None:
        rng = random.Random(seed)
        self.clock = Clock()
        self.key_a, self.key_b = PrivateKey.generate(rng), PrivateKey.generate(rng)
        self.record_a = ENR.build(self.key_a, 1, ip="127.0.0.1", udp=ADDR_A[1])
        self.record_b = ENR.build(self.key_b, 1, ip="127.0.0.2", udp=ADDR_B[1])
        self.a = Codec(self.key_a, self.record_a, rng=random.Random(seed + 1), clock=self.clock, **codec_args)
        self.b = Codec(self.key_b, self.record_b, rng=random.Random(seed + 2), clock=self.clock, **codec_args)

    def handshake_packet(self, known: ENR | None = None, message: Message = PING) -> bytes:
        """Steps 1 to 3 of the handshake; returns A's handshake packet, not yet decoded by B."""
        first = self.a.encode(self.b.local_id, ADDR_B, message)
        event = self.b.decode(first.data, ADDR_A)
        assert isinstance(event, Undecryptable)
        challenge = self.b.encode_whoareyou(event.node_id, ADDR_A, event.nonce, known)
        got = self.a.decode(challenge.data, ADDR_B)
        assert isinstance(got, WhoareyouReceived)
        return self.a.encode_handshake(got.node_id, ADDR_B, got.message, got.challenge, self.key_b.public_key).data

    def established(self) -> "Pair":
        event = self.b.decode(self.handshake_packet(), ADDR_A)
        assert isinstance(event, HandshakeCompleted)
        return self


def _rewrite(packet: bytes, dest_id: bytes, **changes: object) -> bytes:
    """The packet with header fields replaced (``flag``, ``nonce``, ``authdata``,
    ``version``), re-masked for ``dest_id``; the message bytes are kept."""
    raw = decode_packet(packet, dest_id)
    head = replace(raw.header, **changes)  # type: ignore[arg-type]
    return encode_packet(dest_id, header_data(raw.masking_iv, head), raw.message)


def _rewrite_handshake(packet: bytes, dest_id: bytes, **changes: bytes) -> bytes:
    raw = decode_packet(packet, dest_id)
    auth = replace(decode_handshake_authdata(raw.header.authdata), **changes)  # type: ignore[arg-type]
    return _rewrite(packet, dest_id, authdata=handshake_authdata(auth))


# ---------------------------------------------------------------------------------------
# the handshake and sessions


def test_handshake_then_session_both_ways() -> None:
    pair = Pair()
    a, b = pair.a, pair.b
    first = a.encode(b.local_id, ADDR_B, PING)  # no session: random content
    assert a.session(b.local_id, ADDR_B) is None
    undecryptable = b.decode(first.data, ADDR_A)
    assert undecryptable == Undecryptable(a.local_id, ADDR_A, first.nonce)
    challenge = b.encode_whoareyou(a.local_id, ADDR_A, first.nonce, known_record=None)
    got = a.decode(challenge.data, ADDR_B)
    assert isinstance(got, WhoareyouReceived)
    assert (got.node_id, got.message, got.challenge.nonce, got.challenge.enr_seq) == (b.local_id, PING, first.nonce, 0)
    handshake = a.encode_handshake(b.local_id, ADDR_B, got.message, got.challenge, pair.key_b.public_key)
    done = b.decode(handshake.data, ADDR_A)
    assert done == HandshakeCompleted(a.local_id, ADDR_A, pair.record_a, PING, handshake.nonce)
    pong = Pong(PING.req_id, 1, ipaddress.IPv4Address(ADDR_A[0]), ADDR_A[1])
    reply = b.encode(a.local_id, ADDR_A, pong)
    assert a.decode(reply.data, ADDR_B) == MessageReceived(b.local_id, ADDR_B, pong, reply.nonce)
    find = FindNode(b"\x02", (256, 255))
    again = a.encode(b.local_id, ADDR_B, find)
    assert b.decode(again.data, ADDR_A) == MessageReceived(a.local_id, ADDR_A, find, again.nonce)


def test_handshake_omits_the_record_the_challenger_knows() -> None:
    pair = Pair()
    with_record = Pair().handshake_packet(known=None)
    without = pair.handshake_packet(known=pair.record_a)
    assert len(with_record) - len(without) == len(pair.record_a.to_rlp())
    done = pair.b.decode(without, ADDR_A)
    assert isinstance(done, HandshakeCompleted) and done.record == pair.record_a


def test_handshake_carries_a_newer_record() -> None:
    pair = Pair()
    newer = pair.record_a.updated(pair.key_a, udp=40404)
    pair.a.local_record = newer
    done = pair.b.decode(pair.handshake_packet(known=pair.record_a), ADDR_A)
    assert isinstance(done, HandshakeCompleted) and done.record == newer


def test_session_is_per_address() -> None:
    pair = Pair().established()
    other = ("127.0.0.2", 40000)
    sent = pair.a.encode(pair.b.local_id, other, PING)  # no session at this address
    assert isinstance(pair.b.decode(sent.data, other), Undecryptable)


def test_lost_session_is_answered_with_whoareyou_and_rehandshakes() -> None:
    pair = Pair().established()
    restarted_b = Codec(pair.key_b, pair.record_b, rng=random.Random(99), clock=pair.clock)
    sent = pair.a.encode(restarted_b.local_id, ADDR_B, PING)
    event = restarted_b.decode(sent.data, ADDR_A)
    assert isinstance(event, Undecryptable)
    got = pair.a.decode(restarted_b.encode_whoareyou(event.node_id, ADDR_A, event.nonce, None).data, ADDR_B)
    assert isinstance(got, WhoareyouReceived) and got.message == PING
    packet = pair.a.encode_handshake(got.node_id, ADDR_B, got.message, got.challenge, pair.key_b.public_key)
    assert isinstance(restarted_b.decode(packet.data, ADDR_A), HandshakeCompleted)


def test_tampered_session_message_is_undecryptable_not_an_error() -> None:
    pair = Pair().established()
    data = bytearray(pair.a.encode(pair.b.local_id, ADDR_B, PING).data)
    data[-1] ^= 1
    assert isinstance(pair.b.decode(bytes(data), ADDR_A), Undecryptable)


MESSAGES: list[Message] = [
    Ping(b"", 0),
    Ping(b"\xff" * 8, 2**64 - 1),
    Pong(b"\x01", 5, ipaddress.IPv4Address("127.0.0.1"), 30303),
    Pong(b"\x01", 5, ipaddress.IPv6Address("::1"), 0),
    FindNode(b"\x01\x02", ()),
    FindNode(b"\x01\x02", (0, 1, 255, 256)),
    Nodes(b"\x03", 1, ()),
    TalkReq(b"\x04", b"portal", b"\x00" * 100),
    TalkResp(b"\x05", b""),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_message_round_trip(message: Message) -> None:
    assert decode_message(encode_message(message)) == message
    pair = Pair().established()
    sent = pair.a.encode(pair.b.local_id, ADDR_B, message)
    assert pair.b.decode(sent.data, ADDR_A) == MessageReceived(pair.a.local_id, ADDR_A, message, sent.nonce)


def test_nodes_keep_records_byte_for_byte() -> None:
    rng = random.Random(3)
    records = tuple(ENR.build(PrivateKey.generate(rng), 1, ip="127.0.0.1", udp=1000 + i).to_rlp() for i in range(3))
    nodes = Nodes(b"\x09", 2, records)
    assert decode_message(encode_message(nodes)) == nodes
    assert nodes_message_size(b"\x09", records) == len(encode_message(nodes))


# ---------------------------------------------------------------------------------------
# rejections: each its own typed error


def _raises(codec: Codec, data: bytes, addr: tuple[str, int], error: type[V5DecodeError]) -> V5DecodeError:
    with pytest.raises(V5DecodeError) as info:
        codec.decode(data, addr)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert isinstance(info.value, DecodeError) and info.value.reason.startswith("v5_")
    return info.value


def test_too_short() -> None:
    pair = Pair()
    _raises(pair.b, bytes(MIN_PACKET_SIZE - 1), ADDR_A, PacketTooShort)


def test_message_shorter_than_its_tag() -> None:
    pair = Pair()
    packet = pair.a.encode(pair.b.local_id, ADDR_B, PING).data
    raw = decode_packet(packet, pair.b.local_id)
    short = encode_packet(pair.b.local_id, raw.header_data, raw.message[:15])
    _raises(pair.b, short, ADDR_A, PacketTooShort)


def test_too_big() -> None:
    pair = Pair()
    packet = pair.a.encode(pair.b.local_id, ADDR_B, PING).data
    _raises(pair.b, packet + bytes(MAX_PACKET_SIZE + 1 - len(packet)), ADDR_A, PacketTooBig)


def test_packet_for_another_node_is_a_bad_mask() -> None:
    pair = Pair()
    packet = pair.a.encode(pair.b.local_id, ADDR_B, PING).data
    third = Codec(pair.key_a, pair.record_a)  # A itself is not the destination
    _raises(third, packet, ADDR_A, BadProtocolID)


def test_noise_is_a_bad_protocol_id() -> None:
    _raises(Pair().b, bytes(range(100)), ADDR_A, BadProtocolID)


def test_bad_version() -> None:
    pair = Pair()
    packet = pair.a.encode(pair.b.local_id, ADDR_B, PING).data
    _raises(pair.b, _rewrite(packet, pair.b.local_id, version=0), ADDR_A, BadVersion)


def test_bad_flag() -> None:
    pair = Pair()
    packet = pair.a.encode(pair.b.local_id, ADDR_B, PING).data
    raw = decode_packet(packet, pair.b.local_id)
    head = bytearray(raw.header_data)
    head[16 + 8] = 3  # after masking-iv, "discv5" and the version
    _raises(pair.b, encode_packet(pair.b.local_id, bytes(head), raw.message), ADDR_A, BadFlag)


def test_bad_authdata_size() -> None:
    pair = Pair()
    packet = pair.a.encode(pair.b.local_id, ADDR_B, PING).data
    _raises(pair.b, _rewrite(packet, pair.b.local_id, authdata=pair.a.local_id[:31]), ADDR_A, BadAuthData)


def test_authdata_size_past_the_packet() -> None:
    pair = Pair()
    raw = decode_packet(pair.a.encode(pair.b.local_id, ADDR_B, PING).data, pair.b.local_id)
    head = bytearray(raw.header_data)
    head[16 + 21 : 16 + 23] = (2000).to_bytes(2, "big")
    _raises(pair.b, encode_packet(pair.b.local_id, bytes(head), raw.message), ADDR_A, BadAuthData)


def test_handshake_decrypt_fail() -> None:
    pair = Pair()
    data = bytearray(pair.handshake_packet())
    data[-1] ^= 1  # the GCM tag
    _raises(pair.b, bytes(data), ADDR_A, DecryptionFailed)
    assert pair.b.session(pair.a.local_id, ADDR_A) is None


def test_bad_id_signature() -> None:
    pair = Pair()
    packet = pair.handshake_packet()
    forged = PrivateKey.generate(random.Random(5)).sign_compact(bytes(32))
    _raises(pair.b, _rewrite_handshake(packet, pair.b.local_id, id_signature=forged), ADDR_A, BadIDSignature)
    assert pair.b.session(pair.a.local_id, ADDR_A) is None


def test_id_signature_of_wrong_size() -> None:
    pair = Pair()
    packet = pair.handshake_packet()
    auth = decode_handshake_authdata(decode_packet(packet, pair.b.local_id).header.authdata)
    cut = _rewrite_handshake(packet, pair.b.local_id, id_signature=auth.id_signature[:63])
    _raises(pair.b, cut, ADDR_A, BadIDSignature)


def test_bad_ephemeral_key() -> None:
    pair = Pair()
    not_a_point = b"\x02" + b"\xff" * 32  # x above the field prime
    bad = _rewrite_handshake(pair.handshake_packet(), pair.b.local_id, ephemeral_pubkey=not_a_point)
    _raises(pair.b, bad, ADDR_A, BadEphemeralKey)


def test_handshake_record_of_another_node() -> None:
    pair = Pair()
    stranger = ENR.build(PrivateKey.generate(random.Random(11)), 5).to_rlp()
    bad = _rewrite_handshake(pair.handshake_packet(), pair.b.local_id, record=stranger)
    _raises(pair.b, bad, ADDR_A, BadHandshakeRecord)


def test_handshake_record_missing_when_unknown() -> None:
    pair = Pair()
    bad = _rewrite_handshake(pair.handshake_packet(known=None), pair.b.local_id, record=b"")
    _raises(pair.b, bad, ADDR_A, BadHandshakeRecord)


def test_handshake_record_invalid() -> None:
    pair = Pair()
    record = bytearray(pair.record_a.to_rlp())
    record[10] ^= 1  # inside the signature
    bad = _rewrite_handshake(pair.handshake_packet(), pair.b.local_id, record=bytes(record))
    _raises(pair.b, bad, ADDR_A, BadHandshakeRecord)


def test_handshake_without_a_challenge_we_sent() -> None:
    pair = Pair()
    packet = pair.handshake_packet()
    fresh_b = Codec(pair.key_b, pair.record_b, clock=pair.clock)  # same key, never challenged A
    _raises(fresh_b, packet, ADDR_A, UnexpectedHandshake)


def test_handshake_after_the_challenge_expired() -> None:
    pair = Pair()
    packet = pair.handshake_packet()
    pair.clock.now += 1.5  # past the 1 s handshake timeout
    _raises(pair.b, packet, ADDR_A, UnexpectedHandshake)


def test_handshake_from_another_address() -> None:
    pair = Pair()
    _raises(pair.b, pair.handshake_packet(), ("127.0.0.1", 9), UnexpectedHandshake)


def test_replayed_handshake() -> None:
    pair = Pair()
    packet = pair.handshake_packet()
    assert isinstance(pair.b.decode(packet, ADDR_A), HandshakeCompleted)
    _raises(pair.b, packet, ADDR_A, ReplayedHandshake)


def test_oversize_request_id() -> None:
    pair = Pair()
    a_to_b = bytes(range(16))  # the key A would write with, B reads with
    pair.b.store_session(pair.a.local_id, ADDR_A, Session(write_key=bytes(16), read_key=a_to_b))
    nonce = bytes(12)
    head = header_data(bytes(16), Header(Flag.MESSAGE, nonce, message_authdata(pair.a.local_id)))
    pt = b"\x01" + encode_rlp([b"\x01" * 9, 1])  # PING, as the encoder would never write it
    packet = encode_packet(pair.b.local_id, head, encrypt_gcm(a_to_b, nonce, pt, head))
    _raises(pair.b, packet, ADDR_A, BadRequestID)


def test_encoder_refuses_oversize_request_id() -> None:
    with pytest.raises(ValueError):
        encode_message(Ping(b"\x01" * 9, 1))


@pytest.mark.parametrize(
    ("plaintext", "error"),
    [
        (b"", BadMessage),
        (b"\x07" + encode_rlp([b"\x01"]), UnknownMessageType),
        (b"\x01" + encode_rlp([b"\x01"]), BadMessage),  # PING without enr-seq
        (b"\x01" + encode_rlp([b"\x01", 1]) + b"\x00", BadMessage),  # bytes after the list
        (b"\x01" + encode_rlp([b"\x01", b"\x00\x01"]), BadMessage),  # leading zero
        (b"\x01" + encode_rlp([b"\x01", b"\x01" * 9]), BadMessage),  # enr-seq over 64 bits
        (b"\x02" + encode_rlp([b"\x01", 1, b"\x7f\x00\x01", 1]), BadMessage),  # 3-byte IP
        (b"\x02" + encode_rlp([b"\x01", 1, b"\x7f\x00\x00\x01", 65536]), BadMessage),
        (b"\x03" + encode_rlp([b"\x01", [257]]), BadMessage),
        (b"\x03" + encode_rlp([b"\x01", b"\x01"]), BadMessage),  # distances not a list
        (b"\x04" + encode_rlp([b"\x01", 1, [b"\x01"]]), BadMessage),  # record not a list
        (b"\x05" + encode_rlp([b"\x01", [b""], b""]), BadMessage),
        (b"\x06" + encode_rlp([[b"\x01"], b""]), BadMessage),
        (b"\x01\xc5\x83\x01", BadMessage),  # list runs past the data
    ],
)
def test_bad_message_plaintexts(plaintext: bytes, error: type[BadMessage]) -> None:
    with pytest.raises(BadMessage) as info:
        decode_message(plaintext)
    assert type(info.value) is error


def test_extra_message_fields_are_accepted() -> None:
    assert decode_message(b"\x01" + encode_rlp([b"\x01", 3, b"future", [b"x"]])) == Ping(b"\x01", 3)


def test_unsolicited_whoareyou() -> None:
    pair = Pair()
    challenge = pair.b.encode_whoareyou(pair.a.local_id, ADDR_A, bytes(12), None)
    _raises(pair.a, challenge.data, ADDR_B, UnsolicitedWhoareyou)


def test_whoareyou_from_another_address() -> None:
    pair = Pair()
    sent = pair.a.encode(pair.b.local_id, ADDR_B, PING)
    challenge = pair.b.encode_whoareyou(pair.a.local_id, ADDR_A, sent.nonce, None)
    _raises(pair.a, challenge.data, ("127.0.0.2", 9), UnsolicitedWhoareyou)


def test_whoareyou_answers_a_packet_once() -> None:
    pair = Pair()
    sent = pair.a.encode(pair.b.local_id, ADDR_B, PING)
    challenge = pair.b.encode_whoareyou(pair.a.local_id, ADDR_A, sent.nonce, None)
    assert isinstance(pair.a.decode(challenge.data, ADDR_B), WhoareyouReceived)
    _raises(pair.a, challenge.data, ADDR_B, UnsolicitedWhoareyou)


def test_whoareyou_after_its_packet_expired() -> None:
    pair = Pair()
    sent = pair.a.encode(pair.b.local_id, ADDR_B, PING)
    challenge = pair.b.encode_whoareyou(pair.a.local_id, ADDR_A, sent.nonce, None)
    pair.clock.now += 1.5
    _raises(pair.a, challenge.data, ADDR_B, UnsolicitedWhoareyou)
    assert pair.a.stats.sent_nonces_expired == 1


# ---------------------------------------------------------------------------------------
# bounds


def test_session_cache_is_bounded_lru() -> None:
    pair = Pair(session_cache_size=2)
    ids = [bytes([i]) * 32 for i in range(3)]
    for node_id in ids:
        pair.a.store_session(node_id, ADDR_B, Session(bytes(16), bytes(16)))
        pair.a.session(ids[0], ADDR_B)  # keep the first one in use
    assert pair.a.session(ids[0], ADDR_B) is not None
    assert pair.a.session(ids[1], ADDR_B) is None
    assert pair.a.session(ids[2], ADDR_B) is not None
    assert pair.a.stats.sessions_evicted == 1


def test_challenges_are_bounded() -> None:
    pair = Pair(max_challenges=2)
    packet = pair.handshake_packet()  # B's challenge to A is the oldest
    for i in range(2):  # spoofed node IDs each take a challenge slot
        pair.b.encode_whoareyou(bytes([i]) * 32, ADDR_A, bytes(12), None)
    assert pair.b.stats.challenges_evicted == 1
    _raises(pair.b, packet, ADDR_A, UnexpectedHandshake)


def test_sent_nonces_are_bounded() -> None:
    pair = Pair(max_sent_nonces=2)
    first = pair.a.encode(pair.b.local_id, ADDR_B, PING)
    for _ in range(2):
        pair.a.encode(pair.b.local_id, ADDR_B, PING)
    challenge = pair.b.encode_whoareyou(pair.a.local_id, ADDR_A, first.nonce, None)
    _raises(pair.a, challenge.data, ADDR_B, UnsolicitedWhoareyou)
    assert pair.a.stats.sent_nonces_evicted == 1


# ---------------------------------------------------------------------------------------
# fuzz: the decoder returns an event or raises a V5DecodeError, nothing else

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_FUZZ_PAIR = Pair(seed=21).established()


def _decode_or_typed_error(codec: Codec, data: bytes) -> None:
    try:
        codec.decode(data, ADDR_A)
    except V5DecodeError:
        pass


@FUZZ
@given(st.binary(max_size=MAX_PACKET_SIZE + 20))
def test_fuzz_random_bytes(data: bytes) -> None:
    _decode_or_typed_error(_FUZZ_PAIR.b, data)


@FUZZ
@given(st.integers(0, 2), st.binary(min_size=0, max_size=400), st.binary(max_size=16))
def test_fuzz_headers_with_valid_protocol_id(flag: int, rest: bytes, iv: bytes) -> None:
    """Noise behind a correct "discv5" prefix: reaches the authdata and message checks."""
    iv = iv.ljust(16, b"\x00")
    head = iv + b"discv5\x00\x01" + bytes((flag,)) + rest
    _decode_or_typed_error(_FUZZ_PAIR.b, encode_packet(_FUZZ_PAIR.b.local_id, head[:MAX_PACKET_SIZE], b""))


@FUZZ
@given(st.integers(0, 1), st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=4))
def test_fuzz_mutated_valid_packets(which: int, flips: list[tuple[int, int]]) -> None:
    """Byte changes anywhere in a valid (unmasked) session message or handshake, re-masked
    so that the header parses; a handshake gets a fresh challenge each time, since any
    attempt uses its challenge up."""
    pair = _FUZZ_PAIR if which == 0 else Pair(seed=22)
    if which == 0:
        packet = pair.a.encode(pair.b.local_id, ADDR_B, PING).data
    else:
        packet = pair.handshake_packet()
    raw = decode_packet(packet, pair.b.local_id)
    plain = bytearray(raw.header_data + raw.message)
    for pos, value in flips:
        plain[16 + pos % (len(plain) - 16)] = value
    _decode_or_typed_error(pair.b, encode_packet(pair.b.local_id, bytes(plain), b""))


@pytest.mark.parametrize("iv", [bytes(16), bytes(8) + b"\xff" * 8, b"\x00" * 7 + b"\x01" + b"\xff" * 7 + b"\xfe",
                                b"\xff" * 16, bytes(range(16))])
def test_header_masking_is_aes_ctr_also_where_the_counter_carries(iv: bytes) -> None:
    """The masking keystream is AES-128-CTR with a 128-bit counter: the same bytes as
    OpenSSL's CTR, also for IVs whose low 64 bits (or all 128) wrap within the header."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    dest = bytes(range(100, 132))
    head = header_data(iv, Header(Flag.HANDSHAKE, bytes(12), bytes(range(200))))
    packet = encode_packet(dest, head, bytes(GCM_TAG_SIZE))
    ctr = Cipher(algorithms.AES(dest[:16]), modes.CTR(iv)).encryptor()
    assert packet[16:len(head)] == ctr.update(head[16:]) + ctr.finalize()
    assert decode_packet(packet, dest).header_data == head
