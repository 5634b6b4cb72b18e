"""Building and signing an EIP-1459 tree, as go-ethereum's ``dnsdisc.MakeTree`` does, so that the
same nodes and links give the same TXT records byte for byte. No I/O here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from p2p.crypto import PrivateKey, PublicKey
from p2p.dnsdisc.errors import BadRootSignature
from p2p.dnsdisc.records import (
    BranchEntry,
    ENREntry,
    Entry,
    LinkEntry,
    RootEntry,
    b64decode,
    entry_hash,
    parse_url,
)
from p2p.enode.enr import ENR

# A branch of 13 hashes keeps the answer for <hash>.<domain> under 512 bytes of UDP (go-ethereum:
# 370 bytes of hashes at 27 bytes each, comma included).
HASH_TEXT_SIZE: Final = 1 + 16 * 13 // 8
MAX_CHILDREN: Final = 370 // HASH_TEXT_SIZE
ROOT_TTL: Final = 30 * 60  # go-ethereum's devp2p: the root changes with every publication
ENTRY_TTL: Final = 4 * 7 * 24 * 3600  # go-ethereum's devp2p: an entry's content never changes


@dataclass(frozen=True, slots=True)
class Tree:
    """A whole tree: its root and every entry by hash."""

    root: RootEntry
    entries: dict[str, Entry]

    @property
    def seq(self) -> int:
        return self.root.seq

    def sign(self, key: PrivateKey, domain: str) -> tuple["Tree", str]:
        """The tree with its root signed by ``key``, and its ``enrtree://`` URL."""
        url = LinkEntry(domain, key.public_key).url
        return Tree(self.root.signed(key), self.entries), url

    def with_signature(self, pubkey: PublicKey, signature: str, domain: str = "") -> "Tree":
        """The tree with a given base64url root signature, checked against ``pubkey``."""
        try:
            sig = b64decode(signature)
        except ValueError:
            raise BadRootSignature(domain) from None
        root = RootEntry(self.root.eroot, self.root.lroot, self.root.seq, sig)
        return Tree(root.verify(pubkey, domain), self.entries)

    def to_txt(self, domain: str) -> dict[str, str]:
        """Every TXT record: the root at ``domain``, each entry at ``<hash>.<domain>``."""
        records = {domain: self.root.text()}
        for hash_, entry in self.entries.items():
            records[f"{hash_}.{domain}" if domain else hash_] = entry.text()
        return records

    @property
    def nodes(self) -> list[ENR]:
        return [e.enr for e in self.entries.values() if isinstance(e, ENREntry)]

    @property
    def links(self) -> list[str]:
        return [e.url for e in self.entries.values() if isinstance(e, LinkEntry)]


def make_tree(seq: int, records: Iterable[ENR], links: Iterable[str] = ()) -> Tree:
    """An unsigned tree of ``records`` (sorted by node ID) and ``links`` (kept in order)."""
    leaves: list[Entry] = [ENREntry(r) for r in sorted(records, key=lambda r: bytes(r.node_id))]
    link_leaves: list[Entry] = [parse_url(link) for link in links]
    entries: dict[str, Entry] = {}
    eroot = _build(leaves, entries)
    entries[entry_hash(eroot.text())] = eroot
    lroot = _build(link_leaves, entries)
    entries[entry_hash(lroot.text())] = lroot
    return Tree(RootEntry(entry_hash(eroot.text()), entry_hash(lroot.text()), seq), entries)


def _build(leaves: list[Entry], entries: dict[str, Entry]) -> Entry:
    if len(leaves) == 1:
        return leaves[0]
    if len(leaves) <= MAX_CHILDREN:
        hashes = []
        for leaf in leaves:
            h = entry_hash(leaf.text())
            entries[h] = leaf
            hashes.append(h)
        return BranchEntry(tuple(hashes))
    subtrees: list[Entry] = []
    for start in range(0, len(leaves), MAX_CHILDREN):
        sub = _build(leaves[start:start + MAX_CHILDREN], entries)
        entries[entry_hash(sub.text())] = sub
        subtrees.append(sub)
    return _build(subtrees, entries)


__all__ = ["ENTRY_TTL", "MAX_CHILDREN", "ROOT_TTL", "Tree", "make_tree"]
