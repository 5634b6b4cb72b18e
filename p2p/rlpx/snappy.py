"""Snappy block compression for devp2p v5 message payloads, with a size check first.

A snappy block starts with its decompressed length as a varint. That length is checked
against the caller's limit before anything is decompressed, so a small frame that
declares gigabytes (a "snappy bomb") costs nothing.
"""

from __future__ import annotations

import cramjam

from p2p.rlpx.errors import MessageTooLarge, SnappyError

MAX_VARINT_BYTES = 5  # a 32-bit length in base-128 varint; snappy lengths are 32-bit

_compress = cramjam.snappy.compress_raw
_decompress = cramjam.snappy.decompress_raw


def declared_length(data: bytes) -> int:
    """The decompressed length a snappy block announces in its varint preamble."""
    if len(data) >= 2:  # lengths below 16 KiB, the common case, take one or two bytes
        first = data[0]
        if first < 0x80:
            return first
        if data[1] < 0x80:
            return (first & 0x7F) | (data[1] << 7)
    value = 0
    for i in range(min(len(data), MAX_VARINT_BYTES)):
        byte = data[i]
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            return value
    raise SnappyError("snappy block has no valid length preamble")


def compress(data: bytes) -> bytes:
    return bytes(_compress(data))


def decompress(data: bytes, max_size: int) -> bytes:
    """Decompress a block whose declared length is at most ``max_size``.

    Raises :class:`MessageTooLarge` (declared length beyond the limit, checked first) or
    :class:`SnappyError` (corrupt block).
    """
    size = declared_length(data)
    if size > max_size:
        raise MessageTooLarge(size, max_size, "decompressed message")
    try:
        out = bytes(_decompress(data))
    except cramjam.DecompressionError as exc:
        raise SnappyError(f"corrupt snappy block: {exc}") from exc
    if len(out) != size:
        raise SnappyError(f"snappy block declared {size} bytes but held {len(out)}")
    return out


def max_compressed_length(size: int) -> int:
    """The largest block snappy makes from ``size`` bytes (snappy's MaxCompressedLength)."""
    return 32 + size + size // 6


__all__ = ["compress", "decompress", "declared_length", "max_compressed_length"]
