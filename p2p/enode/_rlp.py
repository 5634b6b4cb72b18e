"""The two RLP encoders that records are written with by hand (node records, stored nodes):
faster than a general encoder for these fixed shapes, and byte-for-byte the canonical form."""

from __future__ import annotations

SHORT_LIMIT = 56  # payloads shorter than this carry their length in the first byte


def encode_string(data: bytes) -> bytes:
    """RLP of a byte string: a single byte below 0x80 stands for itself."""
    n = len(data)
    if n == 1 and data[0] < 0x80:
        return data
    if n < SHORT_LIMIT:
        return bytes((0x80 + n,)) + data
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0xB7 + len(size),)) + size + data


def list_header(n: int) -> bytes:
    """The prefix of an RLP list whose encoded items take ``n`` bytes."""
    if n < SHORT_LIMIT:
        return bytes((0xC0 + n,))
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0xF7 + len(size),)) + size
