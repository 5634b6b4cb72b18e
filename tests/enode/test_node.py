"""NodeID, Node, distances and enode:// URLs."""

from __future__ import annotations

import ipaddress
import random
import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2p.crypto import PrivateKey, keccak256
from p2p.enode import ENR, EnodeURLError, Node, NodeID, log_distance, parse_enode_url, xor_distance
from tests.conftest import load_vector

HANDSHAKE = load_vector("rlpx_handshake.json")
PUBKEY_HEX = HANDSHAKE["derived_by_extractor"]["recipient_static_public_key"]
node_ids = st.binary(min_size=32, max_size=32).map(NodeID)


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Name lookups without the network: ``localhost`` resolves, ``*.invalid`` does not.

    ``.invalid`` never resolves (RFC 6761), but asking the system resolver would still send
    a DNS query to a non-loopback name server, and tests only talk to 127.0.0.1.
    """
    asked: list[str] = []
    real = socket.getaddrinfo

    def fake(host: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(host)
        if host == "localhost":
            return real("127.0.0.1", *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    yield asked


# -- NodeID and distances ---------------------------------------------------------------------


def test_node_id_checks_its_size() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        NodeID(b"\x00" * 31)
    nid = NodeID.from_hex("0x" + "ab" * 32)
    assert nid == bytes.fromhex("ab" * 32) and nid.short() == "ab" * 8
    assert isinstance(nid, bytes)


def test_node_id_from_pubkey() -> None:
    raw = bytes.fromhex(PUBKEY_HEX)
    assert NodeID.from_pubkey(raw) == keccak256(raw)
    with pytest.raises(ValueError, match="64 bytes"):
        NodeID.from_pubkey(raw[:33])


def test_known_distances() -> None:
    zero = NodeID(b"\x00" * 32)
    assert log_distance(zero, zero) == 0
    assert log_distance(zero, NodeID(b"\x00" * 31 + b"\x01")) == 1
    assert log_distance(zero, NodeID(b"\x00" * 31 + b"\xff")) == 8
    assert log_distance(zero, NodeID(b"\x80" + b"\x00" * 31)) == 256
    assert xor_distance(NodeID(b"\x00" * 31 + b"\x05"), NodeID(b"\x00" * 31 + b"\x03")) == 6


@given(node_ids, node_ids)
def test_distances_are_symmetric(a: NodeID, b: NodeID) -> None:
    assert log_distance(a, b) == log_distance(b, a)
    assert xor_distance(a, b) == xor_distance(b, a)


@given(node_ids, node_ids)
def test_distance_zero_iff_equal(a: NodeID, b: NodeID) -> None:
    assert (log_distance(a, b) == 0) == (a == b)
    assert (xor_distance(a, b) == 0) == (a == b)
    assert log_distance(a, a) == 0


@given(node_ids)
def test_distance_256_when_top_bit_differs(a: NodeID) -> None:
    b = NodeID(bytes([a[0] ^ 0x80]) + a[1:])
    assert log_distance(a, b) == 256
    assert 0 <= log_distance(a, NodeID(bytes([a[0] ^ 0x40]) + a[1:])) == 255


@given(node_ids, node_ids, node_ids)
def test_xor_metric(a: NodeID, b: NodeID, c: NodeID) -> None:
    assert xor_distance(a, b) ^ xor_distance(b, c) == xor_distance(a, c)
    assert xor_distance(a, c) <= xor_distance(a, b) + xor_distance(b, c)
    assert 2 ** (log_distance(a, b) - 1) <= xor_distance(a, b) < 2 ** log_distance(a, b) or a == b


# -- Node -------------------------------------------------------------------------------------


def test_node_fields(key: PrivateKey) -> None:
    node = Node(key.public_key, "127.0.0.1", 30301, 30303)  # type: ignore[arg-type]
    assert node.ip == ipaddress.IPv4Address("127.0.0.1")
    assert node.id == NodeID.from_pubkey(key.public_key)
    assert node.udp_address == ("127.0.0.1", 30301)
    assert node.tcp_address == ("127.0.0.1", 30303)
    moved = node.with_endpoint(ipaddress.ip_address("::1"), 1, 2)
    assert moved.id == node.id and moved.udp_address == ("::1", 1) and moved.tcp_port == 2


@pytest.mark.parametrize("udp, tcp", [(-1, 1), (1, 65536), (70000, 1)])
def test_node_rejects_ports_out_of_range(key: PrivateKey, udp: int, tcp: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        Node(key.public_key, ipaddress.ip_address("127.0.0.1"), udp, tcp)


def test_node_from_enr(key: PrivateKey) -> None:
    enr = ENR.build(key, ip="127.0.0.1", udp=30301, tcp=30303)
    node = Node.from_enr(enr)
    assert node.id == enr.node_id and node.enr is enr
    assert (node.ip, node.udp_port, node.tcp_port) == (ipaddress.ip_address("127.0.0.1"), 30301, 30303)
    enr6 = ENR.build(key, ip6="::1", udp6=9, tcp6=10)
    node6 = Node.from_enr(enr6)
    assert (node6.ip, node6.udp_port, node6.tcp_port) == (ipaddress.ip_address("::1"), 9, 10)
    assert node.with_enr(enr6).enr is enr6
    assert node.with_enr(enr6) == node  # the record does not take part in equality
    with pytest.raises(ValueError, match="no IP"):
        Node.from_enr(ENR.build(key, udp=1))


# -- enode:// URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, ip, tcp, udp",
    [
        (f"enode://{PUBKEY_HEX}@127.0.0.1:30303", "127.0.0.1", 30303, 30303),
        (f"enode://{PUBKEY_HEX}@127.0.0.1:30303?discport=30301", "127.0.0.1", 30303, 30301),
        (f"enode://{PUBKEY_HEX}@[::1]:30303", "::1", 30303, 30303),
        (f"enode://{PUBKEY_HEX}@[fe80::1]:1?discport=0", "fe80::1", 1, 0),
        (f"enode://{PUBKEY_HEX.upper()}@10.0.0.1:65535", "10.0.0.1", 65535, 65535),
    ],
)
def test_parse_and_format(url: str, ip: str, tcp: int, udp: int) -> None:
    node = parse_enode_url(url)
    assert node.pubkey.to_bytes().hex() == PUBKEY_HEX
    assert node.ip == ipaddress.ip_address(ip)
    assert (node.tcp_port, node.udp_port) == (tcp, udp)
    assert node.to_url() == url.replace(PUBKEY_HEX.upper(), PUBKEY_HEX)
    assert Node.from_url(node.to_url()) == node
    assert str(node) == node.to_url()


@given(
    seed=st.integers(0, 2**32),
    ip=st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
    tcp=st.integers(0, 65535),
    udp=st.integers(0, 65535),
)
def test_url_round_trip(seed: int, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, tcp: int, udp: int) -> None:
    node = Node(PrivateKey.generate(random.Random(seed)).public_key, ip, udp, tcp)
    assert parse_enode_url(node.to_url()) == node


def test_host_name_is_resolved(resolver: list[str]) -> None:
    node = parse_enode_url(f"enode://{PUBKEY_HEX}@localhost:30303")
    assert node.ip == ipaddress.IPv4Address("127.0.0.1")
    assert resolver == ["localhost"]


def test_unresolved_host_name(resolver: list[str]) -> None:
    with pytest.raises(EnodeURLError, match="cannot be resolved"):
        parse_enode_url(f"enode://{PUBKEY_HEX}@no-such-node.invalid:30303")
    assert resolver == ["no-such-node.invalid"]


BAD_URLS = {
    "wrong scheme": (f"enr://{PUBKEY_HEX}@127.0.0.1:30303", "enode://"),
    "missing @": (f"enode://{PUBKEY_HEX}", "@host:port"),
    "bad hex": (f"enode://{'zz' + PUBKEY_HEX[2:]}@127.0.0.1:30303", "not hex"),
    "space inside key": (f"enode://{PUBKEY_HEX[:62]} {PUBKEY_HEX[63:]}@127.0.0.1:30303", "not hex"),
    "key too short": (f"enode://{PUBKEY_HEX[:-2]}@127.0.0.1:30303", "128 hex digits, got 126"),
    "key too long": (f"enode://{PUBKEY_HEX}00@127.0.0.1:30303", "128 hex digits, got 130"),
    "key not on curve": (f"enode://{'00' * 64}@127.0.0.1:30303", "secp256k1 point"),
    "missing host": (f"enode://{PUBKEY_HEX}@:30303", "no host"),
    "missing port": (f"enode://{PUBKEY_HEX}@127.0.0.1", "no TCP port"),
    "empty port": (f"enode://{PUBKEY_HEX}@127.0.0.1:", "no TCP port"),
    "port out of range": (f"enode://{PUBKEY_HEX}@127.0.0.1:65536", "TCP port"),
    "port not a number": (f"enode://{PUBKEY_HEX}@127.0.0.1:30a03", "TCP port"),
    "negative port": (f"enode://{PUBKEY_HEX}@127.0.0.1:-1", "TCP port"),
    "discport not a number": (f"enode://{PUBKEY_HEX}@127.0.0.1:30303?discport=abc", "discport"),
    "discport signed": (f"enode://{PUBKEY_HEX}@127.0.0.1:30303?discport=+5", "discport"),
    "discport empty": (f"enode://{PUBKEY_HEX}@127.0.0.1:30303?discport=", "discport"),
    "discport out of range": (f"enode://{PUBKEY_HEX}@127.0.0.1:30303?discport=65536", "discport"),
    "unclosed bracket": (f"enode://{PUBKEY_HEX}@[::1:30303", "malformed host"),
    "bracketed non-IPv6": (f"enode://{PUBKEY_HEX}@[zz]:30303", "malformed host"),
}


@pytest.mark.parametrize("url, message", BAD_URLS.values(), ids=BAD_URLS.keys())
def test_malformed_urls(url: str, message: str, resolver: list[str]) -> None:
    with pytest.raises(EnodeURLError, match=re.escape(message)):
        parse_enode_url(url)
    assert resolver == []  # every error is found before any name lookup
