"""The discovery v5 codec: one node's side of the wire, sans-IO (after go-ethereum's
``v5wire.Codec``). It turns messages into datagrams and datagrams into events, keeping
the session keys and handshake state that this needs; it never touches a socket or a
clock of its own (``clock`` and ``rng`` are injected).

The handshake (discv5-theory.md, "Handshake Steps") as seen through it, A to B:

1. A: ``encode(B, addr, msg)`` with no session gives a packet with random content.
2. B: ``decode`` gives :class:`Undecryptable`; B answers with ``encode_whoareyou``.
3. A: ``decode`` gives :class:`WhoareyouReceived` (matched by nonce to step 1's packet);
   A answers with ``encode_handshake``, which also stores A's new session.
4. B: ``decode`` checks the handshake and gives :class:`HandshakeCompleted`; B's session
   is stored, and from then on both sides' ``encode`` / ``decode`` use it.

A message packet that fails to authenticate is not an error but :class:`Undecryptable`:
the specification answers it with WHOAREYOU (the sender may have lost its session).
Everything else that is wrong raises one :class:`V5DecodeError` subclass.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Union

from p2p.crypto import InvalidKey, PrivateKey, PublicKey
from p2p.discover.v5wire.crypto import (
    EPHEMERAL_KEY_SIZE,
    ID_SIGNATURE_SIZE,
    decode_ephemeral_key,
    decrypt_gcm,
    derive_keys,
    encrypt_gcm,
    make_id_signature,
    open_gcm,
    verify_id_signature,
)
from p2p.discover.v5wire.errors import (
    BadEphemeralKey,
    BadHandshakeRecord,
    BadIDSignature,
    DecryptionFailed,
    ReplayedHandshake,
    UnexpectedHandshake,
    UnsolicitedWhoareyou,
)
from p2p.discover.v5wire.messages import Message, decode_message, encode_message
from p2p.discover.v5wire.packet import (
    ID_NONCE_SIZE,
    MASKING_IV_SIZE,
    NONCE_SIZE,
    Flag,
    HandshakeAuth,
    Header,
    RawPacket,
    decode_handshake_authdata,
    decode_message_authdata,
    decode_packet,
    decode_whoareyou_authdata,
    encode_packet,
    handshake_authdata,
    header_data,
    message_authdata,
    whoareyou_authdata,
)
from p2p.discover.v5wire.session import BoundedCache, Session, Whoareyou
from p2p.enode import ENR, ENRError, NodeID
from p2p.enode.identity import V4_IDENTITY, IdentityScheme

Address = tuple[str, int]

SESSION_CACHE_SIZE: Final = 1024  # sessions kept (LRU), as go-ethereum's v5wire codec
MAX_CHALLENGES: Final = 1024  # WHOAREYOUs awaiting a handshake: one per spoofable (id, addr)
HANDSHAKE_TIMEOUT: Final = 1.0  # seconds a sent WHOAREYOU stays answerable; discv5-wire.md: 1 s
MAX_SENT_NONCES: Final = 1024  # sent message packets a WHOAREYOU may still answer
WHOAREYOU_TIMEOUT: Final = 1.0  # seconds after sending a packet that its WHOAREYOU may come
RANDOM_MESSAGE_SIZE: Final = 20  # content of the pre-handshake packet, as go-ethereum


@dataclass(frozen=True, slots=True)
class Encoded:
    """A datagram to send, with the nonce it carries (a WHOAREYOU carries the one it answers)."""

    data: bytes
    nonce: bytes


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """An authenticated message within an established session."""

    node_id: NodeID
    addr: Address
    message: Message
    nonce: bytes


@dataclass(frozen=True, slots=True)
class HandshakeCompleted:
    """A valid handshake: the session with ``node_id`` at ``addr`` is now established, and
    ``record`` is its verified node record (from the packet, or the one we knew)."""

    node_id: NodeID
    addr: Address
    record: ENR
    message: Message
    nonce: bytes


@dataclass(frozen=True, slots=True)
class Undecryptable:
    """A message packet that no session key opens: answer ``encode_whoareyou(node_id, addr,
    nonce, known_record)``. ``node_id`` is what the packet claims, not yet proven."""

    node_id: NodeID
    addr: Address
    nonce: bytes


@dataclass(frozen=True, slots=True)
class WhoareyouReceived:
    """A challenge to the message packet we sent with ``challenge.nonce``: re-send
    ``message`` with ``encode_handshake``."""

    node_id: NodeID
    addr: Address
    challenge: Whoareyou
    message: Message


Event = Union[MessageReceived, HandshakeCompleted, Undecryptable, WhoareyouReceived]


@dataclass(frozen=True, slots=True)
class _SentChallenge:
    whoareyou: Whoareyou
    known_record: ENR | None


@dataclass(frozen=True, slots=True)
class _SentPacket:
    node_id: NodeID
    addr: Address
    message: Message


@dataclass(frozen=True, slots=True)
class CodecStats:
    """How often a bound acted: the numbers a service exports as counters."""

    sessions_evicted: int
    challenges_evicted: int
    challenges_expired: int
    sent_nonces_evicted: int
    sent_nonces_expired: int


class Codec:
    """Encodes and decodes discv5 packets for the node that owns ``key``.

    Not thread-safe; one per node. Sessions and handshake state are keyed by (node ID,
    address) as the specification requires: the same node at another address must
    handshake again.
    """

    def __init__(
        self,
        key: PrivateKey,
        record: ENR,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        session_cache_size: int = SESSION_CACHE_SIZE,
        max_challenges: int = MAX_CHALLENGES,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        max_sent_nonces: int = MAX_SENT_NONCES,
        whoareyou_timeout: float = WHOAREYOU_TIMEOUT,
        identity: IdentityScheme = V4_IDENTITY,
    ) -> None:
        self._key = key
        self._identity = identity
        self._id = NodeID.from_pubkey(key.public_key)
        if record.public_key != key.public_key:
            raise ValueError("the local record must be signed with the codec's key")
        self._record = record
        self._rng = rng if rng is not None else random.SystemRandom()
        self._sessions: BoundedCache[tuple[NodeID, Address], Session] = BoundedCache(
            session_cache_size, clock=clock
        )
        self._challenges: BoundedCache[tuple[NodeID, Address], _SentChallenge] = BoundedCache(
            max_challenges, ttl=handshake_timeout, clock=clock
        )
        self._sent: BoundedCache[bytes, _SentPacket] = BoundedCache(
            max_sent_nonces, ttl=whoareyou_timeout, clock=clock
        )
        # the constant parts of every message packet's header around its nonce
        static = Header(Flag.MESSAGE, bytes(NONCE_SIZE), message_authdata(self._id)).static_header()
        self._message_header_start = static[:-NONCE_SIZE - 2]
        self._message_header_end = static[-2:] + message_authdata(self._id)

    # -- state ------------------------------------------------------------------------

    @property
    def local_id(self) -> NodeID:
        return self._id

    @property
    def local_record(self) -> ENR:
        """Our record, sent in a handshake when the challenger's copy is older."""
        return self._record

    @local_record.setter
    def local_record(self, record: ENR) -> None:
        if record.public_key != self._key.public_key:
            raise ValueError("the local record must be signed with the codec's key")
        self._record = record

    def session(self, node_id: bytes, addr: Address) -> Session | None:
        return self._sessions.get((NodeID(node_id), addr))

    def store_session(self, node_id: bytes, addr: Address, session: Session) -> None:
        """Install session keys directly (tests, or keys carried over by a service)."""
        self._sessions.put((NodeID(node_id), addr), session)

    @property
    def stats(self) -> CodecStats:
        return CodecStats(
            self._sessions.evicted,
            self._challenges.evicted,
            self._challenges.expired,
            self._sent.evicted,
            self._sent.expired,
        )

    # -- encoding ---------------------------------------------------------------------

    def _seal(self, dest_id: bytes, flag: Flag, nonce: bytes, authdata: bytes, pt: bytes, key: bytes) -> bytes:
        head = header_data(self._rng.randbytes(MASKING_IV_SIZE), Header(flag, nonce, authdata))
        return encode_packet(dest_id, head, encrypt_gcm(key, nonce, pt, head))

    def encode(self, dest_id: bytes, addr: Address, message: Message) -> Encoded:
        """``message`` for ``dest_id`` at ``addr``: encrypted if a session exists, else a
        packet of random content that provokes the WHOAREYOU starting a handshake."""
        dest = dest_id if type(dest_id) is NodeID else NodeID(dest_id)
        pt = encode_message(message)
        nonce = self._rng.randbytes(NONCE_SIZE)
        head = self._rng.randbytes(MASKING_IV_SIZE) + self._message_header_start + nonce + self._message_header_end
        session = self._sessions.get((dest, addr))
        if session is not None:
            data = encode_packet(dest, head, session.write_aead.encrypt(nonce, pt, head))
        else:
            data = encode_packet(dest, head, self._rng.randbytes(RANDOM_MESSAGE_SIZE))
        # a session packet can be answered by WHOAREYOU too, if the remote lost the session
        self._sent.put(nonce, _SentPacket(dest, addr, message))
        return Encoded(data, nonce)

    def encode_whoareyou(self, dest_id: bytes, addr: Address, nonce: bytes, known_record: ENR | None) -> Encoded:
        """The challenge to the packet with ``nonce`` from ``dest_id``. ``known_record`` is
        our copy of its record, if any: the handshake may then omit the record."""
        dest = NodeID(dest_id)
        if known_record is not None and known_record.node_id != dest:
            raise ValueError("known_record belongs to another node")
        enr_seq = known_record.seq if known_record is not None else 0
        id_nonce = self._rng.randbytes(ID_NONCE_SIZE)
        head = header_data(
            self._rng.randbytes(MASKING_IV_SIZE), Header(Flag.WHOAREYOU, nonce, whoareyou_authdata(id_nonce, enr_seq))
        )
        challenge = Whoareyou(nonce, id_nonce, enr_seq, head)
        self._challenges.put((dest, addr), _SentChallenge(challenge, known_record))
        return Encoded(encode_packet(dest, head, b""), nonce)

    def encode_handshake(
        self, dest_id: bytes, addr: Address, message: Message, challenge: Whoareyou, remote_key: PublicKey
    ) -> Encoded:
        """The handshake answering ``challenge`` from ``dest_id`` (whose static key is
        ``remote_key``), carrying ``message``; stores the new session."""
        dest = NodeID(dest_id)
        if NodeID.from_pubkey(remote_key) != dest:
            raise ValueError("remote_key is not the key of dest_id")
        pt = encode_message(message)
        ephemeral = PrivateKey.generate(self._rng)
        ephemeral_pubkey = ephemeral.public_key.to_compressed()
        cdata = challenge.challenge_data
        signature = make_id_signature(self._key, cdata, ephemeral_pubkey, dest)
        record = self._record.to_rlp() if challenge.enr_seq < self._record.seq else b""
        keys = derive_keys(ephemeral, remote_key, self._id, dest, cdata)
        nonce = self._rng.randbytes(NONCE_SIZE)
        authdata = handshake_authdata(HandshakeAuth(self._id, signature, ephemeral_pubkey, record))
        data = self._seal(dest, Flag.HANDSHAKE, nonce, authdata, pt, keys.initiator_key)
        self._sessions.put((dest, addr), Session(keys.initiator_key, keys.recipient_key))
        self._sent.put(nonce, _SentPacket(dest, addr, message))
        return Encoded(data, nonce)

    # -- decoding ---------------------------------------------------------------------

    def decode(self, data: bytes, addr: Address) -> Event:
        """The event for a datagram from ``addr``; raises a :class:`V5DecodeError`
        subclass for anything else (and never another exception)."""
        packet = decode_packet(data, self._id)
        flag = packet.header.flag
        if flag is Flag.MESSAGE:
            return self._decode_message(packet, addr)
        if flag is Flag.WHOAREYOU:
            return self._decode_whoareyou(packet, addr)
        return self._decode_handshake(packet, addr)

    def _decode_message(self, packet: RawPacket, addr: Address) -> Event:
        src = decode_message_authdata(packet.header.authdata)
        nonce = packet.header.nonce
        session = self._sessions.get((src, addr))
        if session is None:
            return Undecryptable(src, addr, nonce)
        pt = open_gcm(session.read_aead, nonce, packet.message, packet.header_data)
        if pt is None:
            return Undecryptable(src, addr, nonce)
        return MessageReceived(src, addr, decode_message(pt), nonce)

    def _decode_whoareyou(self, packet: RawPacket, addr: Address) -> Event:
        nonce = packet.header.nonce
        sent = self._sent.get(nonce)
        if sent is None or sent.addr != addr:
            raise UnsolicitedWhoareyou(f"nonce {nonce.hex()} answers no packet we sent to {addr}")
        self._sent.pop(nonce)  # one handshake per packet
        auth = decode_whoareyou_authdata(packet.header.authdata)
        challenge = Whoareyou(nonce, auth.id_nonce, auth.enr_seq, packet.header_data)
        return WhoareyouReceived(sent.node_id, addr, challenge, sent.message)

    def _decode_handshake(self, packet: RawPacket, addr: Address) -> Event:
        auth = decode_handshake_authdata(packet.header.authdata)
        src, nonce = auth.src_id, packet.header.nonce
        # one attempt per challenge, whatever its outcome, as go-ethereum: a forged
        # handshake cannot be retried against the same challenge
        sent = self._challenges.pop((src, addr))
        if sent is None:
            session = self._sessions.get((src, addr))
            if session is not None and session.handshake_nonce == nonce:
                raise ReplayedHandshake(f"handshake {nonce.hex()} from {src.short()} was already accepted")
            raise UnexpectedHandshake(f"no live WHOAREYOU sent to {src.short()} at {addr}")
        if len(auth.id_signature) != ID_SIGNATURE_SIZE:
            raise BadIDSignature(f"ID signature is {len(auth.id_signature)} bytes, want {ID_SIGNATURE_SIZE}")
        if len(auth.ephemeral_pubkey) != EPHEMERAL_KEY_SIZE:
            raise BadEphemeralKey(f"ephemeral key is {len(auth.ephemeral_pubkey)} bytes, want {EPHEMERAL_KEY_SIZE}")
        try:
            ephemeral = decode_ephemeral_key(auth.ephemeral_pubkey)
        except InvalidKey as exc:
            raise BadEphemeralKey(str(exc)) from exc
        record = self._handshake_record(src, auth.record, sent.known_record)
        cdata = sent.whoareyou.challenge_data
        if not verify_id_signature(record.public_key, auth.id_signature, cdata, auth.ephemeral_pubkey, self._id,
                                   verify=self._identity.verify):
            raise BadIDSignature(f"ID signature of {src.short()} does not verify against its record's key")
        keys = derive_keys(self._key, ephemeral, src, self._id, cdata)
        pt = decrypt_gcm(keys.initiator_key, nonce, packet.message, packet.header_data)
        if pt is None:
            raise DecryptionFailed(f"handshake message from {src.short()} does not authenticate")
        message = decode_message(pt)
        self._sessions.put((src, addr), Session(keys.recipient_key, keys.initiator_key, record, nonce))
        return HandshakeCompleted(src, addr, record, message, nonce)

    def _handshake_record(self, src: NodeID, raw: bytes, known: ENR | None) -> ENR:
        """The record to check the ID signature with: the one in the packet if newer than
        ours, else ours. A record in the packet must be valid and be ``src``'s own."""
        if raw:
            try:
                record = self._identity.decode_record(raw)
            except ENRError as exc:
                raise BadHandshakeRecord(f"record from {src.short()}: {exc}") from exc
            if record.node_id != src:
                raise BadHandshakeRecord(f"record of {record.node_id.short()} in a handshake from {src.short()}")
            if known is None or record.seq > known.seq:
                return record
        if known is None:
            raise BadHandshakeRecord(f"handshake from {src.short()} has no record and we know none")
        return known


__all__ = [
    "Address",
    "Codec",
    "CodecStats",
    "Encoded",
    "Event",
    "HANDSHAKE_TIMEOUT",
    "HandshakeCompleted",
    "MAX_CHALLENGES",
    "MAX_SENT_NONCES",
    "MessageReceived",
    "SESSION_CACHE_SIZE",
    "Undecryptable",
    "WHOAREYOU_TIMEOUT",
    "WhoareyouReceived",
]
