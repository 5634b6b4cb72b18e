"""Discovery v5 packet framing (discv5-wire.md, "Packet Encoding"): the masked header and
the three authdata layouts. Pure functions: no keys, no sessions, no randomness.

    packet        = masking-iv || masked-header || message
    masked-header = aesctr(key = dest-id[:16], iv = masking-iv, static-header || authdata)
    static-header = "discv5" || version(2) || flag(1) || nonce(12) || authdata-size(2)

The unmasked ``masking-iv || static-header || authdata`` is the messages' GCM associated
data, and for WHOAREYOU the ``challenge-data`` that the handshake signs and salts its keys
with, so decoding returns it alongside the parsed fields.

Checks run cheapest first (size, protocol ID, version, flag, authdata size) so that noise
or a packet masked for another node costs one AES block and no more.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from typing import Final

from p2p.crypto.aes import BlockCipher, aes_ecb
from p2p.discover.v5wire.crypto import GCM_TAG_SIZE
from p2p.discover.v5wire.errors import (
    BadAuthData,
    BadFlag,
    BadProtocolID,
    BadVersion,
    PacketTooBig,
    PacketTooShort,
)
from p2p.enode.node import NODE_ID_SIZE, NodeID

PROTOCOL_ID: Final = b"discv5"
VERSION: Final = 1  # discv5.1
MIN_VERSION: Final = 1  # as go-ethereum: a higher (later minor) version is still read
MASKING_IV_SIZE: Final = 16  # one AES block: the CTR IV, random per packet
MASKING_KEY_SIZE: Final = 16  # AES-128 keyed with the destination ID's first 16 bytes
NONCE_SIZE: Final = 12  # uint96 message nonce, also the GCM nonce
STATIC_HEADER_SIZE: Final = len(PROTOCOL_ID) + 2 + 1 + NONCE_SIZE + 2  # 23 bytes
STATIC_PACKET_SIZE: Final = MASKING_IV_SIZE + STATIC_HEADER_SIZE
MESSAGE_AUTHDATA_SIZE: Final = NODE_ID_SIZE  # src-id
WHOAREYOU_AUTHDATA_SIZE: Final = 16 + 8  # id-nonce || enr-seq
HANDSHAKE_AUTHDATA_HEAD_SIZE: Final = NODE_ID_SIZE + 1 + 1  # src-id || sig-size || eph-key-size
ID_NONCE_SIZE: Final = 16
MIN_PACKET_SIZE: Final = STATIC_PACKET_SIZE + WHOAREYOU_AUTHDATA_SIZE  # 63, discv5-wire.md
MAX_PACKET_SIZE: Final = 1280  # discv5-wire.md: never generate nor process larger packets
# Masking keys whose AES key schedule is kept: ours (every packet we receive) and those of
# the nodes we send to most. Setting up AES-CTR per packet cost more than the masking itself.
MASKING_CIPHERS: Final = 256
_BLOCK: Final = 16
_COUNTER_MOD: Final = 1 << 128
_LOW_MAX: Final = (1 << 64) - 1


@functools.lru_cache(maxsize=MASKING_CIPHERS)
def _masking_cipher(key: bytes) -> BlockCipher:
    return aes_ecb(key)


def _keystream(key: bytes, iv: bytes, size: int) -> bytes:
    """The first ``size`` bytes of the AES-CTR keystream of ``key`` and ``iv`` (a 128-bit
    big-endian counter starting at ``iv``), from a cached ECB cipher."""
    n = -(-size // _BLOCK)
    low = int.from_bytes(iv[8:], "big")
    if low + n <= _LOW_MAX:  # the low half does not wrap (all but ~4 in 2**64 random IVs)
        high = iv[:8]
        blocks = b"".join([high + (low + i).to_bytes(8, "big") for i in range(n)])
    else:
        counter = int.from_bytes(iv, "big")
        blocks = b"".join([((counter + i) % _COUNTER_MOD).to_bytes(_BLOCK, "big") for i in range(n)])
    return _masking_cipher(bytes(key)).encrypt_block(blocks)[:size]


def _xor(data: bytes, stream: bytes) -> bytes:
    n = len(data)
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream[:n], "big")).to_bytes(n, "big")


class Flag(enum.IntEnum):
    MESSAGE = 0
    WHOAREYOU = 1
    HANDSHAKE = 2


_FLAGS: Final[dict[int, Flag]] = {f.value: f for f in Flag}


@dataclass(frozen=True, slots=True)
class Header:
    """The unmasked header fields; ``authdata`` is still raw (see the ``*_authdata`` helpers)."""

    flag: Flag
    nonce: bytes
    authdata: bytes
    version: int = VERSION

    def static_header(self) -> bytes:
        return (
            PROTOCOL_ID
            + self.version.to_bytes(2, "big")
            + bytes((self.flag,))
            + self.nonce
            + len(self.authdata).to_bytes(2, "big")
        )


@dataclass(frozen=True, slots=True)
class RawPacket:
    """A packet with its header unmasked and its message still encrypted."""

    header: Header
    header_data: bytes  # masking-iv || static-header || authdata, unmasked: the GCM AD
    message: bytes  # ciphertext with tag; empty for WHOAREYOU

    @property
    def masking_iv(self) -> bytes:
        return self.header_data[:MASKING_IV_SIZE]


@dataclass(frozen=True, slots=True)
class WhoareyouAuth:
    id_nonce: bytes
    enr_seq: int  # the highest seq of the requester's record that the challenger knows


@dataclass(frozen=True, slots=True)
class HandshakeAuth:
    src_id: NodeID
    id_signature: bytes
    ephemeral_pubkey: bytes
    record: bytes  # the sender's ENR as RLP, or empty when the challenger's copy is current


def header_data(masking_iv: bytes, header: Header) -> bytes:
    """``masking-iv || static-header || authdata``: the unmasked start of the packet."""
    if len(masking_iv) != MASKING_IV_SIZE:
        raise ValueError(f"masking IV must be {MASKING_IV_SIZE} bytes")
    if len(header.nonce) != NONCE_SIZE:
        raise ValueError(f"nonce must be {NONCE_SIZE} bytes")
    return masking_iv + header.static_header() + header.authdata


def encode_packet(dest_id: bytes, head_data: bytes, message: bytes) -> bytes:
    """Mask ``head_data`` (from :func:`header_data`) for ``dest_id`` and append ``message``."""
    iv = head_data[:MASKING_IV_SIZE]
    header = head_data[MASKING_IV_SIZE:]
    masked = _xor(header, _keystream(dest_id[:MASKING_KEY_SIZE], iv, len(header)))
    packet = iv + masked + message
    if len(packet) > MAX_PACKET_SIZE:
        raise ValueError(f"packet of {len(packet)} bytes is over the {MAX_PACKET_SIZE}-byte limit")
    return packet


def decode_packet(data: bytes, local_id: bytes) -> RawPacket:
    """Unmask and check the header of a packet sent to ``local_id``. Raises the typed
    errors of the header checks; the message is left for the session layer."""
    if len(data) < MIN_PACKET_SIZE:
        raise PacketTooShort(f"{len(data)} bytes, the minimum is {MIN_PACKET_SIZE}")
    if len(data) > MAX_PACKET_SIZE:
        raise PacketTooBig(f"{len(data)} bytes, the maximum is {MAX_PACKET_SIZE}")
    data = bytes(data)
    iv = data[:MASKING_IV_SIZE]
    key = local_id[:MASKING_KEY_SIZE]
    # one keystream for the static header and the authdata of a message or WHOAREYOU packet
    stream = _keystream(key, iv, min(len(data) - MASKING_IV_SIZE, STATIC_HEADER_SIZE + MESSAGE_AUTHDATA_SIZE))
    static = _xor(data[MASKING_IV_SIZE:STATIC_PACKET_SIZE], stream)
    if static[: len(PROTOCOL_ID)] != PROTOCOL_ID:
        raise BadProtocolID("unmasked header does not start with 'discv5'")
    pos = len(PROTOCOL_ID)
    version = int.from_bytes(static[pos : pos + 2], "big")
    if version < MIN_VERSION:
        raise BadVersion(f"header version {version}, the minimum is {MIN_VERSION}")
    flag_value = static[pos + 2]
    flag = _FLAGS.get(flag_value)
    if flag is None:
        raise BadFlag(f"flag {flag_value}")
    nonce = static[pos + 3 : pos + 3 + NONCE_SIZE]
    auth_size = int.from_bytes(static[-2:], "big")
    auth_end = STATIC_PACKET_SIZE + auth_size
    if auth_end > len(data):
        raise BadAuthData(f"authdata-size {auth_size} runs past the {len(data)}-byte packet")
    if auth_end - MASKING_IV_SIZE > len(stream):
        stream = _keystream(key, iv, auth_end - MASKING_IV_SIZE)
    authdata = _xor(data[STATIC_PACKET_SIZE:auth_end], stream[STATIC_HEADER_SIZE:])
    message = data[auth_end:]
    if flag is Flag.MESSAGE:
        if auth_size != MESSAGE_AUTHDATA_SIZE:
            raise BadAuthData(f"message packet authdata is {auth_size} bytes, want {MESSAGE_AUTHDATA_SIZE}")
    elif flag is Flag.WHOAREYOU:
        if auth_size != WHOAREYOU_AUTHDATA_SIZE:
            raise BadAuthData(f"WHOAREYOU authdata is {auth_size} bytes, want {WHOAREYOU_AUTHDATA_SIZE}")
        if message:
            raise BadAuthData(f"WHOAREYOU carries {len(message)} bytes of message, want none")
    elif auth_size < HANDSHAKE_AUTHDATA_HEAD_SIZE:
        raise BadAuthData(f"handshake authdata is {auth_size} bytes, below its {HANDSHAKE_AUTHDATA_HEAD_SIZE}-byte head")
    if flag is not Flag.WHOAREYOU and len(message) < GCM_TAG_SIZE:
        raise PacketTooShort(f"message of {len(message)} bytes is shorter than its GCM tag")
    header = Header(flag, nonce, authdata, version)
    return RawPacket(header, iv + static + authdata, message)


# ---------------------------------------------------------------------------------------
# authdata layouts


def message_authdata(src_id: bytes) -> bytes:
    return bytes(src_id)


def decode_message_authdata(authdata: bytes) -> NodeID:
    return NodeID(authdata)


def whoareyou_authdata(id_nonce: bytes, enr_seq: int) -> bytes:
    if len(id_nonce) != ID_NONCE_SIZE:
        raise ValueError(f"id-nonce must be {ID_NONCE_SIZE} bytes")
    return id_nonce + enr_seq.to_bytes(8, "big")


def decode_whoareyou_authdata(authdata: bytes) -> WhoareyouAuth:
    return WhoareyouAuth(authdata[:ID_NONCE_SIZE], int.from_bytes(authdata[ID_NONCE_SIZE:], "big"))


def handshake_authdata(auth: HandshakeAuth) -> bytes:
    return (
        auth.src_id
        + bytes((len(auth.id_signature), len(auth.ephemeral_pubkey)))
        + auth.id_signature
        + auth.ephemeral_pubkey
        + auth.record
    )


def decode_handshake_authdata(authdata: bytes) -> HandshakeAuth:
    """Split a handshake's authdata; the sizes it declares must fit inside it."""
    src_id = NodeID(authdata[:NODE_ID_SIZE])
    sig_size, key_size = authdata[NODE_ID_SIZE], authdata[NODE_ID_SIZE + 1]
    sig_end = HANDSHAKE_AUTHDATA_HEAD_SIZE + sig_size
    key_end = sig_end + key_size
    if key_end > len(authdata):
        raise BadAuthData(f"sig-size {sig_size} and eph-key-size {key_size} run past the authdata")
    return HandshakeAuth(
        src_id,
        authdata[HANDSHAKE_AUTHDATA_HEAD_SIZE:sig_end],
        authdata[sig_end:key_end],
        authdata[key_end:],
    )


__all__ = [
    "Flag",
    "HandshakeAuth",
    "Header",
    "MAX_PACKET_SIZE",
    "MIN_PACKET_SIZE",
    "NONCE_SIZE",
    "PROTOCOL_ID",
    "RawPacket",
    "VERSION",
    "WhoareyouAuth",
    "decode_handshake_authdata",
    "decode_message_authdata",
    "decode_packet",
    "decode_whoareyou_authdata",
    "encode_packet",
    "handshake_authdata",
    "header_data",
    "message_authdata",
    "whoareyou_authdata",
]
