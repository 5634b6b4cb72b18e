"""ECIES as devp2p uses it, proven against the EIP-8 handshake vectors."""

from __future__ import annotations

import random
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p.crypto import ECIESBadMAC, ECIESBadPoint, ECIESError, ECIESShortInput, PrivateKey
from p2p.crypto.ecies import IV_LEN, MAC_LEN, OVERHEAD, PUBKEY_LEN, concat_kdf, decrypt, encrypt
from tests.conftest import load_vector

HANDSHAKE = load_vector("rlpx_handshake.json")
EIP8_PREFIX = 2  # EIP-8 messages start with their 2-byte big-endian size, also the MAC's shared data


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@pytest.fixture
def pair(rng: random.Random) -> tuple[PrivateKey, bytes]:
    key = PrivateKey.generate(rng)
    return key, encrypt(key.public_key, b"attack at dawn", b"\x01\xb3", rng=rng)


# -- concat KDF -------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 16, 32, 33, 64, 100])
def test_concat_kdf_matches_nist_reference(length: int) -> None:
    shared = bytes(range(32))
    reference = ConcatKDFHash(algorithm=hashes.SHA256(), length=length, otherinfo=None).derive(shared)
    assert concat_kdf(shared, length) == reference


def test_concat_kdf_prefix_property() -> None:
    # counter-mode output: a longer derivation extends a shorter one
    assert concat_kdf(b"z" * 32, 80)[:32] == concat_kdf(b"z" * 32, 32)


# -- round trips ------------------------------------------------------------------------------


@settings(max_examples=40)
@given(plaintext=st.binary(max_size=600), shared=st.binary(max_size=8), seed=st.integers(0, 2**32))
def test_round_trip(plaintext: bytes, shared: bytes, seed: int) -> None:
    rng = random.Random(seed)
    key = PrivateKey.generate(rng)
    message = encrypt(key.public_key, plaintext, shared, rng=rng)
    assert len(message) == len(plaintext) + OVERHEAD
    assert message[0] == 0x04
    assert decrypt(key, message, shared) == plaintext


def test_encryption_is_randomised_unless_an_rng_is_given(key: PrivateKey) -> None:
    a = encrypt(key.public_key, b"same")
    b = encrypt(key.public_key, b"same")
    assert a != b and decrypt(key, a) == decrypt(key, b) == b"same"
    assert encrypt(key.public_key, b"x", rng=random.Random(3)) == encrypt(key.public_key, b"x", rng=random.Random(3))


def test_empty_plaintext_is_exactly_the_envelope(key: PrivateKey) -> None:
    message = encrypt(key.public_key, b"")
    assert len(message) == OVERHEAD
    assert decrypt(key, message) == b""


# -- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 65, OVERHEAD - 1])
def test_short_input(key: PrivateKey, size: int) -> None:
    message = encrypt(key.public_key, b"")
    with pytest.raises(ECIESShortInput, match="shorter"):
        decrypt(key, message[:size])


@pytest.mark.parametrize("prefix", [0x00, 0x02, 0x03, 0x05, 0x06, 0xFF])
def test_bad_point_prefix(pair: tuple[PrivateKey, bytes], prefix: int) -> None:
    key, message = pair
    with pytest.raises(ECIESBadPoint, match="prefix"):
        decrypt(key, bytes([prefix]) + message[1:], b"\x01\xb3")


def test_point_off_the_curve(pair: tuple[PrivateKey, bytes]) -> None:
    key, message = pair
    off_curve = b"\x04" + b"\x00" * 63 + b"\x07" + message[PUBKEY_LEN:]
    with pytest.raises(ECIESBadPoint):
        decrypt(key, off_curve, b"\x01\xb3")
    # a flipped y coordinate bit leaves the curve too
    with pytest.raises(ECIESBadPoint):
        decrypt(key, flip(message, PUBKEY_LEN - 1), b"\x01\xb3")


def test_any_flipped_byte_after_the_key_is_a_bad_mac(pair: tuple[PrivateKey, bytes]) -> None:
    key, message = pair
    assert len(message) - PUBKEY_LEN == IV_LEN + len(b"attack at dawn") + MAC_LEN
    for index in range(PUBKEY_LEN, len(message)):  # IV, ciphertext and tag
        with pytest.raises(ECIESBadMAC):
            decrypt(key, flip(message, index), b"\x01\xb3")


def test_any_flipped_byte_in_the_key_fails(pair: tuple[PrivateKey, bytes]) -> None:
    key, message = pair
    for index in range(PUBKEY_LEN):
        with pytest.raises((ECIESBadPoint, ECIESBadMAC)):
            decrypt(key, flip(message, index), b"\x01\xb3")


@pytest.mark.parametrize("shared", [b"", b"\x01\xb4", b"\x01\xb3\x00", b"\x01"])
def test_wrong_shared_mac_data(pair: tuple[PrivateKey, bytes], shared: bytes) -> None:
    key, message = pair
    with pytest.raises(ECIESBadMAC):
        decrypt(key, message, shared)


def test_wrong_recipient(pair: tuple[PrivateKey, bytes], rng: random.Random) -> None:
    _, message = pair
    with pytest.raises(ECIESBadMAC):
        decrypt(PrivateKey.generate(rng), message, b"\x01\xb3")


def test_errors_share_one_base() -> None:
    for cls in (ECIESShortInput, ECIESBadPoint, ECIESBadMAC):
        assert issubclass(cls, ECIESError) and issubclass(cls, ValueError)


# -- the EIP-8 handshake vectors --------------------------------------------------------------


def split_packet(packet: dict[str, Any]) -> tuple[bytes, bytes]:
    """(ECIES message, shared MAC data) of a handshake packet as it travels on the wire."""
    wire = bytes.fromhex(packet["packet"])
    assert len(wire) == packet["packet_length"]
    if packet["stated_in_spec"]["format"] == "legacy_pre_eip8":
        return wire, b""
    prefix = wire[:EIP8_PREFIX]
    assert int.from_bytes(prefix, "big") == packet["decoded_by_extractor"]["size_prefix"] == len(wire) - EIP8_PREFIX
    return wire[EIP8_PREFIX:], prefix


def packet_ids(packets: list[dict[str, Any]]) -> list[str]:
    return [p["name"] for p in packets]


@pytest.mark.parametrize(
    "packet", HANDSHAKE["auth_packets"] + HANDSHAKE["ack_packets"], ids=packet_ids(HANDSHAKE["auth_packets"] + HANDSHAKE["ack_packets"])
)
def test_spec_packets_decrypt_to_documented_plaintext(packet: dict[str, Any]) -> None:
    key = PrivateKey.from_hex(HANDSHAKE[packet["decrypt_with"]])
    message, shared = split_packet(packet)
    assert len(message) == packet["decoded_by_extractor"]["ecies_ciphertext_length"]
    plaintext = decrypt(key, message, shared)
    assert plaintext.hex() == packet["decoded_by_extractor"]["decrypted_plaintext"]


def test_auth_goes_to_the_recipient_and_ack_to_the_initiator() -> None:
    # the vectors' decrypt_with fields match the roles the spec describes
    assert {p["decrypt_with"] for p in HANDSHAKE["auth_packets"]} == {"recipient_static_private_key"}
    assert {p["decrypt_with"] for p in HANDSHAKE["ack_packets"]} == {"initiator_static_private_key"}
    assert len(HANDSHAKE["auth_packets"]) == len(HANDSHAKE["ack_packets"]) == 3


@pytest.mark.parametrize("packet", HANDSHAKE["auth_packets"], ids=packet_ids(HANDSHAKE["auth_packets"]))
def test_spec_auth_contents(packet: dict[str, Any]) -> None:
    key = PrivateKey.from_hex(HANDSHAKE["recipient_static_private_key"])
    plaintext = decrypt(key, *split_packet(packet))
    decoded = packet["decoded_by_extractor"]
    if decoded["format"] == "legacy_pre_eip8":
        # sig(65) || keccak(ephemeral pubkey)(32) || pubkey(64) || nonce(32) || token flag(1)
        assert len(plaintext) == 194
        assert plaintext[:65].hex() == decoded["signature"]
        assert plaintext[65:97].hex() == decoded["initiator_ephemeral_public_key_keccak256"]
        assert plaintext[97:161].hex() == decoded["initiator_static_public_key"]
        assert plaintext[161:193].hex() == HANDSHAKE["initiator_nonce"]
        assert plaintext[193] == decoded["token_flag"]
    else:
        # RLP list of [sig, pubkey, nonce, version, ...] followed by random padding
        assert plaintext[:4] == bytes([0xF8, decoded["rlp_list_length"] - 2, 0xB8, 65])
        assert plaintext[4:69].hex() == decoded["signature"]
        assert decoded["initiator_static_public_key"] in plaintext.hex()
        assert HANDSHAKE["initiator_nonce"] in plaintext.hex()
        assert len(plaintext) == decoded["rlp_list_length"] + decoded["padding_length"]


@pytest.mark.parametrize("packet", HANDSHAKE["ack_packets"], ids=packet_ids(HANDSHAKE["ack_packets"]))
def test_spec_ack_contents(packet: dict[str, Any]) -> None:
    key = PrivateKey.from_hex(HANDSHAKE["initiator_static_private_key"])
    plaintext = decrypt(key, *split_packet(packet))
    ephemeral = HANDSHAKE["derived_by_extractor"]["recipient_ephemeral_public_key"]
    if packet["decoded_by_extractor"]["format"] == "legacy_pre_eip8":
        # ephemeral pubkey(64) || nonce(32) || token flag(1)
        assert len(plaintext) == 97
        assert plaintext[:64].hex() == ephemeral
        assert plaintext[64:96].hex() == HANDSHAKE["recipient_nonce"]
    else:
        assert ephemeral in plaintext.hex()
        assert HANDSHAKE["recipient_nonce"] in plaintext.hex()


@pytest.mark.parametrize("packet", HANDSHAKE["auth_packets"][1:], ids=packet_ids(HANDSHAKE["auth_packets"][1:]))
def test_spec_eip8_packets_need_their_size_prefix_as_mac_data(packet: dict[str, Any]) -> None:
    key = PrivateKey.from_hex(HANDSHAKE["recipient_static_private_key"])
    message, shared = split_packet(packet)
    with pytest.raises(ECIESBadMAC):
        decrypt(key, message)
    with pytest.raises(ECIESBadMAC):
        decrypt(PrivateKey.from_hex(HANDSHAKE["initiator_static_private_key"]), message, shared)
