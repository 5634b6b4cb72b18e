"""Keys, keccak256, ECIES and AES: the crypto layer (no I/O)."""

from p2p.crypto.errors import (
    BadSignature,
    CryptoError,
    ECIESBadMAC,
    ECIESBadPoint,
    ECIESError,
    ECIESShortInput,
    InvalidKey,
    KeyFileError,
)
from p2p.crypto.keccak import keccak256, new_keccak256
from p2p.crypto.keys import PrivateKey, PublicKey, load_node_key, recover, save_node_key

__all__ = [
    "BadSignature",
    "CryptoError",
    "ECIESBadMAC",
    "ECIESBadPoint",
    "ECIESError",
    "ECIESShortInput",
    "InvalidKey",
    "KeyFileError",
    "PrivateKey",
    "PublicKey",
    "keccak256",
    "load_node_key",
    "new_keccak256",
    "recover",
    "save_node_key",
]
