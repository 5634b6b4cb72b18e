"""The ``p2p`` command. Each sub-command lives in its own module here and exposes
``register(subparsers)``; the module's ``run`` writes to stdout, library code never does."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType

# Order of the sub-commands in ``p2p --help``.
COMMANDS = ("node", "bootnode", "chat", "testnet", "keygen", "nodedb", "bench")


def import_optional(name: str) -> ModuleType | None:
    """The module ``name``, or None when that module does not exist (a sub-command or benchmark
    not written yet); an import error inside an existing module still raises."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="p2p", description="devp2p node, tools and benchmarks")
    parser.add_argument("-v", "--verbosity", default="warning",
                        choices=["debug", "info", "warning", "error"], help="log level (logs go to stderr)")
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
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


__all__ = ["main", "build_parser"]
