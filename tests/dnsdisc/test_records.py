"""EIP-1459 records against the spec's example tree (tests/vectors/dnsdisc.json), byte for byte."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from p2p.crypto import PrivateKey, PublicKey, recover
from p2p.crypto.keccak import keccak256
from p2p.dnsdisc import BadRootSignature, EntryError, HashMismatch, URLError, make_tree, parse_url
from p2p.dnsdisc.records import (
    BranchEntry,
    ENREntry,
    LinkEntry,
    b32decode,
    check_hash,
    entry_hash,
    find_entry,
    parse_entry,
    parse_root,
)
from p2p.dnsdisc.tree import MAX_CHILDREN
from tests.dnsdisc.fakes import records

VECTOR: dict[str, Any] = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "dnsdisc.json").read_text())
ZONE = {r["name"]: r["content"] for r in VECTOR["zone_records"]}
ROOT_TEXT = ZONE["@"]
SIGNER = PublicKey.from_bytes(bytes.fromhex(VECTOR["signing_public_key_uncompressed"]))
DERIVED = VECTOR["derived_by_extractor"]


def test_every_entry_is_named_by_its_hash() -> None:
    for name, text in ZONE.items():
        if name != "@":
            assert entry_hash(text) == name
            check_hash(name, name, text)


def test_root_parses_and_its_signature_verifies_against_the_signing_key() -> None:
    root = parse_root(ROOT_TEXT)
    assert (root.eroot, root.lroot, root.seq) == ("JWXYDBPXYWG6FX3GMDIBFA6CJ4", "C7HRFPF3BLGF3YR4DY5KX3SMBE", 1)
    assert root.signed_text == DERIVED["root"]["signed_text"]
    assert root.sig_hash().hex() == DERIVED["root"]["signed_text_keccak256"]
    assert root.signature.hex() == DERIVED["root"]["signature"]
    assert root.text() == ROOT_TEXT
    assert root.verifies(SIGNER)
    assert recover(root.sig_hash(), root.signature) == SIGNER


def test_the_example_urls_key_is_not_the_signer_so_its_root_is_refused() -> None:
    example = parse_url(VECTOR["example_url"])
    assert example.pubkey.to_compressed().hex() == DERIVED["example_url_public_key_compressed"]
    with pytest.raises(BadRootSignature):
        parse_root(ROOT_TEXT).verify(example.pubkey, example.domain)
    ours = LinkEntry("nodes.example.org", SIGNER)
    assert ours.url == DERIVED["enrtree_url_for_signing_public_key"]
    assert parse_url(ours.url) == ours


def test_branch_enr_and_link_entries_parse() -> None:
    branch = parse_entry(ZONE["JWXYDBPXYWG6FX3GMDIBFA6CJ4"])
    assert isinstance(branch, BranchEntry)
    assert list(branch.children) == DERIVED["subtree_entries"][1]["children"]
    link = parse_entry(ZONE["C7HRFPF3BLGF3YR4DY5KX3SMBE"])
    assert isinstance(link, LinkEntry) and link.domain == "morenodes.example.org"
    assert link.text() == ZONE["C7HRFPF3BLGF3YR4DY5KX3SMBE"]
    for want in DERIVED["subtree_entries"][2:]:
        entry = parse_entry(ZONE[want["name"]])
        assert isinstance(entry, ENREntry)
        assert entry.enr.node_id.hex() == want["node_id"] and entry.enr.seq == want["seq"]
        assert entry.text() == ZONE[want["name"]]


def test_our_tree_builder_reproduces_the_example_tree_byte_for_byte() -> None:
    enrs = [e.enr for e in (parse_entry(ZONE[n]) for n in ZONE if ZONE[n].startswith("enr:"))
            if isinstance(e, ENREntry)]
    random.Random(5).shuffle(enrs)  # the builder sorts by node ID
    tree = make_tree(1, enrs, [ZONE["C7HRFPF3BLGF3YR4DY5KX3SMBE"]])
    assert tree.root.signed_text == DERIVED["root"]["signed_text"]
    txt = tree.to_txt("nodes.example.org")
    assert {k.split(".")[0] for k in txt if k != "nodes.example.org"} == set(ZONE) - {"@"}
    for name, text in ZONE.items():
        if name != "@":
            assert txt[f"{name}.nodes.example.org"] == text
    # The spec's signature, checked and attached as go-ethereum's SetSignature does.
    signed = tree.with_signature(SIGNER, ROOT_TEXT.rsplit("sig=", 1)[1], "nodes.example.org")
    assert signed.to_txt("nodes.example.org")["nodes.example.org"] == ROOT_TEXT
    with pytest.raises(BadRootSignature):
        tree.with_signature(PrivateKey.generate(random.Random(1)).public_key, ROOT_TEXT.rsplit("sig=", 1)[1])


def test_our_signature_verifies_and_is_deterministic(key: PrivateKey) -> None:
    tree = make_tree(7, [], [])
    a, url = tree.sign(key, "nodes.example.org")
    b, _ = tree.sign(key, "nodes.example.org")
    assert a.root.text() == b.root.text()  # RFC 6979: the same key and root give the same signature
    link = parse_url(url)
    assert a.root.verifies(link.pubkey)
    assert recover(a.root.sig_hash(), a.root.signature) == key.public_key
    assert parse_root(a.root.text()) == a.root
    assert a.to_txt("x.org")[f"{a.root.lroot}.x.org"] == "enrtree-branch:"  # no links: an empty branch


def test_a_large_tree_has_branches_of_thirteen(rng: random.Random) -> None:
    tree = make_tree(1, records(200, rng), [])
    branches = [e for e in tree.entries.values() if isinstance(e, BranchEntry)]
    assert max(len(b.children) for b in branches) == MAX_CHILDREN == 13
    assert len(tree.nodes) == 200


@pytest.mark.parametrize("text", [
    ROOT_TEXT.replace("seq=1", "seq=x"),
    ROOT_TEXT.replace("e=JWXY", "e=jwxy"),
    ROOT_TEXT[:-3],  # a signature of 64 bytes
    "enrtree-root:v1 e=AAAA l=C7HRFPF3BLGF3YR4DY5KX3SMBE seq=1 sig=" + ROOT_TEXT.rsplit("=", 1)[1],
])
def test_malformed_roots_are_entry_errors(text: str) -> None:
    with pytest.raises(EntryError):
        parse_root(text)


@pytest.mark.parametrize("url", [
    "enrtree://nodes.example.org",
    "enrtree://AM5FCQLWIZX2QFPNJAP7VUERCCRNGRHWZG3YYHIUV7BVDQ5FDPRT@nodes.example.org",
    "enrtree://AM5FCQLWIZX2QFPNJAP7VUERCCRNGRHWZG3YYHIUV7BVDQ5FDPRT2@",
    "enrtree://AM5FCQLWIZX2QFPNJAP7VUERCCRNGRHWZG3YYHIUV7BVDQ5FDPRT2@bad domain",
    "enode://AM5FCQLWIZX2QFPNJAP7VUERCCRNGRHWZG3YYHIUV7BVDQ5FDPRT2@nodes.example.org",
])
def test_bad_urls_are_url_errors(url: str) -> None:
    with pytest.raises(URLError):
        parse_url(url)


def test_an_entry_that_does_not_match_its_name_is_a_hash_mismatch() -> None:
    name = "JWXYDBPXYWG6FX3GMDIBFA6CJ4"
    tampered = ZONE[name].replace("2XS2", "2XS3")
    with pytest.raises(HashMismatch):
        find_entry([tampered], f"{name}.nodes.example.org", name)
    # other TXT records at the name are skipped, the entry is found among them
    assert isinstance(find_entry(["v=spf1 -all", ZONE[name]], name, name), BranchEntry)
    assert len(b32decode(name)) == 16
    assert keccak256(ZONE[name].encode())[:16] == b32decode(name)
