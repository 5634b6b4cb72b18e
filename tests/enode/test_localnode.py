"""LocalNode: one signed record, its seq raised once per change and kept across restarts."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import pytest

from p2p.crypto import PrivateKey, keccak256, recover
from p2p.enode import ENR, ENRError, LocalNode, NodeDB, NodeID, RawRLP, Signer

KEYS = [PrivateKey.generate(random.Random(100 + i)) for i in range(2)]
FORK_ID = RawRLP(bytes.fromhex("c7c68420c30b4480"))  # rlp([[fork hash, 0]]): eth's entry shape


def test_record_is_signed_and_entries_parse_back() -> None:
    local = LocalNode(KEYS[0])
    local.set_ip("10.0.0.7")
    local.set_tcp(30303)
    local.set_udp(30304)
    local.set("eth", FORK_ID)
    local.set("snap", b"")
    # What peers get is the record's bytes: decode (and verify) them as any received record.
    parsed = ENR.from_text(local.record.to_text())
    assert parsed.public_key == KEYS[0].public_key
    assert parsed.node_id == local.id == NodeID.from_pubkey(KEYS[0].public_key)
    assert (parsed.ip, parsed.tcp, parsed.udp) == (ipaddress.ip_address("10.0.0.7"), 30303, 30304)
    assert parsed["eth"] == FORK_ID and isinstance(parsed["eth"], RawRLP)
    assert parsed["snap"] == b""
    assert parsed.seq == local.seq == 1
    node = local.node
    assert node.to_url() == f"enode://{KEYS[0].public_key.to_bytes().hex()}@10.0.0.7:30303?discport=30304"
    assert node.enr == local.record


def test_ipv6_entries() -> None:
    local = LocalNode(KEYS[0])
    local.set_ip("::1")
    local.set_tcp6(1000)
    local.set_udp6(1001)
    rec = ENR.from_rlp(local.record.to_rlp())
    assert (rec.ip, rec.ip6, rec.tcp6, rec.udp6) == (None, ipaddress.ip_address("::1"), 1000, 1001)
    assert local.node.tcp_port == 1000 and local.node.udp_port == 1001


def test_one_bump_per_change_and_none_for_the_same_value() -> None:
    local = LocalNode(KEYS[0])
    local.set_tcp(1)
    assert local.seq == 1
    local.set_tcp(1)
    local.set("eth", FORK_ID)
    local.set("eth", RawRLP(FORK_ID))  # equal value: no change
    assert local.seq == 2
    first = local.record
    assert local.record is first  # reading again signs nothing
    # Several changes before the next read: one new record, one bump.
    local.set_tcp(2)
    local.set_udp(3)
    local.set_ip("127.0.0.1")
    assert local.seq == 3
    # Changed and changed back before a read: the record is still right, no bump.
    local.set_tcp(4)
    local.set_tcp(2)
    assert local.seq == 3
    local.delete("udp")
    local.delete("udp")
    local.delete("nonexistent")
    assert local.seq == 4 and local.record.udp is None


def test_seq_survives_restart_with_the_same_db(tmp_path: Path) -> None:
    path = tmp_path / "nodes"
    with NodeDB.open(path) as db:
        local = LocalNode(KEYS[0], db)
        local.set_tcp(1)
        assert local.seq == 1
        local.set_tcp(2)
        assert local.seq == 2
        assert db.local_seq() == 2
    with NodeDB.open(path) as db:
        again = LocalNode(KEYS[0], db)
        again.set_tcp(2)  # the same content as before the restart: still a new seq
        assert again.seq == 3
        assert db.local_seq() == 3


def test_without_db_seq_is_in_memory() -> None:
    assert LocalNode(KEYS[0]).seq == 1
    assert LocalNode(KEYS[0]).seq == 1


def test_shared_store_never_goes_back() -> None:
    with NodeDB.open(None) as db:
        db.store_local_seq(40)  # another writer of the same store got there first
        local = LocalNode(KEYS[0], db)
        assert local.seq == 41
        db.store_local_seq(50)
        local.set_tcp(9)
        assert local.seq == 51


def test_change_callbacks() -> None:
    local = LocalNode(KEYS[0])
    seen: list[int] = []
    unsubscribe = local.on_change(lambda: seen.append(local.seq))
    local.set_udp(5)
    local.set_udp(5)
    local.set("x", b"1")
    assert seen == [1, 2]
    unsubscribe()
    local.set_udp(6)
    assert seen == [1, 2]


def test_bad_entries_are_refused_at_set_time() -> None:
    local = LocalNode(KEYS[0])
    local.set_tcp(7)
    before = local.record
    with pytest.raises(ENRError):
        local.set_tcp(70000)
    with pytest.raises(ENRError):
        local.set("tcp", b"\x01")  # a standard key goes through its setter
    with pytest.raises(ENRError):
        local.delete("secp256k1")
    with pytest.raises(ENRError):
        local.set("big", b"x" * 300)  # would not fit in a record
    assert local.record is before  # nothing changed, nothing signed
    local.set("ok", b"x" * 100)
    assert local.record.seq == before.seq + 1


def test_signer_signs_as_the_node_without_the_key() -> None:
    local = LocalNode(KEYS[0])
    signer = local.signer
    assert isinstance(signer, Signer)
    digest = keccak256(b"chat message")
    assert recover(digest, signer.sign(digest)) == KEYS[0].public_key
    assert KEYS[0].public_key.verify(signer.sign_compact(digest), digest)
    assert signer.node_id == local.id
    assert not hasattr(signer, "secret") and not hasattr(local, "private_key")
    assert KEYS[0].to_hex() not in repr(signer) + repr(local)
