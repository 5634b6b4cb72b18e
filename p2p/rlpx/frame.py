"""The RLPx frame codec (sans-IO): messages in, authenticated ciphertext out, and back.

A frame on the wire (rlpx.md)::

    header-ciphertext(16) || header-mac(16) || frame-ciphertext(16*k) || frame-mac(16)
    header     = frame-size(3, big-endian) || header-data (rlp [0, 0]) || zero padding to 16
    frame-data = rlp(msg-code) || msg-data, zero padded to a multiple of 16

Both directions use AES-256-CTR with the aes-secret and a zero IV (one keystream each way,
running across frames). The MACs are running keccak256 states updated with a seed::

    header: mac.update(aes_ecb(mac-secret)(mac.digest()[:16]) XOR header-ciphertext)
    frame:  mac.update(frame-ciphertext); d = mac.digest()[:16]; mac.update(aes_ecb(d) XOR d)

after which ``mac.digest()[:16]`` is the MAC. Snappy is not applied here: whether a payload
is compressed is the connection's business (it changes after Hello).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from p2p.crypto.aes import aes_ctr, aes_ecb
from p2p.rlpx.errors import FrameError, MessageTooLarge
from p2p.rlpx.handshake import Secrets

MAX_FRAME_SIZE = 2**24 - 1  # the header's 3-byte size field
HEADER_SIZE = 16
MAC_SIZE = 16
HEADER_DATA = b"\xc2\x80\x80" + bytes(10)  # rlp([0, 0]) as go-ethereum sends it, padded to 13
ZERO_IV = bytes(16)
_ZEROS = bytes(16)
# rlp(code) for the codes that fit one byte: 0 is the empty string 0x80, 1..127 are themselves.
_CODE_RLP = [b"\x80"] + [bytes([c]) for c in range(1, 128)]
_from_bytes = int.from_bytes
_compare = hmac.compare_digest


def encode_code(code: int) -> bytes:
    """rlp(code), the prefix of every frame's data."""
    if 0 <= code < 128:
        return _CODE_RLP[code]
    if code < 0:
        raise ValueError("message codes are non-negative")
    raw = code.to_bytes((code.bit_length() + 7) // 8, "big")
    if len(raw) > 8:
        raise ValueError("message code does not fit 64 bits")
    return bytes([0x80 + len(raw)]) + raw


def split_code(data: bytes | memoryview) -> tuple[int, int]:
    """(code, length of its RLP) from the start of frame data; canonical RLP integers only."""
    if not data:
        raise FrameError("empty frame: no message code")
    first = data[0]
    if first < 0x80:
        if first == 0:
            raise FrameError("non-canonical message code 0x00 (0 is 0x80)")
        return first, 1
    n = first - 0x80
    if n > 8:
        raise FrameError(f"message code prefix {first:#04x} is not a small integer")
    if len(data) < 1 + n:
        raise FrameError("frame ends inside its message code")
    raw = bytes(data[1 : 1 + n])
    if n and (raw[0] == 0 or (n == 1 and raw[0] < 0x80)):
        raise FrameError("non-canonical message code")
    return _from_bytes(raw, "big"), 1 + n


class FrameCodec:
    """Encrypts and authenticates outgoing frames; buffers, checks and decrypts incoming ones.

    One instance per connection, made from the handshake's :class:`Secrets`. The two
    directions are independent: :meth:`encode` may be called while frames are being decoded.
    ``max_frame_size`` bounds the frame-size an incoming header may announce.
    """

    def __init__(self, secrets: Secrets, *, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        if not 0 < max_frame_size <= MAX_FRAME_SIZE:
            raise ValueError(f"max_frame_size must be in 1..{MAX_FRAME_SIZE}")
        self.max_frame_size = max_frame_size
        self._enc = aes_ctr(secrets.aes_secret, ZERO_IV).update
        self._dec = aes_ctr(secrets.aes_secret, ZERO_IV).update
        self._ecb = aes_ecb(secrets.mac_secret).encrypt_block
        self._egress = secrets.egress_mac
        self._ingress = secrets.ingress_mac
        # digest()[:16] of each MAC state, kept between frames: it seeds the next header MAC.
        self._egress_last = self._egress.digest()[:16]
        self._ingress_last = self._ingress.digest()[:16]
        self._buf = bytearray()
        self._pos = 0
        self._body_size = -1  # frame-size of the header already checked, or -1
        self._error: FrameError | MessageTooLarge | None = None

    # -- egress ------------------------------------------------------------------------------

    def _encode_into(self, parts: list[bytes | memoryview], code: int, data: bytes) -> None:
        code_rlp = _CODE_RLP[code] if 0 <= code < 128 else encode_code(code)
        size = len(code_rlp) + len(data)
        if size > MAX_FRAME_SIZE:
            raise MessageTooLarge(size, MAX_FRAME_SIZE, "frame")
        # Header and body are contiguous in the keystream and both multiples of 16 bytes,
        # so one cipher call covers them.
        ct = self._enc(b"".join((size.to_bytes(3, "big"), HEADER_DATA, code_rlp, data, _ZEROS[: -size & 15])))
        view = memoryview(ct)
        header_ct = ct[:HEADER_SIZE]
        body_ct = view[HEADER_SIZE:]
        mac = self._egress
        ecb = self._ecb
        mac.update(
            (_from_bytes(ecb(self._egress_last), "big") ^ _from_bytes(header_ct, "big")).to_bytes(16, "big")
        )
        header_mac = mac.digest()[:16]
        mac.update(body_ct)  # type: ignore[arg-type]  # both backends take any buffer: no copy
        seed = mac.digest()[:16]
        mac.update((_from_bytes(ecb(seed), "big") ^ _from_bytes(seed, "big")).to_bytes(16, "big"))
        frame_mac = mac.digest()[:16]
        self._egress_last = frame_mac
        parts += (header_ct, header_mac, body_ct, frame_mac)

    def encode(self, code: int, data: bytes) -> bytes:
        """One frame carrying ``rlp(code) || data`` (``data`` already compressed if need be)."""
        parts: list[bytes | memoryview] = []
        self._encode_into(parts, code, data)
        return b"".join(parts)

    def encode_many(self, messages: Iterable[tuple[int, bytes]]) -> bytes:
        """Several frames back to back, for one write."""
        parts: list[bytes | memoryview] = []
        for code, data in messages:
            self._encode_into(parts, code, data)
        return b"".join(parts)

    # -- ingress -----------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    @property
    def announced_size(self) -> int | None:
        """The frame-size of a header already checked whose body is still awaited, or None."""
        return self._body_size if self._body_size >= 0 else None

    @property
    def mid_frame(self) -> bool:
        """Whether part of a frame has been received and not yet returned."""
        return self._body_size >= 0 or len(self._buf) > self._pos

    def next_frame(self) -> tuple[int, bytes] | None:
        """The next whole ``(code, data)`` or None when more bytes are needed.

        Raises :class:`FrameError` (bad MAC, malformed code) or :class:`MessageTooLarge`
        (frame size beyond ``max_frame_size``); after that the codec stays failed.
        """
        if self._error is not None:
            raise self._error
        try:
            return self._next_frame()
        except (FrameError, MessageTooLarge) as exc:
            self._error = exc
            raise

    def _next_frame(self) -> tuple[int, bytes] | None:
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if self._body_size < 0:
            if avail < HEADER_SIZE + MAC_SIZE:
                return None
            header_ct = bytes(buf[pos : pos + HEADER_SIZE])
            mac = self._ingress
            mac.update(
                (_from_bytes(self._ecb(self._ingress_last), "big") ^ _from_bytes(header_ct, "big")).to_bytes(
                    16, "big"
                )
            )
            expected = mac.digest()[:16]
            if not _compare(expected, bytes(buf[pos + HEADER_SIZE : pos + HEADER_SIZE + MAC_SIZE])):
                raise FrameError("bad header MAC")
            self._ingress_last = expected
            size = _from_bytes(self._dec(header_ct)[:3], "big")
            if size > self.max_frame_size:
                raise MessageTooLarge(size, self.max_frame_size, "frame")
            if size == 0:
                raise FrameError("empty frame: no message code")
            self._body_size = size
            pos += HEADER_SIZE + MAC_SIZE
            self._pos = pos
            avail -= HEADER_SIZE + MAC_SIZE
        size = self._body_size
        padded = size + (-size & 15)
        if avail < padded + MAC_SIZE:
            return None
        mac = self._ingress
        with memoryview(buf) as view:
            body_ct = view[pos : pos + padded]
            mac.update(body_ct)  # type: ignore[arg-type]  # both backends take any buffer: no copy
            seed = mac.digest()[:16]
            mac.update((_from_bytes(self._ecb(seed), "big") ^ _from_bytes(seed, "big")).to_bytes(16, "big"))
            expected = mac.digest()[:16]
            if not _compare(expected, view[pos + padded : pos + padded + MAC_SIZE]):
                raise FrameError("bad frame MAC")
            plain = self._dec(body_ct)  # type: ignore[arg-type]
            body_ct.release()
        self._ingress_last = expected
        self._pos = pos + padded + MAC_SIZE
        self._body_size = -1
        code, n = split_code(plain)
        return code, plain[n:size]


__all__ = ["FrameCodec", "MAX_FRAME_SIZE", "encode_code", "split_code"]
