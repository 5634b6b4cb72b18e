"""Node identity: ``NodeID``, ``Node``, distances and ``enode://`` URLs (no I/O but name lookup)."""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from p2p.crypto import InvalidKey, PublicKey
from p2p.crypto.keccak import keccak256

if TYPE_CHECKING:
    from p2p.enode.enr import ENR

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
NODE_ID_SIZE = 32  # keccak256 of the public key, the v4 identity scheme
ID_BITS = NODE_ID_SIZE * 8
_HEX = re.compile(r"[0-9a-fA-F]*")


class EnodeURLError(ValueError):
    """An ``enode://`` URL that cannot be parsed; the message names the bad part."""


class NodeID(bytes):
    """A 32-byte node identifier: keccak256 of the 64-byte public key."""

    __slots__ = ()

    def __new__(cls, data: bytes) -> "NodeID":
        if len(data) != NODE_ID_SIZE:
            raise ValueError(f"node ID must be {NODE_ID_SIZE} bytes, got {len(data)}")
        return super().__new__(cls, data)

    @classmethod
    def from_digest(cls, digest: bytes) -> "NodeID":
        """A node ID from a keccak256 digest the caller just computed (always 32 bytes): no
        length check, for the per-packet paths that make one for every datagram."""
        return bytes.__new__(cls, digest)

    @classmethod
    def from_pubkey(cls, pubkey: PublicKey | bytes) -> "NodeID":
        raw = pubkey.to_bytes() if isinstance(pubkey, PublicKey) else pubkey
        if len(raw) != 64:
            raise ValueError(f"public key must be 64 bytes, got {len(raw)}")
        return bytes.__new__(cls, keccak256(raw))

    @classmethod
    def from_hex(cls, text: str) -> "NodeID":
        return cls(bytes.fromhex(text.removeprefix("0x")))

    def __repr__(self) -> str:
        return f"NodeID({self.hex()[:16]}…)"

    def short(self) -> str:
        return self.hex()[:16]


def xor_distance(a: bytes, b: bytes) -> int:
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


def log_distance(a: bytes, b: bytes) -> int:
    """The bit length of ``a XOR b``: 0 for equal IDs, 256 for IDs differing in the top bit."""
    return xor_distance(a, b).bit_length()


def _check_port(value: int, what: str) -> int:
    if not 0 <= value <= 65535:
        raise EnodeURLError(f"{what} {value} is out of range 0-65535")
    return value


@dataclass(frozen=True, slots=True)
class Node:
    """A node we can reach: its public key, IP, and UDP (discovery) and TCP (RLPx) ports."""

    pubkey: PublicKey
    ip: IPAddress
    udp_port: int
    tcp_port: int
    enr: "ENR | None" = field(default=None, compare=False)
    id: NodeID = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.ip, str):  # convenience for hand-written nodes
            object.__setattr__(self, "ip", ipaddress.ip_address(self.ip))
        _check_port(self.udp_port, "UDP port")
        _check_port(self.tcp_port, "TCP port")
        object.__setattr__(self, "id", NodeID.from_digest(self.pubkey.keccak()))

    @classmethod
    def from_url(cls, url: str) -> "Node":
        return parse_enode_url(url)

    @classmethod
    def from_enr(cls, enr: "ENR") -> "Node":
        """A node from a verified ENR: ip/udp/tcp, falling back to ip6/udp6/tcp6."""
        ip = enr.ip or enr.ip6
        if ip is None:
            raise ValueError("ENR has no IP address")
        udp = (enr.udp if enr.ip else enr.udp6) or 0
        tcp = (enr.tcp if enr.ip else enr.tcp6) or 0
        return cls(enr.public_key, ip, udp, tcp, enr)

    def with_enr(self, enr: "ENR") -> "Node":
        return Node(self.pubkey, self.ip, self.udp_port, self.tcp_port, enr)

    def with_endpoint(self, ip: IPAddress, udp_port: int, tcp_port: int) -> "Node":
        return Node(self.pubkey, ip, udp_port, tcp_port, self.enr)

    def to_url(self) -> str:
        host = f"[{self.ip}]" if self.ip.version == 6 else str(self.ip)
        url = f"enode://{self.pubkey.to_bytes().hex()}@{host}:{self.tcp_port}"
        if self.udp_port != self.tcp_port:
            url += f"?discport={self.udp_port}"
        return url

    @property
    def udp_address(self) -> tuple[str, int]:
        return (str(self.ip), self.udp_port)

    @property
    def tcp_address(self) -> tuple[str, int]:
        return (str(self.ip), self.tcp_port)

    def __str__(self) -> str:
        return self.to_url()


def _resolve(host: str) -> IPAddress:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise EnodeURLError(f"host name {host!r} cannot be resolved: {exc}") from exc
    return ipaddress.ip_address(infos[0][4][0])


def parse_enode_url(url: str) -> Node:
    """Parse ``enode://<128 hex>@host:tcp[?discport=udp]``; host names are resolved."""
    if not url.startswith("enode://"):
        raise EnodeURLError(f"URL must start with enode://: {url!r}")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed '[' or a bracketed host that is not IPv6
        raise EnodeURLError(f"malformed host in enode URL: {exc}") from exc
    if "@" not in parts.netloc:
        raise EnodeURLError("enode URL has no '@host:port' part")
    key_hex = parts.netloc.split("@", 1)[0]
    if len(key_hex) != 128:
        raise EnodeURLError(f"node key must be 128 hex digits, got {len(key_hex)}")
    if not _HEX.fullmatch(key_hex):  # bytes.fromhex would skip white space inside the key
        raise EnodeURLError("node key is not hex")
    try:
        pubkey = PublicKey(bytes.fromhex(key_hex))
    except InvalidKey as exc:
        raise EnodeURLError(f"node key is not a valid secp256k1 point: {exc}") from exc
    host = parts.hostname
    if not host:
        raise EnodeURLError("enode URL has no host")
    try:
        tcp = parts.port
    except ValueError as exc:
        raise EnodeURLError(f"TCP port is not a number in 0-65535: {exc}") from exc
    if tcp is None:
        raise EnodeURLError("enode URL has no TCP port")
    udp = tcp
    query = parse_qs(parts.query, keep_blank_values=True)
    if "discport" in query:
        text = query["discport"][0]
        # int() would also take "+5", " 5" and non-ASCII digits
        if not (text.isascii() and text.isdigit()):
            raise EnodeURLError(f"discport {text!r} is not a number")
        udp = _check_port(int(text), "discport")
    return Node(pubkey, _resolve(host), udp, tcp)
