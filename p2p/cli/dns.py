"""``p2p dns sign|to-zonefile|resolve``: publish a node list as an EIP-1459 DNS tree, and read one.

A tree directory holds ``nodes.json`` (go-ethereum's node set: ``{"<id>": {"seq": N, "record":
"enr:..."}}``). ``sign`` builds the tree from it, signs the root with a node key file and writes
``enrtree-info.json`` (URL, seq, signature, links) and ``enrtree.json`` (every TXT record by
name). ``to-zonefile`` writes the zone that an authoritative server (NSD, Knot) serves.
``resolve`` reads a tree through DNS, checks every signature and hash, and prints its nodes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any

from p2p.cli._args import BadArgument, CommandFailed, count, parse_hostport, seconds, subcommand
from p2p.cli._output import emit
from p2p.cli._run import Stop, run_command
from p2p.crypto import PrivateKey, load_node_key
from p2p.dnsdisc import DNSClient, DNSDiscError, Limits, Tree, make_tree, parse_url
from p2p.dnsdisc.client import QUERY_TIMEOUT, SyncResult
from p2p.dnsdisc.records import check_domain
from p2p.dnsdisc.sync import MAX_TREES
from p2p.dnsdisc.zonefile import render_zone
from p2p.enode import ENR, ENRError, Node

NODES_FILE = "nodes.json"
INFO_FILE = "enrtree-info.json"
TREE_FILE = "enrtree.json"
ZONE_FILE = "zonefile"
RESOLVE_RATE = 10.0  # queries per second for a one-off read: ten times a node's, still polite
MAX_NODES_FILE = 64 * 1024 * 1024  # bytes of nodes.json read: far past any public list (~1 MB)
JSON_INDENT = 4  # go-ethereum's devp2p writes these files with four spaces


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subcommand(sub, "dns", help="publish and read EIP-1459 DNS node lists", doc=__doc__)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    sign = subcommand(actions, "sign", help="build and sign the tree of DIR/nodes.json")
    sign.add_argument("dir", metavar="DIR", help="tree directory holding nodes.json")
    sign.add_argument("--key", required=True, metavar="KEYFILE", help="node key file (hex, as p2p keygen --out writes) "
                      "that signs the root")
    sign.add_argument("--domain", metavar="D", help="domain of the tree (default: the URL's in enrtree-info.json, "
                      "else the name of DIR)")
    sign.add_argument("--seq", type=count(0), metavar="N", help="sequence number (default: the previous one + 1)")

    zone = subcommand(actions, "to-zonefile", help="write the signed tree of DIR as a DNS zone file")
    zone.add_argument("dir", metavar="DIR", help="tree directory signed by p2p dns sign")
    zone.add_argument("--out", metavar="FILE", help="where to write it, - for stdout (default DIR/zonefile)")
    zone.add_argument("--ns", metavar="NAME", help="name server of the SOA and NS records (default ns1.DOMAIN.)")

    res = subcommand(actions, "resolve", help="read a tree through DNS, verify it and print its nodes")
    res.add_argument("url", metavar="URL", help="enrtree://<key>@<domain>")
    res.add_argument("--server", metavar="HOST:PORT", help="DNS server to ask (default: the system's first name server)")
    res.add_argument("--timeout", type=seconds(positive=True), default=QUERY_TIMEOUT, metavar="SECONDS",
                     help="timeout of each query")
    res.add_argument("--rate", type=seconds(positive=True), default=RESOLVE_RATE, metavar="N",
                     help="queries per second at most")
    res.add_argument("--max-trees", type=count(1), default=MAX_TREES, metavar="N",
                     help="trees read at most, the URL's and those it links to")
    res.add_argument("--no-links", action="store_true", help="read only the URL's tree, not the trees it links to")
    res.add_argument("--json", action="store_true", help="one JSON object per node and line, then a summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "sign":
        return sign(args)
    if args.action == "to-zonefile":
        return to_zonefile(args)
    try:
        url = parse_url(args.url)
    except DNSDiscError as exc:
        raise BadArgument(f"bad URL {args.url!r}: {exc}") from None
    server = parse_hostport(args.server, flag="--server") if args.server else None
    return run_command("dns", partial(_resolve, args, url.url, server))


# -- files of a tree directory ----------------------------------------------------------------


def _read_json(path: Path, what: str, *, required: bool = True) -> Any:
    try:
        if path.stat().st_size > MAX_NODES_FILE:
            raise BadArgument(f"{path}: larger than {MAX_NODES_FILE} bytes")
        return json.loads(path.read_text())
    except FileNotFoundError:
        if required:
            raise BadArgument(f"{path}: no such file ({what})") from None
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadArgument(f"{path}: cannot read {what}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise BadArgument(f"{path}: not JSON: {exc}") from None


def load_nodes(directory: Path) -> list[ENR]:
    """The records of DIR/nodes.json, each checked (signature, and the ID it is filed under)."""
    path = directory / NODES_FILE
    data = _read_json(path, "the node set")
    if not isinstance(data, dict):
        raise BadArgument(f"{path}: not a JSON object of node ID to {{seq, record}}")
    records = []
    for node_id, item in data.items():
        text = item.get("record") if isinstance(item, dict) else None
        if not isinstance(text, str):
            raise BadArgument(f"{path}: node {node_id}: no \"record\" string")
        try:
            enr = ENR.from_text(text)
        except ENRError as exc:
            raise BadArgument(f"{path}: node {node_id}: {exc}") from None
        if enr.node_id.hex() != str(node_id).lower().removeprefix("0x"):
            raise BadArgument(f"{path}: node {node_id}: the record is of node {enr.node_id.hex()}")
        records.append(enr)
    return records


def _load_info(directory: Path) -> dict[str, Any]:
    info = _read_json(directory / INFO_FILE, "the tree info", required=False) or {}
    if not isinstance(info, dict):
        raise BadArgument(f"{directory / INFO_FILE}: not a JSON object")
    return info


def _write(path: Path, text: str) -> None:
    try:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise CommandFailed(f"cannot write {path}: {exc.strerror or exc}") from None


def _links(info: dict[str, Any], where: Path) -> list[str]:
    links = info.get("links") or []
    if not isinstance(links, list):
        raise BadArgument(f"{where}: \"links\" is not a list")
    for link in links:
        try:
            parse_url(str(link))
        except DNSDiscError as exc:
            raise BadArgument(f"{where}: bad link {link!r}: {exc}") from None
    return [str(link) for link in links]


def sign(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if not directory.is_dir():
        raise BadArgument(f"{directory}: not a directory")
    try:
        key: PrivateKey = load_node_key(args.key)
    except OSError as exc:
        raise BadArgument(f"--key {args.key}: {exc}") from None
    records = load_nodes(directory)
    info = _load_info(directory)
    links = _links(info, directory / INFO_FILE)
    domain = args.domain
    if not domain and info.get("url"):
        try:
            domain = parse_url(str(info["url"])).domain
        except DNSDiscError as exc:
            raise BadArgument(f"{directory / INFO_FILE}: bad \"url\": {exc}") from None
    domain = (domain or directory.resolve().name).rstrip(".")
    seq = args.seq if args.seq is not None else int(info.get("seq", 0)) + 1
    try:
        check_domain(domain)
    except DNSDiscError:
        raise BadArgument(f"domain {domain!r}: not a DNS domain name (give --domain)") from None
    tree, url = make_tree(seq, records, links).sign(key, domain)
    _write_tree(directory, tree, url, domain, links)
    print(url)
    print(f"signed seq {seq}: {len(records)} nodes, {len(links)} links, {len(tree.entries) + 1} TXT records "
          f"in {directory / TREE_FILE}", file=sys.stderr)
    return 0


def _write_tree(directory: Path, tree: Tree, url: str, domain: str, links: list[str]) -> None:
    info = {"url": url, "seq": tree.seq, "signature": tree.root.text().rsplit("sig=", 1)[1], "links": links,
            "lastModified": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    _write(directory / INFO_FILE, json.dumps(info, indent=JSON_INDENT) + "\n")
    _write(directory / TREE_FILE, json.dumps(tree.to_txt(domain), indent=JSON_INDENT) + "\n")


def load_signed_tree(directory: Path) -> tuple[Tree, str]:
    """The tree of DIR rebuilt from nodes.json and enrtree-info.json, its signature checked
    (as go-ethereum's ``to-txt``): what was signed is what is published."""
    info = _load_info(directory)
    if not info.get("url") or not info.get("signature"):
        raise BadArgument(f"{directory}: no signed tree ({INFO_FILE} has no url or signature); run p2p dns sign")
    try:
        link = parse_url(str(info["url"]))
        tree = make_tree(int(info.get("seq", 0)), load_nodes(directory), _links(info, directory / INFO_FILE))
        return tree.with_signature(link.pubkey, str(info["signature"]), link.domain), link.domain
    except DNSDiscError as exc:
        raise BadArgument(f"{directory}: {exc}; nodes.json changed since p2p dns sign?") from None


def to_zonefile(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    tree, domain = load_signed_tree(directory)
    text = render_zone(domain, tree.to_txt(domain), tree.seq, nameserver=args.ns)
    if args.out == "-":
        sys.stdout.write(text)
        return 0
    out = Path(args.out) if args.out else directory / ZONE_FILE
    _write(out, text)
    print(f"{out}: zone of {domain}, seq {tree.seq}, {len(tree.entries) + 1} TXT records", file=sys.stderr)
    return 0


# -- resolve ---------------------------------------------------------------------------------


def node_fields(enr: ENR) -> dict[str, Any]:
    fields: dict[str, Any] = {"id": enr.node_id.hex(), "seq": enr.seq, "enr": enr.to_text()}
    try:
        node = Node.from_enr(enr)
    except ValueError:
        fields["enode"] = None
    else:
        fields.update(enode=node.to_url(), ip=str(node.ip), tcp=node.tcp_port, udp=node.udp_port)
    return fields


async def _resolve(args: argparse.Namespace, url: str, server: tuple[str, int] | None, stop: Stop) -> int:
    client = DNSClient(server=server, timeout=args.timeout, rate_limit=args.rate,
                       limits=Limits(max_trees=args.max_trees))
    result: SyncResult | None = None
    with stop.until_stopped():
        result = await client.sync_tree(url, follow_links=not args.no_links)
    if result is None:  # stopped by a signal
        return 0
    for enr in result.nodes:
        fields = node_fields(enr)
        if args.json:
            emit("node", **fields)
        else:
            print(f"{fields['id']}  {fields['enode'] or '(no endpoint)'}  {fields['enr']}")
    summary = {"nodes": len(result.nodes), "trees": result.seq, "queries": result.queries,
               "dropped": [str(e) for e in result.errors]}
    if args.json:
        emit("summary", **summary)
    else:
        print(f"{len(result.nodes)} nodes from {len(result.trees)} trees, {result.queries} queries, "
              f"{len(result.errors)} subtrees dropped", file=sys.stderr)
        for err in result.errors:
            print(f"  dropped: {err}", file=sys.stderr)
    return 0
