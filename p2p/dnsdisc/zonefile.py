"""A tree's TXT records as an RFC 1035 zone file that NSD, Knot or BIND serve as they are.

One TXT string holds at most 255 bytes (RFC 1035 3.3.14): a longer entry (a branch of 13
hashes is 365 bytes) is written as several quoted strings, which a resolver hands back as one
record whose strings are joined. No I/O here.
"""

from __future__ import annotations

from typing import Final

from p2p.dnsdisc.tree import ENTRY_TTL, ROOT_TTL

MAX_TXT_STRING: Final = 255  # bytes in one <character-string> of a TXT record (RFC 1035)
SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 3600, 600, 4 * 7 * 24 * 3600  # secondaries: hourly, as common
SOA_SERIAL_MODULUS: Final = 2**32  # RFC 1982 serials are 32 bits; the tree's seq may be larger


def split_txt(text: str) -> list[str]:
    """``text`` as TXT character-strings of at most 255 bytes each."""
    data = text.encode()
    return [data[i:i + MAX_TXT_STRING].decode() for i in range(0, len(data), MAX_TXT_STRING)] or [""]


def quote(part: str) -> str:
    return '"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_zone(domain: str, records: dict[str, str], seq: int, *, nameserver: str | None = None,
                root_ttl: int = ROOT_TTL, entry_ttl: int = ENTRY_TTL) -> str:
    """The zone of ``domain`` with the TXT ``records`` (full names, as ``Tree.to_txt``) and the
    SOA and NS records a server needs to load it (serial: the tree's seq)."""
    origin = domain.rstrip(".") + "."
    ns = nameserver or f"ns1.{origin}"
    lines = [f"; EIP-1459 node tree of {domain}, seq {seq}", f"$ORIGIN {origin}", f"$TTL {entry_ttl}",
             f"@ {root_ttl} IN SOA {ns} hostmaster.{origin} ( {seq % SOA_SERIAL_MODULUS} {SOA_REFRESH} "
             f"{SOA_RETRY} {SOA_EXPIRE} {root_ttl} )",
             f"@ {root_ttl} IN NS {ns}"]
    suffix = "." + domain.rstrip(".")
    for name in sorted(records, key=lambda n: (n != domain, n)):
        label = "@" if name == domain else name.removesuffix(suffix)
        ttl = root_ttl if name == domain else entry_ttl
        lines.append(f"{label} {ttl} IN TXT " + " ".join(quote(p) for p in split_txt(records[name])))
    return "\n".join(lines) + "\n"


__all__ = ["MAX_TXT_STRING", "render_zone", "split_txt"]
