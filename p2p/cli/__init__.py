"""The ``p2p`` command. Each sub-command lives in its own module here and exposes
``register(subparsers)``; the module's ``run`` writes to stdout, library code never does."""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import sys
from types import ModuleType

from p2p.cli._args import ArgumentParser, BadArgument, CommandFailed, add_verbosity_argument

# Order of the sub-commands in ``p2p --help``.
COMMANDS = ("node", "bootnode", "chat", "testnet", "simulate", "crawl", "nodeset", "keygen", "nodedb", "dns", "bench")


def import_optional(name: str) -> ModuleType | None:
    """The module ``name``, or None when that module does not exist (a sub-command or benchmark
    not written yet); an import error inside an existing module still raises."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        return None


def _version() -> str:
    try:
        return importlib.metadata.version("trio-devp2p")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="p2p", description="devp2p node, tools and benchmarks")
    parser.add_argument("--version", action="version", version=f"p2p (trio-devp2p) {_version()}")
    add_verbosity_argument(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = import_optional(f"p2p.cli.{name}")
        if module is not None:
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.verbosity.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from p2p.cli._run import report

    try:
        return int(args.func(args) or 0)
    except (BadArgument, CommandFailed, KeyboardInterrupt) as exc:  # checks made before a command runs
        return report(args.command, exc)


__all__ = ["main", "build_parser"]
