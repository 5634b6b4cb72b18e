"""The v4 identity scheme's handshake cryptography for discv5 (discv5-theory.md, "Handshake
Steps" and "Identity-Specific Cryptography"): ECDH, HKDF session keys, the ID signature, and
AES-128-GCM for messages. Pure functions, no state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import coincurve
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from p2p.crypto import InvalidKey, PrivateKey, PublicKey

KEY_AGREEMENT_TEXT: Final = b"discovery v5 key agreement"  # kdf-info prefix, discv5-theory.md
ID_PROOF_TEXT: Final = b"discovery v5 identity proof"  # id-signature-input prefix
SESSION_KEY_SIZE: Final = 16  # AES-128: initiator-key and recipient-key are 16 bytes each
GCM_NONCE_SIZE: Final = 12  # the packet's 96-bit nonce is the GCM nonce
GCM_TAG_SIZE: Final = 16  # the MAC appended to every message ciphertext
ID_SIGNATURE_SIZE: Final = 64  # v4 scheme: r || s, no recovery id
EPHEMERAL_KEY_SIZE: Final = 33  # v4 scheme: the ephemeral public key travels compressed


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """The two keys one handshake yields, named by who writes with them."""

    initiator_key: bytes  # the handshake's sender (node A) encrypts with it
    recipient_key: bytes  # the WHOAREYOU's sender (node B) encrypts with it


def ecdh(public: PublicKey, private: PrivateKey) -> bytes:
    """The shared point ``public * private`` in its 33-byte compressed form.

    discv5 keeps the parity byte, unlike RLPx and ECIES which use the x coordinate alone
    (``PrivateKey.ecdh``), so this is a function of its own.
    """
    point = coincurve.PublicKey(public.to_compressed()).multiply(private.secret)
    return point.format(compressed=True)


def derive_keys(
    private: PrivateKey,
    public: PublicKey,
    node_id_a: bytes,
    node_id_b: bytes,
    challenge_data: bytes,
) -> SessionKeys:
    """The session keys of the handshake from A (initiator) to B.

    Both sides call this: A with its ephemeral private key and B's static public key, B with
    its static private key and A's ephemeral public key (the ECDH result is the same). The
    challenge data as salt binds the keys to this one WHOAREYOU.
    """
    secret = ecdh(public, private)
    info = KEY_AGREEMENT_TEXT + node_id_a + node_id_b
    hkdf = HKDF(algorithm=hashes.SHA256(), length=2 * SESSION_KEY_SIZE, salt=challenge_data, info=info)
    key_data = hkdf.derive(secret)
    return SessionKeys(key_data[:SESSION_KEY_SIZE], key_data[SESSION_KEY_SIZE:])


def _id_signature_hash(challenge_data: bytes, ephemeral_pubkey: bytes, node_id_b: bytes) -> bytes:
    return hashlib.sha256(ID_PROOF_TEXT + challenge_data + ephemeral_pubkey + node_id_b).digest()


def make_id_signature(
    key: PrivateKey, challenge_data: bytes, ephemeral_pubkey: bytes, node_id_b: bytes
) -> bytes:
    """A's proof that it holds its static key, bound to B's challenge and A's ephemeral key
    (so a signature cannot be replayed against another WHOAREYOU). Deterministic (RFC 6979)."""
    return key.sign_compact(_id_signature_hash(challenge_data, ephemeral_pubkey, node_id_b))


def verify_id_signature(
    public: PublicKey, signature: bytes, challenge_data: bytes, ephemeral_pubkey: bytes, node_id_b: bytes,
    *, verify: Callable[[PublicKey, bytes, bytes], bool] = PublicKey.verify,
) -> bool:
    """Whether ``signature`` is A's ID signature (64-byte ``r || s``, low s) over these inputs;
    ``verify`` is the identity scheme's check (secp256k1 unless a simulation says otherwise)."""
    return verify(public, signature, _id_signature_hash(challenge_data, ephemeral_pubkey, node_id_b))


def decode_ephemeral_key(data: bytes) -> PublicKey:
    """The handshake's ephemeral key; raises ``InvalidKey`` for anything but a 33-byte point."""
    if len(data) != EPHEMERAL_KEY_SIZE:
        raise InvalidKey(f"ephemeral key must be {EPHEMERAL_KEY_SIZE} bytes, got {len(data)}")
    return PublicKey.from_bytes(data)


def encrypt_gcm(key: bytes, nonce: bytes, plaintext: bytes, ad: bytes) -> bytes:
    """AES-128-GCM ciphertext with the 16-byte tag appended."""
    return AESGCM(key).encrypt(nonce, plaintext, ad)


def decrypt_gcm(key: bytes, nonce: bytes, ciphertext: bytes, ad: bytes) -> bytes | None:
    """The plaintext, or None when the tag does not authenticate (wrong key, tampering)."""
    return open_gcm(AESGCM(key), nonce, ciphertext, ad)


def open_gcm(aead: AESGCM, nonce: bytes, ciphertext: bytes, ad: bytes) -> bytes | None:
    """:func:`decrypt_gcm` with a key's AES-GCM context made beforehand (a session's)."""
    if len(ciphertext) < GCM_TAG_SIZE:
        return None
    try:
        return aead.decrypt(nonce, ciphertext, ad)
    except InvalidTag:
        return None


__all__ = [
    "EPHEMERAL_KEY_SIZE",
    "GCM_NONCE_SIZE",
    "GCM_TAG_SIZE",
    "ID_SIGNATURE_SIZE",
    "SESSION_KEY_SIZE",
    "SessionKeys",
    "decode_ephemeral_key",
    "decrypt_gcm",
    "derive_keys",
    "ecdh",
    "encrypt_gcm",
    "make_id_signature",
    "open_gcm",
    "verify_id_signature",
]
