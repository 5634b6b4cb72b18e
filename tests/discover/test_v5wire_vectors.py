"""discv5-wire-test-vectors.md, byte for byte: the four packets (decoded by node B and
re-encoded by their sender) and the crypto primitives."""

from __future__ import annotations

from typing import Any

import pytest

from p2p.crypto import PrivateKey, PublicKey
from p2p.discover.v5wire import Codec, HandshakeCompleted, MessageReceived, Ping, Session, Whoareyou, WhoareyouReceived
from p2p.discover.v5wire.crypto import decrypt_gcm, derive_keys, ecdh, encrypt_gcm, make_id_signature, verify_id_signature
from p2p.enode import ENR, NodeID
from tests.conftest import load_vector
from tests.discover.v5helpers import ScriptedRandom

V = load_vector("discv5_wire.json")
KEY_A = PrivateKey.from_hex(V["node_a_key"])
KEY_B = PrivateKey.from_hex(V["node_b_key"])
ID_A = NodeID.from_hex(V["derived_by_extractor"]["node_a_id"])
ID_B = NodeID.from_hex(V["derived_by_extractor"]["node_b_id"])
RECORD_A = ENR.from_rlp(bytes.fromhex(V["derived_by_extractor"]["node_a_record_rlp"]))
RECORD_B = ENR.build(KEY_B, 1, ip="127.0.0.2", udp=30303)
ADDR_A = ("127.0.0.1", 30303)
ADDR_B = ("127.0.0.2", 30303)
ZERO_IV = bytes(16)
PACKETS = V["packets"]
HANDSHAKES = ["ping_handshake", "ping_handshake_with_enr"]


def b(hexstr: str) -> bytes:
    return bytes.fromhex(hexstr)


def _ping(p: dict[str, Any]) -> Ping:
    return Ping(b(p["ping_req_id"]), p["ping_enr_seq"])


def test_node_ids_are_the_keys_ids() -> None:
    assert RECORD_A.node_id == ID_A == b(PACKETS["ping_message"]["src_node_id"])
    assert Codec(KEY_B, RECORD_B).local_id == ID_B


def test_ecdh_vector() -> None:
    v = V["ecdh"]
    shared = ecdh(PublicKey.from_bytes(b(v["public_key"])), PrivateKey.from_hex(v["secret_key"]))
    assert shared == b(v["shared_secret"])


def test_key_derivation_vector() -> None:
    v = V["key_derivation"]
    keys = derive_keys(
        PrivateKey.from_hex(v["ephemeral_key"]),
        PublicKey.from_bytes(b(v["dest_pubkey"])),
        b(v["node_id_a"]),
        b(v["node_id_b"]),
        b(v["challenge_data"]),
    )
    assert keys.initiator_key == b(v["initiator_key"])
    assert keys.recipient_key == b(v["recipient_key"])


def test_id_nonce_signing_vector() -> None:
    v = V["id_nonce_signing"]
    key = PrivateKey.from_hex(v["static_key"])
    args = (b(v["challenge_data"]), b(v["ephemeral_pubkey"]), b(v["node_id_b"]))
    assert make_id_signature(key, *args) == b(v["id_signature"])
    assert verify_id_signature(key.public_key, b(v["id_signature"]), *args)
    assert not verify_id_signature(KEY_A.public_key, b(v["id_signature"]), *args)


def test_aes_gcm_vector() -> None:
    v = V["aes_gcm"]
    ct = encrypt_gcm(b(v["encryption_key"]), b(v["nonce"]), b(v["pt"]), b(v["ad"]))
    assert ct == b(v["message_ciphertext"])
    assert decrypt_gcm(b(v["encryption_key"]), b(v["nonce"]), ct, b(v["ad"])) == b(v["pt"])


def test_ping_message_packet_decodes() -> None:
    p = PACKETS["ping_message"]
    codec_b = Codec(KEY_B, RECORD_B)
    codec_b.store_session(ID_A, ADDR_A, Session(write_key=bytes(16), read_key=b(p["read_key"])))
    event = codec_b.decode(b(p["packet"]), ADDR_A)
    assert event == MessageReceived(ID_A, ADDR_A, _ping(p), b(p["nonce"]))


def test_ping_message_packet_encodes() -> None:
    p = PACKETS["ping_message"]
    codec_a = Codec(KEY_A, RECORD_A, rng=ScriptedRandom(b(p["nonce"]), ZERO_IV))
    codec_a.store_session(ID_B, ADDR_B, Session(write_key=b(p["read_key"]), read_key=bytes(16)))
    assert codec_a.encode(ID_B, ADDR_B, _ping(p)).data == b(p["packet"])


def test_whoareyou_packet_encodes() -> None:
    p = PACKETS["whoareyou"]
    codec_a = Codec(KEY_A, RECORD_A, rng=ScriptedRandom(b(p["whoareyou_id_nonce"]), ZERO_IV))
    sent = codec_a.encode_whoareyou(ID_B, ADDR_B, b(p["whoareyou_request_nonce"]), known_record=None)
    assert sent.data == b(p["packet"])


def test_whoareyou_packet_decodes() -> None:
    p = PACKETS["whoareyou"]
    nonce = b(p["whoareyou_request_nonce"])
    # B first sends the packet that the WHOAREYOU answers (the spec's nonce, any IV)
    codec_b = Codec(KEY_B, RECORD_B, rng=ScriptedRandom(nonce, bytes(range(16)), bytes(20)))
    ping = Ping(b"\x07", 1)
    codec_b.encode(ID_A, ADDR_A, ping)
    event = codec_b.decode(b(p["packet"]), ADDR_A)
    assert isinstance(event, WhoareyouReceived)
    assert event.message == ping and event.node_id == ID_A
    assert event.challenge == Whoareyou(
        nonce, b(p["whoareyou_id_nonce"]), p["whoareyou_enr_seq"], b(p["whoareyou_challenge_data"])
    )


@pytest.mark.parametrize("name", HANDSHAKES)
def test_handshake_packet_decodes(name: str) -> None:
    p = PACKETS[name]
    hs = p["handshake_inputs"]
    # B sends the challenge of the handshake inputs: the challenge-data is unmasked, so it is
    # the same whoever it is masked for
    codec_b = Codec(KEY_B, RECORD_B, rng=ScriptedRandom(b(hs["whoareyou_id_nonce"]), ZERO_IV))
    known = RECORD_A if hs["whoareyou_enr_seq"] == RECORD_A.seq else None
    assert hs["whoareyou_enr_seq"] == (known.seq if known else 0)
    codec_b.encode_whoareyou(ID_A, ADDR_A, b(hs["whoareyou_request_nonce"]), known)
    event = codec_b.decode(b(p["packet"]), ADDR_A)
    assert event == HandshakeCompleted(ID_A, ADDR_A, RECORD_A, _ping(p), b(p["nonce"]))
    session = codec_b.session(ID_A, ADDR_A)
    assert session is not None and session.read_key == b(p["read_key"])


@pytest.mark.parametrize("name", HANDSHAKES)
def test_handshake_packet_encodes(name: str) -> None:
    p = PACKETS[name]
    hs = p["handshake_inputs"]
    challenge = Whoareyou(
        b(hs["whoareyou_request_nonce"]),
        b(hs["whoareyou_id_nonce"]),
        hs["whoareyou_enr_seq"],
        b(hs["whoareyou_challenge_data"]),
    )
    rng = ScriptedRandom(b(hs["ephemeral_key"]), b(p["nonce"]), ZERO_IV)
    codec_a = Codec(KEY_A, RECORD_A, rng=rng)
    sent = codec_a.encode_handshake(ID_B, ADDR_B, _ping(p), challenge, KEY_B.public_key)
    assert PrivateKey(b(hs["ephemeral_key"])).public_key.to_compressed() == b(hs["ephemeral_pubkey"])
    assert sent.data == b(p["packet"])
    session = codec_a.session(ID_B, ADDR_B)
    assert session is not None and session.write_key == b(p["read_key"])
