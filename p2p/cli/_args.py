"""Flags and flag values shared by ``p2p node``, ``p2p bootnode`` and ``p2p chat``: the node key,
listen addresses and lists of node URLs. Each command words its own help and prefixes the
:class:`BadArgument` message with its own name."""

from __future__ import annotations

import argparse

from p2p.crypto import PrivateKey, load_node_key
from p2p.enode import ENR, EnodeURLError, ENRError, Node

MAX_PORT = 65535  # TCP and UDP ports are 16 bits


class BadArgument(ValueError):
    """A flag value that cannot be used; the message names the flag or the value."""


def add_key_arguments(parser: argparse.ArgumentParser, *, hex_help: str, file_help: str) -> None:
    """``--nodekeyhex HEX`` or ``--nodekey FILE``, not both; :func:`load_key` reads them."""
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--nodekeyhex", metavar="HEX", help=hex_help)
    keys.add_argument("--nodekey", metavar="FILE", help=file_help)


def load_key(args: argparse.Namespace) -> PrivateKey:
    """The key named by ``--nodekeyhex`` or ``--nodekey``; without either, a new one (a new
    identity each run)."""
    try:
        if args.nodekeyhex:
            return PrivateKey.from_hex(args.nodekeyhex.strip())
        if args.nodekey:
            return load_node_key(args.nodekey)
    except (ValueError, OSError) as exc:  # InvalidKey is a ValueError, KeyFileError an OSError
        raise BadArgument(str(exc)) from exc
    return PrivateKey.generate()


def parse_hostport(text: str, *, flag: str = "--addr", any_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT`` or ``:PORT`` (then the host is ``any_host``)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= MAX_PORT:
        raise BadArgument(f"{flag} must be HOST:PORT, got {text!r}")
    return host.strip("[]") or any_host, int(port)


def parse_enode_list(text: str, what: str) -> list[Node]:
    """Comma-separated ``enode://`` or ``enr:`` URLs; ``what`` names them in the error."""
    nodes = []
    for url in (part.strip() for part in text.split(",")):
        if not url:
            continue
        try:
            nodes.append(Node.from_enr(ENR.from_text(url)) if url.startswith("enr:") else Node.from_url(url))
        except (EnodeURLError, ENRError) as exc:
            raise BadArgument(f"bad {what} URL {url!r}: {exc}") from exc
    return nodes
