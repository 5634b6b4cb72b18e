"""Flags and flag values shared by the ``p2p`` commands: the node key, listen addresses, lists
of node URLs, counts, networks, the node database path. A value that cannot be used raises
:class:`BadArgument` (a usage error: exit status 2) with a message that names the flag and the
value; a place that is busy (a port in use, a database held by another process) raises
:class:`CommandFailed` (exit status 1)."""

from __future__ import annotations

import argparse
import errno
import os
import re
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from p2p.crypto import PrivateKey, load_node_key
from p2p.enode import ENR, EnodeURLError, ENRError, Node
from p2p.server_config import ServerConfig

MAX_PORT = 65535  # TCP and UDP ports are 16 bits
# go-ethereum's --verbosity levels: 0 silent, 1 error, 2 warn, 3 info, 4 debug, 5 trace.
VERBOSITY_LEVELS = {"0": "critical", "1": "error", "2": "warning", "3": "info", "4": "debug", "5": "debug",
                    "silent": "critical", "crit": "critical", "critical": "critical", "error": "error",
                    "warn": "warning", "warning": "warning", "info": "info", "debug": "debug",
                    "trace": "debug"}
# What a LevelDB directory holds; a directory with only these (or nothing) may be opened.
LEVELDB_FILE_PREFIXES = ("CURRENT", "LOCK", "LOG", "MANIFEST-")
LEVELDB_FILE_SUFFIXES = (".ldb", ".log", ".sst", ".dbtmp")


class BadArgument(ValueError):
    """A flag value that cannot be used; the message names the flag or the value."""


class CommandFailed(Exception):
    """A command could not do its work for a reason outside its arguments (exit status 1)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (``p2p node: argument --maxpeers: ...``) and the help
    layout of every ``p2p`` command: defaults shown, descriptions kept as written."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def _metavar_formatter(self, action: argparse.Action, default_metavar: str) -> Callable[[int], tuple[str, ...]]:
        if action.metavar is None and action.option_strings and action.choices is None:
            # One style for flags that did not name their value: N for counts, VALUE otherwise.
            return super()._metavar_formatter(action, "N" if action.type is int else "VALUE")
        return super()._metavar_formatter(action, default_metavar)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default in (None, False, "", argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default %(default)s)"


def subcommand(sub: "argparse._SubParsersAction[Any]", name: str, *, help: str, doc: str | None = None,
               ) -> argparse.ArgumentParser:
    """A sub-command parser; ``doc`` (a module docstring) becomes its description, without the
    reStructuredText markup that docstrings use."""
    description = re.sub(r":\w+:`~?([^`]+)`", r"\1", doc).replace("``", "") if doc else help
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help, description=description)
    add_verbosity_argument(parser, top=False)
    return parser


def verbosity(text: str) -> str:
    level = VERBOSITY_LEVELS.get(text.strip().lower())
    if level is None:
        raise argparse.ArgumentTypeError(f"unknown level {text!r} (0-5 or silent, error, warn, info, debug)")
    return level


def add_verbosity_argument(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``-v``/``--verbosity`` before or after the sub-command: the sub-command's copy only sets
    the value when it is given."""
    parser.add_argument("-v", "--verbosity", type=verbosity, metavar="LEVEL",
                        default="warning" if top else argparse.SUPPRESS,
                        help="log level on stderr: 0-5 as go-ethereum (0 silent .. 4 debug) or "
                             "silent, error, warn, info, debug" + (" (default warn)" if top else ""))


def count(minimum: int) -> Callable[[str], int]:
    """An integer flag value of at least ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
        return value
    return parse


def seconds(*, positive: bool = False) -> Callable[[str], float]:
    """A duration flag value: 0 or more (above 0 with ``positive``)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
        if value != value or value < 0 or (positive and value == 0) or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be {'above 0' if positive else '0 or more'}, got {text}")
        return value
    return parse


def netrestrict(text: str) -> str:
    """``CIDR,...``, checked now so that a typo is reported before anything starts."""
    from p2p.dial import parse_netrestrict

    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            parse_netrestrict(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not a network (CIDR such as 10.0.0.0/8)") from None
    return text


def nat(text: str) -> str:
    from p2p.server import parse_nat

    try:
        parse_nat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not none or extip:IP") from None
    return text


def add_key_arguments(parser: argparse.ArgumentParser, *, hex_help: str, file_help: str) -> None:
    """``--nodekeyhex HEX`` or ``--nodekey FILE``, not both; :func:`load_key` reads them."""
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--nodekeyhex", metavar="HEX", help=hex_help)
    keys.add_argument("--nodekey", metavar="FILE", help=file_help)


def add_listen_arguments(parser: argparse.ArgumentParser, *, default: str, help: str) -> None:
    """``--addr HOST:PORT`` and ``--port PORT``, a shorthand that replaces only the port."""
    parser.add_argument("--addr", default=default, metavar="HOST:PORT", help=help)
    parser.add_argument("--port", type=port_number, metavar="PORT",
                        help="listen on this port (the host of --addr is kept)")


def port_number(text: str) -> int:
    if not text.isdigit() or int(text) > MAX_PORT:
        raise argparse.ArgumentTypeError(f"not a port (0-{MAX_PORT}): {text!r}")
    return int(text)


def listen_address(args: argparse.Namespace, *, any_host: str = "127.0.0.1") -> tuple[str, int]:
    """``--addr`` with ``--port`` applied."""
    host, port = parse_hostport(args.addr, any_host=any_host)
    return host, (args.port if args.port is not None else port)


def load_key(args: argparse.Namespace) -> PrivateKey:
    """The key named by ``--nodekeyhex`` or ``--nodekey``; without either, a new one (a new
    identity each run)."""
    try:
        if args.nodekeyhex:
            return PrivateKey.from_hex(args.nodekeyhex.strip())
        if args.nodekey:
            return load_node_key(args.nodekey)
    except (ValueError, OSError) as exc:  # InvalidKey is a ValueError, KeyFileError an OSError
        flag = "--nodekeyhex" if args.nodekeyhex else f"--nodekey {args.nodekey}"
        raise BadArgument(f"{flag}: cannot use the node key: {exc}") from exc
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


def check_listen(flag: str, addr: tuple[str, int], *, udp: bool, tcp: bool = True) -> None:
    """Bind (and release) what the command is about to bind, so that an unknown host, an
    address of another machine or a port in use is reported with the flag that named it,
    before anything starts. The real bind later may still fail (a race): that is reported
    too, only without the flag."""
    host, port = addr
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BadArgument(f"{flag}: cannot resolve host {host!r}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    kinds = ([(socket.SOCK_STREAM, "TCP")] if tcp else []) + ([(socket.SOCK_DGRAM, "UDP")] if udp else [])
    for kind, name in kinds:
        with socket.socket(family, kind) as sock:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as trio's listeners do
            try:
                sock.bind(sockaddr)
            except OSError as exc:
                where = f"{host}:{port}"
                if exc.errno == errno.EADDRINUSE:
                    raise CommandFailed(f"{flag} {where}: {name} port {port} is already in use") from None
                if exc.errno == errno.EADDRNOTAVAIL:
                    raise BadArgument(f"{flag} {where}: {host} is not an address of this host") from None
                if exc.errno == errno.EACCES:
                    raise CommandFailed(f"{flag} {where}: no permission to listen on {name} port {port}") from None
                raise CommandFailed(f"{flag} {where}: cannot listen on {name}: {exc.strerror}") from None


def _is_leveldb_file(name: str) -> bool:
    return name.startswith(LEVELDB_FILE_PREFIXES) or name.endswith(LEVELDB_FILE_SUFFIXES)


def lock_holder(path: str) -> str | None:
    """Which process holds the LevelDB lock of ``path`` (``"p2p node, pid 123"``), from
    /proc/locks; None when no other process holds it or this is not Linux."""
    try:
        inode = os.stat(os.path.join(path, "LOCK")).st_ino
        with open("/proc/locks") as f:
            locks = f.read().splitlines()
    except OSError:
        return None
    for line in locks:
        fields = line.split()
        # "1: POSIX  ADVISORY  WRITE 12345 08:01:1234567 0 EOF" (or "-> ..." for waiters)
        if "->" in fields or len(fields) < 6 or not fields[4].isdigit():
            continue
        if fields[5].rsplit(":", 1)[-1] == str(inode) and int(fields[4]) != os.getpid():
            return _describe_process(int(fields[4]))
    return None


def _describe_process(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return f"process {pid}"
    for i, arg in enumerate(argv):
        if os.path.basename(arg) == "p2p" and i + 1 < len(argv):
            return f"p2p {argv[i + 1]}, pid {pid}"
        if arg == "-m" and i + 2 < len(argv) and argv[i + 1] == "p2p":
            return f"p2p {argv[i + 2]}, pid {pid}"
    name = os.path.basename(argv[0]) if argv else "?"
    return f"{name}, pid {pid}"


def check_nodedb(path: str, *, flag: str = "--nodedb", create: bool = True) -> None:
    """Refuse, before anything is opened, a node database path that would fail or do harm:
    a file, a path under a missing directory, a directory of someone else's files (a
    database is never created among them), or one held by another process."""
    shown = f"{flag} {path}" if flag else path
    if os.path.exists(path) and not os.path.isdir(path):
        raise BadArgument(f"{shown}: is a file, not a node database directory")
    if not os.path.exists(path):
        parent = os.path.dirname(os.path.abspath(path))
        if not create:
            raise CommandFailed(f"{shown}: no node database here (no such directory)")
        if not os.path.isdir(parent):
            raise BadArgument(f"{shown}: directory {parent} does not exist")
        return
    try:
        names = os.listdir(path)
    except OSError as exc:
        raise BadArgument(f"{shown}: cannot read the directory: {exc.strerror}") from None
    foreign = sorted(n for n in names if not _is_leveldb_file(n))
    if foreign:
        listed = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        advice = "; give a new or empty directory" if create else ""
        raise BadArgument(f"{shown}: not a node database (the directory holds other files: {listed}){advice}")
    if names and "CURRENT" not in names:
        raise BadArgument(f"{shown}: not a node database (no LevelDB CURRENT file)")
    if not names and not create:
        raise BadArgument(f"{shown}: not a node database (the directory is empty)")
    holder = lock_holder(path)
    if holder is not None:
        raise CommandFailed(f"{shown}: the node database is in use by another process ({holder})")


def add_node_arguments(p: argparse.ArgumentParser, *, default_addr: str) -> None:
    """The flags of a full node: ``p2p node`` and ``p2p chat``."""
    add_key_arguments(p, hex_help="node private key as hex",
                      file_help="file holding the node private key (hex); without a key flag a new key is made")
    add_listen_arguments(p, default=default_addr, help="TCP listen address; discovery uses the same UDP port")
    p.add_argument("--bootnodes", default="", metavar="URL,...", help="enode URLs of discovery bootstrap nodes")
    p.add_argument("--staticnodes", default="", metavar="URL,...", help="enode URLs to stay connected to")
    p.add_argument("--trustednodes", default="", metavar="URL,...", help="enode URLs admitted above --maxpeers")
    p.add_argument("--maxpeers", type=count(0), default=50, metavar="N", help="maximum number of peers")
    p.add_argument("--nodiscover", action="store_true", help="do not run discovery (no UDP, no dialing of found nodes; p2p node still dials --dns trees)")
    p.add_argument("--nodedb", metavar="PATH",
                   help="node database directory, new or empty the first time (default: in memory)")
    p.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus metrics on this address")
    p.add_argument("--nat", default="none", type=nat, metavar="none|extip:IP",
                   help="address advertised in the ENR and enode")
    p.add_argument("--netrestrict", type=netrestrict, metavar="CIDR,...",
                   help="only connect to / accept these networks")
    p.add_argument("--v5", action="store_true", help="also run discovery v5 on the same UDP port")
    p.add_argument("--json", action="store_true", help="one JSON object per line on stdout")


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """What ``open_server`` is given for the node flags."""

    private_key: PrivateKey
    listen: tuple[str, int]
    config: ServerConfig


def server_options(args: argparse.Namespace, key: PrivateKey) -> ServerOptions:
    """``open_server``'s arguments from the node flags, every value checked first: a value that
    cannot work raises :class:`BadArgument`, a busy port or database :class:`CommandFailed`,
    before anything starts."""
    listen = listen_address(args)
    metrics = parse_hostport(args.metrics, flag="--metrics") if args.metrics else None
    discovery_config = None
    if args.v5:
        from p2p.discover import DiscoveryConfig

        discovery_config = DiscoveryConfig(v5=True)
    config = ServerConfig(
        bootnodes=parse_enode_list(args.bootnodes, "bootnode"),
        static_nodes=parse_enode_list(args.staticnodes, "static node"),
        trusted_nodes=parse_enode_list(args.trustednodes, "trusted node"),
        max_peers=args.maxpeers, discovery=not args.nodiscover, discovery_config=discovery_config,
        node_db_path=args.nodedb, nat=args.nat, netrestrict=args.netrestrict, metrics_addr=metrics)
    check_listen("--addr" if args.port is None else "--port", listen, udp=not args.nodiscover)
    if metrics is not None:
        check_listen("--metrics", metrics, udp=False)
    if args.nodedb:
        check_nodedb(args.nodedb)
    return ServerOptions(key, listen, config)


def stderr_line(text: str) -> None:
    sys.stderr.write(text.replace("\n", " ") + "\n")
    sys.stderr.flush()
