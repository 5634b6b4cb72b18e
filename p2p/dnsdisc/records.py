"""EIP-1459 tree entries: their text forms, hashes, the signed root, and ``enrtree://`` URLs.

Every entry is one TXT record. Its DNS name under the tree's domain is the hash of its text:
the first 16 bytes of keccak256, base32 without padding (26 characters). The root, at the
domain itself, names the ENR and link subtrees and is signed by the tree's key:
``enrtree-root:v1 e=<hash> l=<hash> seq=<n> sig=<base64url r||s||v>``, the signature over
keccak256 of the text before `` sig=``. No I/O here.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Final

from p2p.crypto import InvalidKey, PrivateKey, PublicKey
from p2p.crypto.keccak import keccak256
from p2p.dnsdisc.errors import BadRootSignature, EntryError, HashMismatch, URLError
from p2p.enode.enr import ENR, ENRError

ROOT_PREFIX: Final = "enrtree-root:v1"
LINK_PREFIX: Final = "enrtree://"
BRANCH_PREFIX: Final = "enrtree-branch:"
ENR_PREFIX: Final = "enr:"
HASH_SIZE: Final = 16  # bytes of keccak256 that name an entry (EIP-1459)
MIN_HASH_SIZE: Final = 12  # shortest hash go-ethereum accepts in a branch (truncated names)
MAX_HASH_SIZE: Final = 32  # a whole keccak256
ROOT_SIGNATURE_SIZE: Final = 65  # r || s || v, as go-ethereum's crypto.Sign
MAX_SEQ: Final = 2**64 - 1  # go-ethereum keeps seq in a uint
MAX_DOMAIN_LENGTH: Final = 253  # RFC 1035: a name of at most 255 octets on the wire

_B32 = re.compile(r"[A-Z2-7]+")
_ROOT = re.compile(r"enrtree-root:v1 e=([A-Z2-7]+) l=([A-Z2-7]+) seq=(\d+) sig=([A-Za-z0-9_-]+)")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


# ---------------------------------------------------------------------------------------------
# Encodings: base32 (RFC 4648 alphabet) and base64url, both without padding, as go-ethereum.


def b32encode(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=")


def b32decode(text: str) -> bytes:
    if not _B32.fullmatch(text) or len(text) % 8 in (1, 3, 6):
        raise ValueError(f"not unpadded base32: {text[:40]!r}")
    return base64.b32decode(text + "=" * (-len(text) % 8))


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64decode(text: str) -> bytes:
    if len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError(f"not unpadded base64url: {exc}") from None


def entry_hash(text: str) -> str:
    """The subdomain label of an entry: base32 of the first 16 bytes of keccak256(text)."""
    return b32encode(keccak256(text.encode())[:HASH_SIZE])


def is_valid_hash(text: str) -> bool:
    try:
        size = len(b32decode(text))
    except ValueError:
        return False
    return MIN_HASH_SIZE <= size <= MAX_HASH_SIZE


def check_hash(name: str, hash_: str, text: str) -> None:
    """Raise :class:`HashMismatch` unless keccak256(text) starts with the bytes of ``hash_``."""
    try:
        want = b32decode(hash_)
    except ValueError:
        raise HashMismatch(name) from None
    if not keccak256(text.encode()).startswith(want):
        raise HashMismatch(name)


def check_domain(domain: str) -> str:
    """``domain`` without a trailing dot; :class:`URLError` unless it is a DNS name."""
    domain = domain.rstrip(".")
    if not domain or len(domain) > MAX_DOMAIN_LENGTH or not all(_LABEL.fullmatch(p) for p in domain.split(".")):
        raise URLError(f"{domain!r} is not a DNS domain name")
    return domain


# ---------------------------------------------------------------------------------------------
# Entries


@dataclass(frozen=True, slots=True)
class RootEntry:
    """The signed root: the hashes of the ENR subtree (``eroot``) and link subtree (``lroot``)."""

    eroot: str
    lroot: str
    seq: int
    signature: bytes = b""

    @property
    def signed_text(self) -> str:
        return f"{ROOT_PREFIX} e={self.eroot} l={self.lroot} seq={self.seq}"

    def sig_hash(self) -> bytes:
        return keccak256(self.signed_text.encode())

    def text(self) -> str:
        return f"{self.signed_text} sig={b64encode(self.signature)}"

    def signed(self, key: PrivateKey) -> "RootEntry":
        return RootEntry(self.eroot, self.lroot, self.seq, key.sign(self.sig_hash()))

    def verifies(self, pubkey: PublicKey) -> bool:
        """The r || s part checked against ``pubkey`` (the recovery id is not needed)."""
        return len(self.signature) == ROOT_SIGNATURE_SIZE and pubkey.verify(self.signature[:64], self.sig_hash())

    def verify(self, pubkey: PublicKey, domain: str) -> "RootEntry":
        if not self.verifies(pubkey):
            raise BadRootSignature(domain)
        return self


@dataclass(frozen=True, slots=True)
class BranchEntry:
    """An inner node: the hashes of its children."""

    children: tuple[str, ...]

    def text(self) -> str:
        return BRANCH_PREFIX + ",".join(self.children)


@dataclass(frozen=True, slots=True)
class ENREntry:
    """A leaf of the ENR subtree: one node record, kept with the text it came as."""

    enr: ENR
    source: str = field(default="", compare=False)

    def text(self) -> str:
        return self.source or self.enr.to_text()


@dataclass(frozen=True, slots=True)
class LinkEntry:
    """A leaf of the link subtree, and the form of a tree's URL: ``enrtree://<key>@<domain>``.

    ``key`` is the base32 of the compressed public key that signs the linked tree's root.
    """

    domain: str
    pubkey: PublicKey

    @property
    def location(self) -> str:
        """``<key>@<domain>``: what identifies a tree."""
        return f"{b32encode(self.pubkey.to_compressed())}@{self.domain}"

    def text(self) -> str:
        return LINK_PREFIX + self.location

    @property
    def url(self) -> str:
        return self.text()

    def __str__(self) -> str:
        return self.text()


Entry = BranchEntry | ENREntry | LinkEntry


# ---------------------------------------------------------------------------------------------
# Parsing


def parse_url(url: str) -> LinkEntry:
    """An ``enrtree://<base32 compressed key>@<domain>`` URL."""
    if not url.startswith(LINK_PREFIX):
        raise URLError(f"URL must start with {LINK_PREFIX}: {url[:60]!r}")
    key_text, sep, domain = url[len(LINK_PREFIX):].partition("@")
    if not sep:
        raise URLError("missing public key (no '@')")
    try:
        raw = b32decode(key_text)
        if len(raw) != 33:
            raise InvalidKey(f"{len(raw)} bytes, not a 33-byte compressed key")
        pubkey = PublicKey.from_bytes(raw)
    except (ValueError, InvalidKey) as exc:
        raise URLError(f"invalid public key: {exc}") from None
    return LinkEntry(check_domain(domain), pubkey)


def parse_root(text: str, name: str = "") -> RootEntry:
    m = _ROOT.fullmatch(text)
    if m is None:
        raise EntryError("root", "invalid syntax", name)
    eroot, lroot, seq_text, sig_text = m.groups()
    if not is_valid_hash(eroot) or not is_valid_hash(lroot):
        raise EntryError("root", "invalid child hash", name)
    seq = int(seq_text)
    if seq > MAX_SEQ:
        raise EntryError("root", f"seq {seq_text} out of range", name)
    try:
        signature = b64decode(sig_text)
    except ValueError:
        raise EntryError("root", "invalid base64 signature", name) from None
    if len(signature) != ROOT_SIGNATURE_SIZE:
        raise EntryError("root", f"signature is {len(signature)} bytes, not {ROOT_SIGNATURE_SIZE}", name)
    return RootEntry(eroot, lroot, seq, signature)


def parse_branch(text: str, name: str = "") -> BranchEntry:
    body = text[len(BRANCH_PREFIX):]
    if not body:
        return BranchEntry(())  # an empty subtree (e.g. no links) is a branch with no children
    children = tuple(body.split(","))
    for child in children:
        if not is_valid_hash(child):
            raise EntryError("branch", f"invalid child hash {child[:40]!r}", name)
    return BranchEntry(children)


def parse_entry(text: str, name: str = "") -> Entry:
    """A branch, ENR or link entry (the root is parsed by :func:`parse_root`)."""
    if text.startswith(LINK_PREFIX):
        try:
            return parse_url(text)
        except URLError as exc:
            raise EntryError("link", str(exc).split(": ", 1)[-1], name) from None
    if text.startswith(BRANCH_PREFIX):
        return parse_branch(text, name)
    if text.startswith(ENR_PREFIX):
        try:
            return ENREntry(ENR.from_text(text), text)
        except ENRError as exc:
            raise EntryError("enr", str(exc), name) from None
    raise EntryError("unknown", f"unknown entry type {text[:20]!r}", name)


def is_entry(text: str) -> bool:
    """Whether a TXT string is meant as a tree entry (other TXT records at a name are skipped)."""
    return text.startswith((LINK_PREFIX, BRANCH_PREFIX, ENR_PREFIX))


def find_root(txts: list[str], link: LinkEntry) -> RootEntry | None:
    """The verified root among the TXT strings at the tree's domain; None when there is none.
    Raises :class:`BadRootSignature` or :class:`EntryError` for a root that is there but bad."""
    for txt in txts:
        if txt.startswith(ROOT_PREFIX):
            return parse_root(txt, link.domain).verify(link.pubkey, link.domain)
    return None


def find_entry(txts: list[str], name: str, hash_: str) -> Entry | None:
    """The entry among the TXT strings at ``<hash>.<domain>``, checked against its hash."""
    for txt in txts:
        if is_entry(txt):
            check_hash(name, hash_, txt)
            return parse_entry(txt, name)
    return None


__all__ = [
    "BRANCH_PREFIX",
    "BranchEntry",
    "ENREntry",
    "ENR_PREFIX",
    "Entry",
    "HASH_SIZE",
    "LINK_PREFIX",
    "LinkEntry",
    "ROOT_PREFIX",
    "RootEntry",
    "b32decode",
    "b32encode",
    "b64decode",
    "b64encode",
    "check_domain",
    "check_hash",
    "entry_hash",
    "find_entry",
    "find_root",
    "is_entry",
    "is_valid_hash",
    "parse_branch",
    "parse_entry",
    "parse_root",
    "parse_url",
]
