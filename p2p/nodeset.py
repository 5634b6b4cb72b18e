"""go-ethereum's ``nodes.json`` (cmd/devp2p's node set): records found by a crawl, with a
liveness score, and the filters of ``devp2p nodeset filter``. No I/O beyond reading and writing
the file.

The file is one JSON object keyed by node ID (64 hex digits)::

    {"<id>": {"seq": 3, "record": "enr:...", "score": 5,
              "firstResponse": "2024-01-01T00:00:00Z", "lastResponse": "...", "lastCheck": "..."}}

``score`` counts the liveness checks a node passed: up by one per answer, halved per silence;
a node whose score reaches 0 leaves the set. go-ethereum omits ``score`` when it is 0 and
writes a time never reached as ``0001-01-01T00:00:00Z``; both are read back the same way.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from p2p.enode import ENR, ENRError, Node, NodeID

JSON_INDENT = 4  # as go-ethereum's writeNodesJSON
ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time: a time that never happened
MAX_NODESET_BYTES = 256 * 2**20  # a nodes.json read whole: ~1 KiB per node, far above any real network
# The statuses of :func:`check_result`, as go-ethereum's crawler counts them.
ADDED, UPDATED, REMOVED, SKIP_RECENT, SKIP_INCOMPATIBLE = "added", "updated", "removed", "recent", "incompatible"


class NodeSetError(ValueError):
    """A nodes.json that cannot be read: the message names the file or the node."""


@dataclass(frozen=True, slots=True)
class NodeEntry:
    record: ENR
    score: int = 0
    first_response: datetime | None = None  # first time it answered a check
    last_response: datetime | None = None  # last time it answered
    last_check: datetime | None = None  # last time we asked

    @property
    def seq(self) -> int:
        return self.record.seq

    @property
    def node(self) -> Node:
        return Node.from_enr(self.record)


def now_utc() -> datetime:
    """Now, truncated to the second as go-ethereum's crawler stores it."""
    return datetime.now(timezone.utc).replace(microsecond=0)


def format_time(t: datetime | None) -> str:
    if t is None:
        return ZERO_TIME
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def parse_time(text: object, what: str) -> datetime | None:
    if text is None or text == ZERO_TIME:
        return None
    if not isinstance(text, str):
        raise NodeSetError(f"{what}: not a time: {text!r}")
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise NodeSetError(f"{what}: not an RFC 3339 time: {text!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return None if t.year == 1 else t


def check_result(entry: NodeEntry | None, record: ENR | None, now: datetime,
                 revalidate_interval: float) -> tuple[NodeEntry | None, str]:
    """go-ethereum's crawler ``updateNode``: the entry after a liveness check that returned
    ``record`` (None: no answer), and what happened. ``entry`` None: a node not in the set.

    A check of a node checked less than ``revalidate_interval`` seconds ago is not made
    (:data:`SKIP_RECENT`, the entry unchanged); call :func:`due` first to avoid the request.
    """
    if entry is not None and not due(entry, now, revalidate_interval):
        return entry, SKIP_RECENT
    if record is None:
        if entry is None or entry.score == 0:
            return entry, SKIP_INCOMPATIBLE  # never answered: not added (go: no EIP-868)
        score = entry.score // 2
        if score <= 0:
            return None, REMOVED
        return replace(entry, score=score, last_check=now), UPDATED
    if entry is None or entry.first_response is None:
        base = entry if entry is not None else NodeEntry(record)
        return replace(base, record=record, score=base.score + 1, first_response=now, last_response=now,
                       last_check=now), ADDED
    return replace(entry, record=record, score=entry.score + 1, last_response=now, last_check=now), UPDATED


def due(entry: NodeEntry | None, now: datetime, revalidate_interval: float) -> bool:
    """Whether a node is to be checked now (not checked within ``revalidate_interval``)."""
    return entry is None or entry.last_check is None or \
        (now - entry.last_check).total_seconds() >= revalidate_interval


# -- the file ----------------------------------------------------------------------------------

def loads(text: str, *, source: str = "nodes.json") -> dict[NodeID, NodeEntry]:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NodeSetError(f"{source}: not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise NodeSetError(f"{source}: not a node set (a JSON object keyed by node ID)")
    out: dict[NodeID, NodeEntry] = {}
    for key, item in raw.items():
        what = f"{source}: node {key[:16]}"
        if not isinstance(item, dict) or not isinstance(item.get("record"), str):
            raise NodeSetError(f"{what}: no record")
        try:
            node_id = NodeID.from_hex(key.removeprefix("0x"))
            record = ENR.from_text(item["record"])
        except (ValueError, ENRError) as exc:
            raise NodeSetError(f"{what}: {exc}") from None
        if record.node_id != node_id:  # go-ethereum's nodeSet.verify
            raise NodeSetError(f"{what}: ID does not match the record's {record.node_id.hex()[:16]}")
        if item.get("seq", record.seq) != record.seq:
            raise NodeSetError(f"{what}: seq {item.get('seq')} does not match the record's {record.seq}")
        score = item.get("score", 0)
        if not isinstance(score, int) or isinstance(score, bool):
            raise NodeSetError(f"{what}: score is not a whole number")
        out[node_id] = NodeEntry(record, score, parse_time(item.get("firstResponse"), what),
                                 parse_time(item.get("lastResponse"), what), parse_time(item.get("lastCheck"), what))
    return out


def dumps(nodes: Mapping[NodeID, NodeEntry]) -> str:
    """The file's text: keys sorted (as Go marshals a map), go-ethereum's field names."""
    obj = {}
    for node_id in sorted(nodes):
        e = nodes[node_id]
        item: dict[str, object] = {"seq": e.seq, "record": e.record.to_text()}
        if e.score:
            item["score"] = e.score
        item["firstResponse"] = format_time(e.first_response)
        item["lastResponse"] = format_time(e.last_response)
        item["lastCheck"] = format_time(e.last_check)
        obj[node_id.hex()] = item
    return json.dumps(obj, indent=JSON_INDENT)


def load(path: str) -> dict[NodeID, NodeEntry]:
    """The set in ``path``; OSError when it cannot be read, NodeSetError when it is not a set."""
    with open(path, "rb") as f:
        data = f.read(MAX_NODESET_BYTES + 1)
    if len(data) > MAX_NODESET_BYTES:
        raise NodeSetError(f"{path}: larger than {MAX_NODESET_BYTES >> 20} MiB")
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise NodeSetError(f"{path}: not UTF-8 text") from None
    return loads(text, source=path)


def save(path: str, nodes: Mapping[NodeID, NodeEntry]) -> None:
    """Write the set to ``path`` through a temporary file: a crash never leaves half a file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(dumps(nodes) + "\n")
    os.replace(tmp, path)


# -- filters (go-ethereum's ``devp2p nodeset filter``) -----------------------------------------

NodeFilter = Callable[[NodeEntry], bool]

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration (``90s``, ``1h30m``, ``24h``) or a plain number of seconds."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        pos, total = 0, 0.0
        for m in _DURATION.finditer(text):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos != len(text) or not text:
            raise ValueError(f"not a duration (such as 90s, 1h30m, 24h): {text!r}") from None
        return total
    if value < 0 or value != value:
        raise ValueError(f"not a duration: {text!r}")
    return value


def min_age(seconds: float) -> NodeFilter:
    """Nodes that answered over at least ``seconds`` (last response - first response)."""
    def check(e: NodeEntry) -> bool:
        if e.first_response is None or e.last_response is None:
            return False
        return (e.last_response - e.first_response) >= timedelta(seconds=seconds)
    return check


def ip_range(cidr: str) -> NodeFilter:
    """Nodes whose record's address is in ``cidr``."""
    net = ipaddress.ip_network(cidr, strict=False)

    def check(e: NodeEntry) -> bool:
        ip = e.record.ip or e.record.ip6
        return ip is not None and ip in net
    return check


def has_key(key: str) -> NodeFilter:
    """Nodes whose record has the entry ``key`` (``eth``, ``snap``, ``les``, ...)."""
    return lambda e: key in e.record


def apply(nodes: Mapping[NodeID, NodeEntry], filters: Iterable[NodeFilter], limit: int | None = None,
          ) -> dict[NodeID, NodeEntry]:
    """The nodes passing every filter; with ``limit``, the ``limit`` best by score (ties by ID)."""
    checks = list(filters)
    kept = {k: e for k, e in nodes.items() if all(f(e) for f in checks)}
    if limit is not None and len(kept) > limit:
        best = sorted(kept, key=lambda k: (-kept[k].score, k))[:limit]
        kept = {k: kept[k] for k in best}
    return kept


__all__ = [
    "ADDED", "JSON_INDENT", "NodeEntry", "NodeFilter", "NodeSetError", "REMOVED", "SKIP_INCOMPATIBLE",
    "SKIP_RECENT", "UPDATED", "ZERO_TIME", "apply", "check_result", "due", "dumps", "format_time", "has_key",
    "ip_range", "load", "loads", "min_age", "now_utc", "parse_duration", "parse_time", "save",
]
