"""The RLPx handshake (auth / ack, EIP-8) as a sans-IO state machine.

No sockets and no trio here: bytes go in with :meth:`Handshake.receive_data`, events come out
of :meth:`Handshake.next_event`, and bytes to send are returned by :meth:`Handshake.initiate`
or carried by the :class:`Completed` event (the recipient's ack).

Wire formats (rlpx.md, EIP-8)::

    auth (EIP-8)   = size(2) || ecies(rlp([sig, initiator-pubk, initiator-nonce, 4, ...]) || padding)
    ack (EIP-8)    = size(2) || ecies(rlp([recipient-ephemeral-pubk, recipient-nonce, 4, ...]) || padding)
    auth (legacy)  = ecies(sig(65) || keccak(ephemeral-pubk)(32) || pubk(64) || nonce(32) || 0x00)
    ack (legacy)   = ecies(ephemeral-pubk(64) || nonce(32) || 0x00)

where ``sig`` is signed by the initiator's ephemeral key over ``ecdh(static keys) XOR nonce``,
and the 2-byte size prefix is the ECIES shared MAC data.
"""

from __future__ import annotations

import random
import secrets as _secrets
from dataclasses import dataclass

import rlp

from p2p.crypto import ecies
from p2p.crypto.errors import CryptoError, ECIESError, InvalidKey
from p2p.crypto.keccak import KeccakHash, keccak256, new_keccak256
from p2p.crypto.keys import PrivateKey, PublicKey, recover
from p2p.rlpx.errors import HandshakeError

AUTH_LEGACY_SIZE = 307  # ECIES overhead 113 + plaintext 194 (rlpx.md, pre-EIP-8 auth)
ACK_LEGACY_SIZE = 210  # ECIES overhead 113 + plaintext 97 (pre-EIP-8 ack)
MAX_HANDSHAKE_SIZE = 2048  # bigger auth/ack messages are refused (go-ethereum's limit too)
PADDING_MIN, PADDING_MAX = 100, 199  # EIP-8 random padding, so sizes do not identify the client
MIN_EIP8_SIZE = AUTH_LEGACY_SIZE  # @ethereumjs/devp2p reads 307 bytes before it parses an auth
HANDSHAKE_VERSION = 4  # the auth-vsn / ack-vsn we send; higher remote versions are accepted
NONCE_SIZE = 32
SIGNATURE_SIZE = 65
SIZE_PREFIX = 2  # EIP-8 big-endian length of what follows


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


@dataclass(frozen=True, slots=True)
class Secrets:
    """What a completed handshake gives the frame codec. The two MAC states keep running."""

    remote_pubkey: PublicKey
    aes_secret: bytes
    mac_secret: bytes
    egress_mac: KeccakHash
    ingress_mac: KeccakHash


@dataclass(frozen=True, slots=True)
class AuthMessage:
    """A decrypted auth: the initiator's static key, nonce, and the ephemeral key it signed with."""

    remote_pubkey: PublicKey
    remote_ephemeral: PublicKey
    nonce: bytes
    version: int
    eip8: bool


@dataclass(frozen=True, slots=True)
class AckMessage:
    """A decrypted ack: the recipient's ephemeral key and nonce."""

    remote_ephemeral: PublicKey
    nonce: bytes
    version: int
    eip8: bool


@dataclass(frozen=True, slots=True)
class NeedData:
    """More bytes are needed before the next event."""


@dataclass(frozen=True, slots=True)
class Completed:
    """The handshake is done. ``reply`` (the recipient's ack) must be sent before any frame;
    ``trailing`` holds bytes that arrived after the handshake message: the first frames."""

    secrets: Secrets
    remote_pubkey: PublicKey
    reply: bytes
    trailing: bytes
    remote_version: int
    eip8: bool


Event = Completed | NeedData
NEED_DATA = NeedData()


def derive_secrets(
    *,
    initiator: bool,
    ephemeral_key: PrivateKey,
    remote_ephemeral: PublicKey,
    initiator_nonce: bytes,
    recipient_nonce: bytes,
    auth: bytes,
    ack: bytes,
    remote_pubkey: PublicKey,
) -> Secrets:
    """The session secrets of rlpx.md; ``auth`` and ``ack`` are the exact wire bytes."""
    ephemeral_shared = ephemeral_key.ecdh(remote_ephemeral)
    shared = keccak256(ephemeral_shared + keccak256(recipient_nonce + initiator_nonce))
    aes_secret = keccak256(ephemeral_shared + shared)
    mac_secret = keccak256(ephemeral_shared + aes_secret)
    # Each side's egress MAC starts from the other side's nonce and its own message.
    mac_for_auth = new_keccak256(_xor(mac_secret, recipient_nonce) + auth)
    mac_for_ack = new_keccak256(_xor(mac_secret, initiator_nonce) + ack)
    if initiator:
        egress, ingress = mac_for_auth, mac_for_ack
    else:
        egress, ingress = mac_for_ack, mac_for_auth
    return Secrets(remote_pubkey, aes_secret, mac_secret, egress, ingress)


def _decode_rlp_list(plaintext: bytes, what: str) -> list[object]:
    try:
        # strict=False: EIP-8 padding follows the list and must be ignored.
        items = rlp.decode(plaintext, strict=False)
    except rlp.exceptions.DecodingError as exc:
        raise HandshakeError(f"{what} is not RLP: {exc}") from exc
    if not isinstance(items, list):
        raise HandshakeError(f"{what} is not an RLP list")
    return items


def _as_bytes(item: object, size: int | None, what: str) -> bytes:
    if not isinstance(item, bytes) or (size is not None and len(item) != size):
        raise HandshakeError(f"{what} is malformed")
    return item


def _version(item: object) -> int:
    raw = _as_bytes(item, None, "handshake version")
    if len(raw) > 8:
        raise HandshakeError("handshake version is out of range")
    return int.from_bytes(raw, "big")


def decode_auth(key: PrivateKey, packet: bytes) -> AuthMessage:
    """Decrypt and check an auth (legacy when it is exactly 307 bytes and decrypts so)."""
    try:
        if len(packet) == AUTH_LEGACY_SIZE and packet[0] == 0x04:
            try:
                return _decode_auth_legacy(key, ecies.decrypt(key, packet))
            except ECIESError:
                pass  # may still be an EIP-8 message whose size prefix starts with 0x04
        plain = ecies.decrypt(key, packet[SIZE_PREFIX:], packet[:SIZE_PREFIX])
        items = _decode_rlp_list(plain, "auth")
        if len(items) < 4:
            raise HandshakeError(f"auth has {len(items)} elements, at least 4 expected")
        sig = _as_bytes(items[0], SIGNATURE_SIZE, "auth signature")
        pub = PublicKey(_as_bytes(items[1], 64, "auth public key"))
        nonce = _as_bytes(items[2], NONCE_SIZE, "auth nonce")
        version = _version(items[3])
        ephemeral = recover(_xor(key.ecdh(pub), nonce), sig)
        return AuthMessage(pub, ephemeral, nonce, version, True)
    except CryptoError as exc:
        raise HandshakeError(f"bad auth: {exc}") from exc


def _decode_auth_legacy(key: PrivateKey, plain: bytes) -> AuthMessage:
    if len(plain) != 194:
        raise HandshakeError(f"legacy auth plaintext of {len(plain)} bytes, 194 expected")
    sig, ephemeral_hash, raw_pub, nonce = plain[:65], plain[65:97], plain[97:161], plain[161:193]
    pub = PublicKey(raw_pub)
    ephemeral = recover(_xor(key.ecdh(pub), nonce), sig)
    if ephemeral.keccak() != ephemeral_hash:
        raise HandshakeError("legacy auth: the ephemeral key hash does not match the signature")
    return AuthMessage(pub, ephemeral, nonce, HANDSHAKE_VERSION, False)


def decode_ack(key: PrivateKey, packet: bytes) -> AckMessage:
    """Decrypt an ack (legacy when it is exactly 210 bytes and decrypts so)."""
    try:
        if len(packet) == ACK_LEGACY_SIZE and packet[0] == 0x04:
            try:
                plain = ecies.decrypt(key, packet)
            except ECIESError:
                pass
            else:
                if len(plain) != 97:
                    raise HandshakeError(f"legacy ack plaintext of {len(plain)} bytes, 97 expected")
                return AckMessage(PublicKey(plain[:64]), plain[64:96], HANDSHAKE_VERSION, False)
        plain = ecies.decrypt(key, packet[SIZE_PREFIX:], packet[:SIZE_PREFIX])
        items = _decode_rlp_list(plain, "ack")
        if len(items) < 3:
            raise HandshakeError(f"ack has {len(items)} elements, at least 3 expected")
        ephemeral = PublicKey(_as_bytes(items[0], 64, "ack ephemeral key"))
        nonce = _as_bytes(items[1], NONCE_SIZE, "ack nonce")
        return AckMessage(ephemeral, nonce, _version(items[2]), True)
    except CryptoError as exc:
        raise HandshakeError(f"bad ack: {exc}") from exc


def _eip8_envelope(remote: PublicKey, body: bytes, rng: random.Random | None) -> bytes:
    pad_len = rng.randint(PADDING_MIN, PADDING_MAX) if rng is not None else PADDING_MIN + _secrets.randbelow(
        PADDING_MAX - PADDING_MIN + 1
    )
    # Never shorter than a legacy auth: some peers read 307 bytes before they look at it.
    pad_len = max(pad_len, MIN_EIP8_SIZE - SIZE_PREFIX - ecies.OVERHEAD - len(body))
    padding = rng.randbytes(pad_len) if rng is not None else _secrets.token_bytes(pad_len)
    size = (len(body) + pad_len + ecies.OVERHEAD).to_bytes(SIZE_PREFIX, "big")
    return size + ecies.encrypt(remote, body + padding, size, rng=rng)


class Handshake:
    """One side of the RLPx handshake.

    The initiator knows the remote static key (``remote``), calls :meth:`initiate` and sends
    the result, then feeds the ack. The recipient (``remote=None``) feeds the auth and sends
    ``Completed.reply``. ``rng``, ``ephemeral_key`` and ``nonce`` are for reproducible tests.
    """

    def __init__(
        self,
        key: PrivateKey,
        remote: PublicKey | None = None,
        *,
        rng: random.Random | None = None,
        ephemeral_key: PrivateKey | None = None,
        nonce: bytes | None = None,
        eip8: bool = True,
    ) -> None:
        self.key = key
        self.remote = remote
        self.initiator = remote is not None
        self._rng = rng
        self.ephemeral_key = ephemeral_key if ephemeral_key is not None else PrivateKey.generate(rng)
        if nonce is None:
            nonce = rng.randbytes(NONCE_SIZE) if rng is not None else _secrets.token_bytes(NONCE_SIZE)
        if len(nonce) != NONCE_SIZE:
            raise ValueError("nonce must be 32 bytes")
        self.nonce = nonce
        self._eip8 = eip8
        self._buf = bytearray()
        self._auth: bytes | None = None
        self._done = False
        self._failed: HandshakeError | None = None

    # -- initiator -------------------------------------------------------------------------

    def initiate(self) -> bytes:
        """The auth message to send (initiator only, once)."""
        if self.remote is None:
            raise HandshakeError("only the initiator sends auth")
        if self._auth is not None:
            raise HandshakeError("auth was already sent")
        remote = self.remote
        sig = self.ephemeral_key.sign(_xor(self.key.ecdh(remote), self.nonce))
        pub = self.key.public_key.to_bytes()
        if self._eip8:
            body = rlp.encode([sig, pub, self.nonce, HANDSHAKE_VERSION])
            self._auth = _eip8_envelope(remote, body, self._rng)
        else:
            plain = sig + self.ephemeral_key.public_key.keccak() + pub + self.nonce + b"\x00"
            self._auth = ecies.encrypt(remote, plain, rng=self._rng)
        return self._auth

    # -- both ------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray) -> None:
        if self._done:
            raise HandshakeError("handshake is already complete")
        self._buf += data

    def next_event(self) -> Event:
        """:data:`NEED_DATA` until a whole auth/ack is buffered; then :class:`Completed`.

        Raises :class:`HandshakeError` for anything that is not a valid message for us; once
        raised, the same error is raised again (the connection must be dropped).
        """
        if self._failed is not None:
            raise self._failed
        if self._done:
            raise HandshakeError("handshake is already complete")
        try:
            if self.initiator:
                if self._auth is None:
                    raise HandshakeError("initiate() must be called before data is received")
                return self._next_ack()
            return self._next_auth()
        except HandshakeError as exc:
            self._failed = exc
            raise

    def _split(self, legacy_size: int, decode_legacy: bool) -> tuple[bytes, bool] | None:
        """The next whole message and whether it is legacy, or None if more bytes are needed."""
        buf = self._buf
        if len(buf) < SIZE_PREFIX:
            return None
        if buf[0] == 0x04 and decode_legacy:
            # A legacy message starts with the 0x04 of the ECIES ephemeral key; an EIP-8 one
            # whose prefix starts with 0x04 is at least 1026 bytes, longer than any legacy one.
            if len(buf) < legacy_size:
                return None
            candidate = bytes(buf[:legacy_size])
            try:
                ecies.decrypt(self.key, candidate)
            except ECIESError:
                pass
            else:
                return candidate, True
        size = int.from_bytes(buf[:SIZE_PREFIX], "big") + SIZE_PREFIX
        if size > MAX_HANDSHAKE_SIZE:
            raise HandshakeError(f"handshake message of {size} bytes exceeds {MAX_HANDSHAKE_SIZE}")
        if size < SIZE_PREFIX + ecies.OVERHEAD:
            raise HandshakeError(f"handshake message of {size} bytes is shorter than its encryption")
        if len(buf) < size:
            return None
        return bytes(buf[:size]), False

    def _next_auth(self) -> Event:
        split = self._split(AUTH_LEGACY_SIZE, True)
        if split is None:
            return NEED_DATA
        packet, legacy = split
        auth = decode_auth(self.key, packet)
        if legacy and auth.eip8:
            raise HandshakeError("auth decrypted as legacy but parsed as EIP-8")
        trailing = bytes(self._buf[len(packet) :])
        self._buf.clear()
        if auth.eip8:
            body = rlp.encode([self.ephemeral_key.public_key.to_bytes(), self.nonce, HANDSHAKE_VERSION])
            ack = _eip8_envelope(auth.remote_pubkey, body, self._rng)
        else:
            plain = self.ephemeral_key.public_key.to_bytes() + self.nonce + b"\x00"
            ack = ecies.encrypt(auth.remote_pubkey, plain, rng=self._rng)
        try:
            secrets = derive_secrets(
                initiator=False,
                ephemeral_key=self.ephemeral_key,
                remote_ephemeral=auth.remote_ephemeral,
                initiator_nonce=auth.nonce,
                recipient_nonce=self.nonce,
                auth=packet,
                ack=ack,
                remote_pubkey=auth.remote_pubkey,
            )
        except (CryptoError, InvalidKey) as exc:
            raise HandshakeError(f"cannot derive secrets: {exc}") from exc
        self._done = True
        return Completed(secrets, auth.remote_pubkey, ack, trailing, auth.version, auth.eip8)

    def _next_ack(self) -> Event:
        split = self._split(ACK_LEGACY_SIZE, True)
        if split is None:
            return NEED_DATA
        packet, _legacy = split
        ack = decode_ack(self.key, packet)
        trailing = bytes(self._buf[len(packet) :])
        self._buf.clear()
        assert self.remote is not None and self._auth is not None
        try:
            secrets = derive_secrets(
                initiator=True,
                ephemeral_key=self.ephemeral_key,
                remote_ephemeral=ack.remote_ephemeral,
                initiator_nonce=self.nonce,
                recipient_nonce=ack.nonce,
                auth=self._auth,
                ack=packet,
                remote_pubkey=self.remote,
            )
        except (CryptoError, InvalidKey) as exc:
            raise HandshakeError(f"cannot derive secrets: {exc}") from exc
        self._done = True
        return Completed(secrets, self.remote, b"", trailing, ack.version, ack.eip8)


__all__ = [
    "Handshake",
    "Secrets",
    "AuthMessage",
    "AckMessage",
    "NeedData",
    "NEED_DATA",
    "Completed",
    "Event",
    "derive_secrets",
    "decode_auth",
    "decode_ack",
]
