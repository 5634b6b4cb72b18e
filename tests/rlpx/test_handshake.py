"""The RLPx handshake against every EIP-8 vector, plus our own initiator/recipient pairs."""

from __future__ import annotations

import random
from typing import Any

import pytest
import rlp
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p.crypto import PrivateKey, PublicKey, ecies
from p2p.crypto.keccak import KeccakHash
from p2p.rlpx.errors import HandshakeError
from p2p.rlpx.handshake import (
    AUTH_LEGACY_SIZE,
    MAX_HANDSHAKE_SIZE,
    NEED_DATA,
    Completed,
    Handshake,
    decode_ack,
    decode_auth,
    derive_secrets,
)
from tests.conftest import load_vector

V: dict[str, Any] = load_vector("rlpx_handshake.json")
KEY_A = PrivateKey.from_hex(V["initiator_static_private_key"])
KEY_B = PrivateKey.from_hex(V["recipient_static_private_key"])
EPH_A = PrivateKey.from_hex(V["initiator_ephemeral_private_key"])
EPH_B = PrivateKey.from_hex(V["recipient_ephemeral_private_key"])
NONCE_A = bytes.fromhex(V["initiator_nonce"])
NONCE_B = bytes.fromhex(V["recipient_nonce"])
AUTHS = {p["name"]: p for p in V["auth_packets"]}
ACKS = {p["name"]: p for p in V["ack_packets"]}
PAIRS = V["derived_by_extractor"]["secrets_per_auth_ack_pair"]


def after_foo(mac: KeccakHash) -> str:
    mac.update(b"foo")
    return mac.digest().hex()


def _extra(packet: dict[str, Any]) -> int:
    return int(packet["stated_in_spec"].get("additional_list_elements", 0))


@pytest.mark.parametrize("name", sorted(AUTHS))
def test_decode_auth_vectors(name: str) -> None:
    packet = AUTHS[name]
    raw = bytes.fromhex(packet["packet"])
    assert len(raw) == packet["packet_length"]
    auth = decode_auth(KEY_B, raw)
    assert auth.remote_pubkey.to_bytes().hex() == V["derived_by_extractor"]["initiator_static_public_key"]
    assert auth.remote_pubkey == KEY_A.public_key
    assert auth.nonce == NONCE_A
    assert auth.remote_ephemeral == EPH_A.public_key
    eip8 = packet["stated_in_spec"]["format"] == "eip8"
    assert auth.eip8 is eip8
    if eip8:
        assert auth.version == packet["stated_in_spec"]["version"]


@pytest.mark.parametrize("name", sorted(ACKS))
def test_decode_ack_vectors(name: str) -> None:
    packet = ACKS[name]
    raw = bytes.fromhex(packet["packet"])
    ack = decode_ack(KEY_A, raw)
    assert ack.remote_ephemeral == EPH_B.public_key
    assert ack.nonce == NONCE_B
    eip8 = packet["stated_in_spec"]["format"] == "eip8"
    assert ack.eip8 is eip8
    if eip8:
        assert ack.version == packet["stated_in_spec"]["version"]


def test_vector_plaintexts_decrypt_to_the_extractor_values() -> None:
    for packet in V["auth_packets"]:
        raw = bytes.fromhex(packet["packet"])
        plain = (
            ecies.decrypt(KEY_B, raw[2:], raw[:2]) if packet["stated_in_spec"]["format"] == "eip8" else ecies.decrypt(KEY_B, raw)
        )
        assert plain.hex() == packet["decoded_by_extractor"]["decrypted_plaintext"]


def test_wrong_key_cannot_decode_auth() -> None:
    with pytest.raises(HandshakeError):
        decode_auth(KEY_A, bytes.fromhex(AUTHS["auth2_eip8_v4"]["packet"]))


@pytest.mark.parametrize("pair", PAIRS, ids=[p["auth"] for p in PAIRS])
def test_secrets_per_pair_both_sides(pair: dict[str, Any]) -> None:
    auth = bytes.fromhex(AUTHS[pair["auth"]]["packet"])
    ack = bytes.fromhex(ACKS[pair["ack"]]["packet"])
    common = dict(initiator_nonce=NONCE_A, recipient_nonce=NONCE_B, auth=auth, ack=ack)
    a = derive_secrets(initiator=True, ephemeral_key=EPH_A, remote_ephemeral=EPH_B.public_key,
                       remote_pubkey=KEY_B.public_key, **common)
    b = derive_secrets(initiator=False, ephemeral_key=EPH_B, remote_ephemeral=EPH_A.public_key,
                       remote_pubkey=KEY_A.public_key, **common)
    assert EPH_A.ecdh(EPH_B.public_key).hex() == pair["ephemeral_key_ecdh"]
    for s in (a, b):
        assert s.aes_secret.hex() == pair["aes_secret"]
        assert s.mac_secret.hex() == pair["mac_secret"]
    assert after_foo(a.egress_mac) == pair["initiator_egress_mac_after_foo"]
    assert after_foo(a.ingress_mac) == pair["initiator_ingress_mac_after_foo"]
    assert after_foo(b.egress_mac) == pair["recipient_egress_mac_after_foo"]
    assert after_foo(b.ingress_mac) == pair["recipient_ingress_mac_after_foo"]


def test_spec_recipient_secrets_for_auth2_ack2() -> None:
    spec = V["recipient_derived_secrets"]
    auth = bytes.fromhex(AUTHS[spec["auth_packet"]]["packet"])
    ack = bytes.fromhex(ACKS[spec["ack_packet"]]["packet"])
    b = derive_secrets(initiator=False, ephemeral_key=EPH_B, remote_ephemeral=EPH_A.public_key,
                       initiator_nonce=NONCE_A, recipient_nonce=NONCE_B, auth=auth, ack=ack,
                       remote_pubkey=KEY_A.public_key)
    assert b.aes_secret.hex() == spec["aes_secret"]
    assert b.mac_secret.hex() == spec["mac_secret"]
    b.ingress_mac.update(bytes.fromhex(spec["ingress_mac_update_input"]))
    assert b.ingress_mac.digest().hex() == spec["recipient_ingress_mac_digest_after_foo"]


@pytest.mark.parametrize("pair", PAIRS, ids=[p["auth"] for p in PAIRS])
def test_recipient_state_machine_on_vector_auth(pair: dict[str, Any]) -> None:
    """The recipient fed the vector auth (in pieces) derives the spec secrets and ingress MAC,
    and answers in the auth's format."""
    auth_packet = AUTHS[pair["auth"]]
    auth = bytes.fromhex(auth_packet["packet"])
    hs = Handshake(KEY_B, rng=random.Random(1), ephemeral_key=EPH_B, nonce=NONCE_B)
    hs.receive_data(auth[:1])
    assert hs.next_event() is NEED_DATA
    hs.receive_data(auth[1:200])
    assert hs.next_event() is NEED_DATA
    hs.receive_data(auth[200:] + b"first-frame")
    ev = hs.next_event()
    assert isinstance(ev, Completed)
    assert ev.remote_pubkey == KEY_A.public_key
    assert ev.trailing == b"first-frame"
    assert ev.secrets.aes_secret.hex() == pair["aes_secret"]
    assert ev.secrets.mac_secret.hex() == pair["mac_secret"]
    assert after_foo(ev.secrets.ingress_mac) == pair["recipient_ingress_mac_after_foo"]
    legacy = auth_packet["stated_in_spec"]["format"] != "eip8"
    assert ev.eip8 is not legacy
    if legacy:
        assert len(ev.reply) == 210 and ev.reply[0] == 0x04
    else:
        assert int.from_bytes(ev.reply[:2], "big") + 2 == len(ev.reply)
    # Our reply is a valid ack for the initiator.
    ack = decode_ack(KEY_A, ev.reply)
    assert ack.remote_ephemeral == EPH_B.public_key and ack.nonce == NONCE_B
    assert ack.eip8 is not legacy


@pytest.mark.parametrize("pair", PAIRS, ids=[p["ack"] for p in PAIRS])
def test_initiator_state_machine_on_vector_ack(pair: dict[str, Any]) -> None:
    ack = bytes.fromhex(ACKS[pair["ack"]]["packet"])
    hs = Handshake(KEY_A, KEY_B.public_key, rng=random.Random(2), ephemeral_key=EPH_A, nonce=NONCE_A)
    auth = hs.initiate()
    assert decode_auth(KEY_B, auth).nonce == NONCE_A
    hs.receive_data(ack)
    ev = hs.next_event()
    assert isinstance(ev, Completed)
    assert ev.reply == b"" and ev.trailing == b""
    assert ev.secrets.aes_secret.hex() == pair["aes_secret"]
    assert ev.secrets.mac_secret.hex() == pair["mac_secret"]
    # The initiator's ingress MAC depends only on the ack, so it matches the vector exactly.
    assert after_foo(ev.secrets.ingress_mac) == pair["initiator_ingress_mac_after_foo"]


def _pair(rng: random.Random, eip8: bool = True) -> tuple[Completed, Completed, bytes]:
    a_key, b_key = PrivateKey.generate(rng), PrivateKey.generate(rng)
    a = Handshake(a_key, b_key.public_key, rng=rng, eip8=eip8)
    b = Handshake(b_key, rng=rng)
    auth = a.initiate()
    b.receive_data(auth)
    eb = b.next_event()
    assert isinstance(eb, Completed)
    a.receive_data(eb.reply)
    ea = a.next_event()
    assert isinstance(ea, Completed)
    assert ea.remote_pubkey == b_key.public_key and eb.remote_pubkey == a_key.public_key
    return ea, eb, auth


@pytest.mark.parametrize("eip8", [True, False])
def test_pair_agrees(eip8: bool) -> None:
    ea, eb, auth = _pair(random.Random(7), eip8)
    assert ea.secrets.aes_secret == eb.secrets.aes_secret
    assert ea.secrets.mac_secret == eb.secrets.mac_secret
    assert ea.eip8 is eip8 and eb.eip8 is eip8
    assert ea.secrets.egress_mac.digest() == eb.secrets.ingress_mac.digest()
    assert ea.secrets.ingress_mac.digest() == eb.secrets.egress_mac.digest()
    if not eip8:
        assert len(auth) == AUTH_LEGACY_SIZE


def test_eip8_sizes_and_padding() -> None:
    rng = random.Random(3)
    sizes = set()
    for _ in range(40):
        _ea, eb, auth = _pair(rng)
        # Never shorter than a legacy auth (ethereumjs reads 307 bytes first), never too long.
        assert AUTH_LEGACY_SIZE <= len(auth) <= MAX_HANDSHAKE_SIZE
        assert len(eb.reply) >= AUTH_LEGACY_SIZE
        sizes.add(len(auth))
    assert len(sizes) > 10  # random padding makes the size vary


def test_padding_range() -> None:
    rng = random.Random(4)
    b_key = PrivateKey.generate(rng)
    for _ in range(30):
        a = Handshake(PrivateKey.generate(rng), b_key.public_key, rng=rng)
        auth = a.initiate()
        plain = ecies.decrypt(b_key, auth[2:], auth[:2])
        body_len = len(rlp.encode(rlp.decode(plain, strict=False)))
        assert 100 <= len(plain) - body_len <= 199


def test_recipient_accepts_extra_elements_and_higher_versions() -> None:
    ev = _feed_recipient(bytes.fromhex(AUTHS["auth3_eip8_v56"]["packet"]))
    assert ev.remote_version == 56


def _feed_recipient(data: bytes) -> Completed:
    hs = Handshake(KEY_B, rng=random.Random(5))
    hs.receive_data(data)
    ev = hs.next_event()
    assert isinstance(ev, Completed)
    return ev


def test_oversized_prefix_is_refused_at_once() -> None:
    hs = Handshake(KEY_B)
    hs.receive_data((MAX_HANDSHAKE_SIZE - 1).to_bytes(2, "big"))
    with pytest.raises(HandshakeError, match="exceeds"):
        hs.next_event()
    with pytest.raises(HandshakeError):  # stays failed
        hs.next_event()


def test_prefix_below_envelope_is_refused() -> None:
    hs = Handshake(KEY_B)
    hs.receive_data(b"\x00\x10" + bytes(16))
    with pytest.raises(HandshakeError):
        hs.next_event()


def test_truncated_auth_needs_data_then_wrong_bytes_fail() -> None:
    auth = bytes.fromhex(AUTHS["auth2_eip8_v4"]["packet"])
    hs = Handshake(KEY_B)
    hs.receive_data(auth[:-1])
    assert hs.next_event() is NEED_DATA
    hs.receive_data(b"\x00")  # the wrong last byte: the ECIES MAC fails
    with pytest.raises(HandshakeError):
        hs.next_event()


def test_auth_for_someone_else_is_refused() -> None:
    rng = random.Random(8)
    other = PrivateKey.generate(rng)
    a = Handshake(KEY_A, other.public_key, rng=rng)
    hs = Handshake(KEY_B)
    hs.receive_data(a.initiate())
    with pytest.raises(HandshakeError):
        hs.next_event()


def test_ack_from_an_impostor_gives_different_secrets() -> None:
    """An impostor cannot read the auth, so whatever ack it forges yields other secrets; the
    first frame's MAC then fails (checked in the frame tests)."""
    rng = random.Random(9)
    b_key, impostor = PrivateKey.generate(rng), PrivateKey.generate(rng)
    a = Handshake(KEY_A, b_key.public_key, rng=rng)
    a.initiate()
    fake = Handshake(impostor, rng=rng)
    fake_auth = Handshake(KEY_A, impostor.public_key, rng=rng).initiate()
    fake.receive_data(fake_auth)
    ev_fake = fake.next_event()
    assert isinstance(ev_fake, Completed)
    a.receive_data(ev_fake.reply)
    ev_a = a.next_event()
    assert isinstance(ev_a, Completed)
    assert ev_a.secrets.aes_secret != ev_fake.secrets.aes_secret


def test_initiator_must_initiate_first() -> None:
    hs = Handshake(KEY_A, KEY_B.public_key)
    hs.receive_data(b"x" * 10)
    with pytest.raises(HandshakeError):
        hs.next_event()
    with pytest.raises(HandshakeError):
        Handshake(KEY_B).initiate()


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=0, max_size=700))
def test_recipient_fuzz_only_typed_errors(data: bytes) -> None:
    hs = Handshake(KEY_B, ephemeral_key=EPH_B, nonce=NONCE_B)
    hs.receive_data(data)
    try:
        ev = hs.next_event()
    except HandshakeError:
        return
    assert ev is NEED_DATA


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=436), st.integers(min_value=0, max_value=255))
def test_recipient_fuzz_bitflips_in_vector(index: int, value: int) -> None:
    auth = bytearray.fromhex(AUTHS["auth2_eip8_v4"]["packet"])
    if auth[index] == value:
        return
    auth[index] = value
    hs = Handshake(KEY_B, ephemeral_key=EPH_B, nonce=NONCE_B)
    hs.receive_data(bytes(auth))
    try:
        ev = hs.next_event()
    except HandshakeError:
        return
    assert ev is NEED_DATA  # a changed size prefix may ask for more bytes


def test_vector_public_keys() -> None:
    d = V["derived_by_extractor"]
    assert KEY_B.public_key == PublicKey(bytes.fromhex(d["recipient_static_public_key"]))
    assert KEY_A.ecdh(KEY_B.public_key).hex() == d["static_shared_secret"]
