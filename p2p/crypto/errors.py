"""Typed errors of the crypto layer."""


class CryptoError(Exception):
    """Base of every error raised by :mod:`p2p.crypto`."""


class InvalidKey(CryptoError, ValueError):
    """A private key out of range, or bytes that are not a point on secp256k1."""


class BadSignature(CryptoError, ValueError):
    """A signature of the wrong size or from which no public key can be recovered."""


class KeyFileError(CryptoError, OSError):
    """A node key file that is missing, unreadable, not hex, or of the wrong length."""


class ECIESError(CryptoError, ValueError):
    """Base of ECIES decryption failures."""


class ECIESShortInput(ECIESError):
    """The message is shorter than the ECIES envelope itself."""


class ECIESBadPoint(ECIESError):
    """The ephemeral public key in the envelope is not a valid secp256k1 point."""


class ECIESBadMAC(ECIESError):
    """The HMAC-SHA256 tag does not match: wrong key, tampered data or wrong shared data."""
