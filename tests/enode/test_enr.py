"""ENR (EIP-778, "v4" scheme): the spec vector, property tests and every way to be invalid."""

from __future__ import annotations

import base64
import ipaddress
import pickle
import random
from typing import Any

import pytest
import rlp
from eth_keys import keys as eth_keys
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from p2p.crypto import PrivateKey, keccak256
from p2p.enode import ENR, MAX_ENR_SIZE, ENRError, NodeID, RawRLP
from tests.conftest import load_vector

VECTOR = load_vector("enr.json")
DNSDISC = load_vector("dnsdisc.json")
SPEC_KEY = PrivateKey.from_hex(VECTOR["private_key"])
KEYS = [PrivateKey.generate(random.Random(i)) for i in range(4)]  # key generation is not under test


def signed_record(key: PrivateKey, seq: Any, items: list[Any], *, signature: bytes | None = None) -> bytes:
    """A record made with pyrlp, signed whatever its content: for records our encoder refuses."""
    content = rlp.encode([seq, *items])
    sig = key.sign_compact(keccak256(content)) if signature is None else signature
    return rlp.encode([sig, seq, *items])


def v4_items(key: PrivateKey, **extra: Any) -> list[Any]:
    pairs = {b"id": b"v4", b"secp256k1": key.public_key.to_compressed()}
    pairs.update({k.encode(): v for k, v in extra.items()})
    return [x for k in sorted(pairs) for x in (k, pairs[k])]


def independent_verify(record: bytes) -> bytes:
    """Decode with pyrlp and verify with eth-keys' own ECDSA; returns the node ID."""
    items = rlp.decode(record)
    sig, rest = items[0], items[1:]
    pairs = dict(zip(rest[1::2], rest[2::2]))
    pub = eth_keys.PublicKey.from_compressed_bytes(pairs[b"secp256k1"])
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    for v in (0, 1):
        candidate = eth_keys.Signature(vrs=(v, r, s))
        if candidate.verify_msg_hash(keccak256(rlp.encode(rest)), pub):
            return keccak256(pub.to_bytes())
    raise AssertionError("signature does not verify with eth-keys")


# -- the spec vector --------------------------------------------------------------------------


def test_spec_vector_decodes() -> None:
    enr = ENR.from_text(VECTOR["text"])
    assert enr.seq == VECTOR["seq"]
    assert {k: v.hex() for k, v in enr.pairs.items()} == VECTOR["fields"]
    assert list(enr.pairs) == sorted(VECTOR["fields"])
    assert enr.signature.hex() == VECTOR["signature"]
    assert enr.node_id == NodeID.from_hex(VECTOR["node_id"])
    assert enr.public_key == SPEC_KEY.public_key
    assert enr.public_key.to_bytes().hex() == VECTOR["derived_by_extractor"]["public_key"]
    assert enr.ip == ipaddress.IPv4Address(VECTOR["ipv4_address"])
    assert enr.udp == VECTOR["udp_port"]
    assert enr.tcp is enr.ip6 is enr.tcp6 is enr.udp6 is None


def test_spec_vector_signature_verifies() -> None:
    derived = VECTOR["derived_by_extractor"]
    content = bytes.fromhex(derived["signed_content_rlp"])
    assert keccak256(content).hex() == derived["signed_content_keccak256"]
    assert SPEC_KEY.public_key.verify(bytes.fromhex(VECTOR["signature"]), keccak256(content))
    assert independent_verify(bytes.fromhex(derived["rlp"])).hex() == VECTOR["node_id"]


def test_spec_vector_re_encodes_identically() -> None:
    enr = ENR.from_text(VECTOR["text"])
    assert enr.to_text() == VECTOR["text"]
    assert enr.to_rlp().hex() == VECTOR["derived_by_extractor"]["rlp"]
    assert len(enr.to_rlp()) == VECTOR["derived_by_extractor"]["rlp_length"]
    assert ENR.from_rlp(enr.to_rlp()) == enr


def test_spec_vector_matches_its_printed_structure() -> None:
    expected = [bytes.fromhex(i["hex"]) if "hex" in i else i["text"].encode() for i in VECTOR["rlp_structure"]]
    assert rlp.decode(ENR.from_text(VECTOR["text"]).to_rlp()) == expected


def test_building_the_spec_record_reproduces_its_bytes() -> None:
    # RFC 6979 signing is deterministic, so the exact record comes out again
    enr = ENR.build(SPEC_KEY, VECTOR["seq"], ip=VECTOR["ipv4_address"], udp=VECTOR["udp_port"])
    assert enr.to_rlp().hex() == VECTOR["derived_by_extractor"]["rlp"]
    assert enr.to_text() == VECTOR["text"]


@pytest.mark.parametrize("entry", DNSDISC["derived_by_extractor"]["subtree_entries"][2:], ids=lambda e: e["name"])
def test_dns_tree_records(entry: dict[str, Any]) -> None:
    text = next(r["content"] for r in DNSDISC["zone_records"] if r["name"] == entry["name"])
    enr = ENR.from_text(text)
    assert enr.seq == entry["seq"]
    assert list(enr.pairs) == entry["keys"]
    assert enr.pairs["secp256k1"].hex() == entry["secp256k1"]
    assert enr.node_id.hex() == entry["node_id"]
    assert enr.to_text() == text


# -- property tests ---------------------------------------------------------------------------

ports = st.none() | st.integers(0, 65535)
extra_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=8).filter(
    lambda k: k not in {"id", "secp256k1", "ip", "ip6", "tcp", "tcp6", "udp", "udp6"}
)
list_values = st.recursive(
    st.binary(max_size=8), lambda children: st.lists(children, max_size=3), max_leaves=6
).map(lambda v: RawRLP(rlp.encode(v if isinstance(v, list) else [v])))
extra_values = st.binary(max_size=24) | list_values


@st.composite
def field_sets(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "key": draw(st.sampled_from(KEYS)),
        "seq": draw(st.integers(0, 2**64 - 1)),
        "ip": draw(st.none() | st.ip_addresses(v=4)),
        "tcp": draw(ports),
        "udp": draw(ports),
        "ip6": draw(st.none() | st.ip_addresses(v=6)),
        "tcp6": draw(ports),
        "udp6": draw(ports),
        "extra": draw(st.dictionaries(extra_keys, extra_values, max_size=4)),
    }


def build(fields: dict[str, Any]) -> ENR:
    args = dict(fields)
    return ENR.build(args.pop("key"), args.pop("seq"), **args)


def reference_size(fields: dict[str, Any]) -> int:
    """The size of the record ``fields`` make, computed with pyrlp."""
    key = fields["key"]
    pairs: dict[bytes, Any] = {b"id": b"v4", b"secp256k1": key.public_key.to_compressed()}
    for name in ("ip", "ip6"):
        if fields[name] is not None:
            pairs[name.encode()] = fields[name].packed
    for name in ("tcp", "udp", "tcp6", "udp6"):
        if fields[name] is not None:
            pairs[name.encode()] = fields[name]
    for k, v in fields["extra"].items():
        pairs[k.encode()] = rlp.decode(v) if isinstance(v, RawRLP) else v
    return len(signed_record(key, fields["seq"], [x for k in sorted(pairs) for x in (k, pairs[k])]))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(field_sets())
def test_decode_encode_round_trip(fields: dict[str, Any]) -> None:
    if reference_size(fields) > MAX_ENR_SIZE:
        with pytest.raises(ENRError, match="too big"):
            build(fields)
        assume(False)
    enr = build(fields)
    assert len(enr.to_rlp()) == reference_size(fields)
    decoded = ENR.from_rlp(enr.to_rlp())
    assert decoded == enr and hash(decoded) == hash(enr)
    assert decoded.to_rlp() == enr.to_rlp()
    assert ENR.from_text(enr.to_text()) == enr
    assert decoded.seq == fields["seq"]
    assert decoded.public_key == fields["key"].public_key
    assert decoded.node_id == NodeID.from_pubkey(fields["key"].public_key)
    for name in ("ip", "tcp", "udp", "ip6", "tcp6", "udp6"):
        assert getattr(decoded, name) == fields[name]
    for k, v in fields["extra"].items():
        assert decoded.pairs[k] == v
        assert isinstance(decoded.pairs[k], RawRLP) == isinstance(v, RawRLP)
    assert dict(decoded.pairs) == dict(enr.pairs)
    assert list(decoded.pairs) == sorted(decoded.pairs)
    assert independent_verify(enr.to_rlp()) == decoded.node_id


@settings(max_examples=100)
@given(field_sets(), st.data())
def test_any_flipped_byte_fails(fields: dict[str, Any], data: st.DataObject) -> None:
    raw = build(fields).to_rlp()
    index = data.draw(st.integers(0, len(raw) - 1))
    mask = data.draw(st.integers(1, 255))
    corrupted = raw[:index] + bytes([raw[index] ^ mask]) + raw[index + 1 :]
    with pytest.raises(ENRError):
        ENR.from_rlp(corrupted)


def test_every_flipped_byte_of_the_spec_record_fails() -> None:
    raw = ENR.from_text(VECTOR["text"]).to_rlp()
    for index in range(len(raw)):
        for mask in (0x01, 0x80, 0xFF):
            with pytest.raises(ENRError):
                ENR.from_rlp(raw[:index] + bytes([raw[index] ^ mask]) + raw[index + 1 :])


@settings(max_examples=300)
@given(st.binary(max_size=MAX_ENR_SIZE + 10))
def test_garbage_gets_a_typed_error(data: bytes) -> None:
    with pytest.raises(ENRError):
        ENR.from_rlp(data)


@settings(max_examples=200)
@given(st.text(max_size=500))
def test_garbage_text_gets_a_typed_error(text: str) -> None:
    with pytest.raises(ENRError):
        ENR.from_text("enr:" + text if not text.startswith("enr:") else text)


@given(st.data())
def test_truncated_records_fail(data: st.DataObject) -> None:
    raw = ENR.build(KEYS[0], 3, ip="127.0.0.1", tcp=1, udp=2, extra={"eth": RawRLP(b"\xc2\x01\x02")}).to_rlp()
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(ENRError):
        ENR.from_rlp(raw[:cut])


# -- the size limit ---------------------------------------------------------------------------


def record_of_size(size: int) -> bytes:
    """A correctly signed record of exactly ``size`` bytes (made with pyrlp, past any limit)."""
    for filler in range(size):
        raw = signed_record(KEYS[0], 1, v4_items(KEYS[0], z=b"\x80" * filler))
        if len(raw) == size:
            return raw
    raise AssertionError(f"no filler gives {size} bytes")


def test_size_limit_on_decode() -> None:
    assert len(ENR.from_rlp(record_of_size(MAX_ENR_SIZE)).to_rlp()) == MAX_ENR_SIZE
    with pytest.raises(ENRError, match="too big"):
        ENR.from_rlp(record_of_size(MAX_ENR_SIZE + 1))
    too_long = "enr:" + base64.urlsafe_b64encode(record_of_size(MAX_ENR_SIZE + 1)).rstrip(b"=").decode()
    with pytest.raises(ENRError, match="too big"):
        ENR.from_text(too_long)


def test_size_limit_on_encode() -> None:
    fits = ENR.from_rlp(record_of_size(MAX_ENR_SIZE))
    filler = fits.pairs["z"]
    rebuilt = ENR.build(KEYS[0], 1, extra={"z": filler})
    assert rebuilt == fits and len(rebuilt.to_rlp()) == MAX_ENR_SIZE
    assert len(signed_record(KEYS[0], 1, v4_items(KEYS[0], z=filler + b"\x80"))) == MAX_ENR_SIZE + 1
    with pytest.raises(ENRError, match="too big"):
        ENR.build(KEYS[0], 1, extra={"z": filler + b"\x80"})
    with pytest.raises(ENRError, match="too big"):
        fits.updated(KEYS[0], tcp=30303)


# -- keys: sorted, unique, standard -----------------------------------------------------------


def test_unsorted_keys_are_rejected() -> None:
    items = v4_items(KEYS[0], udp=b"\x01")
    swapped = items[:2][::-1] + items[2:]  # value before key breaks the order too
    pairs = list(zip(items[::2], items[1::2]))
    reordered = [x for k, v in (pairs[1], pairs[0], *pairs[2:]) for x in (k, v)]
    with pytest.raises(ENRError, match="unsorted keys"):
        ENR.from_rlp(signed_record(KEYS[0], 1, reordered))
    with pytest.raises(ENRError):
        ENR.from_rlp(signed_record(KEYS[0], 1, swapped))


def test_duplicate_keys_are_rejected() -> None:
    items = v4_items(KEYS[0], udp=b"\x01") + [b"udp", b"\x02"]
    with pytest.raises(ENRError, match="duplicate key"):
        ENR.from_rlp(signed_record(KEYS[0], 1, items))


def test_build_sorts_keys_whatever_the_argument_order() -> None:
    enr = ENR.build(KEYS[0], 1, udp=1, ip="127.0.0.1", extra={"zz": b"1", "a": b"2", "eth": b"3"})
    assert list(enr.pairs) == ["a", "eth", "id", "ip", "secp256k1", "udp", "zz"]
    keys = rlp.decode(enr.to_rlp())[2::2]
    assert keys == sorted(keys)


INVALID_RECORDS = {
    "missing id": ([b"secp256k1", KEYS[0].public_key.to_compressed()], "missing key: id"),
    "unknown scheme": (v4_items(KEYS[0], id=b"v5"), "unknown identity scheme"),
    "missing secp256k1": ([b"id", b"v4"], "missing key: secp256k1"),
    "uncompressed secp256k1": (
        [b"id", b"v4", b"secp256k1", b"\x04" + KEYS[0].public_key.to_bytes()],
        "33 bytes",
    ),
    "secp256k1 not a point": ([b"id", b"v4", b"secp256k1", b"\x02" + b"\xff" * 32], "not a valid point"),
    "key without value": (v4_items(KEYS[0]) + [b"udp"], "has no value"),
    "key is a list": (v4_items(KEYS[0]) + [[b"x"], b"1"], "key is a list"),
    "bad ip length": (v4_items(KEYS[0], ip=b"\x7f\x00\x00\x00\x01"), "bad ip length"),
    "bad ip6 length": (v4_items(KEYS[0], ip6=b"\x00" * 4), "bad ip6 length"),
    "ip is a list": (v4_items(KEYS[0], ip=[b"\x7f", b"\x00\x01"]), "bad ip length"),
    "port too big": (v4_items(KEYS[0], tcp=b"\x01\x00\x00"), "out of range"),
    "port with leading zero": (v4_items(KEYS[0], udp=b"\x00\x50"), "leading zero"),
    "port is a list": (v4_items(KEYS[0], udp6=[b"\x01"]), "is a list"),
}


@pytest.mark.parametrize("items, message", INVALID_RECORDS.values(), ids=INVALID_RECORDS.keys())
def test_invalid_contents_are_rejected(items: list[Any], message: str) -> None:
    with pytest.raises(ENRError, match=message):
        ENR.from_rlp(signed_record(KEYS[0], 1, items))


def test_bad_signatures_are_rejected() -> None:
    items = v4_items(KEYS[0], udp=b"\x01")
    with pytest.raises(ENRError, match="bad signature:"):  # signed by another key
        ENR.from_rlp(signed_record(KEYS[0], 1, items, signature=KEYS[1].sign_compact(keccak256(rlp.encode([1, *items])))))
    with pytest.raises(ENRError, match="bad signature length"):
        ENR.from_rlp(signed_record(KEYS[0], 1, items, signature=KEYS[0].sign(keccak256(rlp.encode([1, *items])))))
    good = signed_record(KEYS[0], 1, items)
    sig = rlp.decode(good)[0]
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    high_s = sig[:32] + (n - int.from_bytes(sig[32:], "big")).to_bytes(32, "big")
    with pytest.raises(ENRError, match="bad signature:"):  # malleated signatures are refused, as geth does
        ENR.from_rlp(signed_record(KEYS[0], 1, items, signature=high_s))
    # the unverified path, for records from a trusted store, still checks the structure
    forged = signed_record(KEYS[0], 1, items, signature=b"\x01" * 64)
    assert ENR.from_rlp(forged, verify=False).udp == 1
    with pytest.raises(ENRError, match="bad signature:"):
        ENR.from_rlp(forged)


MALFORMED_RLP = {
    "not a list": (rlp.encode(b"x" * 10), "a record is a list"),
    "empty list": (b"\xc0", "empty list"),
    "signature only": (rlp.encode([b"\x01" * 64]), "no seq"),
    "trailing bytes": (signed_record(KEYS[0], 1, v4_items(KEYS[0])) + b"\x00", "after the record"),
    "signature is a list": (rlp.encode([[b"\x01"], 1]), "signature is a list"),
    "seq is a list": (rlp.encode([b"\x01" * 64, [1]]), "seq is a list"),
    "seq with leading zero": (signed_record(KEYS[0], b"\x00\x01", v4_items(KEYS[0])), "leading zero"),
    "seq over 64 bits": (signed_record(KEYS[0], 2**64, v4_items(KEYS[0])), "64 bits"),
    "single byte as string": (b"\xc3\x81\x05\x01", "single byte below 0x80"),
    "long form for short size": (b"\xf8\x03\x01\x02\x03", "long form"),
    "size with leading zero": (b"\xb9\x00\x40" + b"\x00" * 64, "leading zero"),
    "inner item past its list": (b"\xc2\x85\x01", "past the end"),
    "empty input": (b"", "ends inside"),
}


@pytest.mark.parametrize("data, message", MALFORMED_RLP.values(), ids=MALFORMED_RLP.keys())
def test_malformed_rlp(data: bytes, message: str) -> None:
    with pytest.raises(ENRError, match=message):
        ENR.from_rlp(data)


@pytest.mark.parametrize(
    "text, message",
    [
        (VECTOR["text"][4:], "must start with"),
        ("enr:" + VECTOR["text"][4:] + "=", "base64url"),
        (VECTOR["text"].replace("-", "+"), "base64url"),
        (VECTOR["text"].replace("_", "/"), "base64url"),
        ("enr:A", "base64url"),  # a length no byte string has
        (VECTOR["text"] + "A", "after the record"),  # decodes to one byte more
        ("enr:" + VECTOR["text"][8:], "a record is a list"),  # the first 3 bytes cut off
        ("enr:", "ends inside"),
    ],
)
def test_malformed_text(text: str, message: str) -> None:
    with pytest.raises(ENRError, match=message):
        ENR.from_text(text)


# -- building and updating --------------------------------------------------------------------


def test_list_values_keep_their_raw_rlp() -> None:
    fork_id = RawRLP(rlp.encode([[bytes.fromhex("fc64ec04"), 1150000]]))  # like a node's eth entry
    enr = ENR.build(KEYS[0], 5, ip="127.0.0.1", tcp=30303, udp=30303, extra={"eth": fork_id})
    decoded = ENR.from_rlp(enr.to_rlp())
    assert decoded.pairs["eth"] == fork_id and isinstance(decoded.pairs["eth"], RawRLP)
    assert rlp.decode(decoded.pairs["eth"]) == [[bytes.fromhex("fc64ec04"), b"\x11\x8c\x30"]]
    again = decoded.updated(KEYS[0], tcp=1)
    assert again.pairs["eth"] == fork_id
    assert rlp.decode(again.to_rlp())[again_index(again, "eth")] == [[bytes.fromhex("fc64ec04"), b"\x11\x8c\x30"]]
    # the same bytes as a plain value are an RLP string, a different record
    as_string = ENR.build(KEYS[0], 5, ip="127.0.0.1", tcp=30303, udp=30303, extra={"eth": bytes(fork_id)})
    assert as_string != enr and not isinstance(ENR.from_rlp(as_string.to_rlp()).pairs["eth"], RawRLP)


def again_index(enr: ENR, key: str) -> int:
    return 3 + 2 * list(enr.pairs).index(key)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ip": "::1"}, "IPv4"),
        ({"ip6": "127.0.0.1"}, "IPv6"),
        ({"ip": "not an ip"}, "not an IP"),
        ({"tcp": 65536}, "out of range"),
        ({"udp6": -1}, "out of range"),
        ({"extra": {"tcp": b"\x01"}}, "standard"),
        ({"extra": {"id": b"v5"}}, "standard"),
        ({"extra": {"x": "text"}}, "must be bytes"),
        ({"extra": {"ключ": b""}}, "latin-1"),
        ({"extra": {"x": RawRLP(b"\x05")}}, "RawRLP"),
        ({"extra": {"x": RawRLP(b"\xc1\x01\x02")}}, "RawRLP"),
    ],
)
def test_build_rejects_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ENRError, match=message):
        ENR.build(KEYS[0], 1, **kwargs)


@pytest.mark.parametrize("seq", [-1, 2**64])
def test_build_rejects_seq_out_of_range(seq: int) -> None:
    with pytest.raises(ENRError, match="seq"):
        ENR.build(KEYS[0], seq)


def test_updated_increments_seq_and_re_signs() -> None:
    enr = ENR.build(KEYS[0], 7, ip="127.0.0.1", tcp=30303, udp=30301, extra={"x": b"1", "y": b"2"})
    new = enr.updated(KEYS[0], tcp=40404, ip6="::1", extra={"x": None, "z": b"3"})
    assert new.seq == 8
    assert new.signature != enr.signature
    assert ENR.from_rlp(new.to_rlp()) == new
    assert independent_verify(new.to_rlp()) == enr.node_id
    assert (new.ip, new.tcp, new.udp, new.ip6) == (enr.ip, 40404, 30301, ipaddress.IPv6Address("::1"))
    assert "x" not in new and new["y"] == b"2" and new.get("z") == b"3"
    assert new.node_id == enr.node_id
    # the original is untouched
    assert (enr.seq, enr.tcp, enr.ip6, enr.get("x")) == (7, 30303, None, b"1")
    removed = new.updated(KEYS[0], ip6=None, tcp=None)
    assert removed.seq == 9 and removed.ip6 is None and removed.tcp is None and removed.udp == 30301
    assert enr.updated(KEYS[0]).seq == 8  # an update with no change still bumps seq


def test_updated_checks_its_arguments() -> None:
    enr = ENR.build(KEYS[0], 1)
    with pytest.raises(ENRError, match="own private key"):
        enr.updated(KEYS[1], tcp=1)
    with pytest.raises(ENRError, match="standard"):
        enr.updated(KEYS[0], extra={"secp256k1": None})
    with pytest.raises(ENRError, match="maximum"):
        ENR.build(KEYS[0], 2**64 - 1).updated(KEYS[0])


def test_records_are_immutable_values() -> None:
    enr = ENR.build(KEYS[0], 1, udp=1)
    with pytest.raises(AttributeError):
        enr.seq = 2
    with pytest.raises(TypeError):
        enr.pairs["udp"] = b"\x02"  # type: ignore[index]
    with pytest.raises(TypeError):
        ENR()
    assert pickle.loads(pickle.dumps(enr)) == enr
    assert len({enr, ENR.from_rlp(enr.to_rlp()), ENR.build(KEYS[0], 2, udp=1)}) == 2
    assert "udp=1" in repr(enr) and enr.node_id.short() in repr(enr)
    assert (enr == enr.to_rlp()) is False
