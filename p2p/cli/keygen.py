"""``p2p keygen [--out FILE]``: make a node key; print its enode public key and node ID."""

from __future__ import annotations

import argparse
import os
import sys

from p2p.cli._args import subcommand
from p2p.cli._output import print_json
from p2p.crypto import PrivateKey, save_node_key
from p2p.enode import NodeID


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subcommand(sub, "keygen", help="generate a node key", doc=__doc__)
    p.add_argument("--out", metavar="FILE", help="write the key (hex, mode 0600) to FILE instead of printing it")
    p.add_argument("--force", action="store_true", help="overwrite an existing FILE")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    key = PrivateKey.generate()
    if args.out:
        if os.path.exists(args.out) and not args.force:
            print(f"p2p keygen: {args.out} exists (use --force to overwrite)", file=sys.stderr)
            return 1
        try:
            save_node_key(key, args.out)
        except OSError as exc:
            print(f"p2p keygen: cannot write {args.out}: {exc}", file=sys.stderr)
            return 1
    info = {
        "public_key": key.public_key.to_bytes().hex(),
        "id": NodeID.from_pubkey(key.public_key).hex(),
    }
    if not args.out:
        info["private_key"] = key.to_hex()
    else:
        info["file"] = args.out
    if args.json:
        print_json(info)
    else:
        for k, v in info.items():
            print(f"{k}: {v}")
    return 0
