"""Node keys: files, public keys, node IDs, signatures and ECDH."""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path

import coincurve
import pytest
from Crypto.Hash import keccak as pycryptodome_keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p.crypto import (
    BadSignature,
    InvalidKey,
    KeyFileError,
    PrivateKey,
    PublicKey,
    keccak256,
    load_node_key,
    new_keccak256,
    recover,
    save_node_key,
)
from p2p.crypto.keys import SECP256K1_N
from p2p.enode import NodeID
from tests.conftest import load_vector

HANDSHAKE = load_vector("rlpx_handshake.json")
ENR_VECTOR = load_vector("enr.json")


def reference_keccak(data: bytes) -> bytes:
    """An independent keccak256 (pycryptodome), whatever backend p2p.crypto picked."""
    return pycryptodome_keccak.new(digest_bits=256, data=data).digest()


# -- keccak -----------------------------------------------------------------------------------


def test_keccak256_known_value() -> None:
    # keccak256 of the empty string, as every Ethereum client knows it
    assert keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"


@given(st.binary(max_size=300))
def test_keccak256_matches_reference(data: bytes) -> None:
    assert keccak256(data) == reference_keccak(data)


def test_running_keccak_digest_does_not_finalize() -> None:
    h = new_keccak256(b"ab")
    first = h.digest()
    h.update(b"cd")
    assert first == keccak256(b"ab")
    assert h.digest() == keccak256(b"abcd")


# -- key files --------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path, rng: random.Random) -> None:
    key = PrivateKey.generate(rng)
    path = tmp_path / "nodekey"
    save_node_key(key, path)
    assert load_node_key(path) == key
    assert path.read_text().strip() == key.to_hex()


def test_saved_key_file_has_mode_0600(tmp_path: Path, key: PrivateKey) -> None:
    path = tmp_path / "nodekey"
    save_node_key(key, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_save_over_a_world_readable_file_tightens_its_mode(tmp_path: Path, key: PrivateKey) -> None:
    path = tmp_path / "nodekey"
    path.write_text("old")
    path.chmod(0o644)
    save_node_key(key, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_node_key(path) == key


def test_load_accepts_surrounding_white_space(tmp_path: Path, key: PrivateKey) -> None:
    path = tmp_path / "nodekey"
    path.write_text(f"\n  {key.to_hex()}  \n")
    assert load_node_key(path) == key


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        load_node_key(tmp_path / "absent")


def test_load_unreadable_path(tmp_path: Path) -> None:
    # A directory cannot be read as a file whoever runs the test (root included).
    with pytest.raises(KeyFileError, match="cannot be read"):
        load_node_key(tmp_path)


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root ignores file permissions; test_load_unreadable_path covers unreadable paths",
)
def test_load_file_without_read_permission(tmp_path: Path, key: PrivateKey) -> None:
    path = tmp_path / "nodekey"
    save_node_key(key, path)
    path.chmod(0)
    with pytest.raises(KeyFileError, match="cannot be read"):
        load_node_key(path)


def test_load_binary_garbage(tmp_path: Path) -> None:
    path = tmp_path / "nodekey"
    path.write_bytes(bytes(range(200, 256)) * 2)
    with pytest.raises(KeyFileError, match="cannot be read"):
        load_node_key(path)


@pytest.mark.parametrize("text", ["", "abcd", "11" * 31, "11" * 33, "11" * 32 + "1"])
def test_load_wrong_length(tmp_path: Path, text: str) -> None:
    path = tmp_path / "nodekey"
    path.write_text(text)
    with pytest.raises(KeyFileError, match="64 hex digits"):
        load_node_key(path)


def test_load_non_hex(tmp_path: Path) -> None:
    path = tmp_path / "nodekey"
    path.write_text("zz" * 32)
    with pytest.raises(KeyFileError, match="not hex"):
        load_node_key(path)


@pytest.mark.parametrize("value", [0, SECP256K1_N, SECP256K1_N + 1])
def test_load_key_out_of_range(tmp_path: Path, value: int) -> None:
    path = tmp_path / "nodekey"
    path.write_text(f"{value % 2**256:064x}")
    with pytest.raises(KeyFileError, match="range"):
        load_node_key(path)


# -- private and public keys ------------------------------------------------------------------


def test_generate_is_reproducible_with_a_seeded_rng() -> None:
    assert PrivateKey.generate(random.Random(7)) == PrivateKey.generate(random.Random(7))
    assert PrivateKey.generate(random.Random(7)) != PrivateKey.generate(random.Random(8))


@pytest.mark.parametrize("secret", [b"", b"\x01" * 31, b"\x01" * 33, b"\x00" * 32, SECP256K1_N.to_bytes(32, "big")])
def test_private_key_rejects_bad_secrets(secret: bytes) -> None:
    with pytest.raises(InvalidKey):
        PrivateKey(secret)


def test_private_key_from_hex_rejects_non_hex() -> None:
    with pytest.raises(InvalidKey, match="not hex"):
        PrivateKey.from_hex("g" * 64)


def test_public_keys_of_the_spec_keys() -> None:
    derived = HANDSHAKE["derived_by_extractor"]
    for name in ("initiator_static", "recipient_static", "initiator_ephemeral", "recipient_ephemeral"):
        key = PrivateKey.from_hex(HANDSHAKE[f"{name}_private_key"])
        assert key.public_key.to_bytes().hex() == derived[f"{name}_public_key"]


def test_node_id_is_keccak_of_the_64_byte_public_key() -> None:
    key = PrivateKey.from_hex(ENR_VECTOR["private_key"])
    raw = key.public_key.to_bytes()
    assert len(raw) == 64
    assert key.public_key.keccak() == reference_keccak(raw)
    assert NodeID.from_pubkey(key.public_key).hex() == ENR_VECTOR["node_id"]


def test_public_key_forms_round_trip(key: PrivateKey) -> None:
    pub = key.public_key
    compressed = pub.to_compressed()
    assert len(compressed) == 33 and compressed[0] in (2, 3)
    assert PublicKey.from_bytes(compressed) == pub
    assert PublicKey.from_bytes(b"\x04" + pub.to_bytes()) == pub
    assert PublicKey.from_bytes(pub.to_bytes()) == pub
    assert hash(PublicKey.from_bytes(compressed)) == hash(pub)


def test_public_key_rejects_bad_input(key: PrivateKey) -> None:
    raw = key.public_key.to_bytes()
    with pytest.raises(InvalidKey, match="33, 64 or 65"):
        PublicKey.from_bytes(raw[:63])
    with pytest.raises(InvalidKey, match="not a point"):
        PublicKey(b"\x00" * 64)
    with pytest.raises(InvalidKey, match="not a point"):
        PublicKey.from_bytes(b"\x02" + b"\xff" * 32)  # x >= field prime
    hybrid = bytes([6 + (raw[-1] & 1)]) + raw  # libsecp256k1 would parse this; peers never send it
    with pytest.raises(InvalidKey, match="0x04"):
        PublicKey.from_bytes(hybrid)


def test_ecdh_is_symmetric(rng: random.Random) -> None:
    a, b = PrivateKey.generate(rng), PrivateKey.generate(rng)
    assert a.ecdh(b.public_key) == b.ecdh(a.public_key)
    assert len(a.ecdh(b.public_key)) == 32


def test_ecdh_of_the_spec_static_keys() -> None:
    a = PrivateKey.from_hex(HANDSHAKE["initiator_static_private_key"])
    b = PrivateKey.from_hex(HANDSHAKE["recipient_static_private_key"])
    assert a.ecdh(b.public_key).hex() == HANDSHAKE["derived_by_extractor"]["static_shared_secret"]


# -- signatures -------------------------------------------------------------------------------


@settings(max_examples=50)
@given(secret=st.integers(1, SECP256K1_N - 1), msg_hash=st.binary(min_size=32, max_size=32))
def test_sign_recover_round_trip(secret: int, msg_hash: bytes) -> None:
    key = PrivateKey(secret.to_bytes(32, "big"))
    sig = key.sign(msg_hash)
    assert len(sig) == 65 and sig[64] in (0, 1)
    assert recover(msg_hash, sig) == key.public_key
    compact = key.sign_compact(msg_hash)
    assert compact == sig[:64]
    assert key.public_key.verify(compact, msg_hash)
    other = bytes([msg_hash[0] ^ 1]) + msg_hash[1:]
    assert not key.public_key.verify(compact, other)
    assert recover(other, sig) != key.public_key


@settings(max_examples=25)
@given(secret=st.integers(1, SECP256K1_N - 1), msg_hash=st.binary(min_size=32, max_size=32))
def test_keys_and_signatures_match_coincurve(secret: int, msg_hash: bytes) -> None:
    # PrivateKey calls libsecp256k1 itself (no x-only key); coincurve's own key is the reference.
    raw = secret.to_bytes(32, "big")
    reference = coincurve.PrivateKey(raw)
    key = PrivateKey(raw)
    assert key.public_key.to_bytes() == reference.public_key.format(compressed=False)[1:]
    assert key.sign(msg_hash) == reference.sign_recoverable(msg_hash, hasher=None)


def test_signatures_are_deterministic_and_low_s(key: PrivateKey) -> None:
    msg_hash = keccak256(b"rfc 6979")
    sig = key.sign_compact(msg_hash)
    assert sig == key.sign_compact(msg_hash)
    assert int.from_bytes(sig[32:], "big") <= SECP256K1_N // 2


def test_verify_rejects_high_s_and_garbage(key: PrivateKey) -> None:
    msg_hash = keccak256(b"malleable")
    sig = key.sign_compact(msg_hash)
    high_s = sig[:32] + (SECP256K1_N - int.from_bytes(sig[32:], "big")).to_bytes(32, "big")
    assert not key.public_key.verify(high_s, msg_hash)
    assert not key.public_key.verify(sig[:63], msg_hash)
    assert not key.public_key.verify(sig, msg_hash[:31])
    assert not key.public_key.verify(b"\xff" * 64, msg_hash)  # r, s >= n
    assert not key.public_key.verify(b"\x00" * 64, msg_hash)


def test_sign_rejects_a_hash_of_the_wrong_size(key: PrivateKey) -> None:
    with pytest.raises(ValueError):
        key.sign(b"\x00" * 31)


@pytest.mark.parametrize("size", [0, 64, 66])
def test_recover_rejects_bad_length(key: PrivateKey, size: int) -> None:
    sig = key.sign(keccak256(b"x"))
    with pytest.raises(BadSignature, match="65 bytes"):
        recover(keccak256(b"x"), (sig * 2)[:size])


@pytest.mark.parametrize("recid", [4, 27, 255])
def test_recover_rejects_bad_recovery_id(key: PrivateKey, recid: int) -> None:
    sig = key.sign(keccak256(b"x"))
    with pytest.raises(BadSignature, match="recovery id"):
        recover(keccak256(b"x"), sig[:64] + bytes([recid]))


def test_recover_rejects_unrecoverable_signature(key: PrivateKey) -> None:
    with pytest.raises(BadSignature):
        recover(keccak256(b"x"), b"\x00" * 65)
    with pytest.raises(BadSignature, match="32-byte hash"):
        recover(b"short", key.sign(keccak256(b"x")))
