"""ECIES as devp2p uses it (RLPx handshake messages).

Envelope: ``0x04 || R (64) || IV (16) || AES-128-CTR(kE, IV, m) || HMAC-SHA256(kM, IV || c || S2)``
where ``kE || kM' = concatKDF(ECDH(r, K), 32)`` and ``kM = SHA256(kM')``. ``S2`` is the shared
MAC data: for EIP-8 handshake messages, the 2-byte size prefix.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets

from p2p.crypto.aes import aes_ctr
from p2p.crypto.errors import ECIESBadMAC, ECIESBadPoint, ECIESShortInput, InvalidKey
from p2p.crypto.keys import PrivateKey, PublicKey

KEY_LEN = 16  # AES-128: kE is 16 bytes, and so is the half of the KDF output hashed into kM
IV_LEN = 16
MAC_LEN = 32  # HMAC-SHA256
PUBKEY_LEN = 65  # uncompressed point with its 0x04 prefix
OVERHEAD = PUBKEY_LEN + IV_LEN + MAC_LEN  # 113 bytes added to every plaintext


def concat_kdf(shared: bytes, length: int) -> bytes:
    """NIST SP 800-56 concatenation KDF with SHA-256 and no other-info, as go-ethereum's ecies."""
    out = bytearray()
    counter = 1
    while len(out) < length:
        out += hashlib.sha256(counter.to_bytes(4, "big") + shared).digest()
        counter += 1
    return bytes(out[:length])


def _keys(shared: bytes) -> tuple[bytes, bytes]:
    k = concat_kdf(shared, 2 * KEY_LEN)
    return k[:KEY_LEN], hashlib.sha256(k[KEY_LEN:]).digest()


def encrypt(
    remote: PublicKey,
    plaintext: bytes,
    shared_mac_data: bytes = b"",
    *,
    rng: random.Random | None = None,
) -> bytes:
    """Encrypt to ``remote``; ``rng`` (tests only) makes the ephemeral key and IV reproducible."""
    ephemeral = PrivateKey.generate(rng)
    iv = rng.randbytes(IV_LEN) if rng is not None else secrets.token_bytes(IV_LEN)
    ke, km = _keys(ephemeral.ecdh(remote))
    ciphertext = aes_ctr(ke, iv).update(plaintext)
    tag = hmac.new(km, iv + ciphertext + shared_mac_data, hashlib.sha256).digest()
    return b"\x04" + ephemeral.public_key.to_bytes() + iv + ciphertext + tag


def decrypt(key: PrivateKey, data: bytes, shared_mac_data: bytes = b"") -> bytes:
    """Decrypt an envelope addressed to ``key``; raises a typed :class:`ECIESError`."""
    if len(data) < OVERHEAD:
        raise ECIESShortInput(f"ECIES message of {len(data)} bytes is shorter than its {OVERHEAD}-byte envelope")
    if data[0] != 0x04:
        raise ECIESBadPoint(f"ephemeral key has prefix {data[0]:#04x}, not 0x04")
    try:
        ephemeral = PublicKey(data[1:PUBKEY_LEN])
    except InvalidKey as exc:
        raise ECIESBadPoint(str(exc)) from exc
    iv = data[PUBKEY_LEN : PUBKEY_LEN + IV_LEN]
    ciphertext = data[PUBKEY_LEN + IV_LEN : -MAC_LEN]
    tag = data[-MAC_LEN:]
    ke, km = _keys(key.ecdh(ephemeral))
    expected = hmac.new(km, iv + ciphertext + shared_mac_data, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, tag):
        raise ECIESBadMAC("ECIES MAC mismatch")
    return aes_ctr(ke, iv).update(ciphertext)
