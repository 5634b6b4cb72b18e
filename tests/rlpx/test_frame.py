"""The frame codec: exact bytes against an independent construction, round trips, bad input."""

from __future__ import annotations

import random
from typing import Any

import pytest
from Crypto.Cipher import AES
from Crypto.Hash import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p.crypto import PrivateKey
from p2p.rlpx import snappy
from p2p.rlpx.errors import FrameError, MessageTooLarge, SnappyError
from p2p.rlpx.frame import MAX_FRAME_SIZE, FrameCodec, encode_code, split_code
from p2p.rlpx.handshake import Secrets, derive_secrets
from tests.conftest import load_vector

V: dict[str, Any] = load_vector("rlpx_handshake.json")
EPH_A = PrivateKey.from_hex(V["initiator_ephemeral_private_key"])
EPH_B = PrivateKey.from_hex(V["recipient_ephemeral_private_key"])
KEY_A = PrivateKey.from_hex(V["initiator_static_private_key"])
KEY_B = PrivateKey.from_hex(V["recipient_static_private_key"])
AUTH = bytes.fromhex(V["auth_packets"][1]["packet"])
ACK = bytes.fromhex(V["ack_packets"][1]["packet"])


def secrets(initiator: bool) -> Secrets:
    return derive_secrets(
        initiator=initiator,
        ephemeral_key=EPH_A if initiator else EPH_B,
        remote_ephemeral=(EPH_B if initiator else EPH_A).public_key,
        initiator_nonce=bytes.fromhex(V["initiator_nonce"]),
        recipient_nonce=bytes.fromhex(V["recipient_nonce"]),
        auth=AUTH,
        ack=ACK,
        remote_pubkey=(KEY_B if initiator else KEY_A).public_key,
    )


def codecs(max_frame_size: int = MAX_FRAME_SIZE) -> tuple[FrameCodec, FrameCodec]:
    return FrameCodec(secrets(True)), FrameCodec(secrets(False), max_frame_size=max_frame_size)


class ReferenceEgress:
    """A second, deliberately plain construction of the egress side with pycryptodome."""

    def __init__(self, s: Secrets, auth: bytes) -> None:
        nonce_b = bytes.fromhex(V["recipient_nonce"])
        self.mac = keccak.new(digest_bits=256, update_after_digest=True)
        self.mac.update(bytes(x ^ y for x, y in zip(s.mac_secret, nonce_b)) + auth)
        self.aes = AES.new(s.aes_secret, AES.MODE_CTR, nonce=b"", initial_value=bytes(16))
        self.ecb = AES.new(s.mac_secret, AES.MODE_ECB)

    def _seeded(self, seed: bytes) -> bytes:
        enc = self.ecb.encrypt(self.mac.digest()[:16])
        self.mac.update(bytes(x ^ y for x, y in zip(enc, seed)))
        return self.mac.digest()[:16]

    def frame(self, code: int, data: bytes) -> bytes:
        body = encode_code(code) + data
        header = len(body).to_bytes(3, "big") + bytes([0xC2, 0x80, 0x80])
        header += bytes(16 - len(header))
        header_ct = self.aes.encrypt(header)
        header_mac = self._seeded(header_ct)
        body += bytes(-len(body) % 16)
        body_ct = self.aes.encrypt(body)
        self.mac.update(body_ct)
        frame_mac = self._seeded(self.mac.digest()[:16])
        return header_ct + header_mac + body_ct + frame_mac


def test_exact_bytes_match_reference() -> None:
    ours = FrameCodec(secrets(True))
    ref = ReferenceEgress(secrets(True), AUTH)
    rng = random.Random(1)
    for code, size in [(0, 0), (1, 1), (2, 15), (3, 16), (16, 100), (200, 1000), (0x10000, 5000)]:
        data = rng.randbytes(size)
        assert ours.encode(code, data) == ref.frame(code, data)


def test_round_trip_byte_by_byte_and_in_bulk() -> None:
    a, b = codecs()
    rng = random.Random(2)
    messages = [(rng.randrange(0, 300), rng.randbytes(rng.choice([0, 1, 15, 16, 17, 1024, 70000]))) for _ in range(30)]
    wire = a.encode_many(messages[:10]) + b"".join(a.encode(c, d) for c, d in messages[10:])
    got: list[tuple[int, bytes]] = []
    # First a byte at a time, then the rest in one piece.
    for i in range(300):
        b.receive_data(wire[i : i + 1])
        while (f := b.next_frame()) is not None:
            got.append(f)
    assert b.mid_frame
    b.receive_data(wire[300:])
    while (f := b.next_frame()) is not None:
        got.append(f)
    assert got == messages
    assert not b.mid_frame


def test_both_directions_independent() -> None:
    a, b = codecs()
    wire_ab = a.encode(5, b"to b")
    wire_ba = b.encode(6, b"to a")
    a.receive_data(wire_ba)
    b.receive_data(wire_ab)
    assert a.next_frame() == (6, b"to a")
    assert b.next_frame() == (5, b"to b")


@pytest.mark.parametrize("where", ["header", "header-mac", "body", "frame-mac"])
def test_tampering_is_a_frame_error(where: str) -> None:
    a, b = codecs()
    wire = bytearray(a.encode(1, b"x" * 40))
    index = {"header": 3, "header-mac": 20, "body": 40, "frame-mac": len(wire) - 1}[where]
    wire[index] ^= 0x01
    b.receive_data(bytes(wire))
    with pytest.raises(FrameError, match="header MAC" if where.startswith("header") else "frame MAC"):
        b.next_frame()
    with pytest.raises(FrameError):  # the codec stays failed
        b.next_frame()


def test_wrong_secrets_fail_on_first_header() -> None:
    a = FrameCodec(secrets(True))
    wrong = secrets(False)
    impostor = FrameCodec(Secrets(wrong.remote_pubkey, wrong.aes_secret, bytes(32), wrong.egress_mac, wrong.ingress_mac))
    impostor.receive_data(a.encode(0, b"hello"))
    with pytest.raises(FrameError):
        impostor.next_frame()


def test_declared_frame_size_beyond_limit() -> None:
    a, b = codecs(max_frame_size=1024)
    b.receive_data(a.encode(1, bytes(2000))[:32])  # only the header: refused before the body
    with pytest.raises(MessageTooLarge) as info:
        b.next_frame()
    assert info.value.size == 2001 and info.value.limit == 1024


def test_frame_too_large_to_encode() -> None:
    a, _ = codecs()
    with pytest.raises(MessageTooLarge):
        a.encode(1, bytes(MAX_FRAME_SIZE))


def test_message_codes() -> None:
    for code in [0, 1, 0x7F, 0x80, 0xFF, 0x100, 2**40]:
        raw = encode_code(code)
        assert split_code(raw + b"payload") == (code, len(raw))
    assert encode_code(0) == b"\x80"
    for bad in [b"", b"\x00", b"\x81\x05", b"\x82\x00\x80", b"\xc0", b"\x82\x01"]:
        with pytest.raises(FrameError):
            split_code(bad)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=200), max_size=8))
def test_fuzz_decoder_random_bytes(chunks: list[bytes]) -> None:
    _, b = codecs(max_frame_size=4096)
    try:
        for chunk in chunks:
            b.receive_data(chunk)
            while b.next_frame() is not None:
                pass
    except (FrameError, MessageTooLarge):
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=255), st.binary(max_size=300))
def test_fuzz_decoder_corrupted_valid_stream(index: int, flip: int, data: bytes) -> None:
    a, b = codecs()
    wire = bytearray(a.encode(3, data) + a.encode(4, data[::-1]))
    index %= len(wire)
    wire[index] ^= flip
    b.receive_data(bytes(wire))
    with pytest.raises((FrameError, MessageTooLarge)):
        while b.next_frame() is not None:
            pass
        raise AssertionError("a corrupted stream was accepted")


# -- snappy -------------------------------------------------------------------------------------


def test_snappy_round_trip_and_declared_length() -> None:
    data = b"abc" * 1000
    block = snappy.compress(data)
    assert snappy.declared_length(block) == len(data)
    assert snappy.decompress(block, len(data)) == data
    with pytest.raises(MessageTooLarge):
        snappy.decompress(block, len(data) - 1)


def test_snappy_bomb_is_refused_before_decompression(monkeypatch: pytest.MonkeyPatch) -> None:
    # A varint declaring 2^32 - 1 bytes followed by a few bytes: never handed to the decompressor.
    bomb = bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F]) + b"\x00" * 8
    called = []
    monkeypatch.setattr(snappy, "_decompress", lambda data: called.append(data))
    with pytest.raises(MessageTooLarge) as info:
        snappy.decompress(bomb, 16 * 1024 * 1024)
    assert info.value.size == 2**32 - 1
    assert called == []


@pytest.mark.parametrize("block", [b"", b"\x80\x80\x80\x80\x80\x80", b"\x05abc", b"\x0a\x00"])
def test_snappy_corrupt_blocks(block: bytes) -> None:
    with pytest.raises(SnappyError):
        snappy.decompress(block, 1000)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=100))
def test_snappy_fuzz(block: bytes) -> None:
    try:
        out = snappy.decompress(block, 4096)
    except (SnappyError, MessageTooLarge):
        return
    assert len(out) == snappy.declared_length(block) <= 4096
